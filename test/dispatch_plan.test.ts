/**
 * Decode calls through dispatch plans (issue 13, src/kernels/webgpu/dispatch_plan.ts): the webgpu kernels
 * are recorded on their first call and replayed after. Every backend runs these cases (on cpu and
 * tensorflow they check the same op calls without plans); the expected numbers are the cpu reference
 * (routingImpl then fusedExpertsImpl), computed on the host from the same inputs.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {expect} from 'chai';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {FusedMoE, fusedExperts, fusedExpertsImpl, fusedMoE, fusedTopK, routingImpl} from '../src';
import {PLAN_SUBMIT_BATCHES, dispatchPlanStats, releaseDispatchPlans, setDispatchPlansEnabled}
  from '../src/kernels/webgpu/dispatch_plan';
import {expectClose, randn, rng} from './helpers/compare';
import {countReadBacks, describeAgainstReference, expectNoLeaks} from './helpers/env';
import {quantizedTensors, randomProjection} from './helpers/quant_weights';
import {dequantizeImpl} from '../src/kernels/cpu/dequantize_impl';
import type {WeightFormat} from '../src/quant/format';

const E = 8, k = 4, H = 24, I = 20;

function makeLayer(seed: number) {
  const rand = rng(seed);
  return {w13: randn(rand, E * 2 * I * H, 0.3), w2: randn(rand, E * H * I, 0.3)};
}

/** The cpu reference of fusedMoE (softmax top-k, renormalized) for T tokens (of the layer's H and I). */
function reference(layer: {w13: Float32Array; w2: Float32Array}, x: Float32Array, logits: Float32Array, T: number,
    hiddenSize = H, intermediateSize = I) {
  const {weights, ids} = routingImpl(logits, T, E, null, {topK: k, renormalize: true, scoringFunc: 'softmax',
    routedScalingFactor: 1, numExpertGroup: 1, topkGroup: 1});
  return fusedExpertsImpl({hidden: x, topkWeights: weights, topkIds: ids, expertMap: null, shards: [{...layer, numExperts: E}],
    numTokens: T, topK: k, hiddenSize, intermediateSize, globalNumExperts: E, activation: 'silu',
    applyRouterWeightOnInput: false});
}

function inputs(seed: number, T = 1) {
  const rand = rng(seed);
  return {x: randn(rand, T * H), logits: randn(rand, T * E, 2)};
}

const planStats = () => dispatchPlanStats(tf.backend() as WebGPUBackend);

describeAgainstReference('dispatch plans: decode calls replayed', (backend) => {
  const webgpu = backend === 'webgpu';
  let layer: ReturnType<typeof makeLayer>;
  let w13: tf.Tensor3D;
  let w2: tf.Tensor3D;
  beforeEach(() => {
    layer = makeLayer(1);
    w13 = tf.tensor3d(layer.w13, [E, 2 * I, H]);
    w2 = tf.tensor3d(layer.w2, [E, H, I]);
  });
  afterEach(() => {
    tf.dispose([w13, w2]);
    if (webgpu) releaseDispatchPlans(tf.backend() as WebGPUBackend);
  });

  it('gives each call its own inputs\' result, call after call, with one plan recorded and the rest replayed', async () => {
    const before = webgpu ? planStats() : null;
    for (let i = 0; i < 4; i++) {
      const {x, logits} = inputs(10 + i);
      const [xt, lt] = [tf.tensor2d(x, [1, H]), tf.tensor2d(logits, [1, E])];
      const y = fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true});
      expectClose(await y.data(), reference(layer, x, logits, 1), `call ${i}`);
      tf.dispose([xt, lt, y]);
    }
    if (webgpu) {
      const after = planStats();
      expect(after.recorded - before!.recorded).to.equal(1);
      expect(after.replayed - before!.replayed).to.equal(3);
    }
  });

  it('keeps program order with tfjs ops before and after it (inputs made and outputs used in tfjs\'s encoder)', async () => {
    const {x, logits} = inputs(20);
    const [xt, lt] = [tf.tensor2d(x, [1, H]), tf.tensor2d(logits, [1, E])];
    fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true}).dispose();  // recorded
    // x' = 2x - x and logits' = logits + 0, made by tfjs just before the call; y·3 just after.
    const y3 = tf.tidy(() => {
      const x2 = tf.sub(tf.mul(xt, 2), xt) as tf.Tensor2D;
      const l2 = tf.add(lt, 0) as tf.Tensor2D;
      return tf.mul(fusedMoE(x2, l2, w13, w2, {topK: k, renormalize: true}), 3);
    });
    const expected = reference(layer, x, logits, 1).map((v) => 3 * v);
    expectClose(await y3.data(), expected, 'tfjs ops around a replayed call');
    tf.dispose([xt, lt, y3]);
  });

  it('chains decode calls, each on the previous output, without waiting in between', async () => {
    let x = inputs(30).x;
    const logits = inputs(31).logits;
    const lt = tf.tensor2d(logits, [1, E]);
    let xt = tf.tensor2d(x, [1, H]);
    let expected = x;
    for (let i = 0; i < 6; i++) {
      const y = fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true});
      xt.dispose();
      xt = y;
      expected = reference(layer, expected, logits, 1);
    }
    x = await xt.data() as Float32Array;
    expectClose(x, expected, 'six chained calls', {atol: 1e-4});
    tf.dispose([xt, lt]);
  });

  it('drops a plan when a tensor it binds is disposed, and new weights (maybe in the same buffers) are used', async () => {
    const {x, logits} = inputs(40);
    const bytesBefore = tf.memory().numBytes;
    const [xt, lt] = [tf.tensor2d(x, [1, H]), tf.tensor2d(logits, [1, E])];
    for (let i = 0; i < 2; i++) fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true}).dispose();
    const gpuBytes = () => (tf.memory() as {numBytesInGPU?: number}).numBytesInGPU ?? 0;
    const withPlan = gpuBytes();
    if (webgpu) expect(planStats().plans).to.equal(1);
    tf.dispose([w13, w2]);
    if (webgpu) {
      expect(planStats().plans).to.equal(0);
      expect(gpuBytes()).to.be.below(withPlan);
    }
    // New weights of the same shapes: tfjs's pool may hand them the old buffers.
    const other = makeLayer(2);
    w13 = tf.tensor3d(other.w13, [E, 2 * I, H]);
    w2 = tf.tensor3d(other.w2, [E, H, I]);
    const y = fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true});
    expectClose(await y.data(), reference(other, x, logits, 1), 'new weights');
    tf.dispose([xt, lt, y]);
    expect(tf.memory().numBytes).to.equal(bytesBefore);
  });

  it('a FusedMoE layer\'s dispose drops its plans at once: tf.memory() is back to what it was before the layer', async () => {
    // The weights uploaded now, so that the GPU bytes before count them; a read submits tfjs's pending work
    // (tfjs releases the buffers of tensors disposed while their commands wait, at its next submit).
    const flush = async () => {
      const s = tf.tidy(() => tf.add(tf.sum(w13), tf.sum(w2)));
      await s.data();
      s.dispose();
    };
    await flush();
    const bytesBefore = tf.memory().numBytes;
    const gpuBefore = (tf.memory() as {numBytesInGPU?: number}).numBytesInGPU ?? 0;
    const l = new FusedMoE({numExperts: E, topK: k, hiddenSize: H, intermediateSize: I, renormalize: true});
    l.apply([tfl.input({shape: [H]}), tfl.input({shape: [E]})]);  // built, and disposable (tfjs-layers counts uses)
    l.setWeights([w13, w2]);  // the variables share the tensors' data (assign keeps a reference)
    const {x, logits} = inputs(45);
    const [xt, lt] = [tf.tensor2d(x, [1, H]), tf.tensor2d(logits, [1, E])];
    for (let i = 0; i < 2; i++) {
      const y = l.apply([xt, lt]) as tf.Tensor;
      expectClose(await y.data(), reference(layer, x, logits, 1), `call ${i}`);
      y.dispose();
    }
    if (webgpu) expect(planStats().plans).to.equal(1);
    l.dispose();
    tf.dispose([xt, lt]);
    await flush();
    // No sweep has run since (dispatchPlanStats would sweep): the numbers are the dispose's own.
    expect(tf.memory().numBytes).to.equal(bytesBefore);
    if (webgpu) {
      expect((tf.memory() as {numBytesInGPU?: number}).numBytesInGPU).to.equal(gpuBefore);
      expect(planStats().plans).to.equal(0);
    }
  });

  it('drops a plan when a tensor it binds moves to another buffer (to cpu and back)', async () => {
    const {x, logits} = inputs(50);
    const [xt, lt] = [tf.tensor2d(x, [1, H]), tf.tensor2d(logits, [1, E])];
    for (let i = 0; i < 2; i++) fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true}).dispose();
    const dropped = webgpu ? planStats().dropped : 0;
    // Use w2 on the cpu backend (tfjs moves its data there; its values read first, asynchronously, since
    // webgpu in Node cannot read synchronously), then on this backend again (moved back to a new buffer).
    await w2.data();
    await tf.setBackend('cpu');
    try {
      tf.sum(w2).dispose();
    } finally {
      await tf.setBackend(backend);
    }
    const y = fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true});
    expectClose(await y.data(), reference(layer, x, logits, 1), 'after the move');
    if (webgpu) expect(planStats().dropped).to.be.above(dropped);
    tf.dispose([xt, lt, y]);
  });

  it('replays fusedTopK and fusedExperts called as separate ops too, with no leaks', async () => {
    const {x, logits} = inputs(60);
    const [xt, lt] = [tf.tensor2d(x, [1, H]), tf.tensor2d(logits, [1, E])];
    await expectNoLeaks(async () => {
      for (let i = 0; i < 3; i++) {
        const {topkWeights, topkIds} = fusedTopK(lt, k, true);
        const y = fusedExperts(xt, w13, w2, topkWeights, topkIds);
        expectClose(await y.data(), reference(layer, x, logits, 1), `call ${i}`);
        tf.dispose([topkWeights, topkIds, y]);
      }
    });
    tf.dispose([xt, lt]);
  });

  it('replays decode calls on quantized experts (GPTQ-style int4, fp8 with 128×128 block scales) too', async () => {
    // H and I of the quantized layouts: multiples of their groups and blocks.
    const [Hq, Iq] = [128, 128];
    const formats: Array<[string, WeightFormat]> = [
      ['uint4 g32', {code: 'uint4', groupSize: 32, blockRows: 1, scaleCode: 'f32', zero: 8, hasGIdx: false}],
      ['e4m3 128×128', {code: 'e4m3', groupSize: 128, blockRows: 128, scaleCode: 'f32', zero: 0, hasGIdx: false}],
    ];
    for (const [name, f] of formats) {
      const rand = rng(name.length);
      const p13 = randomProjection(f, E, 2 * Iq, Hq, rand), p2 = randomProjection(f, E, Hq, Iq, rand);
      const [q13, q2] = [quantizedTensors(p13), quantizedTensors(p2)];
      const dense = {w13: dequantizeImpl(p13), w2: dequantizeImpl(p2)};
      const before = webgpu ? planStats() : null;
      for (let i = 0; i < 3; i++) {
        const x = randn(rand, Hq), logits = randn(rand, E, 2);
        const [xt, lt] = [tf.tensor2d(x, [1, Hq]), tf.tensor2d(logits, [1, E])];
        const y = fusedMoE(xt, lt, q13, q2, {topK: k, renormalize: true});
        expectClose(await y.data(), reference(dense, x, logits, 1, Hq, Iq), `${name}, call ${i}`);
        tf.dispose([xt, lt, y]);
      }
      if (webgpu) {
        const after = planStats();
        expect(after.recorded - before!.recorded, name).to.equal(1);
        expect(after.replayed - before!.replayed, name).to.equal(2);
      }
      tf.dispose([q13.data, q13.scales!, q2.data, q2.scales!]);
    }
  });

  it('runs tfjs\'s path under tf.time (each program timed) with the same result', async () => {
    const {x, logits} = inputs(70);
    const [xt, lt] = [tf.tensor2d(x, [1, H]), tf.tensor2d(logits, [1, E])];
    fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true}).dispose();
    let y: tf.Tensor | undefined;
    await tf.time(() => { y = fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true}); });
    expectClose(await y!.data(), reference(layer, x, logits, 1), 'under tf.time');
    if (webgpu) expect(planStats().lastTfjsPathReason).to.match(/profiler/);
    tf.dispose([xt, lt, y!]);
  });

  if (webgpu) {
    it('reads nothing back while replaying', async () => {
      const {x, logits} = inputs(80);
      const [xt, lt] = [tf.tensor2d(x, [1, H]), tf.tensor2d(logits, [1, E])];
      fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true}).dispose();
      const replayed = planStats().replayed;
      const {out, reads, maps} = await countReadBacks(() => fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true}));
      expect(planStats().replayed).to.equal(replayed + 1);
      expect({reads, maps}).to.deep.equal({reads: 0, maps: 0});
      expectClose(await out.data(), reference(layer, x, logits, 1), 'replayed');
      tf.dispose([xt, lt, out]);
    });

    it('submits replayed work every PLAN_SUBMIT_BATCHES of tfjs\'s submit batches, one compute pass each, with no read in between', async () => {
      const b = tf.backend() as WebGPUBackend;
      const {x, logits} = inputs(83);
      const [xt, lt] = [tf.tensor2d(x, [1, H]), tf.tensor2d(logits, [1, E])];
      const call = () => fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true});
      const batch0 = tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE');
      const submit = b.queue.submit;
      const dispatch = GPUComputePassEncoder.prototype.dispatchWorkgroups;
      const beginPass = GPUCommandEncoder.prototype.beginComputePass;
      let submits = 0, dispatches = 0, passes = 0;
      try {
        tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', 3);
        call().dispose();
        b.queue.submit = function(this: GPUQueue, ...a: Parameters<GPUQueue['submit']>) {
          submits++;
          return submit.apply(this, a);
        };
        GPUComputePassEncoder.prototype.dispatchWorkgroups = function(this: GPUComputePassEncoder,
            ...a: Parameters<GPUComputePassEncoder['dispatchWorkgroups']>) {
          dispatches++;
          return dispatch.apply(this, a);
        };
        GPUCommandEncoder.prototype.beginComputePass = function(this: GPUCommandEncoder,
            ...a: Parameters<GPUCommandEncoder['beginComputePass']>) {
          passes++;
          return beginPass.apply(this, a);
        };
        const replayed = planStats().replayed;
        for (let i = 0; i < 40; i++) call().dispose();
        expect(planStats().replayed).to.equal(replayed + 40);
      } finally {
        b.queue.submit = submit;
        GPUComputePassEncoder.prototype.dispatchWorkgroups = dispatch;
        GPUCommandEncoder.prototype.beginComputePass = beginPass;
        tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', batch0);
      }
      // Up to one batch may have been pending before the first counted call.
      const per = PLAN_SUBMIT_BATCHES * 3;
      expect(submits).to.be.within(Math.floor(dispatches / per), Math.floor(dispatches / per) + 1);
      expect(submits, 'work goes to the GPU without a read').to.be.at.least(1);
      // Replays share tfjs's open pass: one per submitted batch (and one left open), not one per call.
      expect(passes, 'compute passes begun').to.be.at.most(submits + 1);
      const y = call();
      expectClose(await y.data(), reference(layer, x, logits, 1), 'after the batched calls');
      tf.dispose([xt, lt, y]);
    });

    it('makes no bind group and writes no uniform per replayed call (tfjs\'s path: one of each per program)', async () => {
      // Also prints the host time per call of both paths: the functional number of the Node and karma runs
      // (SwiftShader); the H200 numbers are bench/host_decode.ts's.
      const b = tf.backend() as WebGPUBackend;
      const {x, logits} = inputs(85);
      const [xt, lt] = [tf.tensor2d(x, [1, H]), tf.tensor2d(logits, [1, E])];
      const call = () => fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true});
      const original = {createBindGroup: b.device.createBindGroup, writeBuffer: b.queue.writeBuffer};
      const counts = {bindGroups: 0, uniformWrites: 0};
      b.device.createBindGroup = function(this: GPUDevice, ...a: Parameters<GPUDevice['createBindGroup']>) {
        counts.bindGroups++;
        return original.createBindGroup.apply(this, a);
      };
      b.queue.writeBuffer = function(this: GPUQueue, ...a: Parameters<GPUQueue['writeBuffer']>) {
        counts.uniformWrites++;
        return original.writeBuffer.apply(this, a);
      };
      const perPath: {[path: string]: {bindGroups: number; uniformWrites: number; hostUs: number}} = {};
      try {
        for (const plans of [true, false]) {
          setDispatchPlansEnabled(plans);
          for (let i = 0; i < 3; i++) call().dispose();
          counts.bindGroups = counts.uniformWrites = 0;
          const n = 20;
          let hostMs = 0;
          for (let i = 0; i < n; i++) {
            const t0 = performance.now();
            const y = call();
            hostMs += performance.now() - t0;
            y.dispose();
          }
          await b.queue.onSubmittedWorkDone();
          perPath[plans ? 'plan' : 'tfjs'] = {bindGroups: counts.bindGroups / n, uniformWrites: counts.uniformWrites / n,
            hostUs: Math.round(hostMs * 1000 / n)};
        }
      } finally {
        setDispatchPlansEnabled(true);
        b.device.createBindGroup = original.createBindGroup;
        b.queue.writeBuffer = original.writeBuffer;
      }
      console.log(`      [host µs per fusedMoE decode call, ${typeof window === 'undefined' ? 'Node' : 'browser'}] ` +
          `plan ${perPath.plan.hostUs}, tfjs's path ${perPath.tfjs.hostUs}`);
      expect({bindGroups: perPath.plan.bindGroups, uniformWrites: perPath.plan.uniformWrites})
        .to.deep.equal({bindGroups: 0, uniformWrites: 0});
      // One per program on tfjs's path: routing, w13, w2 (and the combine where it is not fused into w2).
      expect(perPath.tfjs.bindGroups).to.be.at.least(3);
      expect(perPath.tfjs.uniformWrites).to.be.at.least(3);
      tf.dispose([xt, lt]);
    });

    it('takes tfjs\'s path above PLAN_MAX_TOKENS tokens, saying why', async () => {
      const T = 65;
      const {x, logits} = inputs(90, T);
      const [xt, lt] = [tf.tensor2d(x, [T, H]), tf.tensor2d(logits, [T, E])];
      const y = fusedMoE(xt, lt, w13, w2, {topK: k, renormalize: true});
      expect(planStats().lastTfjsPathReason).to.match(/65 tokens > 64/);
      expectClose(await y.data(), reference(layer, x, logits, T), 'T = 65');
      tf.dispose([xt, lt, y]);
    });
  }
});

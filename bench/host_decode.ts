/**
 * Issue 13's targets on the real shapes: for fusedMoE at T = 1 (and a tiny layer), with dispatch plans on
 * and off (tfjs's path), in one run:
 *  - host µs per call: N calls back to back, each returning with its work queued, no waiting (the issue's
 *    definition), and the same measured one call at a time on an idle GPU;
 *  - GPU µs per call (tf.time: tfjs times each program; the plan replays the same programs);
 *  - wall µs per call (call → queue.onSubmittedWorkDone), beside the empty submit-to-done floor;
 *  - 48 chained decode calls (each on the previous output, one final wait) against 48 × the GPU time.
 * With --windows, where the back-to-back host time goes instead (plans on): from an idle GPU, W calls back to
 * back for W in 48, 100, 300, 1000, with the time spent inside queue.submit and the spread of single calls,
 * at tfjs's submit batch and at larger ones (--batches).
 * Each path's back-to-back windows start after a full garbage collection, so that one path's garbage (tfjs's
 * path makes much more) is not collected inside the other's window; a window still pays for its own.
 *   npx tsx bench/host_decode.ts [--shapes qwen3,dsv3tp8,mixtral] [--calls 300] [--repeats 5]
 *       [--windows [--window-sizes 48,100] [--batches 15,30,60]]
 */
import * as v8 from 'v8';
import * as vm from 'vm';
import {setupWebGPUNode} from './webgpu_node';
const setup = setupWebGPUNode();
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {fusedMoE} from '../src';
import {dispatchPlanStats, setDispatchPlansEnabled} from '../src/kernels/webgpu/dispatch_plan';
import {makeExpertWeights, makeTokenInputs, moeOptions} from './problem';
import {MoEShape, SHAPES} from './shapes';
import {KernelTimer} from './timing';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const calls = Number(arg('calls', '300'));
const repeats = Number(arg('repeats', '5'));
/** A full collection on demand, without a node flag (the GPU machine runs node through .gpu/run.sh). */
const gc: () => void = (() => {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
})();
const shapeNames = arg('shapes', 'tiny-host,qwen3,dsv3tp8,mixtral').split(',');
const TINY: MoEShape = {kind: 'moe', name: 'tiny-host', E: 128, k: 8, H: 64, I: 32,
  routing: {kind: 'topk', scoringFunc: 'softmax', renormalize: true}};

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

async function main() {
  await tf.setBackend('webgpu');
  const b = tf.backend() as WebGPUBackend;
  console.log(`# host_decode on ${setup.vulkan}, ${new Date().toISOString()}`);
  // tfjs batches dispatches in an encoder it has not submitted yet: submit it, then wait for the queue.
  const done = () => {
    b.ensureCommandEncoderReady();
    b.endComputePassEncoder();
    b.submitQueue();
    return b.queue.onSubmittedWorkDone();
  };
  // The empty submit-to-done floor.
  const floor: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    b.queue.submit([b.device.createCommandEncoder().finish()]);
    await done();
    floor.push((performance.now() - t0) * 1000);
  }
  const floorUs = median(floor);
  console.log(`empty submit-to-done floor: ${floorUs.toFixed(1)} µs`);
  if (args.includes('--windows')) return windows(b, done);
  for (const name of shapeNames) {
    const s = name === 'tiny-host' ? TINY : SHAPES[name] as MoEShape;
    const w = makeExpertWeights(s);
    const inp = makeTokenInputs(s, 1);
    const o = moeOptions(s, inp.bias);
    const call = (x: tf.Tensor2D = inp.hidden!) => fusedMoE(x, inp.logits, w.w13, w.w2, o);
    call().dispose();
    await done();
    // GPU time (tfjs's profiler; plans step aside for it, the programs are the same).
    const gpu: number[] = [];
    for (let i = 0; i < 20; i++) {
      const timer = new KernelTimer();
      const y = await timer.time(() => call());
      y.dispose();
      gpu.push(timer.kernels.reduce((a, k) => a + k.ms, 0) * 1000);
    }
    const gpuUs = median(gpu);
    const row: {[k: string]: string} = {shape: s.name, gpu_us: gpuUs.toFixed(1), floor_us: floorUs.toFixed(1)};
    for (const plans of [false, true]) {
      setDispatchPlansEnabled(plans);
      const tag = plans ? 'plan' : 'tfjs';
      for (let i = 0; i < 30; i++) call().dispose();
      // Back to back: host time per call while the GPU works behind, in `repeats` windows from an idle GPU.
      const windowsUs: number[] = [];
      for (let r = 0; r < repeats; r++) {
        await done();
        gc();
        const t0 = performance.now();
        for (let i = 0; i < calls; i++) call().dispose();
        windowsUs.push((performance.now() - t0) * 1000 / calls);
      }
      row[`${tag}_host_us`] = median(windowsUs).toFixed(1);
      row[`${tag}_host_us_range`] = `${Math.min(...windowsUs).toFixed(1)}-${Math.max(...windowsUs).toFixed(1)}`;
      await done();
      gc();
      // One at a time on an idle GPU: host and wall.
      const host: number[] = [], wall: number[] = [];
      for (let i = 0; i < 100; i++) {
        const t1 = performance.now();
        const y = call();
        const t2 = performance.now();
        await done();
        wall.push((performance.now() - t1) * 1000);
        host.push((t2 - t1) * 1000);
        y.dispose();
      }
      row[`${tag}_host_idle_us`] = median(host).toFixed(1);
      row[`${tag}_wall_us`] = median(wall).toFixed(1);
      // 48 chained decode calls, one final wait.
      const chain: number[] = [];
      gc();
      for (let r = 0; r < 10; r++) {
        const t1 = performance.now();
        let x = inp.hidden!;
        for (let l = 0; l < 48; l++) {
          const y = call(x);
          if (x !== inp.hidden) x.dispose();
          x = y;
        }
        await done();
        chain.push((performance.now() - t1) * 1000);
        x.dispose();
      }
      row[`${tag}_chain48_us`] = median(chain).toFixed(0);
      row[`${tag}_chain48_over_gpu`] = (median(chain) / (48 * gpuUs)).toFixed(2);
    }
    row.wall_minus_gpu_floor_us = (Number(row.plan_wall_us) - gpuUs - floorUs).toFixed(1);
    console.log(JSON.stringify(row));
    tf.dispose([...w.w13, ...w.w2]);
    tf.dispose([inp.hidden!, inp.logits, ...(inp.bias ? [inp.bias] : [])]);
  }
  console.log('plans:', JSON.stringify(dispatchPlanStats(b)));
  process.exit(0);
}
/** The --windows breakdown (see the header). */
async function windows(b: WebGPUBackend, done: () => Promise<undefined>) {
  // Time inside queue.submit, from the bench only (the product never wraps Dawn).
  const queue = b.queue;
  const submit = queue.submit.bind(queue);
  let submitMs = 0, submits = 0;
  queue.submit = (cbs: Iterable<GPUCommandBuffer>) => {
    const t = performance.now();
    submit(cbs);
    submitMs += performance.now() - t;
    submits++;
  };
  const batch0 = tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number;
  for (const name of shapeNames) {
    const s = name === 'tiny-host' ? TINY : SHAPES[name] as MoEShape;
    const w = makeExpertWeights(s);
    const inp = makeTokenInputs(s, 1);
    const o = moeOptions(s, inp.bias);
    const call = () => fusedMoE(inp.hidden!, inp.logits, w.w13, w.w2, o);
    setDispatchPlansEnabled(true);
    for (let i = 0; i < 30; i++) call().dispose();
    await done();
    for (const batch of arg('batches', `${batch0},${4 * batch0}`).split(',').map(Number)) {
      tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', batch);
      for (const W of arg('window-sizes', '48,100,300,1000').split(',').map(Number)) {
        await done();
        await new Promise((r) => setTimeout(r, 5));
        gc();
        submitMs = 0;
        submits = 0;
        const per: number[] = [];
        const t0 = performance.now();
        for (let i = 0; i < W; i++) {
          const t1 = performance.now();
          call().dispose();
          per.push((performance.now() - t1) * 1000);
        }
        const total = (performance.now() - t0) * 1000;
        const sorted = [...per].sort((x, y) => x - y);
        const q = (f: number) => sorted[Math.min(W - 1, Math.floor(f * W))].toFixed(1);
        console.log(JSON.stringify({shape: s.name, batch, window: W, host_us_per_call: (total / W).toFixed(1),
          submits, submit_us_per_call: (submitMs * 1000 / W).toFixed(1),
          submit_us_each: submits ? (submitMs * 1000 / submits).toFixed(1) : '-',
          first_half_us: (per.slice(0, W >> 1).reduce((a, x) => a + x, 0) / (W >> 1)).toFixed(1),
          second_half_us: (per.slice(W >> 1).reduce((a, x) => a + x, 0) / (W - (W >> 1))).toFixed(1),
          p50: q(0.5), p90: q(0.9), p99: q(0.99), max: sorted[W - 1].toFixed(1)}));
      }
    }
    tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', batch0);
    await done();
    tf.dispose([...w.w13, ...w.w2]);
    tf.dispose([inp.hidden!, inp.logits, ...(inp.bias ? [inp.bias] : [])]);
  }
  process.exit(0);
}

main().catch((e) => { console.error(e); process.exit(1); });

/**
 * int8 w8a8 (useInt8W8A8: vLLM `use_int8_w8a8`, per-channel weights, per-token dynamic activations):
 *   - the cpu reference (src/kernels/cpu/int8_w8a8_impl.ts) against an independent float64 computation here;
 *   - every backend against the cpu reference, bit for bit. The data put the gates at ≥ 40, where silu(g) and
 *     gelu(g) are exactly g in float32 and float64 (exp(-g) < 2^-53), so no exp/erf ulp enters and the whole
 *     pipeline (two quantizations, int32 dots, f32 epilogues, routing weights, slot sums) has one exact answer;
 *   - on webgpu the quantization program alone, word for word, including half-way ties and non-finite rows;
 *   - the op's argument checks.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {Activation, CheckpointTensor, FusedMoE, PackedTensor, disposeCheckpointTensors, fusedExperts, fusedTopK}
  from '../src';
import {WeightFormat, formatKey} from '../src/quant/format';
import {checkpointFormat} from '../src/quant/checkpoint/registry';
import {resolveFusedMoEConfig} from '../src/layers/fused_moe_config';
import {QuantizedExpertWeights} from '../src/quant/expert_weights';
import {fusedExpertsInt8Impl, quantizeRowInt8} from '../src/kernels/cpu/int8_w8a8_impl';
import {ExpertsPath, setFusedExpertsPath} from '../src/kernels/webgpu/FusedExperts';
import {ExpertsInt8QuantProgram} from '../src/kernels/webgpu/experts_int8_quant_webgpu';
import {chooseInt8GemmKernel, setInt8GemmKernel} from '../src/kernels/webgpu/experts_int8_run';
import {int8TensorCoreConfig} from '../src/kernels/webgpu/experts_int8_tc_webgpu';
import {webgpuCapabilities} from '../src/kernels/webgpu/capabilities';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {expectClose, rng} from './helpers/compare';
import {countReadBacks, describeBackends, expectNoLeaks} from './helpers/env';

const INT8: WeightFormat = {code: 'uint8', groupSize: -1, blockRows: 1, scaleCode: 'f32', zero: 128, hasGIdx: false};
const f32 = Math.fround;

interface Int8Case {
  T: number; k: number; E: number; shards: number[]; H: number; I: number;
  activation?: Activation; bias?: boolean; onInput?: boolean; expertMap?: number[];
  /** Gates ≥ 40 (exact silu/gelu); otherwise unconstrained random data. */
  exact: boolean;
}

interface Projection {words: Int32Array; scales: Float32Array; bias?: Float32Array}

/** Random codes; with `gateRows`, rows [0, gateRows) of each expert get positive weights and large scales. */
function projection(rand: () => number, n: number, N: number, K: number, gateRows: number, bias: boolean):
    Projection {
  const codes = new Uint8Array(n * N * K);
  const scales = new Float32Array(n * N);
  for (let e = 0; e < n; e++) {
    for (let r = 0; r < N; r++) {
      const gate = r < gateRows;
      scales[e * N + r] = gate ? 0.1 + 0.1 * rand() : 0.001 + 0.002 * rand();
      for (let k = 0; k < K; k++) {
        codes[(e * N + r) * K + k] = gate ? 160 + Math.floor(rand() * 96) : Math.floor(rand() * 256);
      }
    }
  }
  const words = new Int32Array(codes.buffer);
  const b = bias ? Float32Array.from({length: n * N}, (_, i) => (i % N) < gateRows ? 1 + rand() : rand() - 0.5) :
    undefined;
  return {words, scales, bias: b};
}

function makeCase(seed: number, c: Int8Case) {
  const rand = rng(seed);
  const {T, k, E, H, I} = c;
  const ids = new Int32Array(T * k);
  const weights = new Float32Array(T * k);
  for (let t = 0; t < T; t++) {
    const order = Array.from({length: E}, (_, e) => e).sort(() => rand() - 0.5);
    for (let j = 0; j < k; j++) { ids[t * k + j] = order[j]; weights[t * k + j] = 0.1 + rand(); }
  }
  const hidden = Float32Array.from({length: T * H}, () => c.exact ? 0.25 + 0.75 * rand() : (rand() - 0.5) * 4);
  const gateRows = c.exact ? I : 0;   // (not interleaved: the exact cases use silu/gelu)
  const shards = c.shards.map((n) => ({n, w13: projection(rand, n, 2 * I, H, gateRows, !!c.bias),
    w2: projection(rand, n, H, I, 0, !!c.bias)}));
  const expertMap = c.expertMap ?? null;
  const problem = {hidden, topkWeights: weights, topkIds: ids, expertMap, numTokens: T, topK: k, hiddenSize: H,
    intermediateSize: I, globalNumExperts: expertMap ? expertMap.length : E, activation: c.activation ?? 'silu',
    applyRouterWeightOnInput: !!c.onInput,
    shards: shards.map((s) => ({w13: s.w13.words, w2: s.w2.words, w13Scales: s.w13.scales, w2Scales: s.w2.scales,
      numExperts: s.n, w13Bias: s.w13.bias, w2Bias: s.w2.bias}))};
  const tensors = () => {
    const q = (p: Projection, n: number, N: number, K: number): QuantizedExpertWeights => ({format: INT8,
      shape: [n, N, K], data: tf.tensor2d(p.words, [n, N * K / 4], 'int32'), scales: tf.tensor3d(p.scales, [n, N, 1]),
      ...(p.bias ? {bias: tf.tensor2d(p.bias, [n, N])} : {})});
    const w13 = shards.map((s) => q(s.w13, s.n, 2 * I, H));
    const w2 = shards.map((s) => q(s.w2, s.n, H, I));
    const all = [...w13, ...w2].flatMap((p) => [p.data, p.scales, p.bias]).filter((t): t is tf.Tensor => t != null);
    return {hidden: tf.tensor2d(hidden, [T, H]), w13: w13.length > 1 ? w13 : w13[0], w2: w2.length > 1 ? w2 : w2[0],
      weights: tf.tensor2d(weights, [T, k]), ids: tf.tensor2d(ids, [T, k], 'int32'),
      expertMap: expertMap ? tf.tensor1d(expertMap, 'int32') : undefined, all};
  };
  return {problem, tensors, shards};
}

/**
 * The same numerics, written independently: codes read as bytes through a DataView, the quotient 127/absmax in
 * float64 rounded once, half-away rounding as sign·floor(|v| + 0.5) in float64 (exact for float32 v), dot
 * products in float64 (exact integers below 2^53).
 */
function independent(p: ReturnType<typeof makeCase>['problem']): Float32Array {
  const {numTokens: T, topK: k, hiddenSize: H, intermediateSize: I} = p;
  const quant = (x: ArrayLike<number>) => {
    let amax = 0;
    for (let i = 0; i < x.length; i++) amax = Math.max(amax, Math.abs(x[i]));
    amax = f32(Math.max(amax, f32(1e-10)));
    const inv = f32(127 / amax);
    const q = Array.from(x, (v) => {
      const s = f32(v * inv);
      return Math.max(-127, Math.min(127, Math.sign(s) * Math.floor(Math.abs(s) + 0.5)));
    });
    return {q, scale: f32(amax / 127)};
  };
  const byte = (words: Int32Array, i: number) =>
    new DataView(words.buffer, words.byteOffset, words.byteLength).getUint8(i) - 128;
  const act = (g: number) => p.activation === 'gelu' ? g : g / (1 + Math.exp(-g));   // exact for g ≥ 40
  const out = new Float32Array(T * H);
  const starts = [0];
  p.shards.forEach((s) => starts.push(starts[starts.length - 1] + s.numExperts));
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const id = p.topkIds[t * k + j];
      const local = p.expertMap ? p.expertMap[id] : id;
      if (local < 0) continue;
      const si = starts.findIndex((s0, i) => local >= s0 && local < starts[i + 1]);
      const s = p.shards[si], e = local - starts[si];
      const w = p.topkWeights[t * k + j];
      const x = Array.from({length: H}, (_, h) => p.applyRouterWeightOnInput ? f32(p.hidden[t * H + h] * w) :
        p.hidden[t * H + h]);
      const qx = quant(x);
      const lin = (words: Int32Array, scales: Float32Array, bias: Float32Array | undefined, q: {q: number[];
          scale: number}, row: number, K: number) => {
        let acc = 0;
        for (let kk = 0; kk < K; kk++) acc += q.q[kk] * byte(words, row * K + kk);
        const v = f32(f32(f32(acc) * q.scale) * scales[row]);
        return bias ? f32(v + bias[row]) : v;
      };
      const a = Array.from({length: I}, (_, i) => {
        const g = lin(s.w13 as Int32Array, s.w13Scales, s.w13Bias, qx, e * 2 * I + i, H);
        const u = lin(s.w13 as Int32Array, s.w13Scales, s.w13Bias, qx, e * 2 * I + I + i, H);
        return f32(f32(act(g)) * u);
      });
      const qa = quant(a);
      for (let h = 0; h < H; h++) {
        const y = lin(s.w2 as Int32Array, s.w2Scales, s.w2Bias, qa, e * H + h, I);
        out[t * H + h] = f32(out[t * H + h] + (p.applyRouterWeightOnInput ? y : f32(y * w)));
      }
    }
  }
  return out;
}

const H = 64, I = 48;
const CASES: {[name: string]: {path: ExpertsPath; c: Int8Case}} = {
  'decode, T=1 k=4': {path: 'decode', c: {T: 1, k: 4, E: 6, shards: [6], H, I, exact: true}},
  'decode, T=3 k=2, 2 weight tensors, biases': {path: 'decode', c: {T: 3, k: 2, E: 5, shards: [2, 3], H, I,
    bias: true, exact: true}},
  'decode-grouped, T=6 k=2, gelu': {path: 'decode-grouped', c: {T: 6, k: 2, E: 3, shards: [3], H, I,
    activation: 'gelu', exact: true}},
  'prefill, T=40 k=2 (more than one 64-row tile), expert map': {path: 'prefill', c: {T: 40, k: 2, E: 4,
    shards: [2, 1], H, I: 80, expertMap: [0, -1, 1, 2], exact: true}},
  'decode-grouped, T=4 k=2, H=1040 (the tensorflow dots in two exact chunks)': {path: 'decode-grouped',
    c: {T: 4, k: 2, E: 3, shards: [3], H: 1040, I: 32, exact: true}},
  'prefill, T=9 k=1, router weight on the input, biases': {path: 'prefill', c: {T: 9, k: 1, E: 3, shards: [3],
    H: 80, I, onInput: true, bias: true, exact: true}},
};

describe('int8 w8a8 cpu reference', () => {
  before(async () => { await tf.setBackend('cpu'); });
  it('matches an independent float64 computation of the same numerics, exactly', () => {
    let seed = 50;
    for (const {c} of Object.values(CASES)) {
      const {problem} = makeCase(seed++, c);
      expect(Array.from(fusedExpertsInt8Impl(problem))).to.deep.equal(Array.from(independent(problem)));
    }
  });

  it('quantizes per token as vLLM: absmax/127 scales, half away from zero, zero and non-finite rows', () => {
    // absmax 127: inv = 1, so x is q before rounding: 2.5 → 3 and -2.5 → -3 (half-even would give 2, -2).
    const {q, scale} = quantizeRowInt8(Float32Array.from([127, 2.5, -2.5, 0.49999997, -126.5, 1.5]));
    expect(Array.from(q)).to.deep.equal([127, 3, -3, 0, -127, 2]);
    expect(scale).to.equal(1);
    const zero = quantizeRowInt8(new Float32Array(4));
    expect(Array.from(zero.q)).to.deep.equal([0, 0, 0, 0]);
    expect(zero.scale).to.equal(f32(f32(1e-10) / 127));
    const inf = quantizeRowInt8(Float32Array.from([1, Infinity, 2, 3]));
    expect(Array.from(inf.q)).to.deep.equal([0, 0, 0, 0]);
    expect(inf.scale).to.be.NaN;
  });

  it('is not the weights-only path (the test data tell the two apart)', async () => {
    const {tensors} = makeCase(60, CASES['decode, T=1 k=4'].c);
    const t = tensors();
    const int8 = await fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids, {useInt8W8A8: true}).data();
    const plain = await fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids).data();
    expect(Array.from(int8)).to.not.deep.equal(Array.from(plain));
    // ... but close to it: w8a8 rounds each GEMM input to 8 bits.
    expectClose(int8, plain, 'int8 vs weights-only', {rtolOfMax: 0.05});
    tf.dispose([t.hidden, t.weights, t.ids, ...t.all]);
  });
});

describeBackends('fusedExperts int8 w8a8 against the cpu reference, bit for bit', (backend) => {
  afterEach(() => { setFusedExpertsPath(null); setInt8GemmKernel(null); });
  let seed = 100;
  for (const [name, {path, c}] of Object.entries(CASES)) {
    const s = seed++;
    it(`${name}${backend === 'webgpu' ? ` (${path} path)` : ''}`, async () => {
      const {problem, tensors} = makeCase(s, c);
      const expected = fusedExpertsInt8Impl(problem);
      const t = tensors();
      if (backend === 'webgpu') setFusedExpertsPath(path);
      const call = () => fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids,
          {useInt8W8A8: true, activation: c.activation, applyRouterWeightOnInput: c.onInput, expertMap: t.expertMap});
      await expectNoLeaks(async () => {
        const out = call();
        const got = await out.data();
        out.dispose();
        let diff = 0;
        for (let i = 0; i < got.length; i++) if (!Object.is(got[i], expected[i])) diff++;
        expect(diff, `${diff} of ${got.length} outputs differ; first got ${got.slice(0, 4)} expected ` +
            `${expected.slice(0, 4)}`).to.equal(0);
      });
      tf.dispose([t.hidden, t.weights, t.ids, ...t.all, ...(t.expertMap ? [t.expertMap] : [])]);
    });
  }

  if (backend === 'webgpu') {
    it('quantizes rows word for word as the reference (ties, zero and non-finite rows, K not a tile multiple)',
        async () => {
      const rand = rng(7);
      const K = 48, rows = 6;
      const x = Float32Array.from({length: rows * K}, () => (rand() - 0.5) * 8);
      x.set([127, 2.5, -2.5, 0.49999997, -126.5, 1.5], 0);          // row 0: inv = 1, exact ties
      x.fill(0, K, 2 * K);                                           // row 1: zeros
      x[2 * K + 5] = Infinity;                                       // row 2: non-finite
      for (let i = 3 * K; i < 4 * K; i++) x[i] = 1e-30 * (i % 7 - 3);  // row 3: below the 1e-10 floor
      const b = tf.backend() as unknown as {runWebGPUProgram: (p: unknown, i: unknown[], d: string) => tf.TensorInfo;
        disposeData: (id: object) => void};
      const xt = tf.tensor2d(x, [rows, K]);
      const info = b.runWebGPUProgram(new ExpertsInt8QuantProgram(rows, K), [xt], 'int32');
      const got = await (tf.backend() as unknown as {read: (id: object) => Promise<Int32Array>}).read(info.dataId);
      for (let r = 0; r < rows; r++) {
        const ref = quantizeRowInt8(x.subarray(r * K, (r + 1) * K), new Int8Array(K));
        const words = Array.from({length: K / 4}, (_, w) => (ref.q[4 * w] & 255) | ((ref.q[4 * w + 1] & 255) << 8) |
          ((ref.q[4 * w + 2] & 255) << 16) | (ref.q[4 * w + 3] << 24));
        expect(Array.from(got.subarray(r * (K / 4 + 4), r * (K / 4 + 4) + K / 4)), `row ${r} codes`).to.deep.equal(words);
        const scale = new Float32Array(new Int32Array([got[r * (K / 4 + 4) + K / 4]]).buffer)[0];
        expect(Object.is(scale, f32(ref.scale)) || (Number.isNaN(scale) && Number.isNaN(ref.scale)), `row ${r} scale ` +
            `${scale} vs ${ref.scale}`).to.equal(true);
      }
      tf.dispose([xt]);
      b.disposeData(info.dataId);
    });

    for (const path of ['decode', 'decode-grouped', 'prefill'] as ExpertsPath[]) {
      it(`reads nothing back during a forward pass (${path} path)`, async () => {
        const {problem, tensors} = makeCase(21, {T: 6, k: 2, E: 3, shards: [3], H, I, exact: true});
        const t = tensors();
        setFusedExpertsPath(path);
        const call = () => fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids, {useInt8W8A8: true});
        const warm = call();
        await warm.data();
        warm.dispose();
        const {out, reads, maps} = await countReadBacks(call);
        expect({reads, maps}).to.deep.equal({reads: 0, maps: 0});
        expect(Array.from(await out.data())).to.deep.equal(Array.from(fusedExpertsInt8Impl(problem)));
        out.dispose();
        tf.dispose([t.hidden, t.weights, t.ids, ...t.all]);
      });
    }

    it('chooses the dot4I8Packed GEMM where there are no i8 subgroup matrices, and says why', () => {
      const backend = tf.backend() as unknown as WebGPUBackend;
      const choice = chooseInt8GemmKernel(backend);
      if (int8TensorCoreConfig(webgpuCapabilities(backend).subgroupMatrixConfigs) == null) {
        expect(choice.kernel).to.equal('dot4-i8');
        expect(choice.reason).to.match(/no i8×i8→i32 16×16×32 subgroup-matrix config|subgroups are off/);
        setInt8GemmKernel('tensor-core-i8');
        expect(() => chooseInt8GemmKernel(backend)).to.throw(/cannot force the int8 tensor-core GEMM: /);
      }
      // The H200's list (issue 11): the i8 config is found among the f16 ones; a u8-only or 16×8×32-only list is not enough.
      const cfg = (componentType: string, resultComponentType: string, M: number, N: number, K: number) =>
        ({componentType, resultComponentType, M, N, K});
      expect(int8TensorCoreConfig([cfg('f16', 'f32', 16, 16, 16), cfg('i8', 'i32', 16, 8, 32),
        cfg('i8', 'i32', 16, 16, 32)])).to.deep.equal(cfg('i8', 'i32', 16, 16, 32));
      expect(int8TensorCoreConfig([cfg('u8', 'u32', 16, 16, 32), cfg('i8', 'i32', 16, 8, 32)])).to.equal(undefined);
    });

    it('gives the same bits through the dot4 GEMM as through the GEMVs (prefill vs decode-grouped)', async () => {
      const {tensors} = makeCase(9, {T: 20, k: 2, E: 3, shards: [3], H, I, exact: false});
      const t = tensors();
      const run = async (path: ExpertsPath) => {
        setFusedExpertsPath(path);
        const out = fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids, {useInt8W8A8: true});
        const d = await out.data();
        out.dispose();
        return Array.from(d);
      };
      setInt8GemmKernel('dot4-i8');
      // Random data: the activation's exp may differ from the cpu's by an ulp, but not between two GPU programs
      // that share the epilogue.
      expect(await run('prefill')).to.deep.equal(await run('decode-grouped'));
      tf.dispose([t.hidden, t.weights, t.ids, ...t.all]);
    });
  }

  it('refuses formats and option combinations it cannot apply to, naming the argument', () => {
    const {tensors} = makeCase(3, {T: 2, k: 2, E: 3, shards: [3], H, I, exact: true});
    const t = tensors();
    const w13 = t.w13 as QuantizedExpertWeights, w2 = t.w2 as QuantizedExpertWeights;
    expect(() => fusedExperts(t.hidden, w13, w2, t.weights, t.ids, {useInt8W8A8: true, useFp8W8A8: true}))
      .to.throw(/'useInt8W8A8' and 'useFp8W8A8' exclude each other/);
    const asym = {...INT8, zero: 'tensor' as const};
    expect(() => fusedExperts(t.hidden, {...w13, format: asym, zeros: tf.zeros([3, 2 * I, 1])},
        {...w2, format: asym, zeros: tf.zeros([3, H, 1])}, t.weights, t.ids, {useInt8W8A8: true}))
      .to.throw(/'useInt8W8A8' needs int8 weights with one scale per output row .* uint8_g-1_r1_f32_ztensor/);
    const f32Weights = tf.zeros([3, 2 * I, H]) as tf.Tensor3D, f32W2 = tf.zeros([3, H, I]) as tf.Tensor3D;
    expect(() => fusedExperts(t.hidden, f32Weights, f32W2, t.weights, t.ids, {useInt8W8A8: true}))
      .to.throw(/'useInt8W8A8' needs int8 weights .* but the weights are f32_g0/);
    expect(() => fusedExperts(t.hidden, w13, w2, t.weights, t.ids, {useInt8W8A8: 1 as unknown as boolean}))
      .to.throw(/'useInt8W8A8' must be a boolean but got 1/);
    tf.dispose([t.hidden, t.weights, t.ids, ...t.all, f32Weights, f32W2]);
  });
});

describe('compressed-tensors int8 W8A8 checkpoints', () => {
  const w8a8 = (format: string, activations: Record<string, unknown> = {num_bits: 8, type: 'int', symmetric: true,
    strategy: 'token', dynamic: true}) => ({quant_method: 'compressed-tensors', format, config_groups: {group_0: {
    targets: ['Linear'], weights: {num_bits: 8, type: 'int', symmetric: true, strategy: 'channel', dynamic: false},
    input_activations: activations}}});

  it('turn useInt8W8A8 on by default, as the fp8 module does useFp8W8A8, and load int-quantized weights', () => {
    const ckpt = checkpointFormat(w8a8('int-quantized'));
    expect(ckpt.defaultUseInt8W8A8).to.equal(true);
    expect(formatKey(ckpt.format)).to.equal(formatKey(INT8));
    const layer = resolveFusedMoEConfig({numExperts: 2, topK: 1, hiddenSize: 16, intermediateSize: 16,
      quantConfig: w8a8('int-quantized')});
    expect(layer.useInt8W8A8).to.equal(true);
    expect(resolveFusedMoEConfig({numExperts: 2, topK: 1, hiddenSize: 16, intermediateSize: 16,
      quantConfig: w8a8('int-quantized'), useInt8W8A8: false}).useInt8W8A8).to.equal(false);
    // int8 bytes -128, -1, 0, 127 → codes 0, 127, 128, 255; rows 1..2 of [3, 4], scales [3, 1].
    const bytes = Uint8Array.from([1, 2, 3, 4, 0x80, 0xff, 0, 0x7f, 5, 6, 7, 8]);
    const scale = new Uint8Array(Float32Array.from([0.5, 0.25, 2]).buffer);
    const out = ckpt.convert(new Map([['.weight', {dtype: 'int8', shape: [3, 4], bytes}],
      ['.weight_scale', {dtype: 'float32', shape: [3, 1], bytes: scale}]]),
    {N: 3, K: 4, rows: {begin: 1, size: 2}, cols: {begin: 0, size: 4}});
    expect(Array.from(new Uint8Array((out.data as Int32Array).buffer))).to.deep.equal([0, 127, 128, 255, 133, 134, 135, 136]);
    expect(Array.from(out.scales as Float32Array)).to.deep.equal([0.25, 2]);
  });

  it('refuses other activation schemes and a weight-only layer forced to int8 activations, by name', () => {
    expect(() => checkpointFormat(w8a8('int-quantized', {num_bits: 8, type: 'int', symmetric: true, strategy: 'tensor',
      dynamic: true}))).to.throw(/input_activations 'strategy' = "tensor" is not supported/);
    expect(() => resolveFusedMoEConfig({numExperts: 2, topK: 1, hiddenSize: 16, intermediateSize: 16,
      useInt8W8A8: true})).to.throw(/'useInt8W8A8' needs an int8 channel checkpoint .* unquantized|'useInt8W8A8' needs an int8 channel checkpoint/);
  });
});

describeBackends('FusedMoE layer with a compressed-tensors int8 W8A8 checkpoint', (backend) => {
  it('loads int-quantized weights, turns useInt8W8A8 on, and equals the reference bit for bit', async () => {
    const E = 4, k = 2, Hs = 32, Is = 48, T = 5;
    const rand = rng(77);
    const quantConfig = {quant_method: 'compressed-tensors', format: 'int-quantized', config_groups: {group_0: {
      targets: ['Linear'], weights: {num_bits: 8, type: 'int', symmetric: true, strategy: 'channel', dynamic: false},
      input_activations: {num_bits: 8, type: 'int', symmetric: true, strategy: 'token', dynamic: true}}}};
    // Gate rows positive with large scales (gates ≥ 40: silu exact on every backend), the rest random.
    const proj = (N: number, K: number, gate: boolean) => ({
      bytes: Uint8Array.from({length: N * K}, () => gate ? 32 + Math.floor(rand() * 64) : Math.floor(rand() * 256)),
      scales: Float32Array.from({length: N}, () => gate ? 0.1 + 0.1 * rand() : 0.001 + 0.002 * rand())});
    const experts = Array.from({length: E}, () => ({gate: proj(Is, Hs, true), up: proj(Is, Hs, false),
      down: proj(Hs, Is, false)}));
    const ckpt = new Map<string, CheckpointTensor>();
    experts.forEach((x, e) => {
      for (const [name, p, N, K] of [['gate_proj', x.gate, Is, Hs], ['up_proj', x.up, Is, Hs],
        ['down_proj', x.down, Hs, Is]] as const) {
        ckpt.set(`experts.${e}.${name}.weight`, PackedTensor.fromBytes('int8', [N, K], p.bytes));
        ckpt.set(`experts.${e}.${name}.weight_scale`, tf.tensor2d(p.scales, [N, 1]));
      }
    });
    const layer = new FusedMoE({numExperts: E, topK: k, hiddenSize: Hs, intermediateSize: Is, quantConfig});
    layer.loadWeights(ckpt);
    disposeCheckpointTensors(ckpt.values());
    expect(layer.getConfig().useInt8W8A8).to.equal(true);
    const hidden = Float32Array.from({length: T * Hs}, () => 0.25 + 0.75 * rand());
    const logits = Float32Array.from({length: T * E}, () => rand() * 4);
    const out = layer.apply([tf.tensor2d(hidden, [T, Hs]), tf.tensor2d(logits, [T, E])]) as tf.Tensor;
    const got = await out.data();
    // The backend's own routing (its softmax may differ from the float64 one by an ulp; not what is tested here).
    const r = fusedTopK(tf.tensor2d(logits, [T, E]), k, true);
    const routed = {weights: await r.topkWeights.data(), ids: await r.topkIds.data()};
    tf.dispose([r.topkWeights, r.topkIds]);
    // The reference on the checkpoint's own bytes: q + 128 = byte ^ 0x80, gate rows then up rows.
    const pack = (rows: Uint8Array[]) => {
      const b = new Uint8Array(rows.reduce((n, r) => n + r.length, 0));
      let o = 0;
      for (const r of rows) { for (let i = 0; i < r.length; i++) b[o + i] = r[i] ^ 0x80; o += r.length; }
      return new Int32Array(b.buffer);
    };
    const expected = fusedExpertsInt8Impl({hidden, topkWeights: routed.weights, topkIds: routed.ids, expertMap: null,
      numTokens: T, topK: k, hiddenSize: Hs, intermediateSize: Is, globalNumExperts: E, activation: 'silu',
      applyRouterWeightOnInput: false, shards: [{numExperts: E,
        w13: pack(experts.flatMap((x) => [x.gate.bytes, x.up.bytes])), w2: pack(experts.map((x) => x.down.bytes)),
        w13Scales: Float32Array.from(experts.flatMap((x) => [...x.gate.scales, ...x.up.scales])),
        w2Scales: Float32Array.from(experts.flatMap((x) => [...x.down.scales]))}]});
    expect(Array.from(got)).to.deep.equal(Array.from(expected));
    out.dispose();
    layer.dispose();
  });
});

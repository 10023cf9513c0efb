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
import {INT8_GEMM_KERNELS, INT8_QUANT_PASS_MIN_INTERMEDIATE, Int8GemmDevice, Int8GemmKernel, Int8GemmProblem,
  int8StagedResultsBytes, chooseInt8GemmKernel, int8GemmBlockRows, int8GemmChoice,
  int8GemmWorkgroupBytes, setInt8GemmKernel} from '../src/kernels/webgpu/experts_int8_run';
import {ExpertsInt8TensorCoreGemmProgram, INT8_TC_WORKGROUP_BYTES, int8TensorCoreConfig}
  from '../src/kernels/webgpu/experts_int8_tc_webgpu';
import {ExpertsInt8Config, ExpertsW13Int8GemmProgram, ExpertsW2Int8GemmProgram, INT8_GEMM_BLOCK_ROWS}
  from '../src/kernels/webgpu/experts_int8_webgpu';
import {ExpertsAlignProgram, maxPaddedRows} from '../src/kernels/webgpu/experts_align_webgpu';
import {ExpertsInt8BlockedRowsProgram, ExpertsInt8PipelinedGemmProgram, ExpertsInt8WeightsBlockedProgram,
  blockedRowBlockWords, int8PipelinedLayout, int8PipelinedWorkgroupBytes} from '../src/kernels/webgpu/experts_int8_tc_pipelined_webgpu';
import {ExpertsInt8BothStagedGemmProgram, ExpertsInt8StagedActQuantProgram, ExpertsInt8StagedEpilogueProgram,
  ExpertsInt8StagedGemmProgram, INT8_STAGED_LAYOUT_SUBGROUPS, int8BothStagedWorkgroupBytes, int8StagedResultColumns,
  int8StagedWorkgroupBytes} from '../src/kernels/webgpu/experts_int8_tc_staged_webgpu';
import {emulateI8SubgroupMatrices} from './helpers/i8_subgroup_matrix_emulation';
import {webgpuCapabilities} from '../src/kernels/webgpu/capabilities';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
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

/** Each token's k experts, distinct, in random order. */
function distinctIds(rand: () => number, T: number, k: number, E: number): Int32Array {
  const ids = new Int32Array(T * k);
  for (let t = 0; t < T; t++) {
    const order = Array.from({length: E}, (_, e) => e).sort(() => rand() - 0.5);
    for (let j = 0; j < k; j++) ids[t * k + j] = order[j];
  }
  return ids;
}

/** The emulated tensor-core tests' problem: routed tokens, routing weights and random int8 projections. */
function emulatedProblem(tc: {activation: Activation; bias: boolean; onInput: boolean}, E: number, H: number, I: number,
    k: number, T: number, seed: number) {
  const rand = rng(seed);
  const ids = distinctIds(rand, T, k, E);
  const config = {hiddenSize: H, intermediateSize: I, topK: k, numLocalExperts: E, globalNumExperts: E,
    hasExpertMap: false, activation: tc.activation, applyRouterWeightOnInput: tc.onInput, hasBias: tc.bias};
  const x = tf.tensor2d(Float32Array.from({length: T * H}, () => (rand() - 0.5) * 4), [T, H]);
  const tw = tf.tensor2d(Float32Array.from({length: T * k}, () => 0.1 + rand()), [T, k]);
  const ti = tf.tensor2d(ids, [T, k], 'int32');
  const weightsOf = (N: number, K: number) => {
    const p = projection(rand, E, N, K, 0, tc.bias);
    return [tf.tensor2d(p.words, [E, N * K / 4], 'int32'), tf.tensor3d(p.scales, [E, N, 1]),
      ...(p.bias ? [tf.tensor2d(p.bias, [E, N])] : [])];
  };
  return {config, x, tw, ti, w13: weightsOf(2 * I, H), w2: weightsOf(H, I)};
}

/**
 * What the emulated tensor-core tests share: running a program into a new output (the GEMMs with firstExpert 0),
 * reading one back, a program's WGSL with the i8 matrices emulated, and the outputs to dispose.
 */
function emulationRig(wb: WebGPUBackend) {
  const temps: tf.TensorInfo[] = [];
  const device = wb.device;
  const run = (program: WebGPUProgram, inputs: tf.TensorInfo[], shape: number[], dtype: 'int32' | 'float32') => {
    const out = wb.makeTensorInfo(shape, dtype);
    temps.push(out);
    const gemm = (program as {uniforms?: string}).uniforms?.includes('firstExpert');
    wb.runWebGPUProgram(program, inputs, dtype, gemm ? [{type: 'int32', data: [0]}] : undefined, out);
    return out;
  };
  const read = async (info: tf.TensorInfo) => {
    const t = tf.engine().makeTensorFromTensorInfo(info);
    const d = await t.data();
    t.dispose();
    return d;
  };
  const emulated = (p: WebGPUProgram) => {
    const code = emulateI8SubgroupMatrices(p.getUserCode(), device.limits.maxComputeWorkgroupStorageSize);
    return Object.assign(Object.create(Object.getPrototypeOf(p)), p, {getUserCode: () => code,
      shaderKey: `${p.shaderKey}_emulated`}) as WebGPUProgram;
  };
  return {run, read, emulated, temps, device};
}

/**
 * The dot4 GEMM's half of an emulated comparison, as FusedExperts runs it: on an align of its own 64-row tiles
 * (given a tensor-core kernel's 32-row align, a 64-row tile that crosses an expert boundary would multiply all
 * its rows by the first expert's weights), w13's act rows quantized for its w2, y by pair.
 */
function dot4Reference(rig: ReturnType<typeof emulationRig>, config: Omit<ExpertsInt8Config, 'stage'>,
    xq: tf.TensorInfo, ti: tf.Tensor, tw: tf.Tensor, w13: tf.Tensor[], w2: tf.Tensor[], P: number) {
  const {numLocalExperts: E, intermediateSize: I, hiddenSize: H, applyRouterWeightOnInput: onInput} = config;
  const rows = maxPaddedRows(P, E, INT8_GEMM_BLOCK_ROWS);
  const tiles = Math.ceil(P / INT8_GEMM_BLOCK_ROWS) + E;
  const align = rig.run(new ExpertsAlignProgram({...config, blockRows: INT8_GEMM_BLOCK_ROWS}, P), [ti], [E + 1 + rows],
      'int32');
  const act = rig.run(new ExpertsW13Int8GemmProgram({...config, stage: 'w13'}, [rows, I], tiles), [xq, align, ...w13],
      [rows, I], 'float32');
  const aq = rig.run(new ExpertsInt8QuantProgram(rows, I, false), [act], [rows, I / 4 + 4], 'int32');
  const y = rig.run(new ExpertsW2Int8GemmProgram({...config, stage: 'w2'}, [P, H], tiles),
      [aq, align, ...(onInput ? [] : [tw]), ...w2], [P, H], 'float32');
  return {align, act, y};
}

/**
 * Values of two GEMMs' act rows [rows, I] that differ, pair by pair (each sorted by its own align: the same
 * pair sits at different rows), and the pairs found in both.
 */
function actDiffsByPair(alignA: ArrayLike<number>, actA: ArrayLike<number>, alignB: ArrayLike<number>,
    actB: ArrayLike<number>, E: number, I: number): {pairs: number; diff: number} {
  const rowOf = (align: ArrayLike<number>) => {
    const m = new Map<number, number>();
    for (let r = 0; r < align[E]; r++) if (align[E + 1 + r] >= 0) m.set(align[E + 1 + r], r);
    return m;
  };
  const a = rowOf(alignA), b = rowOf(alignB);
  let pairs = 0, diff = 0;
  for (const [pair, ra] of a) {
    const rb = b.get(pair);
    if (rb == null) continue;
    pairs++;
    for (let i = 0; i < I; i++) if (!Object.is(actA[ra * I + i], actB[rb * I + i])) diff++;
  }
  return {pairs, diff};
}

/** The H200's answer (2026-12-03): i8 and f16 configs, subgroups of 32, 48 KiB of workgroup memory, 2 GiB bindings. */
const H200: Int8GemmDevice = {subgroups: true, reason: '', subgroupSize: 32, maxComputeWorkgroupStorageSize: 49152,
  maxStorageBufferBindingSize: 2147483644,
  subgroupMatrixConfigs: [{componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16},
    {componentType: 'i8', resultComponentType: 'i32', M: 16, N: 16, K: 32}]};

/** Qwen3-30B-A3B's experts (128, H 2048, I 768) with `rows` pairs an expert: I below the quant pass's threshold. */
const qwen3 = (rows: number): Int8GemmProblem => ({pairs: 128 * rows, experts: 128, hiddenSize: 2048, intermediateSize: 768});
/** Mixtral's (8, H 4096, I 14336). */
const mixtral = (rows: number): Int8GemmProblem => ({pairs: 8 * rows, experts: 8, hiddenSize: 4096, intermediateSize: 14336});

describe('int8 prefill GEMM choice', () => {
  afterEach(() => setInt8GemmKernel(null));

  it('takes the plain 64-row GEMM on the H200, or the 32-row one where experts average < 64 rows, saying why', () => {
    for (const [rows, kernel] of [[undefined, 'tensor-core-i8-plain-64'], [8, 'tensor-core-i8-plain-32'],
      [63, 'tensor-core-i8-plain-32'], [64, 'tensor-core-i8-plain-64'], [1024, 'tensor-core-i8-plain-64']] as
      Array<[number | undefined, Int8GemmKernel]>) {
      const c = int8GemmChoice(H200, rows == null ? undefined : qwen3(rows));
      expect(c.kernel, `rows per expert ${rows}`).to.equal(kernel);
      expect(c.reason).to.match(kernel === 'tensor-core-i8-plain-32' ?
        /through block pointers right before their multiplies, 32 rows × 64 columns .* fewer than 64 rows\)$/ :
        /both operands in blocks read from storage through block pointers right before their multiplies, 64 rows × 64 columns per subgroup$/);
    }
  });

  it('takes the staged GEMM with w13\'s epilogue in the quantizer where I ≥ 4096 and experts average ≥ 64 rows', () => {
    expect(INT8_QUANT_PASS_MIN_INTERMEDIATE).to.equal(4096);
    const quantPass = /128 rows of x staged .* w13's epilogue in the activation quantizer and w2's as a pass \(I ≥ 4096, experts average 64 rows or more\)$/;
    for (const rows of [64, 1024]) {
      const c = int8GemmChoice(H200, mixtral(rows));
      expect(c.kernel, `Mixtral, ${rows} rows an expert`).to.equal('tensor-core-i8-staged-128-quant-pass');
      expect(c.reason).to.match(quantPass);
    }
    expect(int8GemmChoice(H200, mixtral(63)).kernel).to.equal('tensor-core-i8-plain-32');
    // I at the threshold and one below it (H 4096, 8 experts, 1024 rows each).
    const at = (I: number) => int8GemmChoice(H200, {...mixtral(1024), intermediateSize: I}).kernel;
    expect([at(4096), at(4092)]).to.deep.equal(['tensor-core-i8-staged-128-quant-pass', 'tensor-core-i8-plain-64']);
    // w13's results, [pairs + 8 · 127 rows, 2 × 14336] i32 (1.06 GB at 8 · 1024 pairs); 2 GiB holds 18724 rows.
    expect(int8StagedResultsBytes(mixtral(1024))).to.equal(4 * (8192 + 8 * 127) * 28672);
    expect(int8GemmChoice(H200, mixtral(2213)).kernel).to.equal('tensor-core-i8-staged-128-quant-pass');
    expect(int8StagedResultsBytes(mixtral(2214))).to.be.greaterThan(H200.maxStorageBufferBindingSize);
    expect(int8GemmChoice(H200, mixtral(2214)).kernel, 'results past a binding').to.equal('tensor-core-i8-plain-64');
    expect(int8GemmChoice({...H200, maxComputeWorkgroupStorageSize: 16403}, mixtral(1024)).kernel)
      .to.equal('tensor-core-i8-plain-64');
  });

  it('falls back to dot4 where the chosen kernel does not fit the workgroup memory, saying why', () => {
    const at = (bytes: number, rows: number) => int8GemmChoice({...H200, maxComputeWorkgroupStorageSize: bytes},
      qwen3(rows));
    expect(int8PipelinedWorkgroupBytes(64)).to.equal(4884);
    expect(at(4884, 512).kernel).to.equal('tensor-core-i8-plain-64');
    expect(at(4883, 512).reason).to.match(/dot4I8Packed tiles: 'tensor-core-i8-plain-64' needs 4884 bytes/);
    expect(int8PipelinedWorkgroupBytes(32)).to.equal(4500);
    expect(at(4500, 16).kernel).to.equal('tensor-core-i8-plain-32');
    const none = at(4499, 16);
    expect(none.kernel).to.equal('dot4-i8');
    expect(none.reason).to.match(/dot4I8Packed tiles: 'tensor-core-i8-plain-32' needs 4500 bytes .* allows 4499/);
  });

  it('takes dot4 without the i8 config, subgroups or subgroups of 32, saying which', () => {
    expect(int8GemmChoice({...H200, subgroupMatrixConfigs: H200.subgroupMatrixConfigs.slice(0, 1)}).reason)
      .to.match(/^dot4I8Packed tiles: no i8×i8→i32 16×16×32 subgroup-matrix config/);
    expect(int8GemmChoice({...H200, subgroupSize: 4})).to.deep.equal({kernel: 'dot4-i8', reason: 'dot4I8Packed ' +
      'tiles: the kernels are laid out for subgroups of 32 and this device\'s size is 4'});
    expect(int8GemmChoice({...H200, subgroups: false, reason: 'flag'}).reason).to.match(/subgroups are off: flag/);
  });

  it('runs a forced kernel (the old one-subgroup kernel included), refusing one the device cannot run', () => {
    for (const k of INT8_GEMM_KERNELS) {
      expect(int8GemmChoice(H200, qwen3(16), k)).to.deep.equal({kernel: k, reason: 'forced by setInt8GemmKernel'});
    }
    setInt8GemmKernel('tensor-core-i8');
    expect(int8GemmChoice(H200, mixtral(4096)).kernel, 'the setter is the default').to.equal('tensor-core-i8');
    expect(() => int8GemmChoice({...H200, maxComputeWorkgroupStorageSize: 16403}, qwen3(512),
      'tensor-core-i8-staged-128-quant-pass'))
      .to.throw(/cannot force the int8 GEMM: 'tensor-core-i8-staged-128-quant-pass' needs 16404 bytes .* allows 16403/);
    expect(() => int8GemmChoice({...H200, subgroupSize: 0}, qwen3(512), 'tensor-core-i8-plain-64'))
      .to.throw(/cannot force the int8 tensor-core GEMM 'tensor-core-i8-plain-64': .* subgroups of 32/);
    // The staged kernel's results in one binding: Mixtral's w13 holds 2213 rows an expert in 2 GiB, not 2214.
    expect(int8GemmChoice(H200, mixtral(2213), 'tensor-core-i8-staged-128-quant-pass').kernel)
      .to.equal('tensor-core-i8-staged-128-quant-pass');
    expect(() => int8GemmChoice(H200, mixtral(2214), 'tensor-core-i8-staged-128-quant-pass'))
      .to.throw(/cannot force the int8 GEMM 'tensor-core-i8-staged-128-quant-pass': its i32 results need 2147876864 bytes in one binding and the device allows 2147483644/);
    expect(int8GemmChoice({...H200, subgroupSize: 0}, qwen3(512), 'dot4-i8').kernel).to.equal('dot4-i8');
    expect(() => setInt8GemmKernel('tensor-core-i8-plain-96' as Int8GemmKernel)).to.throw(new RegExp(
      'must be one of tensor-core-i8-staged-128-quant-pass, tensor-core-i8-both-staged-128-quant-pass, ' +
      'tensor-core-i8-plain-64, tensor-core-i8-plain-32, tensor-core-i8, dot4-i8, got tensor-core-i8-plain-96'));
  });

  it('pads experts to each kernel\'s rows per tile, and declares the workgroup memory it is chosen by', () => {
    expect(INT8_GEMM_KERNELS.map(int8GemmBlockRows)).to.deep.equal([128, 128, 64, 32, 32, 64]);
    const cfg: ExpertsInt8Config = {stage: 'w2', hiddenSize: 4096, intermediateSize: 14336, topK: 2, numLocalExperts: 8,
      globalNumExperts: 8, hasExpertMap: false, activation: 'silu', applyRouterWeightOnInput: false, hasBias: true};
    expect(INT8_GEMM_KERNELS.map(int8GemmWorkgroupBytes)).to.deep.equal([16404, 24576, 4884, 4500,
      INT8_TC_WORKGROUP_BYTES, 0]);
    // The staged GEMM: the tile lookup, first column and two buffers of 8 row blocks × 2 k blocks (vec4<u32>); the
    // both-staged one two buffers of x's 8 row blocks and of 8 weight block rows, one k block, rows padded to 48 bytes.
    expect(int8StagedWorkgroupBytes()).to.equal(16404);
    expect(int8BothStagedWorkgroupBytes()).to.equal(2 * 2 * 8 * 48 * 16);
    for (const stage of ['w13', 'w2'] as const) {
      const layout = int8PipelinedLayout(4096, 14336, INT8_STAGED_LAYOUT_SUBGROUPS);
      for (const [Program, expected] of [[ExpertsInt8StagedGemmProgram, int8StagedWorkgroupBytes()],
        [ExpertsInt8BothStagedGemmProgram, int8BothStagedWorkgroupBytes()]] as const) {
        const code = new Program({...cfg, stage}, [8192, int8StagedResultColumns(stage, layout)], 10, layout).getUserCode();
        const bytes = [...code.matchAll(/var<workgroup> \w+ : (?:vec4<i32>|i32|array<array<vec4<u32>, (\d+)>, (\d+)>)/g)]
          .reduce((n, m) => n + (m[1] ? 16 * Number(m[1]) * Number(m[2]) : m[0].endsWith('vec4<i32>') ? 16 : 4), 0);
        expect(bytes, `${Program.name} ${stage}`).to.equal(expected);
      }
    }
    expect(() => new ExpertsInt8StagedGemmProgram(cfg, [8192, 100], 10,
      int8PipelinedLayout(4096, 14336, INT8_STAGED_LAYOUT_SUBGROUPS)))
      .to.throw(/int8 staged GEMM: its results need 4096 columns, got 100/);
    for (const BM of [32, 64]) {
      // Declared: tile lookup vec4<i32>, first column i32, staged i32 results, f32 row scales, w2's pairs and weights.
      const code = new ExpertsInt8PipelinedGemmProgram(cfg, [8192, 4096], 10, BM, int8PipelinedLayout(4096, 14336))
        .getUserCode();
      const words = [...code.matchAll(/var<workgroup> \w+ : array<(?:i32|f32), (\d+)>/g)].reduce((n, m) => n + Number(m[1]), 0);
      expect(16 + 4 + 4 * words).to.equal(int8PipelinedWorkgroupBytes(BM));
    }
    expect(() => new ExpertsInt8PipelinedGemmProgram(cfg, [8192, 4096], 10, 96, int8PipelinedLayout(4096, 14336)))
      .to.throw(/int8 blocked GEMM: blockRows 32 or 64, got 96/);
  });

  it('reads the plain kernels\' operands and row scales through 512-byte blocks', () => {
    const cfg: ExpertsInt8Config = {stage: 'w13', hiddenSize: 4096, intermediateSize: 14336, topK: 2, numLocalExperts: 8,
      globalNumExperts: 8, hasExpertMap: false, activation: 'silu', applyRouterWeightOnInput: false, hasBias: false};
    // A block row of x: 128 blocks of 16 rows × 32 k, then the block of its 16 scales.
    expect(blockedRowBlockWords(4096)).to.equal(129 * 128);
    const code = new ExpertsInt8PipelinedGemmProgram(cfg, [8192, 14336], 10, 64, int8PipelinedLayout(4096, 14336))
      .getUserCode();
    const loads = code.match(/subgroupMatrixLoad<[^;]*;/g) ?? [];
    expect(code).to.contain('// moe-storage-i32-blocks xb').and.to.contain('// moe-storage-i32-blocks wb');
    expect(loads).to.have.length(8);
    // Offsets and strides in the blocks' i32 words: a row of 32 i8 is 8.
    for (const load of loads) expect(load).to.match(/<subgroup_matrix_\w+<i8, \d+, \d+>, (row|col)_major>\(&(xb|wb)\[[ab]Block\d \+ kb\], 0u, 8u\)/);
    expect(code).to.contain('rowScale[m] = bitcast<f32>(xb[(row / 16u) * 129u + 128u][row % 16u]);');
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
    // K = 48: one vec4 for 12 of 64 lanes; 776: four vec4s a lane, the fourth for 2 of 64; 2104: 256 lanes, the third
    // vec4 for 14 of them (each program's partial chunk).
    for (const K of [48, 776, 2104]) it(`quantizes rows word for word as the reference (ties, zero and non-finite rows, K ${K})`,
        async () => {
      const rand = rng(7);
      const rows = 6;
      const x = Float32Array.from({length: rows * K}, () => (rand() - 0.5) * 8);
      x.set([127, 2.5, -2.5, 0.49999997, -126.5, 1.5], 0);          // row 0: inv = 1, exact ties
      x.fill(0, K, 2 * K);                                           // row 1: zeros
      x[2 * K + 5] = Infinity;                                       // row 2: non-finite
      for (let i = 3 * K; i < 4 * K; i++) x[i] = 1e-30 * (i % 7 - 3);  // row 3: below the 1e-10 floor
      x[5 * K - 1] = -100;                                           // row 4: its max in the last vec4
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
        for (const k of ['tensor-core-i8', 'tensor-core-i8-staged-128-quant-pass'] as Int8GemmKernel[]) {
          setInt8GemmKernel(k);
          expect(() => chooseInt8GemmKernel(backend)).to.throw(/cannot force the int8 tensor-core GEMM '.*': /);
        }
        setInt8GemmKernel('dot4-i8');
        expect(chooseInt8GemmKernel(backend)).to.deep.equal({kernel: 'dot4-i8', reason: 'forced by setInt8GemmKernel'});
      }
      // The H200's list (issue 11): the i8 config is found among the f16 ones; a u8-only or 16×8×32-only list is not enough.
      const cfg = (componentType: string, resultComponentType: string, M: number, N: number, K: number) =>
        ({componentType, resultComponentType, M, N, K});
      expect(int8TensorCoreConfig([cfg('f16', 'f32', 16, 16, 16), cfg('i8', 'i32', 16, 8, 32),
        cfg('i8', 'i32', 16, 16, 32)])).to.deep.equal(cfg('i8', 'i32', 16, 16, 32));
      expect(int8TensorCoreConfig([cfg('u8', 'u32', 16, 16, 32), cfg('i8', 'i32', 16, 8, 32)])).to.equal(undefined);
    });

    /**
     * The tensor-core GEMMs where no GPU here has subgroup matrices: their WGSL with the i8 matrices emulated
     * (test/helpers/i8_subgroup_matrix_emulation.ts), run on the same quantized x and weights as the
     * dot4I8Packed GEMM, each on an align of its own row tiles as FusedExperts runs them (dot4Reference), and
     * compared with it bit for bit, w13 (act rows, pair by pair) then w2 (y). Several row tiles per
     * expert, a partial last column tile and a k tail in both stages (H = 144, I = 80: 9 and 5 vec4 of k).
     * The one-subgroup kernel, bit-equal to dot4 on the H200, checks the emulation itself.
     */
    const tcCases: Array<{name: string; kernel: Int8GemmKernel; activation: Activation; bias: boolean; onInput: boolean}> = [
      {name: 'one subgroup (the emulation checked on the kernel the H200 ran)', kernel: 'tensor-core-i8', activation: 'silu',
        bias: true, onInput: false},
    ];
    for (const tc of tcCases) {
      it(`runs the tensor-core GEMM's WGSL with emulated subgroup matrices, bit-equal to dot4: ${tc.name}`, async () => {
        const wb = tf.backend() as unknown as WebGPUBackend;
        const E = 3, H = 144, I = 80, k = tc.onInput ? 1 : 2, T = tc.onInput ? 300 : 200, P = T * k;
        const {config, x, tw, ti, w13, w2} = emulatedProblem(tc, E, H, I, k, T, 31);
        const BM = int8GemmBlockRows(tc.kernel);
        const rows = maxPaddedRows(P, E, BM);
        const rig = emulationRig(wb);
        const {run, read, emulated, temps, device} = rig;
        const tcProgram = (c: ExpertsInt8Config, shape: number[]) =>
          emulated(new ExpertsInt8TensorCoreGemmProgram(c, shape, Math.ceil(P / BM) + E));
        device.pushErrorScope('validation');
        const xq = run(new ExpertsInt8QuantProgram(T, H, tc.onInput), tc.onInput ? [x, tw] : [x], [T, H / 4 + 4], 'int32');
        const dot4 = dot4Reference(rig, config, xq, ti, tw, w13, w2, P);
        const align = run(new ExpertsAlignProgram({...config, blockRows: BM}, P), [ti], [E + 1 + rows], 'int32');
        const c13 = {...config, stage: 'w13' as const}, c2 = {...config, stage: 'w2' as const};
        const actTc = run(tcProgram(c13, [rows, I]), [xq, align, ...w13], [rows, I], 'float32');
        const aq = run(new ExpertsInt8QuantProgram(rows, I, false), [actTc], [rows, I / 4 + 4], 'int32');
        const yTc = run(tcProgram(c2, [P, H]), [aq, align, ...(tc.onInput ? [] : [tw]), ...w2], [P, H], 'float32');
        const [alignHost, align4, a4, aT, y4, yT] = await Promise.all([align, dot4.align, dot4.act, actTc, dot4.y, yTc]
          .map(read));
        expect((await device.popErrorScope())?.message ?? '').to.equal('');
        // w13: every pair's act row (padding rows are not part of the result).
        const {pairs, diff} = actDiffsByPair(alignHost, aT, align4, a4, E, I);
        expect(pairs).to.equal(P);
        expect(diff, `w13: ${diff} of ${P * I} act values differ`).to.equal(0);
        expect(Array.from(a4.slice(0, 8)).some((v) => v !== 0), 'nonzero act').to.equal(true);
        let d2 = 0;
        for (let i = 0; i < P * H; i++) if (!Object.is(y4[i], yT[i])) d2++;
        expect(d2, `w2: ${d2} of ${P * H} outputs differ; first ${Array.from(yT.slice(0, 3))} vs ` +
          `${Array.from(y4.slice(0, 3))}`).to.equal(0);
        temps.forEach((t) => wb.disposeData(t.dataId));
        tf.dispose([x, tw, ti, ...w13, ...w2]);
      });
    }

    /**
     * The pipelined kernels (both operands in blocks, read from storage): the blocked rows and weights made by their
     * own programs, the GEMM's WGSL with the i8 matrices emulated, bit-equal to the dot4 GEMM (dot4Reference).
     * H = 176, I = 80 pad to 192 and 128 k: w13's last 32-k block holds 16 k of data (a loop one block short fails),
     * w2's are zeros past K; I to 96 act columns (a partial w13 column tile).
     */
    const pipelinedCases: Array<{name: string; kernel: Int8GemmKernel; activation: Activation; bias: boolean;
        onInput: boolean; tokens?: number}> = [
      {name: 'plain loop, 64-row tiles, swigluoai, biases', kernel: 'tensor-core-i8-plain-64', activation: 'swigluoai',
        bias: true, onInput: false},
      {name: 'plain loop, 32-row tiles, silu, router weight on the input', kernel: 'tensor-core-i8-plain-32',
        activation: 'silu', bias: false, onInput: true},
      {name: 'plain loop, 64-row tiles, gelu, router weight on the input', kernel: 'tensor-core-i8-plain-64',
        activation: 'gelu', bias: true, onInput: true, tokens: 300},
      // x staged in workgroup memory, 128-row tiles of four 128 × 32 subgroups (w13: two per 32 act columns, w2 past
      // H's 176 in the second workgroup), weights two k blocks ahead: w13's 3 steps, w2's 2; 600 and 400 pairs. The
      // GEMMs and w13's epilogue in the activation quantizer run as two shards, of 1 and 2 experts; the i32 results
      // stored straight; the fused act checked against the epilogue pass's act quantized; w2's epilogue a pass.
      {name: 'x staged, w13\'s epilogue in the quantizer, swigluoai, biases',
        kernel: 'tensor-core-i8-staged-128-quant-pass', activation: 'swigluoai', bias: true, onInput: false, tokens: 300},
      {name: 'x staged, w13\'s epilogue in the quantizer, silu, router weight on the input',
        kernel: 'tensor-core-i8-staged-128-quant-pass', activation: 'silu', bias: false, onInput: true, tokens: 400},
      // The same tiles with the weights staged too (rows padded to 48 bytes, one k block a stage, copies two blocks
      // ahead: w13's 6 blocks, w2's 4) and the tile found by every invocation from main's ids.
      {name: 'x and weights staged, gelu, biases', kernel: 'tensor-core-i8-both-staged-128-quant-pass',
        activation: 'gelu', bias: true, onInput: false, tokens: 300},
      {name: 'x and weights staged, swigluoai, router weight on the input',
        kernel: 'tensor-core-i8-both-staged-128-quant-pass', activation: 'swigluoai', bias: false, onInput: true,
        tokens: 400},
    ];
    for (const tc of pipelinedCases) {
      it(`runs the pipelined GEMM's WGSL with emulated subgroup matrices, bit-equal to dot4: ${tc.name}`, async () => {
        const wb = tf.backend() as unknown as WebGPUBackend;
        const E = 3, H = 176, I = 80, k = tc.onInput ? 1 : 2, T = tc.tokens ?? (tc.onInput ? 150 : 100), P = T * k;
        const {config, x, tw, ti, w13, w2} = emulatedProblem(tc, E, H, I, k, T, 37);
        const BM = int8GemmBlockRows(tc.kernel);
        const rows = maxPaddedRows(P, E, BM);
        const rowBlocks = Math.ceil(rows / 16);
        const both = tc.kernel === 'tensor-core-i8-both-staged-128-quant-pass';
        const staged = both || tc.kernel === 'tensor-core-i8-staged-128-quant-pass';
        const layout = int8PipelinedLayout(H, I, staged ? INT8_STAGED_LAYOUT_SUBGROUPS : 1);
        // The staged kernel's two 64-column subgroups' padding: weight rows padded to 64 act columns (w13) and 128 h
        // columns (w2).
        expect(layout).to.deep.equal({Hp: 192, Ip: 128, w13Rows: staged ? 256 : 192, w2Rows: staged ? 256 : 192});
        const rig = emulationRig(wb);
        const {run, read, emulated, temps, device} = rig;
        device.pushErrorScope('validation');
        const xq = run(new ExpertsInt8QuantProgram(T, H, tc.onInput), tc.onInput ? [x, tw] : [x], [T, H / 4 + 4], 'int32');
        const dot4 = dot4Reference(rig, config, xq, ti, tw, w13, w2, P);
        const align = run(new ExpertsAlignProgram({...config, blockRows: BM}, P), [ti], [E + 1 + rows], 'int32');
        const c13 = {...config, stage: 'w13' as const}, c2 = {...config, stage: 'w2' as const};
        const blocked = (q: tf.TensorInfo, source: 'gather' | 'rows', K: number, Kp: number) => {
          const p = new ExpertsInt8BlockedRowsProgram({source, K, Kp, topK: k, numLocalExperts: E}, rowBlocks);
          return run(p, [q, align], p.outputShape, 'int32');
        };
        const blockedWeights = (w: tf.Tensor[], stage: 'w13' | 'w2') => {
          const p = new ExpertsInt8WeightsBlockedProgram({stage, hiddenSize: H, intermediateSize: I,
            activation: tc.activation, layout}, E);
          return [run(p, [w[0]], p.outputShape, 'int32'), ...w.slice(1)];
        };
        const tiles = Math.ceil(P / BM) + E;
        // One stage: the plain GEMM with its epilogue, or (staged) the GEMM's i32 results and the epilogue pass over
        // them; w13's results also to ExpertsInt8StagedActQuantProgram, per shard (experts [0, 1) and [1, 3): their
        // scales and biases sliced, the shard's first expert as the uniform) into one output.
        let aqFused: tf.TensorInfo | null = null;
        const stage = async (c: ExpertsInt8Config, shape: number[], xb: tf.TensorInfo, head: tf.TensorInfo[],
            w: tf.TensorInfo[]) => {
          if (!staged) {
            return run(emulated(new ExpertsInt8PipelinedGemmProgram(c, shape, tiles, BM, layout)),
              [xb, align, ...head, ...w], shape, 'float32');
          }
          const columns = int8StagedResultColumns(c.stage, layout);
          const Gemm = both ? ExpertsInt8BothStagedGemmProgram : ExpertsInt8StagedGemmProgram;
          // Two weight shards (experts [0, 1) and [1, 3)), each GEMM dispatch finding its tiles from the shard's
          // first expert, as FusedExperts runs them. The shards' blocked words are cut on the host: tf.slice of
          // int32 on webgpu goes through float32 (see the README's dependency notes).
          const results = wb.makeTensorInfo([rows, columns], 'int32');
          temps.push(results);
          const words = w[0].shape[1], blocked = await read(w[0]);
          for (const [first, n] of [[0, 1], [1, E - 1]]) {
            const part = tf.tensor2d(blocked.subarray(first * words, (first + n) * words) as Int32Array, [n, words], 'int32');
            wb.runWebGPUProgram(emulated(new Gemm(c, [rows, columns], Math.ceil(P / BM) + n, layout)),
              [xb, align, part], 'int32', [{type: 'int32', data: [first]}], results);
            tf.dispose(part);
          }
          if (c.stage === 'w13') {
            aqFused = wb.makeTensorInfo([rows, I / 4 + 4], 'int32');
            temps.push(aqFused);
            for (const [first, n] of [[0, 1], [1, E - 1]]) {
              const parts = w.slice(1).map((t) => tf.slice(t as tf.Tensor, first, n));   // the test's scales and biases
              wb.runWebGPUProgram(new ExpertsInt8StagedActQuantProgram(c, rows, layout), [results, xb, align, ...parts],
                'int32', [{type: 'int32', data: [first]}], aqFused);
              tf.dispose(parts);
            }
          }
          return run(new ExpertsInt8StagedEpilogueProgram(c, shape, tiles, layout), [results, xb, align, ...head, ...w.slice(1)],
              shape, 'float32');
        };
        const actTc = await stage(c13, [rows, I], blocked(xq, 'gather', H, layout.Hp), [], blockedWeights(w13, 'w13'));
        const aqSeparate = run(new ExpertsInt8QuantProgram(rows, I, false), [actTc], [rows, I / 4 + 4], 'int32');
        const aq = aqFused ?? aqSeparate;
        const yTc = await stage(c2, [P, H], blocked(aq, 'rows', I, layout.Ip), tc.onInput ? [] : [tw], blockedWeights(w2, 'w2'));
        const [alignHost, align4, a4, aT, y4, yT, aqS, aqF] = await Promise.all([align, dot4.align, dot4.act, actTc,
          dot4.y, yTc, aqSeparate, ...(aqFused ? [aqFused] : [])].map(read));
        expect((await device.popErrorScope())?.message ?? '').to.equal('');
        if (aqF) {
          // Quantized act rows: the fused program's equal the pass's act quantized, word for word, in every segment.
          let d = 0;
          for (let i = 0; i < alignHost[E] * (I / 4 + 4); i++) if (aqF[i] !== aqS[i]) d++;
          expect(d, `${d} of the quantized act words differ`).to.equal(0);
        }
        expect(alignHost[E] / BM, 'more than one row tile per expert').to.be.greaterThan(E);
        const {pairs, diff} = actDiffsByPair(alignHost, aT, align4, a4, E, I);
        expect(pairs).to.equal(P);
        expect(diff, `w13: ${diff} of ${P * I} act values differ`).to.equal(0);
        let d2 = 0;
        for (let i = 0; i < P * H; i++) if (!Object.is(y4[i], yT[i])) d2++;
        expect(d2, `w2: ${d2} of ${P * H} outputs differ; first ${Array.from(yT.slice(0, 3))} vs ` +
          `${Array.from(y4.slice(0, 3))}`).to.equal(0);
        expect(Array.from(y4.slice(0, 8)).some((v) => v !== 0), 'nonzero y').to.equal(true);
        temps.forEach((t) => wb.disposeData(t.dataId));
        tf.dispose([x, tw, ti, ...w13, ...w2]);
      });
    }

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

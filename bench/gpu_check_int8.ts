/**
 * Device entry for the int8 w8a8 paths (issue 11): Dawn with the toggles of gpu_check_tc.ts, then
 *   1. what the device offers: dot4I8Packed (WGSL language feature packed_4x8_integer_dot_product), the
 *      subgroup-matrix configs, and which int8 prefill GEMM runs and why (chooseInt8GemmKernel; per shape and M
 *      too, since the choice follows the rows per expert and I);
 *   2. tiny problems (several row / column / k tiles, tails, split weights) through every int8 path (decode,
 *      decode-grouped, prefill on each available GEMM) against the cpu reference (fusedExpertsInt8Impl), which
 *      they must equal bit for bit: the data put every gate at ≥ 40, where silu(g) = g exactly in f32 and f64, so
 *      no exp ulp enters (int8_w8a8.test.ts does the same on SwiftShader);
 *   3. the real benchmark shapes (bench/shapes.ts) at M = 64, 256, 4096, prefill forced: sampled tokens against
 *      the cpu reference (bit-equal), every subgroup-matrix GEMM the device runs (the staged quant-pass kernel,
 *      the plain 64- and 32-row ones, the one-subgroup 'tensor-core-i8') against the dot4I8Packed GEMM on every
 *      output (bit-equal: identical i32 accumulators, one epilogue), and the GPU time of each beside the float32
 *      path, with TOPS and the fraction of the H200's ~1979 dense int8 TOPS.
 *
 *   npx tsx bench/gpu_check_int8.ts --tiny          (SwiftShader here: the GEMVs and the dot4 GEMM, tiny shapes; ~5 min)
 *   bash .gpu/run.sh .gpu/gpu_check_int8.mjs [--shapes qwen3,dsv3tp8,mixtral] [--tokens 64,256,4096]
 *       [--kernels tensor-core-i8-staged-128-quant-pass,tensor-core-i8-plain-64,dot4-i8] [--out FILE]
 *                                                    (the H200; packed with ../shared/gpu/pack.sh as docs/benchmarks.md says)
 */
import {noShaderWarnings, watchShaderMessages} from './gpu_setup_tensor_cores';  // first: Dawn, then tfjs

import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {Activation, fusedExperts, routingImpl} from '../src';
import {QuantizedExpertWeights} from '../src/quant/expert_weights';
import {WeightFormat} from '../src/quant/format';
import {fusedExpertsInt8Impl, Int8ExpertShard} from '../src/kernels/cpu/int8_w8a8_impl';
import {webgpuCapabilities} from '../src/kernels/webgpu/capabilities';
import {resultLines} from './result_lines';
import {ExpertsPath, setFusedExpertsPath} from '../src/kernels/webgpu/FusedExperts';
import {INT8_GEMM_KERNELS, Int8GemmKernel, chooseInt8GemmKernel, hasDot4I8Packed, int8GemmChoice,
  setInt8GemmKernel} from '../src/kernels/webgpu/experts_int8_run';
import {makeExpertWeights, routingConfig, uniformHostValues} from './problem';
import {medianKernelTime, hasGpuTimestamps, warmUp} from './timing';
import {MoEShape, SHAPES} from './shapes';

const INT8: WeightFormat = {code: 'uint8', groupSize: -1, blockRows: 1, scaleCode: 'f32', zero: 128, hasGIdx: false};
/** The H200's dense int8 tensor-core peak (NVIDIA's datasheet: 3958 TOPS with sparsity). */
const H200_INT8_TOPS = 1979;

const args = process.argv.slice(2);
const report = resultLines(args);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const tinyOnly = args.includes('--tiny');

/** xorshift32 words: fast enough for Mixtral's 1.4 GB of codes. */
function words(n: number, seed: number, gate: (i: number) => boolean): Int32Array {
  const out = new Int32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    // Gate rows: bytes 0xa0 | 6 bits, i.e. int8 weights 32..95 (positive); other rows: any byte.
    out[i] = gate(i) ? ((s & 0x3f3f3f3f) | 0xa0a0a0a0) : s;
  }
  return out;
}

/** uniformHostValues gives [-scale, scale); these add `center`. */
function shifted(v: Float32Array, center: number): Float32Array {
  return v.map((x) => x + center);
}

interface Int8Stack {host: Int8ExpertShard[]; w13: QuantizedExpertWeights[]; w2: QuantizedExpertWeights[]}

/**
 * int8 weights for E experts split into shards of at most `perShard` experts: gate rows positive with scales
 * 0.1..0.2 (gates ≥ 40 for positive x), up and down rows random with scales 0.001..0.003.
 */
function int8Stack(E: number, H: number, I: number, perShard: number, seed: number): Int8Stack {
  const host: Int8ExpertShard[] = [];
  const w13: QuantizedExpertWeights[] = [];
  const w2: QuantizedExpertWeights[] = [];
  for (let first = 0, s = 0; first < E; first += perShard, s++) {
    const n = Math.min(perShard, E - first);
    const rowWords13 = H / 4;
    const d13 = words(n * 2 * I * rowWords13, seed + s, (i) => Math.floor(i / rowWords13) % (2 * I) < I);
    const d2 = words(n * H * I / 4, seed + 100 + s, () => false);
    const sc13 = shifted(uniformHostValues(n * 2 * I, seed + 200 + s, 0.05), 0.15);
    for (let r = 0; r < n * 2 * I; r++) if (r % (2 * I) >= I) sc13[r] = 0.002 + (sc13[r] - 0.15) / 50;
    const sc2 = shifted(uniformHostValues(n * H, seed + 300 + s, 0.001), 0.002);
    host.push({w13: d13, w2: d2, w13Scales: sc13, w2Scales: sc2, numExperts: n});
    w13.push({format: INT8, shape: [n, 2 * I, H], data: tf.tensor2d(d13, [n, d13.length / n], 'int32'),
      scales: tf.tensor3d(sc13, [n, 2 * I, 1])});
    w2.push({format: INT8, shape: [n, H, I], data: tf.tensor2d(d2, [n, d2.length / n], 'int32'),
      scales: tf.tensor3d(sc2, [n, H, 1])});
  }
  return {host, w13, w2};
}

function disposeStack(s: Int8Stack): void {
  tf.dispose([...s.w13, ...s.w2].flatMap((q) => [q.data, q.scales!]));
}

/** Positive hidden states in [0.25, 1] and the shape's routing. */
function tokens(s: {E: number; k: number; H: number; routing: MoEShape['routing']}, M: number, seed: number) {
  const hidden = shifted(uniformHostValues(M * s.H, seed, 0.375), 0.625);
  const logits = uniformHostValues(M * s.E, seed + 1, 4);
  const bias = s.routing.kind === 'grouped' ? uniformHostValues(s.E, 4000, 0.1) : null;
  const r = routingImpl(logits, M, s.E, bias, routingConfig(s.routing, s.k));
  return {hidden, ids: r.ids, weights: r.weights};
}

function diffCount(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) n++;
  return n;
}

async function gpuMs(f: () => tf.Tensor, reps: number): Promise<{ms: number; kernels: string} | null> {
  if (!hasGpuTimestamps()) return null;
  await warmUp(f);
  return medianKernelTime(f, reps);
}

/**
 * The int8 GEMMs to run: every one this device can (int8GemmChoice refuses to force the others), within --kernels
 * (in INT8_GEMM_KERNELS' order; with `anchor`, dot4 too, last). The automatic choice is printed per shape.
 */
function gemmKernels(anchor = false): Int8GemmKernel[] {
  const wanted = arg('kernels', INT8_GEMM_KERNELS.join(',')).split(',') as Int8GemmKernel[];
  for (const k of wanted) if (!INT8_GEMM_KERNELS.includes(k)) throw new Error(`--kernels: unknown kernel ${k}`);
  const caps = webgpuCapabilities(tf.backend() as WebGPUBackend);
  // `anchor`: dot4-i8 whether asked for or not, and last (the tiny checks compare gelu and swigluoai against it).
  const listed = INT8_GEMM_KERNELS.filter((k) => {
    if (!(wanted.includes(k) || (anchor && k === 'dot4-i8'))) return false;
    try {
      int8GemmChoice(caps, undefined, k);
      return true;
    } catch {
      return false;
    }
  });
  return anchor ? [...listed.filter((k) => k !== 'dot4-i8'), ...listed.filter((k) => k === 'dot4-i8')] : listed;
}

async function tinyChecks(): Promise<boolean> {
  let ok = true;
  const softmax = (SHAPES.mixtral as MoEShape).routing;
  // Tails in every direction, several 64- and 32-row tiles, k tiles past one, weights split in two.
  // silu against the cpu reference; gelu and swigluoai (whose exp / erf may differ from the cpu's by an ulp) against
  // the dot4 GEMM, bit for bit (the same epilogue after exact int32 accumulators).
  const cases: Array<[number, number, number, number, number, number, Activation]> = [[4, 2, 64, 48, 40, 4, 'silu'],
    [8, 2, 144, 208, 150, 5, 'silu'], [6, 3, 272, 400, 90, 6, 'silu'], [3, 1, 528, 1040, 200, 2, 'silu'],
    [3, 2, 144, 80, 100, 3, 'swigluoai'], [5, 2, 272, 176, 120, 5, 'gelu']];
  for (const [E, k, H, I, T, perShard, activation] of cases) {
    const stack = int8Stack(E, H, I, perShard, 17 + T);
    const {hidden, ids, weights} = tokens({E, k, H, routing: softmax}, T, 11 + T);
    const expected = fusedExpertsInt8Impl({hidden, topkWeights: weights, topkIds: ids, expertMap: null,
      shards: stack.host, numTokens: T, topK: k, hiddenSize: H, intermediateSize: I, globalNumExperts: E,
      activation, applyRouterWeightOnInput: false});
    const x = tf.tensor2d(hidden, [T, H]);
    const tw = tf.tensor2d(weights, [T, k]);
    const ti = tf.tensor2d(ids, [T, k], 'int32');
    const runs: Array<[ExpertsPath, Int8GemmKernel | null]> = [['decode', null], ['decode-grouped', null],
      ...gemmKernels(true).map((g) => ['prefill', g] as [ExpertsPath, Int8GemmKernel])];
    const outputs: Array<[string, Float32Array]> = [];
    for (const [path, gemm] of runs) {
      setFusedExpertsPath(path);
      setInt8GemmKernel(gemm);
      const out = fusedExperts(x, stack.w13, stack.w2, tw, ti, {activation, useInt8W8A8: true});
      const got = await out.data() as Float32Array;
      out.dispose();
      outputs.push([`${path}${gemm ? ` ${gemm}` : ''}`, got]);
    }
    // dot4 is the last run (gemmKernels); against it for gelu and swigluoai, against the cpu for silu.
    const [againstName, against] = activation === 'silu' ? ['the cpu reference', expected] :
      [`prefill dot4-i8`, outputs[outputs.length - 1][1]];
    for (const [name, got] of activation === 'silu' ? outputs : outputs.slice(0, -1)) {
      const diff = diffCount(got, against);
      ok &&= diff === 0;
      report(`tiny E=${E} k=${k} H=${H} I=${I} T=${T} ${activation} shards of ${perShard}, ${name}: ` +
          `${diff} of ${T * H} outputs differ from ${againstName} ${diff === 0 ? 'PASS' : 'FAIL'}`);
    }
    tf.dispose([x, tw, ti]);
    disposeStack(stack);
  }
  setFusedExpertsPath(null);
  setInt8GemmKernel(null);
  return ok;
}

async function realShape(s: MoEShape, Ms: number[]): Promise<boolean> {
  let ok = true;
  const limit = (tf.backend() as WebGPUBackend).device.limits.maxStorageBufferBindingSize;
  const perShard = Math.max(1, Math.min(s.E, Math.floor(limit / (2 * s.I * s.H))));
  const stack = int8Stack(s.E, s.H, s.I, perShard, 7000);
  const f32 = makeExpertWeights(s);
  setFusedExpertsPath('prefill');
  for (const M of Ms) {
    const {hidden, ids, weights} = tokens(s, M, 5000 + M);
    const x = tf.tensor2d(hidden, [M, s.H]);
    const tw = tf.tensor2d(weights, [M, s.k]);
    const ti = tf.tensor2d(ids, [M, s.k], 'int32');
    const rows = [0, Math.floor(M / 2), M - 1];
    const expected = fusedExpertsInt8Impl({hidden: Float32Array.from(rows.flatMap((t) =>
      Array.from(hidden.subarray(t * s.H, (t + 1) * s.H)))),
    topkWeights: Float32Array.from(rows.flatMap((t) => Array.from(weights.subarray(t * s.k, (t + 1) * s.k)))),
    topkIds: Int32Array.from(rows.flatMap((t) => Array.from(ids.subarray(t * s.k, (t + 1) * s.k)))),
    expertMap: null, shards: stack.host, numTokens: rows.length, topK: s.k, hiddenSize: s.H, intermediateSize: s.I,
    globalNumExperts: s.E, activation: 'silu', applyRouterWeightOnInput: false});
    const ops = 2 * M * s.k * 3 * s.I * s.H;
    const outputs = new Map<Int8GemmKernel, Float32Array>();
    setInt8GemmKernel(null);
    const line: Record<string, unknown> = {check: 'int8', shape: s.name, M, sampled_rows: rows,
      auto: chooseInt8GemmKernel(tf.backend() as WebGPUBackend, {pairs: M * s.k, experts: s.E, hiddenSize: s.H,
        intermediateSize: s.I})};
    for (const gemm of gemmKernels()) {
      setInt8GemmKernel(gemm);
      const call = () => fusedExperts(x, stack.w13, stack.w2, tw, ti, {useInt8W8A8: true});
      const out = call();
      const got = await out.data() as Float32Array;
      out.dispose();
      outputs.set(gemm, got);
      const diff = diffCount(rows.flatMap((t) => Array.from(got.subarray(t * s.H, (t + 1) * s.H))), expected);
      ok &&= diff === 0;
      const t = await gpuMs(call, M >= 4096 && s.name === 'mixtral' ? 3 : 5);
      Object.assign(line, {[`${gemm}_vs_cpu_diffs`]: diff, [`${gemm}_gpu_ms`]: t?.ms ?? null,
        [`${gemm}_tops`]: t ? ops / t.ms / 1e9 : null,
        [`${gemm}_of_peak`]: t ? ops / t.ms / 1e9 / H200_INT8_TOPS : null, [`${gemm}_kernels`]: t?.kernels ?? null});
    }
    // Every subgroup-matrix GEMM against the dot4 GEMM, on every output.
    const dot4 = outputs.get('dot4-i8');
    for (const [gemm, got] of outputs) {
      if (gemm === 'dot4-i8' || !dot4) continue;
      const d = diffCount(got, dot4);
      ok &&= d === 0;
      line[`${gemm}_vs_dot4_diffs`] = d;
    }
    const f32t = await gpuMs(() => fusedExperts(x, f32.w13, f32.w2, tw, ti), M >= 4096 && s.name === 'mixtral' ? 2 : 5);
    Object.assign(line, {f32_gpu_ms: f32t?.ms ?? null, f32_tflops: f32t ? ops / f32t.ms / 1e9 : null,
      f32_kernels: f32t?.kernels ?? null});
    line.pass = ok;
    report(JSON.stringify(line));
    tf.dispose([x, tw, ti]);
  }
  setFusedExpertsPath(null);
  setInt8GemmKernel(null);
  disposeStack(stack);
  tf.dispose([...f32.w13, ...f32.w2]);
  return ok;
}

async function main() {
  await tf.setBackend('webgpu');
  const backend = tf.backend() as WebGPUBackend;
  const caps = webgpuCapabilities(backend);
  watchShaderMessages(backend.device);
  report(JSON.stringify({features: [...backend.device.features], dot4I8Packed: hasDot4I8Packed(),
    subgroupMatrixConfigs: caps.subgroupMatrixConfigs, subgroupSize: caps.subgroupSize,
    int8Gemm: chooseInt8GemmKernel(backend), timestamps: hasGpuTimestamps()}));
  // --skip-tiny: timing runs that a device call's time limit cannot fit beside the tiny checks.
  let ok = args.includes('--skip-tiny') ? true : await tinyChecks();
  if (!tinyOnly) {
    for (const name of arg('shapes', 'qwen3,dsv3tp8,mixtral').split(',')) {
      ok = (await realShape(SHAPES[name] as MoEShape, arg('tokens', '64,256,4096').split(',').map(Number))) && ok;
    }
  }
  ok = noShaderWarnings(report) && ok;
  report(ok ? 'ALL PASS' : 'SOME FAILED');
  process.exit(ok ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(1); });

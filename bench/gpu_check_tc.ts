/**
 * Device entry for the tensor-core prefill GEMM (issue 11): Dawn with the toggles that expose shader-f16
 * and subgroup matrices, then
 *   1. what webgpuCapabilities reports (configs, which GEMM kernel runs and why);
 *   2. tiny and multi-tile problems through the prefill path on the tensor-core kernel against a host
 *      reference with the kernel's documented numerics (x and w rounded to f16, the w13 output rounded to
 *      f16 before w2, f64 sums), at 1e-4·max|ref| + 1e-5;
 *   3. the real benchmark shapes at M = 64, 256, 4096 (prefill forced): sampled tokens against the same
 *      reference (weights regenerated from the fill's hash), and the GPU time of the tensor-core kernels
 *      beside the float32 SIMT kernels (TENSOR_CORES_FLAG off), with TFLOP/s.
 *   bash .gpu/run.sh .gpu/gpu_check_tc.mjs [--shapes mixtral,qwen3,dsv3tp8] [--tokens 64,256,4096]
 */
import * as fs from 'fs';
process.env.XDG_RUNTIME_DIR ??= '/tmp';
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (process.env.VK_DRIVER_FILES == null && process.env.VK_ICD_FILENAMES == null && fs.existsSync(SWIFTSHADER_ICD)) {
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
}
// eslint-disable-next-line @typescript-eslint/no-var-requires
const {create, globals} = require('webgpu');
Object.assign(globalThis, globals);
Object.defineProperty(globalThis, 'navigator', {configurable: true, writable: true, value: {gpu: create([
  'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia',
  'disable-dawn-features=timestamp_quantization'])}});
require('@tensorflow/tfjs-backend-webgpu');
require('../src/webgpu');

import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {fusedExperts, fusedExpertsImpl, routingImpl} from '../src';
import {TENSOR_CORES_FLAG, webgpuCapabilities} from '../src/kernels/webgpu/capabilities';
import {chooseGemmKernel, setFusedExpertsPath} from '../src/kernels/webgpu/FusedExperts';
import {uniformHostValue} from './fill_uniform_webgpu';
import {makeExpertWeights, routingConfig, uniformHostValues, uniformTensor} from './problem';
import {KernelTimer} from './timing';
import {MoEShape, SHAPES, shardExpertCounts} from './shapes';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};

/** Round to the nearest IEEE half (ties to even), as the kernel's f16() conversion does. */
function roundToHalf(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  const e = Math.max(Math.floor(Math.log2(a)), -14);
  const step = 2 ** (e - 10);
  const q = a / step;
  const fl = Math.floor(q);
  const r = q - fl > 0.5 || (q - fl === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  return Math.sign(x) * r * step;
}

/**
 * Reference with the tensor-core numerics for the tokens `rows`: f16 operands, f64 sums, silu, w2's input
 * (the f32 activation) rounded to f16. `w13Of(e)` / `w2Of(e)` give an expert's f32 weights.
 */
function referenceF16(hidden: Float32Array, H: number, I: number, k: number, ids: ArrayLike<number>,
    weights: ArrayLike<number>, rows: number[], w13Of: (e: number) => Float32Array, w2Of: (e: number) => Float32Array,
    roundF16 = roundToHalf): Float64Array {
  const out = new Float64Array(rows.length * H);
  // f16 values are exact in float32: round in place, no wider copies (Mixtral's w13 is 117M values an expert).
  const cache13 = new Map<number, Float32Array>();
  const cache2 = new Map<number, Float32Array>();
  const rounded = (cache: Map<number, Float32Array>, e: number, f: (e: number) => Float32Array) => {
    if (!cache.has(e)) {
      const w = Float32Array.from(f(e));
      for (let i = 0; i < w.length; i++) w[i] = roundF16(w[i]);
      cache.set(e, w);
    }
    return cache.get(e)!;
  };
  rows.forEach((t, ri) => {
    const x = Float64Array.from(hidden.subarray(t * H, (t + 1) * H), roundF16);
    for (let j = 0; j < k; j++) {
      const e = ids[t * k + j];
      const w13 = rounded(cache13, e, w13Of), w2 = rounded(cache2, e, w2Of);
      const a = new Float64Array(I);
      for (let i = 0; i < I; i++) {
        let g = 0, u = 0;
        for (let h = 0; h < H; h++) { g += w13[i * H + h] * x[h]; u += w13[(I + i) * H + h] * x[h]; }
        a[i] = roundF16(Math.fround(Math.fround(g / (1 + Math.exp(-g))) * u));
      }
      for (let h = 0; h < H; h++) {
        let y = 0;
        for (let i = 0; i < I; i++) y += w2[h * I + i] * a[i];
        out[ri * H + h] += y * weights[t * k + j];
      }
    }
  });
  return out;
}

function compare(got: ArrayLike<number>, rows: number[], H: number, ref: Float64Array): {err: number; tol: number} {
  let maxAbs = 0, err = 0;
  ref.forEach((v) => { maxAbs = Math.max(maxAbs, Math.abs(v)); });
  rows.forEach((t, ri) => {
    for (let h = 0; h < H; h++) {
      const d = Math.abs(got[t * H + h] - ref[ri * H + h]);
      err = Number.isNaN(d) ? Infinity : Math.max(err, d);
    }
  });
  return {err, tol: 1e-4 * maxAbs + 1e-5};
}

async function gpuMs(f: () => tf.Tensor, reps: number): Promise<{ms: number; kernels: string}> {
  const times: number[] = [];
  let kernels = '';
  for (let r = 0; r < reps + 1; r++) {
    const timer = new KernelTimer();
    const out = await timer.time(f);
    (out as tf.Tensor).dispose();
    if (r === 0) continue;
    times.push(timer.kernels.reduce((s, k) => s + k.ms, 0));
    kernels = timer.kernels.map((k) => `${k.name} ${k.ms.toFixed(3)}`).join(', ');
  }
  times.sort((a, b) => a - b);
  return {ms: times[Math.floor(times.length / 2)], kernels};
}

async function tinyChecks(): Promise<boolean> {
  let ok = true;
  setFusedExpertsPath('prefill');
  // Shapes that are no tile's multiple, several row and column tiles, k tiles past one, and split K.
  for (const [E, k, H, I, T] of [[4, 2, 64, 48, 40], [8, 2, 136, 200, 150], [6, 3, 264, 392, 90], [3, 1, 520, 1040, 200]]) {
    const hidden = uniformHostValues(T * H, 11 + T, 1);
    const logits = uniformHostValues(T * E, 12 + T, 4);
    const routed = routingImpl(logits, T, E, null, routingConfig((SHAPES.mixtral as MoEShape).routing, k));
    const w13h = uniformHostValues(E * 2 * I * H, 13, Math.sqrt(3 / H));
    const w2h = uniformHostValues(E * H * I, 14, Math.sqrt(3 / I));
    const x = tf.tensor2d(hidden, [T, H]);
    const w13 = tf.tensor3d(w13h, [E, 2 * I, H]);
    const w2 = tf.tensor3d(w2h, [E, H, I]);
    const tw = tf.tensor2d(routed.weights, [T, k]);
    const ti = tf.tensor2d(routed.ids, [T, k], 'int32');
    const rows = Array.from({length: T}, (_, t) => t);
    const ref = referenceF16(hidden, H, I, k, routed.ids, routed.weights, rows,
        (e) => w13h.subarray(e * 2 * I * H, (e + 1) * 2 * I * H), (e) => w2h.subarray(e * H * I, (e + 1) * H * I));
    const out = fusedExperts(x, w13, w2, tw, ti);
    const kernel = chooseGemmKernel(tf.backend() as WebGPUBackend, H, I).kernel;
    const {err, tol} = compare(await out.data(), rows, H, kernel === 'tensor-core-f16' ? ref : Float64Array.from(
        fusedExpertsImpl({hidden, topkWeights: routed.weights, topkIds: routed.ids, expertMap: null,
          shards: [{w13: w13h, w2: w2h, numExperts: E}], numTokens: T, topK: k, hiddenSize: H, intermediateSize: I,
          globalNumExperts: E, activation: 'silu', applyRouterWeightOnInput: false})));
    const pass = err <= tol;
    ok &&= pass;
    console.log(`tiny E=${E} k=${k} H=${H} I=${I} T=${T} kernel=${kernel}: ` +
        `max err ${err.toExponential(2)} (tol ${tol.toExponential(2)}) ${pass ? 'PASS' : 'FAIL'}`);
    // The same problem on the float32 kernel against the plain float64 reference.
    tf.env().set(TENSOR_CORES_FLAG, false);
    const exact = fusedExpertsImpl({hidden, topkWeights: routed.weights, topkIds: routed.ids, expertMap: null,
      shards: [{w13: w13h, w2: w2h, numExperts: E}], numTokens: T, topK: k, hiddenSize: H, intermediateSize: I,
      globalNumExperts: E, activation: 'silu', applyRouterWeightOnInput: false});
    const out32 = fusedExperts(x, w13, w2, tw, ti);
    const r32 = compare(await out32.data(), rows, H, Float64Array.from(exact));
    console.log(`  float32 kernel vs f64 reference: ${r32.err.toExponential(2)} ${r32.err <= r32.tol ? 'PASS' : 'FAIL'}; ` +
        `tensor-core vs exact f32 reference differs by ${compare(await out.data(), rows, H, Float64Array.from(exact)).err.toExponential(2)} (the f16 rounding)`);
    ok &&= r32.err <= r32.tol;
    tf.env().set(TENSOR_CORES_FLAG, true);
    tf.dispose([x, w13, w2, tw, ti, out, out32]);
  }
  setFusedExpertsPath(null);
  return ok;
}

async function realShape(s: MoEShape, tokens: number[]): Promise<boolean> {
  let ok = true;
  const w = makeExpertWeights(s);
  const counts = shardExpertCounts(s, (tf.backend() as WebGPUBackend).device.limits.maxStorageBufferBindingSize);
  const expert = (e: number, which: 'w13' | 'w2') => {
    let shard = 0, first = 0;
    while (e >= first + counts[shard]) first += counts[shard++];
    const n = which === 'w13' ? 2 * s.I * s.H : s.H * s.I;
    const v = new Float32Array(n);
    const seed = (which === 'w13' ? 1000 : 2000) + shard;
    const scale = Math.sqrt(3 / (which === 'w13' ? s.H : s.I));
    for (let j = 0; j < n; j++) v[j] = uniformHostValue((e - first) * n + j, seed, scale);
    return v;
  };
  setFusedExpertsPath('prefill');
  for (const M of tokens) {
    const logits = uniformHostValues(M * s.E, 3000 + M, 4);
    const biasHost = s.routing.kind === 'grouped' ? uniformHostValues(s.E, 4000, 0.1) : null;
    const ref = routingImpl(logits, M, s.E, biasHost, routingConfig(s.routing, s.k));
    const hiddenHost = uniformHostValues(M * s.H, 5000 + M, 1);
    const hidden = uniformTensor([M, s.H], 5000 + M, 1) as tf.Tensor2D;
    const tw = tf.tensor2d(ref.weights, [M, s.k]);
    const ti = tf.tensor2d(ref.ids, [M, s.k], 'int32');
    const rows = [0, Math.floor(M / 2), M - 1];
    const kernel = chooseGemmKernel(tf.backend() as WebGPUBackend, s.H, s.I).kernel;
    // The float32 kernel's reference: the same sums without the f16 rounding.
    const expected = referenceF16(hiddenHost, s.H, s.I, s.k, ref.ids, ref.weights, rows,
        (e) => expert(e, 'w13'), (e) => expert(e, 'w2'), kernel === 'tensor-core-f16' ? roundToHalf : (v) => v);
    const out = fusedExperts(hidden, w.w13, w.w2, tw, ti);
    const {err, tol} = compare(await out.data(), rows, s.H, expected);
    out.dispose();
    const pass = err <= tol;
    ok &&= pass;
    const flops = 2 * M * s.k * 3 * s.I * s.H;
    const tc = await gpuMs(() => fusedExperts(hidden, w.w13, w.w2, tw, ti), 5);
    tf.env().set(TENSOR_CORES_FLAG, false);
    const simt = await gpuMs(() => fusedExperts(hidden, w.w13, w.w2, tw, ti), M >= 4096 && s.name === 'mixtral' ? 2 : 5);
    tf.env().set(TENSOR_CORES_FLAG, true);
    console.log(JSON.stringify({check: 'tensor-core', shape: s.name, M, kernel, sampled_rows: rows, max_err: err, tol, pass, tc_gpu_ms: tc.ms, tc_tflops: flops / tc.ms / 1e9,
      simt_gpu_ms: simt.ms, simt_tflops: flops / simt.ms / 1e9, speedup: simt.ms / tc.ms, tc_kernels: tc.kernels,
      simt_kernels: simt.kernels}));
    tf.dispose([hidden, tw, ti]);
  }
  setFusedExpertsPath(null);
  tf.dispose([...w.w13, ...w.w2]);
  return ok;
}

async function main() {
  tf.env().set(TENSOR_CORES_FLAG, true);
  await tf.setBackend('webgpu');
  const backend = tf.backend() as WebGPUBackend;
  const caps = webgpuCapabilities(backend);
  console.log(JSON.stringify({features: [...backend.device.features], capabilities: caps}));
  if (!caps.tensorCoreF16) console.log(`tensor-core GEMM off: ${caps.tensorCoreReason}`);
  let ok = await tinyChecks();
  for (const name of arg('shapes', 'qwen3,dsv3tp8,mixtral').split(',')) {
    ok = (await realShape(SHAPES[name] as MoEShape, arg('tokens', '64,256,4096').split(',').map(Number))) && ok;
  }
  console.log(ok ? 'ALL PASS' : 'SOME FAILED');
  process.exit(ok ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(1); });

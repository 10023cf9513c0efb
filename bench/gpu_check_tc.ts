/**
 * Device entry for the f16 tensor-core prefill GEMMs (issue 11): Dawn with the toggles that expose shader-f16
 * and subgroup matrices, then, for every tensor-core variant (tensor_core_plan.ts TENSOR_CORE_VARIANTS; a
 * variant whose shaders fail to compile or validate is reported and skipped):
 *   1. what webgpuCapabilities reports (configs, which GEMM kernel runs and why);
 *   2. tiny and multi-tile problems through the prefill path, every weight format (f32, bf16, f16, fp8 e4m3
 *      128×128 blocks, int4 with zero tensor, int4 act-order, uint8 channel-wise, MXFP4), with biases and
 *      'swigluoai', gelu with the router weight on the input, fp8 activations and forced split-K, against the
 *      host reference with the kernels' documented numerics (f16 operands, f32 accumulation) and its derived
 *      per-element bound (bench/tensor_core_reference.ts);
 *   3. the real benchmark shapes at M = 64, 256, 4096 (prefill forced): sampled tokens against the same
 *      reference, and the GPU time per program of each variant (float32 weights, int4 g128 weights, and for the
 *      storage variants f16 weights read in place) beside the float32 SIMT kernels (float32 weights), with
 *      TFLOP/s and the fraction of the H200's dense f16 tensor-core peak, and the wall time per call of calls
 *      issued back to back (busy_wall_ms: the GPU never idles between them).
 *   bash .gpu/run.sh .gpu/gpu_check_tc.mjs [--variants storage-64,...] [--shapes qwen3,dsv3tp8,mixtral]
 *     [--tokens 64,256,4096] [--skip-tiny] [--skip-real] [--skip-check] [--out FILE]
 */
import {noShaderWarnings, shaderMessages, watchShaderMessages} from './gpu_setup_tensor_cores';  // first: Dawn, then tfjs

const USAGE = `bench/gpu_check_tc.ts: checks and times the f16 tensor-core prefill GEMMs (needs shader-f16 and
chromium-experimental-subgroup-matrix; elsewhere it reports why they are off and exits 0).
  --variants a,b   tensor-core variants (default: all of tensor_core_plan.ts TENSOR_CORE_VARIANTS); 'default':
                   none forced, the package's own choice per call (reported as the variant it picks)
  --shapes a,b     real shapes (default qwen3,dsv3tp8,mixtral)
  --tokens a,b     M of the real shapes (default 64,256,4096)
  --real-formats   weights at the real shapes (default f32,f16,uint4: float32; their f16 copy, read in place
                   by the storage variants; GPTQ-style int4 g128 made on the host)
  --skip-tiny      skip the tiny problems;  --skip-real  skip the real shapes
  --skip-check     real shapes timed only, without the host reference (its 8 experts take most of a Mixtral
                   run's first minute): for A/B timings of builds checked elsewhere; lines say "checked": false
  --split-k N      the real shapes' w2 in N K parts (setFusedExpertsSplitK; default the package's choice)
  --busy-long      also time ~1 s of back-to-back calls per configuration (busy_long_wall_ms)
  --out FILE       also append every result line to FILE (whole, whatever Dawn prints around them)
  --dry-run        without tensor cores: run the tiny problems (and --shapes tiny-qwen3,... if given) on the
                   float32 tiles against the unrounded reference and its f32 bound (checks this harness on
                   SwiftShader)`;
const args = process.argv.slice(2);
if (args.includes('--help')) {
  console.log(USAGE);
  process.exit(0);
}
const report = resultLines(args);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};


import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {Activation, FusedExpertsOptions, QuantizedExpertWeights, fusedExperts, fusedExpertsImpl, routingImpl} from '../src';
import {dequantizeImpl} from '../src/kernels/cpu/dequantize_impl';
import {TENSOR_CORES_FLAG, webgpuCapabilities} from '../src/kernels/webgpu/capabilities';
import {chooseGemmKernel, setFusedExpertsPath, setFusedExpertsSplitK} from '../src/kernels/webgpu/FusedExperts';
import {ExpertsWeightsF16Program} from '../src/kernels/webgpu/experts_weights_f16_webgpu';
import {TENSOR_CORE_VARIANTS, TensorCoreVariant, setTensorCoreVariant, tensorCoreLayout}
  from '../src/kernels/webgpu/tensor_core_plan';
import {FLOAT32_FORMAT, WeightFormat, formatKey} from '../src/quant/format';
import {randomProjection} from '../test/helpers/quant_weights';
import {uniformHostValue} from './fill_uniform_webgpu';
import {SEEDS, makeExpertWeights, routingConfig, uniformHostValues, uniformTensor, w13Scale, w2Scale} from './problem';
import {medianKernelTime, settle, warmUp} from './timing';
import {resultLines} from './result_lines';
import {MoEShape, SHAPES} from './shapes';
import {TensorCoreProblem, compareWithBound, tensorCoreReference} from './tensor_core_reference';

/** The H200's dense f16/bf16 tensor-core peak (SXM, without sparsity), TFLOP/s. */
const H200_F16_PEAK_TFLOPS = 989;

const fmt = (code: WeightFormat['code'], groupSize: number, zero: number | 'tensor' = 0,
    o: Partial<WeightFormat> = {}): WeightFormat =>
  ({code, groupSize, blockRows: 1, scaleCode: 'f32', zero, hasGIdx: false, ...o});
const FORMATS: WeightFormat[] = [FLOAT32_FORMAT, fmt('bf16', 0), fmt('f16', 0), fmt('e4m3', 128, 0, {blockRows: 128}),
  fmt('uint4', 32, 'tensor'), fmt('uint4', 32, 8, {hasGIdx: true}), fmt('uint8', -1, 128),
  fmt('e2m1', 32, 0, {scaleCode: 'e8m0'})];

/** Runs `f` inside validation and internal-error scopes: a shader that fails to compile shows here. */
async function scoped<T>(f: () => Promise<T>): Promise<{value?: T; error?: string}> {
  const device = (tf.backend() as WebGPUBackend).device;
  device.pushErrorScope('validation');
  device.pushErrorScope('internal');
  let value: T | undefined;
  let thrown: string | undefined;
  try {
    value = await f();
  } catch (e) {
    thrown = String((e as Error)?.stack ?? e);
  }
  const internal = await device.popErrorScope();
  const validation = await device.popErrorScope();
  const error = [thrown, validation?.message, internal?.message].filter(Boolean).join('\n');
  return error ? {error} : {value};
}

const gpuMs = medianKernelTime;

/**
 * Wall ms per call over `n` calls issued back to back (one wait at the end), after warmUp: the window
 * torch's CUDA events give, and a check on tf.time's per-program sum (which reads the float32 programs 1.6-5×
 * high at most real shapes on the H200: bench/results/2026-12-03-h200-tc-table-busy.log).
 */
async function busyMs(f: () => tf.Tensor, n: number, warmMs = 500): Promise<number> {
  await warmUp(f, warmMs);
  const t0 = performance.now();
  let y: tf.Tensor | null = null;
  for (let i = 0; i < n; i++) {
    y?.dispose();
    y = f();
  }
  await settle(y!);
  y!.dispose();
  return (performance.now() - t0) / n;
}

interface TinyCase {
  E: number; k: number; H: number; I: number; T: number;
  format: WeightFormat;
  activation?: Activation;
  bias?: boolean;
  onInput?: boolean;
  fp8?: boolean;
  splitK?: number;
}

/** The tiny problems: every format on two shapes, then the epilogue and path variations on a few formats. */
function tinyCases(): TinyCase[] {
  const shapes = [[4, 2, 64, 48, 40], [6, 3, 264, 392, 90]];
  const cases: TinyCase[] = [];
  for (const format of FORMATS) {
    for (const [E, k, H, I, T] of shapes) cases.push({E, k, H, I, T, format});
  }
  for (const format of [FLOAT32_FORMAT, fmt('f16', 0), fmt('uint4', 32, 8, {hasGIdx: true})]) {
    cases.push({E: 8, k: 2, H: 136, I: 200, T: 150, format, activation: 'swigluoai', bias: true});
    cases.push({E: 3, k: 1, H: 520, I: 1040, T: 200, format, activation: 'gelu', onInput: true, splitK: 2});
  }
  // f16 weights read in place by the storage variants (I a multiple of 32, H of 64), with biases.
  cases.push({E: 4, k: 2, H: 128, I: 64, T: 60, format: fmt('f16', 0), bias: true});
  cases.push({E: 4, k: 1, H: 128, I: 64, T: 60, format: fmt('f16', 0), activation: 'gelu', onInput: true, splitK: 2});
  // vLLM's fp8 w8a8 (e4m3 block weights, activations quantized per token and 128 inputs): the workgroup-tiles variant.
  cases.push({E: 4, k: 2, H: 256, I: 128, T: 70, format: fmt('e4m3', 128, 0, {blockRows: 128}), fp8: true});
  return cases;
}

async function tinyCase(c: TinyCase): Promise<boolean> {
  const {E, k, H, I, T, format} = c;
  const rand = (() => { let s = 17 + T + H; return () => ((s = Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9 | 0) >>> 0) / 2 ** 32; })();
  const hidden = uniformHostValues(T * H, 11 + T, 1);
  const logits = uniformHostValues(T * E, 12 + T, 4);
  const routed = routingImpl(logits, T, E, null, routingConfig((SHAPES.mixtral as MoEShape).routing, k));
  const p13 = randomProjection(format, E, 2 * I, H, rand);
  const p2 = randomProjection(format, E, H, I, rand);
  const w13h = dequantizeImpl(p13), w2h = dequantizeImpl(p2);
  const b13 = c.bias ? uniformHostValues(E * 2 * I, 15, 0.5) : undefined;
  const b2 = c.bias ? uniformHostValues(E * H, 16, 0.5) : undefined;
  const tensorOf = (p: ReturnType<typeof randomProjection>, N: number, K: number, bias?: Float32Array):
      QuantizedExpertWeights => ({format, shape: [E, N, K],
    data: format.code === 'f32' ? tf.tensor3d(p.data as Float32Array, [E, N, K]) :
      tf.tensor2d(p.data as Int32Array, [E, p.data.length / E], 'int32'),
    scales: p.scales && (p.scales instanceof Int32Array ? tf.tensor2d(p.scales, [E, p.scales.length / E], 'int32') :
      tf.tensor3d(p.scales, [E, Math.ceil(N / format.blockRows), p.scales.length / E / Math.ceil(N / format.blockRows)])),
    zeros: p.zeros && tf.tensor3d(p.zeros, [E, N, p.zeros.length / E / N]),
    gIdx: p.gIdx && tf.tensor2d(p.gIdx, [E, K], 'int32'),
    bias: bias && tf.tensor2d(bias, [E, N])});
  const w13 = tensorOf(p13, 2 * I, H, b13), w2 = tensorOf(p2, H, I, b2);
  const x = tf.tensor2d(hidden, [T, H]);
  const tw = tf.tensor2d(routed.weights, [T, k]);
  const ti = tf.tensor2d(routed.ids, [T, k], 'int32');
  const rows = Array.from({length: T}, (_, t) => t);
  const activation = c.activation ?? 'silu';
  const problem: TensorCoreProblem = {hidden, H, I, k, ids: routed.ids, weights: routed.weights, activation,
    applyRouterWeightOnInput: !!c.onInput,
    w13Of: (e) => w13h.subarray(e * 2 * I * H, (e + 1) * 2 * I * H), w2Of: (e) => w2h.subarray(e * H * I, (e + 1) * H * I),
    b13Of: b13 && ((e) => b13.subarray(e * 2 * I, (e + 1) * 2 * I)), b2Of: b2 && ((e) => b2.subarray(e * H, (e + 1) * H))};
  const choice = chooseGemmKernel(tf.backend() as WebGPUBackend, H, I,
      {hasBias: !!c.bias, activation, activationQuantGroup: c.fp8 ? 128 : 0});
  const opts: FusedExpertsOptions = {activation, applyRouterWeightOnInput: !!c.onInput, useFp8W8A8: !!c.fp8};
  setFusedExpertsSplitK(c.splitK ?? null);
  const out = fusedExperts(x, w13, w2, tw, ti, opts);
  const got = await out.data();
  setFusedExpertsSplitK(null);
  const what = `tiny ${formatKey(format)} E=${E} k=${k} H=${H} I=${I} T=${T} ${activation}` +
      `${c.bias ? ' bias' : ''}${c.onInput ? ' weight-on-input' : ''}${c.fp8 ? ' fp8-act' : ''}` +
      `${c.splitK ? ` splitK=${c.splitK}` : ''}: ${choice.kernel} ${choice.variant ?? ''}`;
  tf.dispose([x, tw, ti, out, ...[w13, w2].flatMap((q) => [q.data, q.scales, q.zeros, q.gIdx, q.bias])
    .filter((t): t is tf.Tensor => t != null)]);
  if (c.fp8) {
    // e4m3 activations round to 3 mantissa bits, so an f32 act a hair from an e4m3 boundary lands a whole e4m3
    // step away: no bound of the f16 model holds. Check that it ran, and print the distance to the fp8 reference.
    const fp8Ref = fusedExpertsImpl({hidden, topkWeights: routed.weights, topkIds: routed.ids, expertMap: null,
      shards: [{w13: w13h, w2: w2h, numExperts: E}], numTokens: T, topK: k, hiddenSize: H, intermediateSize: I,
      globalNumExperts: E, activation, applyRouterWeightOnInput: false, activationQuantGroup: 128});
    let maxRef = 0, maxErr = 0;
    fp8Ref.forEach((v, i) => { maxRef = Math.max(maxRef, Math.abs(v)); maxErr = Math.max(maxErr, Math.abs(v - got[i])); });
    const finite = got.every(Number.isFinite);
    report(`${what}: ${finite ? 'finite PASS' : 'non-finite FAIL'} (max |err| vs the fp8 cpu reference ` +
        `${maxErr.toExponential(2)} of max |ref| ${maxRef.toExponential(2)}; not bounded, see the comment)`);
    return finite;
  }
  const ref = tensorCoreReference(problem, rows, choice.kernel === 'tensor-core-f16' ? undefined : (v) => v);
  const r = compareWithBound(got, rows, H, ref);
  report(`${what}: max err ${r.err.toExponential(2)}, worst err/bound ${r.worstRatio.toFixed(3)} ` +
      `${r.pass ? 'PASS' : 'FAIL'}`);
  return r.pass;
}

/** Real shapes' f16 weights: the f32 weights' f16 copy (ExpertsWeightsF16Program) as format 'f16' tensors. */
function f16Weights(s: MoEShape, w: {w13: tf.Tensor3D[]; w2: tf.Tensor3D[]}):
    {w13: QuantizedExpertWeights[]; w2: QuantizedExpertWeights[]} | null {
  const f16 = fmt('f16', 0);
  const L = tensorCoreLayout(f16, s.H, s.I, 'silu');
  if (L.w13.source !== 'direct' || L.w2.source !== 'direct') return null;
  const b = tf.backend() as WebGPUBackend;
  const convert = (t: tf.Tensor3D, stage: 'w13' | 'w2'): QuantizedExpertWeights => {
    const n = t.shape[0];
    const info = b.runWebGPUProgram(new ExpertsWeightsF16Program({stage, hiddenSize: s.H, intermediateSize: s.I,
      activation: 'silu', format: FLOAT32_FORMAT, layout: tensorCoreLayout(FLOAT32_FORMAT, s.H, s.I, 'silu')[stage]}, n),
    [t], 'int32');
    const N = stage === 'w13' ? 2 * s.I : s.H, K = stage === 'w13' ? s.H : s.I;
    return {format: f16, shape: [n, N, K], data: tf.engine().makeTensorFromTensorInfo(info)};
  };
  return {w13: w.w13.map((t) => convert(t, 'w13')), w2: w.w2.map((t) => convert(t, 'w2'))};
}

/**
 * Real shapes' GPTQ-style int4 weights (group 128, zero 8), made on the host (xorshift codes, scales sized like
 * the f32 weights), in the f32 weights' shards; `expert(e, which)` dequantizes one expert for the reference.
 */
function uint4Weights(s: MoEShape, counts: number[]) {
  const format = fmt('uint4', 128, 8);
  let state = 0x9e3779b9;
  const next = () => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return state | 0; };
  const make = (N: number, K: number, scale: number) => counts.map((n) => {
    const words = new Int32Array(n * N * K / 8);
    for (let i = 0; i < words.length; i++) words[i] = next();
    const G = Math.ceil(K / 128);
    // (code − 8) has a standard deviation of about 4.6: scale to the f32 weights' uniform [-scale, scale).
    const scales = new Float32Array(n * N * G);
    for (let i = 0; i < scales.length; i++) scales[i] = scale / 8 * (0.75 + 0.5 * ((next() >>> 0) / 2 ** 32));
    return {n, words, scales};
  });
  const host = {w13: make(2 * s.I, s.H, w13Scale(s)), w2: make(s.H, s.I, w2Scale(s))};
  const tensors = (which: 'w13' | 'w2'): QuantizedExpertWeights[] => host[which].map((h) => {
    const N = which === 'w13' ? 2 * s.I : s.H, K = which === 'w13' ? s.H : s.I;
    return {format, shape: [h.n, N, K], data: tf.tensor2d(h.words, [h.n, N * K / 8], 'int32'),
      scales: tf.tensor3d(h.scales, [h.n, N, Math.ceil(K / 128)])};
  });
  const expert = (e: number, which: 'w13' | 'w2') => {
    const N = which === 'w13' ? 2 * s.I : s.H, K = which === 'w13' ? s.H : s.I;
    let shard = 0, first = 0;
    while (e >= first + counts[shard]) first += counts[shard++];
    const h = host[which][shard], l = e - first, W = N * K / 8, G = Math.ceil(K / 128);
    return dequantizeImpl({format, numExperts: 1, rows: N, cols: K, data: h.words.subarray(l * W, (l + 1) * W),
      scales: h.scales.subarray(l * N * G, (l + 1) * N * G)});
  };
  return {w13: tensors('w13'), w2: tensors('w2'), expert};
}

async function realShape(s: MoEShape, tokens: number[], variants: Array<TensorCoreVariant | 'default'>, formats: string[]):
    Promise<boolean> {
  let ok = true;
  const w = makeExpertWeights(s);
  const w16 = formats.includes('f16') ? f16Weights(s, w) : null;
  // (int4 rows fill whole words: K a multiple of 8.)
  const q4 = formats.includes('uint4') && s.H % 8 === 0 && s.I % 8 === 0 ?
    uint4Weights(s, w.w13.map((t) => t.shape[0])) : null;
  // Expert e's values: element j of the fill at global index e·n + j (makeExpertWeights' offsets).
  const expert = (e: number, which: 'w13' | 'w2') => {
    const n = which === 'w13' ? 2 * s.I * s.H : s.H * s.I;
    const v = new Float32Array(n);
    const seed = which === 'w13' ? SEEDS.w13 : SEEDS.w2;
    const scale = which === 'w13' ? w13Scale(s) : w2Scale(s);
    for (let j = 0; j < n; j++) v[j] = uniformHostValue(e * n + j, seed, scale);
    return v;
  };
  setFusedExpertsPath('prefill');
  // The reference's f16-rounded expert weights, made once per shape for all M (and per weight set).
  const rounded16 = new Map<string, Float32Array>(), roundedQ4 = new Map<string, Float32Array>();
  for (const M of tokens) {
    const logits = uniformHostValues(M * s.E, SEEDS.logits + M, 4);
    const biasHost = s.routing.kind === 'grouped' ? uniformHostValues(s.E, SEEDS.bias, 0.1) : null;
    const routed = routingImpl(logits, M, s.E, biasHost, routingConfig(s.routing, s.k));
    const hiddenHost = uniformHostValues(M * s.H, SEEDS.hidden + M, 1);
    const hidden = uniformTensor([M, s.H], SEEDS.hidden + M, 1) as tf.Tensor2D;
    const tw = tf.tensor2d(routed.weights, [M, s.k]);
    const ti = tf.tensor2d(routed.ids, [M, s.k], 'int32');
    // Tokens spread over the call (their pairs land all over the sorted rows): 3 once missed Mixtral's lost k
    // blocks at M = 4096 while M = 64 and 256 caught them; more where the host reference is cheap.
    const n = M <= 256 ? 8 : 5;
    const rows = Array.from({length: n}, (_, i) => Math.round(i * (M - 1) / (n - 1)));
    const problem: TensorCoreProblem = {hidden: hiddenHost, H: s.H, I: s.I, k: s.k, ids: routed.ids,
      weights: routed.weights, activation: 'silu', applyRouterWeightOnInput: false,
      w13Of: (e) => expert(e, 'w13'), w2Of: (e) => expert(e, 'w2'), roundedWeights: rounded16};
    // (--dry-run without tensor cores: the float32 tiles run, against the unrounded reference.)
    const round = chooseGemmKernel(tf.backend() as WebGPUBackend, s.H, s.I).kernel === 'tensor-core-f16' ? undefined :
      (v: number) => v;
    const checked = !args.includes('--skip-check');
    const ref16 = checked ? tensorCoreReference(problem, rows, round) : null;
    const refQ4 = checked && q4 && tensorCoreReference({...problem, w13Of: (e) => q4.expert(e, 'w13'), w2Of: (e) => q4.expert(e, 'w2'),
      roundedWeights: roundedQ4}, rows, round);
    const flops = 2 * M * s.k * 3 * s.I * s.H;
    const rate = (ms: number) => ({tflops: flops / ms / 1e9, peak_fraction: flops / ms / 1e9 / H200_F16_PEAK_TFLOPS});
    tf.env().set(TENSOR_CORES_FLAG, false);
    const simtCall = () => fusedExperts(hidden, w.w13, w.w2, tw, ti);
    // Back to back first: its warm-up brings the clocks up for tf.time's per-program times too.
    const simtBusy = await busyMs(simtCall, M >= 4096 ? 3 : 10);
    const simt = await gpuMs(simtCall, M >= 4096 && s.name === 'mixtral' ? 2 : 5);
    tf.env().set(TENSOR_CORES_FLAG, true);
    report(JSON.stringify({check: 'simt-f32', shape: s.name, M, gpu_ms: simt.ms, ...rate(simt.ms),
      busy_wall_ms: simtBusy, kernels: simt.kernels}));
    // What the package itself picks for this call ('default'): its variant depends on pairs per used expert.
    const rowsPerExpert = M * s.k / Math.min(s.E, M * s.k);
    for (const variant of variants) {
      setTensorCoreVariant(variant === 'default' ? null : variant);
      type Weights = {w13: tf.Tensor3D[] | QuantizedExpertWeights[]; w2: tf.Tensor3D[] | QuantizedExpertWeights[]};
      const runs: Array<[string, Weights, typeof ref16]> = formats.includes('f32') ? [['f32', w, ref16]] : [];
      if (variant !== 'workgroup-tiles' && w16) runs.push(['f16', w16, ref16]);
      if (q4 && (refQ4 || !checked)) runs.push(['uint4_g128', q4, refQ4 || null]);
      for (const [weightFormat, weights, ref] of runs) {
        const res = await scoped(async () => {
          const call = () => fusedExperts(hidden, weights.w13 as tf.Tensor3D[], weights.w2 as tf.Tensor3D[], tw, ti);
          const out = call();
          const got = await out.data();
          out.dispose();
          const cmp = ref != null ? compareWithBound(got, rows, s.H, ref) : null;
          const busy = await busyMs(call, M >= 4096 ? 3 : 10);
          const t = await gpuMs(call, M >= 4096 && s.name === 'mixtral' ? 3 : 5);
          // --busy-long: again over ~1 s of calls (the first seconds of a small-M configuration ran slow).
          const busyLong = args.includes('--busy-long') ? await busyMs(call, Math.max(10, Math.round(1000 / busy))) : null;
          return {cmp, t, busy, busyLong};
        });
        if (res.error) {
          ok = false;
          report(JSON.stringify({check: 'tensor-core', variant, weights: weightFormat, shape: s.name, M,
            error: res.error, compile_errors: shaderMessages.errors.splice(0)}));
          continue;
        }
        const {cmp, t, busy, busyLong} = res.value!;
        ok &&= cmp?.pass ?? true;
        const chosen = chooseGemmKernel(tf.backend() as WebGPUBackend, s.H, s.I,
            {activation: 'silu', hasBias: false, activationQuantGroup: 0}, rowsPerExpert);
        report(JSON.stringify({check: 'tensor-core', variant, kernel: `${chosen.kernel} ${chosen.variant ?? ''}`,
          weights: weightFormat, shape: s.name, M,
          ...(cmp != null ? {sampled_rows: rows, max_err: cmp.err, worst_err_over_bound: cmp.worstRatio, pass: cmp.pass} :
            {checked: false}),
          gpu_ms: t.ms, ...rate(t.ms), speedup_vs_simt: simt.ms / t.ms, busy_wall_ms: busy,
          ...(busyLong != null ? {busy_long_wall_ms: busyLong} : {}), kernels: t.kernels}));
      }
    }
    setTensorCoreVariant(null);
    tf.dispose([hidden, tw, ti]);
  }
  setFusedExpertsPath(null);
  tf.dispose([...w.w13, ...w.w2, ...[...(w16?.w13 ?? []), ...(w16?.w2 ?? []), ...(q4?.w13 ?? []), ...(q4?.w2 ?? [])]
    .flatMap((q) => [q.data, q.scales]).filter((t): t is tf.Tensor => t != null)]);
  return ok;
}

async function main() {
  tf.env().set(TENSOR_CORES_FLAG, true);
  await tf.setBackend('webgpu');
  const backend = tf.backend() as WebGPUBackend;
  const caps = webgpuCapabilities(backend);
  report(JSON.stringify({features: [...backend.device.features], capabilities: caps}));
  const dryRun = args.includes('--dry-run');
  if (!caps.tensorCoreF16) {
    report(`no subgroup matrix here: the tensor-core GEMMs are off (${caps.tensorCoreReason}); ` +
        (dryRun ? 'dry run: the tiny problems on the float32 tiles' : 'nothing to check'));
    if (!dryRun) process.exit(0);
  }
  watchShaderMessages(backend.device);
  const variants = (caps.tensorCoreF16 ? arg('variants', TENSOR_CORE_VARIANTS.join(',')) : 'workgroup-tiles')
      .split(',') as Array<TensorCoreVariant | 'default'>;
  let ok = true;
  if (!args.includes('--skip-tiny')) {
    setFusedExpertsPath('prefill');
    for (const variant of variants) {
      setTensorCoreVariant(variant === 'default' ? null : variant);
      report(`== tiny problems, variant ${variant}`);
      for (const c of tinyCases()) {
        const res = await scoped(() => tinyCase(c));
        if (res.error) {
          report(`tiny ${formatKey(c.format)} E=${c.E} H=${c.H} I=${c.I} variant ${variant}: ERROR ` +
              `${res.error}${shaderMessages.errors.length ? `\n  compile errors: ${shaderMessages.errors.splice(0).join('\n  ')}` : ''}`);
          ok = false;
          if (/shader|pipeline|compil/i.test(res.error)) {
            report(`  variant ${variant}: shader errors, skipping its remaining tiny problems`);
            break;
          }
          continue;
        }
        ok = res.value! && ok;
      }
    }
    setTensorCoreVariant(null);
    setFusedExpertsPath(null);
  }
  if (!args.includes('--skip-real') && (caps.tensorCoreF16 || arg('shapes', '').startsWith('tiny'))) {
    const splitK = arg('split-k', '');
    if (splitK !== '') {
      setFusedExpertsSplitK(Number(splitK));
      report(JSON.stringify({forcedSplitK: Number(splitK)}));
    }
    for (const name of arg('shapes', 'qwen3,dsv3tp8,mixtral').split(',')) {
      ok = (await realShape(SHAPES[name] as MoEShape, arg('tokens', '64,256,4096').split(',').map(Number), variants,
          arg('real-formats', 'f32,f16,uint4').split(','))) && ok;
    }
  }
  ok = noShaderWarnings(report) && ok;
  report(ok ? 'ALL PASS' : 'SOME FAILED');
  process.exit(ok ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(1); });

/**
 * The device entry for quantized expert weights on webgpu (issue #12): fusedExperts and fusedMoE with the
 * weights packed in the canonical layout of src/quant/format.ts and dequantized inside every expert program.
 *
 *   bash .gpu/run.sh .gpu/gpu_quant.mjs [--shapes mixtral-bf16,...] [--tokens 1,16,256,4096] [--json FILE]
 *   npx tsx bench/gpu_quant.ts --tiny          (SwiftShader here: the same shapes' structure, tiny sizes)
 *   --variants: also the decode path with 8-k weight chunks ('ours-experts-narrow') against the default 16-byte ones
 *
 * Shapes: Mixtral-8x7B (8, 2, 4096, 14336) bf16 and int4 g128; Qwen3-30B-A3B (128, 8, 2048, 768) int4 g128;
 * DeepSeek-V3 TP8 (256, 8, 7168, 256) e4m3 128×128 blocks with fp8 w8a8 activations; gpt-oss-20b
 * (32, 4, 2880, 2880) MXFP4 (e2m1, E8M0 scales per 32) with expert biases and 'swigluoai'.
 *
 * Weights are made on the GPU (FillQuantProgram: hashed words, no NaN/Inf codes; positive scales, E8M0
 * bytes near 2^-3), split by expert range so each tensor fits one storage binding. Per shape it first
 * spot-checks M = 2 tokens against the cpu reference (dequantizeImpl + fusedExpertsImpl) on a slice: only
 * the experts those tokens select are read back, and the ids are remapped onto that slice. Then per M:
 * GPU time (timestamp-query, summed per program) and wall time per call of fusedExperts (host routing) and
 * fusedMoE, and the packed bytes of the selected experts (weights + scales + zeros + gIdx) with GB/s over them.
 */
import {webgpuSetup} from './gpu_setup';
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {webgpu_util} from '@tensorflow/tfjs-backend-webgpu';
import {Activation, fusedExperts, fusedExpertsImpl, fusedMoE, routingImpl} from '../src';
import {dequantizeImpl} from '../src/kernels/cpu/dequantize_impl';
import {chooseExpertsPath, setFusedExpertsDecodeChunks} from '../src/kernels/webgpu/FusedExperts';
import {QuantizedExpertWeights} from '../src/quant/expert_weights';
import {WeightFormat, formatBits, formatBytes, formatKey, numGroups} from '../src/quant/format';
import {uniformTensor} from './problem';
import {measure, round} from './timing';

interface QuantShape {
  name: string;
  E: number; k: number; H: number; I: number;
  format: WeightFormat;
  fp8?: boolean;
  activation?: Activation;
  bias?: boolean;
}

const F = (code: WeightFormat['code'], groupSize: number, zero: number, o: Partial<WeightFormat> = {}): WeightFormat =>
  ({code, groupSize, blockRows: 1, scaleCode: 'f32', zero, hasGIdx: false, ...o});
const BF16 = F('bf16', 0, 0);
const INT4_G128 = F('uint4', 128, 8);
const FP8_BLOCK = F('e4m3', 128, 0, {blockRows: 128});
const MXFP4 = F('e2m1', 32, 0, {scaleCode: 'e8m0'});

const SHAPES: QuantShape[] = [
  {name: 'mixtral-bf16', E: 8, k: 2, H: 4096, I: 14336, format: BF16},
  {name: 'mixtral-int4g128', E: 8, k: 2, H: 4096, I: 14336, format: INT4_G128},
  {name: 'qwen3-int4g128', E: 128, k: 8, H: 2048, I: 768, format: INT4_G128},
  {name: 'dsv3tp8-fp8', E: 256, k: 8, H: 7168, I: 256, format: FP8_BLOCK, fp8: true},
  {name: 'gptoss20b-mxfp4', E: 32, k: 4, H: 2880, I: 2880, format: MXFP4, activation: 'swigluoai', bias: true},
];
/** The same structure at sizes SwiftShader runs in seconds (H, I multiples of the groups). */
const TINY: QuantShape[] = SHAPES.map((s) => ({...s, name: `tiny-${s.name}`, E: Math.min(s.E, 16),
  k: Math.min(s.k, 4), H: 256, I: s.format.groupSize === 128 ? 128 : 96}));

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const jsonLines: string[] = [];
const emit = (row: object) => {
  const line = JSON.stringify(row);
  jsonLines.push(line);
  console.log(line);
};

/**
 * Random canonical words / scales on the GPU: int32 words whose codes are never NaN or Inf (bf16 |v| in
 * [2^-7, 2^4), f16 below 2^3, e4m3 without S.1111.111), positive f32 scales in unit·[0.2, 1.2), or E8M0
 * bytes 123..126. Each value is a hash of (index, seed).
 */
class FillQuantProgram implements WebGPUProgram {
  variableNames: string[] = [];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  uniforms = 'seed : i32, unit : f32,';
  workgroupSize: [number, number, number] = [256, 1, 1];
  size = true;
  private readonly kind: string;

  constructor(shape: number[], kind: WeightFormat['code'] | 'scales' | 'e8m0') {
    this.outputShape = shape;
    this.kind = kind;
    this.shaderKey = `moeBenchFillQuant_${kind}`;
    this.dispatchLayout = webgpu_util.flatDispatchLayout(shape);
    this.dispatch = webgpu_util.computeDispatch(this.dispatchLayout, shape, this.workgroupSize);
  }

  getUserCode(): string {
    const perHalf = (f: string) => `let x0 = h & 0xffffu; let x1 = h >> 16u;
          let w = ${f.replace(/X/g, 'x0')} | ((${f.replace(/X/g, 'x1')}) << 16u);`;
    const words: {[k: string]: string} = {
      bf16: perHalf('((X & 0x807fu) | ((120u + ((X >> 7u) & 0xffu) % 11u) << 7u))'),
      f16: perHalf('((X & 0x83ffu) | ((((X >> 10u) & 31u) % 18u) << 10u))'),
      e4m3: `let nan = ((h & 0x7f7f7f7fu) ^ 0x7f7f7f7fu);
          // bytes whose low 7 bits are all ones lose their lowest bit
          var w = h;
          for (var i = 0u; i < 4u; i++) { if (((nan >> (8u * i)) & 0x7fu) == 0u) { w = w & ~(1u << (8u * i)); } }`,
      e8m0: 'let w = ((h & 0x03030303u) + 0x7b7b7b7bu);',
    };
    const body = this.kind === 'scales' ?
      'result[index] = uniforms.unit * (0.2 + f32(h >> 8u) / 16777216.0);' :
      `${words[this.kind] ?? 'let w = h;'}
          result[index] = bitcast<i32>(w);`;
    return `
      fn lowbias32(v : u32) -> u32 {
        var h = v;
        h = h ^ (h >> 16u); h = h * 0x7feb352du; h = h ^ (h >> 15u); h = h * 0x846ca68bu; h = h ^ (h >> 16u);
        return h;
      }
      fn main(index : i32) {
        if (index < uniforms.size) {
          let h = lowbias32(u32(index) ^ lowbias32(bitcast<u32>(uniforms.seed)));
          ${body}
        }
      }`;
  }
}

function fill(shape: number[], kind: ConstructorParameters<typeof FillQuantProgram>[1], seed: number, unit = 1):
    tf.Tensor {
  const b = tf.backend() as WebGPUBackend;
  const dtype = kind === 'scales' ? 'float32' : 'int32';
  const info = b.runWebGPUProgram(new FillQuantProgram(shape, kind), [], dtype,
      [{type: 'int32', data: [seed]}, {type: 'float32', data: [unit]}]);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** One projection stack [n, N, K] in format f, made on the GPU. */
function makeProjection(f: WeightFormat, n: number, N: number, K: number, seed: number, bias: boolean):
    QuantizedExpertWeights {
  const q: QuantizedExpertWeights = {format: f, shape: [n, N, K],
    data: fill([n, N * K * formatBits(f) / 32], f.code, seed)};
  const G = numGroups(f, K);
  if (G > 0) {
    // Decoded codes times scale stay O(1): int4 (0..15 − 8) / 8, e4m3 up to 448 / 256, e2m1 · 2^-4..2^-1.
    const unit = f.code === 'uint4' ? 1 / 8 : f.code === 'e4m3' ? 1 / 256 : 1;
    q.scales = f.scaleCode === 'e8m0' ? fill([n, Math.ceil(N * G / 4)], 'e8m0', seed + 1) :
      fill([n, Math.ceil(N / f.blockRows), G], 'scales', seed + 1, unit);
  }
  if (bias) q.bias = uniformTensor([n, N], seed + 2, 0.5) as tf.Tensor2D;
  return q;
}

const parts = (q: QuantizedExpertWeights) => [q.data, q.scales, q.zeros, q.gIdx, q.bias].filter((t): t is tf.Tensor => t != null);

/** Experts per tensor so that each data / scales tensor fits one storage binding. */
function shardCounts(s: QuantShape): number[] {
  const limit = (tf.backend() as WebGPUBackend).device.limits.maxStorageBufferBindingSize;
  const perExpert = Math.max(formatBytes(s.format, 1, 2 * s.I, s.H), formatBytes(s.format, 1, s.H, s.I));
  const per = Math.max(1, Math.floor(limit / perExpert));
  const counts: number[] = [];
  for (let left = s.E; left > 0; left -= per) counts.push(Math.min(per, left));
  return counts;
}

/**
 * Expert `e` of a stacked tensor, copied exactly. (Not tf.slice / tf.gather: on tfjs-backend-webgpu 4.22 they
 * pass int32 values through float32, rounding packed words above 2^24.)
 */
class ExpertSliceProgram implements WebGPUProgram {
  variableNames = ['x'];
  outputShape: number[];
  shaderKey = 'moeBenchExpertSlice';
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  uniforms = 'first : i32,';
  workgroupSize: [number, number, number] = [256, 1, 1];
  size = true;

  constructor(n: number) {
    this.outputShape = [n];
    this.dispatchLayout = webgpu_util.flatDispatchLayout(this.outputShape);
    this.dispatch = webgpu_util.computeDispatch(this.dispatchLayout, this.outputShape, this.workgroupSize);
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) { result[index] = x[uniforms.first + index]; }
      }`;
  }
}

/** The experts `ids` select, as a slice read back to the host: packed parts of those experts only. */
async function hostSlice(w: QuantizedExpertWeights[], counts: number[], experts: number[]) {
  const read = async (t: tf.Tensor | undefined, e: number) => {
    if (!t) return undefined;
    const n = t.size / t.shape[0];
    const b = tf.backend() as WebGPUBackend;
    const info = b.runWebGPUProgram(new ExpertSliceProgram(n), [t], t.dtype, [{type: 'int32', data: [e * n]}]);
    const sl = tf.engine().makeTensorFromTensorInfo(info);
    const v = await sl.data();
    sl.dispose();
    return v as Float32Array | Int32Array;
  };
  const out = [];
  for (const g of experts) {
    let s = 0, e = g;
    while (e >= counts[s]) { e -= counts[s]; s++; }
    const q = w[s];
    out.push({data: await read(q.data, e), scales: await read(q.scales, e), zeros: await read(q.zeros, e),
      gIdx: await read(q.gIdx, e), bias: await read(q.bias, e)});
  }
  return out;
}

async function spotCheck(s: QuantShape, w13: QuantizedExpertWeights[], w2: QuantizedExpertWeights[], counts: number[]) {
  const M = 2;
  const logits = uniformTensor([M, s.E], 77, 4);
  const logitsHost = await logits.data() as Float32Array;
  const routed = routingImpl(logitsHost, M, s.E, null, {topK: s.k, renormalize: true, scoringFunc: 'softmax',
    routedScalingFactor: 1, numExpertGroup: 1, topkGroup: 1});
  const hidden = uniformTensor([M, s.H], 78, 1) as tf.Tensor2D;
  const topkW = tf.tensor2d(routed.weights, [M, s.k]);
  const topkIds = tf.tensor2d(routed.ids, [M, s.k], 'int32');
  const out = fusedExperts(hidden, w13, w2, topkW, topkIds, {activation: s.activation, useFp8W8A8: s.fp8});
  const got = await out.data();
  const experts = [...new Set(Array.from(routed.ids))].sort((a, b) => a - b);
  const local = Int32Array.from(routed.ids, (id) => experts.indexOf(id));
  const s13 = await hostSlice(w13, counts, experts);
  const s2 = await hostSlice(w2, counts, experts);
  const deq = (p: typeof s13[number], N: number, K: number) => dequantizeImpl({format: s.format, numExperts: 1,
    rows: N, cols: K, data: p.data!, scales: p.scales, zeros: p.zeros, gIdx: p.gIdx});
  const expected = fusedExpertsImpl({hidden: await hidden.data(), topkWeights: routed.weights, topkIds: local,
    expertMap: null, shards: experts.map((_, i) => ({w13: deq(s13[i], 2 * s.I, s.H), w2: deq(s2[i], s.H, s.I),
      numExperts: 1, w13Bias: s13[i].bias, w2Bias: s2[i].bias})),
    numTokens: M, topK: s.k, hiddenSize: s.H, intermediateSize: s.I, globalNumExperts: experts.length,
    activation: s.activation ?? 'silu', applyRouterWeightOnInput: false, activationQuantGroup: s.fp8 ? 128 : 0});
  let maxRef = 0, maxErr = 0;
  for (let i = 0; i < expected.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
    const d = Math.abs(got[i] - expected[i]);
    maxErr = Number.isNaN(d) ? Infinity : Math.max(maxErr, d);
  }
  const tol = 1e-4 * maxRef + 1e-5;
  emit({check: s.name, format: formatKey(s.format), M, maxErr, tol, pass: maxErr <= tol});
  tf.dispose([logits, hidden, topkW, topkIds, out]);
}

async function timeShape(s: QuantShape, tokens: number[]) {
  const counts = shardCounts(s);
  let seed = 10;
  const w13 = counts.map((n) => makeProjection(s.format, n, 2 * s.I, s.H, seed += 10, !!s.bias));
  const w2 = counts.map((n) => makeProjection(s.format, n, s.H, s.I, seed += 10, !!s.bias));
  await spotCheck(s, w13, w2, counts);
  const opt = {warmup: 3, reps: 15, maxRowSeconds: 4};
  const expertPacked = formatBytes(s.format, 1, 2 * s.I, s.H) + formatBytes(s.format, 1, s.H, s.I);
  for (const M of tokens) {
    const logits = uniformTensor([M, s.E], 3000 + M, 4) as tf.Tensor2D;
    const logitsHost = await logits.data() as Float32Array;
    const routed = routingImpl(logitsHost, M, s.E, null, {topK: s.k, renormalize: true, scoringFunc: 'softmax',
      routedScalingFactor: 1, numExpertGroup: 1, topkGroup: 1});
    const hidden = uniformTensor([M, s.H], 5000 + M, 1) as tf.Tensor2D;
    const topkW = tf.tensor2d(routed.weights, [M, s.k]);
    const topkIds = tf.tensor2d(routed.ids, [M, s.k], 'int32');
    const distinct = new Set(Array.from(routed.ids)).size;
    const bytes = distinct * expertPacked;
    const flops = 2 * M * s.k * 3 * s.I * s.H;
    const o = {activation: s.activation, useFp8W8A8: s.fp8};
    const row = (impl: string, m: Awaited<ReturnType<typeof measure>>) => {
      const us = m.gpuUs ?? m.wallUs;
      emit({impl, shape: s.name, format: formatKey(s.format), fp8: !!s.fp8, E: s.E, k: s.k, H: s.H, I: s.I, M,
        path: chooseExpertsPath(M * s.k, s.E, M).path, gpuUs: m.gpuUs == null ? null : round(m.gpuUs),
        wallUs: round(m.wallUs), distinctExperts: distinct, packedBytes: bytes, gbps: round(bytes / us / 1e3),
        tflops: round(flops / us / 1e6), kernels: m.kernels});
    };
    try {
      row('ours-experts', await measure(async (timer) => {
        const f = () => fusedExperts(hidden, w13, w2, topkW, topkIds, o);
        return timer ? timer.time(f) : f();
      }, opt));
      if (args.includes('--variants') && chooseExpertsPath(M * s.k, s.E, M).path === 'decode') {
        setFusedExpertsDecodeChunks('narrow');
        row('ours-experts-narrow', await measure(async (timer) => {
          const f = () => fusedExperts(hidden, w13, w2, topkW, topkIds, o);
          return timer ? timer.time(f) : f();
        }, opt));
        setFusedExpertsDecodeChunks(null);
      }
      row('ours', await measure(async (timer) => {
        const f = () => fusedMoE(hidden, logits, w13, w2, {topK: s.k, renormalize: true, ...o});
        return timer ? timer.time(f) : f();
      }, opt));
    } catch (e) {
      emit({shape: s.name, M, error: (e as Error).message.split('\n')[0]});
    }
    tf.dispose([logits, hidden, topkW, topkIds]);
  }
  tf.dispose([...w13, ...w2].flatMap(parts));
}

async function main() {
  if (webgpuSetup.oursMissing) throw new Error(webgpuSetup.oursMissing);
  if (!(await tf.setBackend('webgpu'))) throw new Error('webgpu backend did not start');
  const b = tf.backend() as WebGPUBackend;
  console.log(`webgpu on ${webgpuSetup.vulkan}: ${JSON.stringify(b.device.adapterInfo ?? {})}; ` +
      `maxStorageBufferBindingSize ${b.device.limits.maxStorageBufferBindingSize}`);
  const tiny = args.includes('--tiny');
  const all = tiny ? TINY : SHAPES;
  const names = arg('shapes', '').split(',').filter(Boolean);
  const shapes = names.length ? all.filter((s) => names.some((n) => s.name.endsWith(n))) : all;
  const tokens = arg('tokens', tiny ? '1,16' : '1,16,256,4096').split(',').map(Number);
  for (const s of shapes) await timeShape(s, tokens);
  const json = arg('json', '');
  if (json) fs.writeFileSync(json, jsonLines.join('\n') + '\n');
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });

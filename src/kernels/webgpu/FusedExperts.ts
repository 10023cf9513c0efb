/**
 * webgpu kernel for FusedExperts (vLLM `fused_experts`), all on the GPU, no read-back:
 *
 *   decode (T = 1):   GEMV w13+act per pair → GEMV w2·weight per pair → combine
 *                     (w2 and the combine in one program when k is 4..8)
 *   decode-grouped (< DECODE_ROWS_PER_EXPERT pairs per used expert):
 *                     align (grouped, unpadded) → GEMV w13+act per expert → GEMV w2·weight per expert → combine
 *   prefill (otherwise):
 *                     align (count, prefix-sum, scatter by expert, padded) → grouped GEMM w13+act
 *                     → grouped GEMM w2·weight (split along K when its grid is small) → combine
 *                     (f16 tensor cores where chooseGemmKernel picks them; the storage variants' programs
 *                     are issued by tensor_core_prefill.ts)
 *
 * Weights split into several tensors (inputs w13_0.., w2_0..; no binding may exceed the device's
 * maxStorageBufferBindingSize): the decode GEMVs bind every tensor and pick the one that holds each pair's
 * expert, so a split layer still takes one dispatch per stage (while the bindings fit the device's
 * maxStorageBuffersPerShaderStage); the other programs run shard by shard, each binding one tensor and
 * handling only the pairs (or sorted tiles) of its expert range. The combine sums each token's k slots in
 * slot order (no atomics); pairs whose expert this rank does not hold contribute exactly 0.
 *
 * Weight formats (src/quant/format.ts): every program reads its weights through dequant_wgsl.ts (a chunk of
 * consecutive k of one row, already dequantized: the f32 entry is today's vec4 load), so packed weights are
 * never widened in memory; each shard binds its data, scales, zeros, gIdx and bias tensors as the format has
 * them. Biases are added to each projection's output, 'swigluoai' reads gate/up rows interleaved, and fp8 w8a8
 * (activationQuantGroup > 0) fake-quantizes x and the activation rows (ExpertsFp8QuantProgram) before their GEMMs.
 * int8 w8a8 (useInt8W8A8) takes its own integer programs after the path choice: experts_int8_run.ts.
 *
 * Subgroups: not used here (capabilities.ts offers them; the routing kernels, whose rows are one subgroup
 * wide, use them). The only cross-lane reductions are one tree of ≤ 8 barrier steps per GEMV workgroup,
 * after thousands of weight loads (under 2% of the GEMV time in the H200 profile), and a subgroup sum inside
 * a 256-thread workgroup would have to assume which invocations form a subgroup: WGSL does not say, and
 * tfjs's generated entry point does not expose subgroup_invocation_id. So every path is the portable one.
 *
 * No read-back: this file never calls backend.read/readSync; every size it needs comes from shapes and
 * attributes (the ids and expertMap were validated by the op). test/experts_parity.test.ts checks it by
 * counting GPUBuffer.mapAsync and backend.read/readSync calls during a forward pass.
 */
import {KernelConfig, KernelFunc, TensorInfo, env, util} from '@tensorflow/tfjs-core';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {ExpertProjectionShard, expertProjectionShards, unsupportedExpertsFeature, FusedExperts, FusedExpertsAttrs,
  FusedExpertsInputs} from '../../kernel_names';
import {WeightFormat, parseFormatKey} from '../../quant/format';
import {unsupportedChunking} from './dequant_wgsl';
import {ExpertsFp8QuantProgram} from './experts_fp8_quant_webgpu';
import {ALIGN_MAX_LOCAL_EXPERTS, ExpertsAlignProgram, alignLanes, maxPaddedRows} from './experts_align_webgpu';
import {ExpertsCombineProgram} from './experts_combine_webgpu';
import {ExpertsW13GemmProgram, ExpertsW2GemmProgram, GEMM_BLOCK_ROWS} from './experts_gemm_webgpu';
import {ExpertsW13GroupedGemvProgram, ExpertsW2GroupedGemvProgram} from './experts_grouped_gemv_webgpu';
import {ExpertsW2CombineGemvProgram, W2_COMBINE_TOPK} from './experts_w2_combine_gemv_webgpu';
import {ExpertsStage, ExpertsW13GemvProgram, ExpertsW2GemvProgram} from './experts_gemv_webgpu';
import {ExpertsW13TensorCoreGemmProgram, ExpertsW2TensorCoreGemmProgram, TC_BLOCK_ROWS} from './experts_gemm_tc_webgpu';
import {TENSOR_CORES_FLAG, webgpuCapabilities} from './capabilities';
import {ProgramIssuer, runPlanned} from './dispatch_plan';
import {TensorCoreChoice, forcedTensorCoreVariant, tensorCoreChoice} from './tensor_core_plan';
import {tensorCoreStoragePrefill} from './tensor_core_prefill';
import {forcedInt8GemmKernel, unsupportedInt8OnWebGPU, runInt8Experts} from './experts_int8_run';

/**
 * 'decode': a GEMV per (token, slot) pair, no grouping (best at T = 1, where the k experts differ);
 * 'decode-grouped': pairs grouped by expert, then a GEMV per expert over all of its pairs (each row read
 *   once however many tokens chose the expert); 'prefill': grouped, padded, tiled GEMMs.
 */
export type ExpertsPath = 'decode' | 'decode-grouped' | 'prefill';

/**
 * Below this many (token, slot) pairs per used expert the grouped GEMV beats the tiled GEMM. Measured
 * on the H200 (2026-11-30, GPU time): M = 16 (1-4 pairs per expert) GEMV 0.41-2.2 ms vs GEMM 2.2-11 ms;
 * M = 256: Qwen3 (16 per expert) 2.6 vs 3.0 ms and DSv3-TP8 (8-20) 3.9 vs 5.5 ms for the GEMV,
 * Mixtral (64) 24.6 vs 10.5 ms for the GEMM.
 */
export const DECODE_ROWS_PER_EXPERT = 32;

let forcedPath: ExpertsPath | null = null;

/** Forces a path (tests and benchmarks); null restores the automatic choice. */
export function setFusedExpertsPath(path: ExpertsPath | null): void {
  forcedPath = path;
}

/** Which path a call takes, and why (vLLM oracle style). */
export function chooseExpertsPath(numPairs: number, numLocalExperts: number, numTokens: number):
    {path: ExpertsPath; reason: string} {
  const prefillOk = numLocalExperts <= ALIGN_MAX_LOCAL_EXPERTS;
  const prefillWhyNot = `the align program counts at most ${ALIGN_MAX_LOCAL_EXPERTS} local experts in workgroup ` +
      `memory and this layer has ${numLocalExperts}`;
  if (forcedPath === 'decode') return {path: 'decode', reason: 'forced by setFusedExpertsPath'};
  if (forcedPath != null) {
    if (!prefillOk) throw new Error(`fusedExperts (webgpu): cannot force the ${forcedPath} path: ${prefillWhyNot}`);
    return {path: forcedPath, reason: 'forced by setFusedExpertsPath'};
  }
  const rowsPerExpert = numPairs / Math.max(1, Math.min(numLocalExperts, numPairs));
  if (numTokens === 1 || !prefillOk) {
    return {path: 'decode', reason: numTokens === 1 ? 'one token: its k experts differ, a GEMV per pair' :
      `${rowsPerExpert.toFixed(1)} pairs per used expert, but ${prefillWhyNot}`};
  }
  if (rowsPerExpert < DECODE_ROWS_PER_EXPERT) {
    return {path: 'decode-grouped', reason: `${rowsPerExpert.toFixed(1)} pairs per used expert < ` +
        `${DECODE_ROWS_PER_EXPERT}: a GEMV per expert over its pairs`};
  }
  return {path: 'prefill', reason: `${rowsPerExpert.toFixed(1)} pairs per used expert ≥ ${DECODE_ROWS_PER_EXPERT}: ` +
      'grouped GEMM over expert-sorted rows'};
}

let forcedShardBinding: 'all' | 'per-shard' | null = null;

/**
 * Forces how the decode GEMVs take split weights (benchmarks): 'all' tensors bound in one dispatch, or one
 * dispatch 'per-shard' (and no fused w2 + combine); null restores the choice ('all' where the bindings fit).
 */
export function setFusedExpertsShardBinding(mode: 'all' | 'per-shard' | null): void {
  forcedShardBinding = mode;
}

let forcedDecodeChunks: 'wide' | 'narrow' | null = null;

/**
 * Forces the per-pair decode GEMVs' weight chunks for packed formats (benchmarks, tests): 'wide' = 16 bytes
 * of codes per lane and load (32 k of int4), 'narrow' = 8 k (one u32 of int4); null restores 'narrow'
 * (dequant_wgsl.ts chunkShape; the f32 path is the same either way). Narrow is the default: on the H200
 * (2026-12-03, GPU time at M = 1) wide chunks took Mixtral int4 from 846 to 1590 µs and Qwen3 int4 from 234
 * to 388 µs (bench/results/2026-12-03-h200-quant*.log).
 */
export function setFusedExpertsDecodeChunks(mode: 'wide' | 'narrow' | null): void {
  forcedDecodeChunks = mode;
}

let forcedTileK: number | null = null;

/** Forces the GEMM's k per shared-memory tile, 16 or 32 (benchmarks); null restores the choice. */
export function setFusedExpertsTileK(tileK: number | null): void {
  forcedTileK = tileK;
}

/**
 * k per GEMM tile: 16. 32-k tiles were 25-35% slower on the H200 at every M (2026-11-30: Mixtral
 * M=4096 24.1 vs 32.3 TFLOP/s), likely one workgroup per SM instead of two; they stay selectable.
 */
export function chooseTileK(blockRows: number, maxWorkgroupStorage: number): number {
  const fits32 = (blockRows + 128) * 32 * 4 + 64 <= maxWorkgroupStorage;
  if (forcedTileK === 32 && !fits32) {
    throw new Error(`fusedExperts (webgpu): a 32-k GEMM tile of ${blockRows} rows needs more than this device's ` +
        `${maxWorkgroupStorage} bytes of workgroup memory`);
  }
  return forcedTileK ?? 16;
}

let forcedBlockRows: number | null = null;

/** Forces the GEMM's rows per tile, one of GEMM_BLOCK_ROWS (tests and benchmarks); null restores the choice. */
export function setFusedExpertsBlockRows(blockRows: number | null): void {
  if (blockRows != null && !GEMM_BLOCK_ROWS.includes(blockRows)) {
    throw new Error(`setFusedExpertsBlockRows: blockRows must be one of ${GEMM_BLOCK_ROWS.join(', ')}, got ${blockRows}`);
  }
  forcedBlockRows = blockRows;
}

/**
 * Rows per GEMM tile: the smallest tile that holds half the average rows per used expert, at least 64.
 * Measured on the H200 (2026-11-30, fusedExperts GPU time, 32 / 64 / 128 rows): Mixtral M = 256 (64 rows per
 * expert) 16.6 / 9.4 / 11.6 ms; DeepSeek-V3 TP8 M = 4096 (128 per expert, each expert padded to whole
 * tiles) – / 15.0 / 16.3 ms; Mixtral M = 4096 (4096 per expert) – / 95.5 / 93.4 ms.
 */
export function chooseBlockRows(numPairs: number, numLocalExperts: number): number {
  if (forcedBlockRows != null) return forcedBlockRows;
  const rowsPerExpert = numPairs / Math.max(1, Math.min(numLocalExperts, numPairs));
  const fit = GEMM_BLOCK_ROWS.find((b) => b >= rowsPerExpert / 2) ?? GEMM_BLOCK_ROWS[GEMM_BLOCK_ROWS.length - 1];
  return Math.max(64, fit);
}

let forcedSplitK: number | null = null;

/** Forces the w2 GEMM's K parts, 1 to 8 (tests and benchmarks); null restores the choice. */
export function setFusedExpertsSplitK(splitK: number | null): void {
  if (splitK != null && !(Number.isInteger(splitK) && splitK >= 1 && splitK <= 8)) {
    throw new Error(`setFusedExpertsSplitK: splitK must be an integer in [1, 8], got ${splitK}`);
  }
  forcedSplitK = splitK;
}

/**
 * Split the w2 GEMM's K until its grid has this many workgroups (132 SMs × 2 resident × ~16 waves).
 * Measured on the H200 (2026-11-30, w2 GEMM GPU time, 1 / 2 / 4 / 8 parts): Mixtral M = 256 (512 workgroups
 * unsplit) 5.81 / 4.36 / 3.64 / 2.94 ms; Mixtral M = 4096 (2304 workgroups) 32.5 / 30.6 ms.
 */
const SPLIT_K_TARGET_WORKGROUPS = 4096;
/** ... while each part keeps at least this many k tiles (the partial sums cost one [P, H] write each). */
const SPLIT_K_MIN_TILES = 64;

/**
 * K parts for the w2 GEMM: a grid of `workgroups` (row tiles × column tiles) that would leave the GPU
 * half idle is split along K (Mixtral at M = 256: 16 × 32 workgroups looping over K = 14336).
 */
export function chooseSplitK(workgroups: number, kTiles: number): number {
  if (forcedSplitK != null) return forcedSplitK;
  let splitK = 1;
  while (splitK < 8 && workgroups * splitK < SPLIT_K_TARGET_WORKGROUPS && kTiles / (2 * splitK) >= SPLIT_K_MIN_TILES) {
    splitK *= 2;
  }
  return splitK;
}

/**
 * The prefill GEMM kernel: f16 tensor cores where the device reaches them (capabilities.ts says why not
 * otherwise), for every weight format, with biases and 'swigluoai', in the variant of tensor_core_plan.ts
 * (setTensorCoreVariant); else the float32 SIMT tiles.
 */
export function chooseGemmKernel(backend: WebGPUBackend, H: number, I: number,
    attrs?: Pick<FusedExpertsAttrs, 'hasBias' | 'activation' | 'activationQuantGroup'>,
    rowsPerExpert?: number): TensorCoreChoice {
  return tensorCoreChoice(webgpuCapabilities(backend), H, I, {...attrs, rowsPerExpert});
}

function checkBinding(backend: WebGPUBackend, shape: number[], what: string, advice: string): void {
  const bytes = util.sizeFromShape(shape) * 4;
  const limit = backend.device.limits.maxStorageBufferBindingSize;
  if (bytes > limit) {
    throw new Error(`fusedExperts (webgpu): ${what} [${shape}] takes ${bytes} bytes, more than this device's ` +
        `maxStorageBufferBindingSize (${limit}); ${advice}`);
  }
}

/** Why this backend cannot run these attrs at these sizes, or null (vLLM oracle style). */
export function unsupportedOnWebGPU(a: FusedExpertsAttrs, format: WeightFormat, H: number, I: number): string | null {
  const generic = unsupportedExpertsFeature(a, 'webgpu', {formats: () => true, bias: true, swigluoai: true,
    fp8Activations: true, int8Activations: true});
  if (generic) return generic;
  if (a.useInt8W8A8) return unsupportedInt8OnWebGPU(H, I);
  const chunking = unsupportedChunking(format, H, 'w13') ?? unsupportedChunking(format, I, 'w2');
  if (chunking) return `fusedExperts on 'webgpu' cannot read ${a.weightFormat}: ${chunking}`;
  if (a.activationQuantGroup > 0 && a.applyRouterWeightOnInput) {
    return `fusedExperts on 'webgpu' does not support fp8 w8a8 activations with the router weight on the input yet`;
  }
  return null;
}

/** Issues the expert programs of one call through `issuer` (the backend, or a dispatch-plan recorder). */
export function issueFusedExperts(backend: WebGPUBackend, issuer: ProgramIssuer, ins: FusedExpertsInputs,
    a: FusedExpertsAttrs): TensorInfo {
  const format = parseFormatKey(a.weightFormat);
  const shardsOf = expertProjectionShards(ins, a);
  // Data tensors, and per shard every tensor its programs bind (dequant_wgsl.ts weightBindings order).
  const w13 = shardsOf.w13.map((s) => s.data);
  const w2 = shardsOf.w2.map((s) => s.data);
  const parts = (s: ExpertProjectionShard) =>
      [s.data, s.scales, s.zeros, s.gidx, s.bias].filter((t): t is TensorInfo => t != null);
  const {hiddenStates, topkWeights, topkIds, expertMap} = ins;
  const [T, H] = hiddenStates.shape;
  const topK = topkIds.shape[1];
  const I = a.intermediateSize;
  const unsupported = unsupportedOnWebGPU(a, format, H, I);
  if (unsupported) throw new Error(unsupported);
  const P = T * topK;
  const numLocalExperts = w13.reduce((n, w) => n + w.shape[0], 0);
  const common = {
    hiddenSize: H, intermediateSize: I, topK, numLocalExperts, globalNumExperts: a.globalNumExperts,
    hasExpertMap: expertMap != null, activation: a.activation, applyRouterWeightOnInput: a.applyRouterWeightOnInput,
    format, hasBias: a.hasBias,
  };
  const quantGroup = a.activationQuantGroup;
  w13.forEach((w, s) => checkBinding(backend, w.shape, `w13 shard ${s}`,
      'pass w13 and w2 as arrays of tensors over consecutive expert ranges'));
  w2.forEach((w, s) => checkBinding(backend, w.shape, `w2 shard ${s}`,
      'pass w13 and w2 as arrays of tensors over consecutive expert ranges'));
  checkBinding(backend, [P, H], 'the per-pair output y', 'call it on fewer tokens at a time');

  let combine = new ExpertsCombineProgram(common, T);
  const ids = expertMap ? [topkIds, expertMap] : [topkIds];
  if (P === 0) return issuer.runWebGPUProgram(combine, [issuer.makeTensorInfo([0, H], 'float32'), ...ids], 'float32');

  const temps: TensorInfo[] = [];
  const temp = (shape: number[], dtype: 'float32' | 'int32' = 'float32') => {
    const t = issuer.makeTensorInfo(shape, dtype);
    temps.push(t);
    return t;
  };
  // Runs one program per weight shard, each writing its rows into the shared output.
  // Every program's storage buffers (its inputs and its output) must fit the device's per-stage limit (8 unless
  // the device was created with more): a format with a zero tensor, act-order gIdx and biases binds 5 tensors
  // per weight shard. Checked here, since Dawn would only log a validation error and leave the output unwritten.
  const maxStorage = backend.device.limits.maxStorageBuffersPerShaderStage;
  const run = (program: WebGPUProgram, programInputs: TensorInfo[], uniforms?: Array<{type: string; data: number[]}>,
      out?: TensorInfo) => {
    if (programInputs.length + 1 > maxStorage) {
      throw new Error(`fusedExperts (webgpu): ${program.constructor.name} for weight format ${a.weightFormat}` +
          `${a.hasBias ? ' with biases' : ''} needs ${programInputs.length + 1} storage buffers, but this device ` +
          `allows ${maxStorage} per shader stage (maxStorageBuffersPerShaderStage)`);
    }
    return issuer.runWebGPUProgram(program, programInputs, 'float32', uniforms, out);
  };
  const shardParts = (stage: ExpertsStage, s: number) => parts((stage === 'w13' ? shardsOf.w13 : shardsOf.w2)[s]);
  const perShard = (stage: ExpertsStage, out: TensorInfo, make: (s: number) => [WebGPUProgram, TensorInfo[]]) => {
    let first = 0;
    (stage === 'w13' ? w13 : w2).forEach((w, s) => {
      const [program, programInputs] = make(s);
      run(program, [...programInputs, ...shardParts(stage, s)], [{type: 'int32', data: [first]}], out);
      first += w.shape[0];
    });
  };
  const weightsFor = (stage: ExpertsStage) =>
      (stage === 'w13') === a.applyRouterWeightOnInput ? [topkWeights] : [];

  // fp8 w8a8: each GEMM input fake-quantized per row and per `quantGroup` inputs (a copy; the caller's x stays).
  const quantized = (t: TensorInfo) => {
    if (quantGroup <= 0) return t;
    const [rows, cols] = t.shape;
    const q = issuer.runWebGPUProgram(new ExpertsFp8QuantProgram(rows, cols, quantGroup), [t], 'float32');
    temps.push(q);
    return q;
  };

  try {
    const {path} = chooseExpertsPath(P, numLocalExperts, T);
    if (a.useInt8W8A8) {
      return runInt8Experts({backend, issuer, config: common, path, hiddenStates, topkWeights, ids, shards: shardsOf,
        temp: (t) => { temps.push(t); return t; }, run});
    }
    const x = quantized(hiddenStates);
    if (path === 'decode') {
      const act = temp([P, I]);
      const wideChunks = forcedDecodeChunks === 'wide';
      // Every weight tensor bound in one dispatch where the storage bindings fit (+1: the output).
      const maxBindings = backend.device.limits.maxStorageBuffersPerShaderStage;
      const bindAll = (inputs: TensorInfo[], stage: ExpertsStage) => {
        const shards = stage === 'w13' ? shardsOf.w13 : shardsOf.w2;
        const bound = shards.reduce((n, s) => n + parts(s).length, 0);
        return forcedShardBinding !== 'per-shard' && (shards.length === 1 || inputs.length + bound + 1 <= maxBindings);
      };
      const allParts = (stage: ExpertsStage) => (stage === 'w13' ? shardsOf.w13 : shardsOf.w2).flatMap(parts);
      const counts = (weights: TensorInfo[]) => weights.map((w) => w.shape[0]);
      const gemv = (stage: ExpertsStage, x: TensorInfo, out: TensorInfo) => {
        const inputs = [x, ...ids, ...weightsFor(stage)];
        const weights = stage === 'w13' ? w13 : w2;
        const Program = stage === 'w13' ? ExpertsW13GemvProgram : ExpertsW2GemvProgram;
        if (bindAll(inputs, stage)) {
          run(new Program({...common, stage, wideChunks}, P, counts(weights)), [...inputs, ...allParts(stage)],
              [{type: 'int32', data: [0]}], out);
        } else {
          perShard(stage, out, (s) => [new Program({...common, stage, wideChunks}, P, [weights[s].shape[0]]), inputs]);
        }
      };
      gemv('w13', x, act);
      const actIn = quantized(act);
      const w2Inputs = [actIn, ...ids, ...weightsFor('w2')];
      if (T === 1 && topK >= W2_COMBINE_TOPK.min && topK <= W2_COMBINE_TOPK.max &&
          (w2.length === 1 || bindAll(w2Inputs, 'w2'))) {
        // w2 and the combine in one program (saves a dispatch and the y buffer at T = 1).
        const fused = new ExpertsW2CombineGemvProgram({...common, stage: 'w2', wideChunks}, T, counts(w2));
        return run(fused, [...w2Inputs, ...allParts('w2')]);
      }
      const y = temp([P, H]);
      gemv('w2', actIn, y);
      return issuer.runWebGPUProgram(combine, [y, ...ids], 'float32');
    } else if (path === 'decode-grouped') {
      const y = temp([P, H]);
      const align = issuer.runWebGPUProgram(
          new ExpertsAlignProgram({...common, blockRows: 1, lanes: alignLanes(backend)}, P), ids, 'int32');
      temps.push(align);
      const act = temp([P, I]);
      perShard('w13', act, (s) => [new ExpertsW13GroupedGemvProgram({...common, stage: 'w13'}, P, w13[s].shape[0]),
        [x, align, ...weightsFor('w13')]]);
      const actIn = quantized(act);
      perShard('w2', y, (s) => [new ExpertsW2GroupedGemvProgram({...common, stage: 'w2'}, P, w2[s].shape[0]),
        [actIn, align, ...weightsFor('w2')]]);
      return issuer.runWebGPUProgram(combine, [y, ...ids], 'float32');
    } else {
      const gemm = chooseGemmKernel(backend, H, I, a, P / Math.max(1, Math.min(numLocalExperts, P)));
      if (gemm.kernel === 'tensor-core-f16' && gemm.variant !== 'workgroup-tiles') {
        const {y, splitK, sorted, combineInputs} = tensorCoreStoragePrefill({backend, issuer, run, temp, temps,
          variant: gemm.variant!, x, topkWeights, ids, shards: shardsOf, numPairs: P, common,
          splitK: (workgroups, kTiles) => chooseSplitK(workgroups, kTiles),
          checkBinding: (shape, what) => checkBinding(backend, shape, what, 'call it on fewer tokens at a time')});
        combine = new ExpertsCombineProgram(common, T, {splits: splitK, sorted});
        return issuer.runWebGPUProgram(combine, [y, ...ids, ...combineInputs], 'float32');
      }
      const blockRows = gemm.kernel === 'tensor-core-f16' ? TC_BLOCK_ROWS : chooseBlockRows(P, numLocalExperts);
      const tileK = chooseTileK(blockRows, backend.device.limits.maxComputeWorkgroupStorageSize);
      const rows = maxPaddedRows(P, numLocalExperts, blockRows);
      checkBinding(backend, [rows, I], 'the expert-sorted activations', 'call it on fewer tokens at a time');
      const align = issuer.runWebGPUProgram(
          new ExpertsAlignProgram({...common, blockRows, lanes: alignLanes(backend)}, P), ids, 'int32');
      temps.push(align);
      const act = temp([rows, I]);
      const tiles = (s: number) => Math.ceil(P / blockRows) + w13[s].shape[0];
      const W13Gemm = gemm.kernel === 'tensor-core-f16' ? ExpertsW13TensorCoreGemmProgram : ExpertsW13GemmProgram;
      const W2Gemm = gemm.kernel === 'tensor-core-f16' ? ExpertsW2TensorCoreGemmProgram : ExpertsW2GemmProgram;
      perShard('w13', act, (s) => [new W13Gemm({...common, stage: 'w13', blockRows, tileK}, [rows, I], tiles(s)),
        [x, align, ...weightsFor('w13')]]);
      const actIn = quantized(act);
      const splitK = chooseSplitK((Math.ceil(P / blockRows) + numLocalExperts) * Math.ceil(H / 128), Math.ceil(I / tileK));
      checkBinding(backend, [splitK * P, H], `the w2 partial sums (${splitK} K parts)`, 'call it on fewer tokens at a time');
      const y = temp([splitK * P, H]);
      perShard('w2', y, (s) => [new W2Gemm({...common, stage: 'w2', blockRows, tileK, splitK}, [splitK * P, H],
        tiles(s)), [actIn, align, ...weightsFor('w2')]]);
      combine = new ExpertsCombineProgram(common, T, {splits: splitK});
      return issuer.runWebGPUProgram(combine, [y, ...ids], 'float32');
    }
  } finally {
    temps.forEach((t) => issuer.disposeData(t.dataId));
  }
}

/**
 * The attributes, the switches above and the tensor-core flag: with the shapes, what fixes the programs a
 * call issues (a dispatch plan's key).
 */
export function expertsAttrsKey(a: FusedExpertsAttrs): string {
  const tensorCores = env().getBool(TENSOR_CORES_FLAG);
  const variant = forcedTensorCoreVariant();
  const int8Gemm = forcedInt8GemmKernel();
  // A frozen attributes object (the ops memoize theirs: fused_moe.ts) cannot change: its key is kept, and
  // returned (the same string, which the plan's key memo compares by reference) while the switches stay.
  const frozen = Object.isFrozen(a);
  if (frozen) {
    const m = attrsKeys.get(a);
    if (m !== undefined && m.path === forcedPath && m.shardBinding === forcedShardBinding &&
        m.decodeChunks === forcedDecodeChunks && m.tileK === forcedTileK && m.blockRows === forcedBlockRows &&
        m.splitK === forcedSplitK && m.tensorCores === tensorCores && m.variant === variant && m.int8Gemm === int8Gemm) {
      return m.key;
    }
  }
  const key = `${JSON.stringify(a)}|${forcedPath}|${forcedShardBinding}|${forcedDecodeChunks}|${forcedTileK}|` +
      `${forcedBlockRows}|${forcedSplitK}|${tensorCores}|${variant}|${int8Gemm}`;
  if (frozen) {
    attrsKeys.set(a, {key, path: forcedPath, shardBinding: forcedShardBinding, decodeChunks: forcedDecodeChunks,
      tileK: forcedTileK, blockRows: forcedBlockRows, splitK: forcedSplitK, tensorCores, variant, int8Gemm});
  }
  return key;
}

/** expertsAttrsKey's answer per frozen attributes object, with the switches it was made under. */
const attrsKeys = new WeakMap<object, {key: string; path: unknown; shardBinding: unknown; decodeChunks: unknown;
  tileK: unknown; blockRows: unknown; splitK: unknown; tensorCores: boolean; variant: unknown; int8Gemm: unknown}>();

/** The inputs that change from call to call; the weights, scales, biases and expert map are bound to a plan. */
export const FUSED_EXPERTS_PER_CALL = ['hiddenStates', 'topkWeights', 'topkIds'];

export const fusedExpertsWebGPU: KernelFunc = ({inputs, attrs, backend: b}): TensorInfo => {
  const backend = b as WebGPUBackend;
  const ins = inputs as FusedExpertsInputs;
  const a = attrs as unknown as FusedExpertsAttrs;
  return runPlanned(backend, {kernel: FusedExperts, attrsKey: expertsAttrsKey(a), inputs: ins,
    perCall: FUSED_EXPERTS_PER_CALL, numTokens: ins.hiddenStates.shape[0]},
  (issuer) => issueFusedExperts(backend, issuer, ins, a)) as TensorInfo;
};

export const fusedExpertsConfig: KernelConfig = {
  kernelName: FusedExperts,
  backendName: 'webgpu',
  kernelFunc: fusedExpertsWebGPU,
};

/**
 * The int8 w8a8 path of the webgpu FusedExperts kernel (useInt8W8A8), stage by stage:
 *
 *   quantize hidden rows (ExpertsInt8QuantProgram) → w13 + act (GEMV per pair | grouped GEMV | GEMM)
 *   → quantize the activation rows → w2 · routing weight (same kind of program) → combine (slot order)
 *
 * and the one choice it makes: which prefill GEMM runs (chooseInt8GemmKernel). Both GEMMs give the same int32
 * accumulators as the cpu reference, so the choice changes speed, never a bit of the output.
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {ProgramIssuer} from './dispatch_plan';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import type {ExpertProjectionShard} from '../../kernel_names';
import {ExpertsAlignProgram, alignLanes, maxPaddedRows} from './experts_align_webgpu';
import {ExpertsCombineProgram} from './experts_combine_webgpu';
import type {ExpertsStage} from './experts_gemv_webgpu';
import {ExpertsInt8QuantProgram, int8RowWords} from './experts_int8_quant_webgpu';
import {ExpertsInt8Config, ExpertsW13Int8GemmProgram, ExpertsW13Int8GemvProgram, ExpertsW2Int8GemmProgram,
  ExpertsW2Int8GemvProgram, INT8_GEMM_BLOCK_ROWS,
  unsupportedInt8Shapes} from './experts_int8_webgpu';
import {ExpertsW13Int8TensorCoreGemmProgram, ExpertsW2Int8TensorCoreGemmProgram, INT8_TC_BLOCK_ROWS,
  INT8_TC_WORKGROUP_BYTES, int8TensorCoreConfig} from './experts_int8_tc_webgpu';
import {ExpertsInt8BlockedRowsProgram, ExpertsInt8WeightsBlockedProgram, ExpertsW13Int8PipelinedGemmProgram,
  ExpertsW2Int8PipelinedGemmProgram, int8PipelinedLayout, int8PipelinedWorkgroupBytes} from './experts_int8_tc_pipelined_webgpu';
import {ExpertsInt8StagedActQuantProgram, ExpertsW13Int8BothStagedGemmProgram, ExpertsW13Int8StagedGemmProgram,
  ExpertsW2Int8BothStagedGemmProgram, ExpertsW2Int8StagedEpilogueProgram, ExpertsW2Int8StagedGemmProgram,
  INT8_STAGED_LAYOUT_SUBGROUPS, INT8_STAGED_TILE, int8BothStagedWorkgroupBytes, int8StagedResultColumns,
  int8StagedWorkgroupBytes} from './experts_int8_tc_staged_webgpu';
import {WebGPUCapabilities, webgpuCapabilities} from './capabilities';
import {tensorCoreWeightCopy} from './tensor_core_weights';

/**
 * The int8 prefill GEMMs:
 *   'tensor-core-i8-staged-128-quant-pass'
 *                    experts_int8_tc_staged_webgpu.ts: four subgroups share 128 rows of x staged in workgroup memory,
 *                    each multiplying them by its own 32 weight rows streamed from storage two blocks ahead (the
 *                    blocked operands of the plain kernels), i32 results stored straight into an int32 tensor;
 *                    w13's epilogue fused into the activation quantizer (ExpertsInt8StagedActQuantProgram: the f32
 *                    act rows, 0.53 GB at Mixtral M = 4096, neither written nor read back), w2's as a pass
 *                    (ExpertsInt8StagedEpilogueProgram); its tiles launched 8 row tiles at a time (INT8_STAGED_TILE).
 *                    The default where INT8_QUANT_PASS_MIN_INTERMEDIATE says (an H100, 2026-12-07, GPU time,
 *                    bit-equal to the cpu reference; bench/results/2026-12-07-h100-int8-check-epilogue-pass.log:
 *                    Mixtral M = 4096 9.54 ms, 302 TOPS, against plain-64's 11.06; M = 256 1.36 against 1.56; in
 *                    grouped order 9.13, 316 TOPS, -h100-int8-staged-order-pad.log);
 *   'tensor-core-i8-both-staged-128-quant-pass'
 *                    the same with the weights staged in workgroup memory too, every row padded to 48 bytes, the
 *                    tile found in registers (ExpertsInt8BothStagedGemmProgram: the probe's fastest int8 loop, 460
 *                    TOPS on an H100's plain GEMM); selectable only until it is timed in the layer;
 *   'tensor-core-i8-plain-64', 'tensor-core-i8-plain-32'
 *                    experts_int8_tc_pipelined_webgpu.ts: both operands in 16×32 blocks read from storage through
 *                    block pointers right before their multiplies (the int8 plain loop: 299 TOPS on the plain-GEMM
 *                    probe, the prefetching one 213) over a trip count the compiler knows (197 → 256 TOPS at
 *                    Mixtral M = 4096 on an H100), one subgroup computing 64 or 32 rows × 64 columns, the weights'
 *                    blocked copy kept between calls; the default elsewhere: 64 rows where experts average
 *                    INT8_BLOCKED_MIN_ROWS rows or more, 32 where they average fewer (see there);
 *   'tensor-core-i8' experts_int8_tc_webgpu.ts: the same matrices over x and the weights as they are (32 × 64 tiles
 *                    of workgroup memory), one subgroup per workgroup; selectable only (Mixtral M = 4096 on the H200:
 *                    21.2 ms, 136 TOPS). Kept as the kernel CI's i8 emulation was checked against: its outputs were
 *                    bit-equal to dot4 on the H200;
 *   'dot4-i8'        experts_int8_webgpu.ts: dot4I8Packed tiles, everywhere the int8 path runs.
 * Removed after measuring (2026-12-03 to 12-07, bit-equal to the cpu reference, GPU time; the code is in git history,
 * the logs in bench/results/ and docs/tensor-cores.md): each lost to the kernels above wherever it was timed.
 *   the prefetching loop ('-pipelined-64', '-pipelined-32'; the default until the plain loop beat it: Mixtral
 *   M = 4096 171 against 197 TOPS on an H100, -h100-int8-check-plain.log); 96-row tiles ('-plain-96', 179 TOPS);
 *   two or four subgroups side by side, in step or staggered over k ('-plain-64x128', '-plain-96x128',
 *   '-plain-64x256', '-staggered-64x256', '-pipelined-64x256': Mixtral M = 4096 14.0-15.2 ms against plain-64's 11.2,
 *   -h100-grouped-trimmed-ab.log); row tiles launched 16 at a time ('-grouped-64': 11.93 against 11.21); x and the
 *   weights shared in workgroup memory ('-shared-128', '-shared-64': 28.0 ms against 21.0 on the H200,
 *   -h200-int8-check-shared.log); copies of the plain loop for expert tails ('-fitted-64': 13.15 against 11.38,
 *   -h100-int8-fitted-ab.log); the staged GEMM with its epilogue in the kernel, one or two staging buffers
 *   ('-staged-128', '-staged-128-two-buffers': 13.10 ms both), or its w13 epilogue as a pass instead of in the
 *   quantizer ('-staged-128-epilogue-pass': 9.87 against 9.54, -h100-int8-check-epilogue-pass.log), or its row
 *   tiles in other orders (12.48 and 13.22 against 13.16, -h100-int8-check-staged-orders.log).
 */
export type Int8GemmKernel = 'tensor-core-i8-staged-128-quant-pass' | 'tensor-core-i8-both-staged-128-quant-pass' |
  'tensor-core-i8-plain-64' | 'tensor-core-i8-plain-32' | 'tensor-core-i8' | 'dot4-i8';
export const INT8_GEMM_KERNELS: Int8GemmKernel[] = ['tensor-core-i8-staged-128-quant-pass',
  'tensor-core-i8-both-staged-128-quant-pass', 'tensor-core-i8-plain-64', 'tensor-core-i8-plain-32', 'tensor-core-i8',
  'dot4-i8'];

/** The plain kernels' rows per tile (experts_int8_tc_pipelined_webgpu.ts). */
const PLAIN_ROWS: Partial<Record<Int8GemmKernel, number>> = {'tensor-core-i8-plain-64': 64, 'tensor-core-i8-plain-32': 32};
const isPlain = (k: Int8GemmKernel) => PLAIN_ROWS[k] != null;
/** The staged GEMMs (their i32 results stored straight, the epilogues as passes); bothStaged: the weights staged too. */
const bothStaged = (k: Int8GemmKernel) => k === 'tensor-core-i8-both-staged-128-quant-pass';
const isStaged = (k: Int8GemmKernel) => k === 'tensor-core-i8-staged-128-quant-pass' || bothStaged(k);
/** The kernels that read blocked rows and the weights' blocked copy (experts_int8_tc_pipelined_webgpu.ts's). */
const readsBlocked = (k: Int8GemmKernel) => isPlain(k) || isStaged(k);

/**
 * The default int8 GEMM: 'tensor-core-i8-plain-64' (a blocked-operand program, experts_int8_tc_pipelined_webgpu.ts)
 * where experts average at least this many rows, else 'tensor-core-i8-plain-32'.
 * On the H200 (2026-12-05, GPU time, one run; bench/results/2026-12-05-h200-int8-check-small-rows.log), 32-row
 * tiles against the one-subgroup 'tensor-core-i8' below the threshold: DeepSeek-V3 TP8 M = 256 (8 rows an expert)
 * 0.651 ms against 0.708, Qwen3 M = 256 (16) 0.504 against 0.510; and against 64-row tiles above it: Mixtral
 * M = 256 (64) 2.021 against 1.880, Qwen3 M = 4096 (256) 2.708 against 2.607, DeepSeek-V3 TP8 M = 4096 (128)
 * 3.878 against 3.976 (the one point where 32 rows win above 64, by 2.5%: the threshold stays). Since the
 * plain loop's known trip count (2026-12-05, later, H200, bench/results/2026-12-05-h200-table-after-trip-count.log)
 * the 64-row tiles gained and the 32-row ones did not: DeepSeek-V3 TP8 M = 4096 3.40 against 3.62, Mixtral M = 4096
 * 11.39 against 16.79, Mixtral M = 256 1.55 against 1.91; below the threshold 32 rows still win (Qwen3 M = 256
 * 0.498 against 0.629, DeepSeek-V3 TP8 M = 256 0.614 against 0.916, Mixtral M = 64 0.946 against 1.147).
 * The plain loop took the 64-row tiles from the pipelined one on an H100 (2026-12-05, GPU time, one run;
 * bench/results/2026-12-05-h100-int8-check-plain.log): Mixtral M = 4096 197 TOPS against 171, M = 256 96 against
 * 88, Qwen3 M = 4096 116 against 90, bit-equal to the cpu reference. The threshold is from the pipelined loop on
 * the H200 (2026-12-04, GPU time; bench/results/2026-12-04-h200-int8-check-pipelined.log):
 * M = 4096 Mixtral (1024 rows an expert) 16.6 ms against 21.0, DeepSeek-V3 TP8 (128) 4.28 against 4.81, Qwen3
 * (256) 3.30 against 3.18; M = 256 Mixtral (64) 2.02 against 2.00, Qwen3 (16) 0.55 (32-row pipelined) against
 * 0.52, DeepSeek-V3 (8) 0.86 against 0.72.
 */
export const INT8_BLOCKED_MIN_ROWS = 64;

/** The subgroup-matrix kernels' rows per tile (the align program pads every expert to a multiple of it). */
export function int8GemmBlockRows(kernel: Int8GemmKernel): number {
  return PLAIN_ROWS[kernel] ?? (isStaged(kernel) ? INT8_STAGED_TILE.rows :
    kernel === 'tensor-core-i8' ? INT8_TC_BLOCK_ROWS : INT8_GEMM_BLOCK_ROWS);
}

/** Workgroup memory each subgroup-matrix kernel declares (0 for dot4: it is not limited by it here). */
export function int8GemmWorkgroupBytes(kernel: Int8GemmKernel): number {
  return isPlain(kernel) ? int8PipelinedWorkgroupBytes(int8GemmBlockRows(kernel)) :
    bothStaged(kernel) ? int8BothStagedWorkgroupBytes() : isStaged(kernel) ? int8StagedWorkgroupBytes() :
    kernel === 'tensor-core-i8' ? INT8_TC_WORKGROUP_BYTES : 0;
}


let forcedInt8Gemm: Int8GemmKernel | null = null;

/** The kernel forced by setInt8GemmKernel, or null (part of a dispatch plan's key). */
export function forcedInt8GemmKernel(): Int8GemmKernel | null {
  return forcedInt8Gemm;
}

/** Forces the int8 prefill GEMM (tests, the device check); null restores the choice. */
export function setInt8GemmKernel(kernel: Int8GemmKernel | null): void {
  if (kernel != null && !INT8_GEMM_KERNELS.includes(kernel)) {
    throw new Error(`setInt8GemmKernel: kernel must be one of ${INT8_GEMM_KERNELS.join(', ')}, got ${kernel}`);
  }
  forcedInt8Gemm = kernel;
}

/** Whether WGSL's dot4I8Packed is there (the `packed_4x8_integer_dot_product` language feature). */
export function hasDot4I8Packed(): boolean {
  const gpu = (globalThis as {navigator?: {gpu?: {wgslLanguageFeatures?: {has(f: string): boolean}}}}).navigator?.gpu;
  return !!gpu?.wgslLanguageFeatures?.has('packed_4x8_integer_dot_product');
}

/** What int8GemmChoice needs to know of the device (webgpuCapabilities' answer). */
export type Int8GemmDevice = Pick<WebGPUCapabilities, 'subgroups' | 'reason' | 'subgroupMatrixConfigs' |
  'subgroupSize' | 'maxComputeWorkgroupStorageSize' | 'maxStorageBufferBindingSize'>;

/** What int8GemmChoice needs to know of the problem: pairs (tokens × top-k), local experts, H and I. */
export interface Int8GemmProblem {
  pairs: number;
  experts: number;
  hiddenSize: number;
  intermediateSize: number;
}

/**
 * The staged kernel's largest i32 results tensor (w13's or w2's, every row padded to 128), in bytes: where it
 * exceeds a binding the kernel cannot run.
 */
export function int8StagedResultsBytes(p: Int8GemmProblem): number {
  const rows = maxPaddedRows(p.pairs, p.experts, INT8_STAGED_TILE.rows);
  const layout = int8PipelinedLayout(p.hiddenSize, p.intermediateSize, INT8_STAGED_LAYOUT_SUBGROUPS);
  return 4 * rows * Math.max(int8StagedResultColumns('w13', layout), int8StagedResultColumns('w2', layout));
}

/**
 * The staged GEMM with w13's epilogue in the quantizer ('tensor-core-i8-staged-128-quant-pass') is the default
 * where experts average INT8_BLOCKED_MIN_ROWS rows or more and I is at least this. Its w2 epilogue pass reads and
 * writes rows × H values whatever I, and the staged GEMM's lead over the plain loop grows with I: on an H100
 * (2026-12-07, GPU time, bit-equal to the cpu reference; bench/results/2026-12-07-h100-int8-check-epilogue-pass.log)
 * Mixtral (I = 14336) M = 4096 9.54 ms against plain-64's 11.06, M = 256 1.36 against 1.56 (w2: 2.70 + a 0.12 ms
 * pass against 3.68), but Qwen3 (768) M = 4096 2.28 against 2.21 (w2: 0.61 + 0.25 against 0.78) and DeepSeek-V3 TP8
 * (256) 4.07 against 3.49 (w2: 1.32 + 0.80 against 1.49). Scaling Mixtral's w2 by I puts the break-even near
 * I = 1800; 4096 leaves room for the card and the H between.
 */
export const INT8_QUANT_PASS_MIN_INTERMEDIATE = 4096;

export interface Int8GemmChoice {
  kernel: Int8GemmKernel;
  reason: string;
}

/**
 * The int8 prefill GEMM, and why (vLLM oracle style): where the adapter lists i8×i8→i32 16×16×32 subgroup
 * matrices and subgroups are 32 wide, 'tensor-core-i8-staged-128-quant-pass' where experts average
 * INT8_BLOCKED_MIN_ROWS rows or more, I is at least INT8_QUANT_PASS_MIN_INTERMEDIATE and its results fit a binding;
 * else 'tensor-core-i8-plain-64', or 'tensor-core-i8-plain-32' where experts average fewer rows, where its workgroup
 * memory fits; else dot4I8Packed. `problem`: the call's sizes, when known. Pure: the plan tests call it with the
 * H200's capabilities.
 */
export function int8GemmChoice(caps: Int8GemmDevice, problem?: Int8GemmProblem,
    forced: Int8GemmKernel | null = forcedInt8Gemm): Int8GemmChoice {
  const config = int8TensorCoreConfig(caps.subgroupMatrixConfigs);
  const limit = caps.maxComputeWorkgroupStorageSize;
  const whyNot = !caps.subgroups ? `subgroups are off: ${caps.reason}` :
    !config ? `no i8×i8→i32 16×16×32 subgroup-matrix config among ${JSON.stringify(caps.subgroupMatrixConfigs)}` :
    caps.subgroupSize !== 32 ? `the kernels are laid out for subgroups of 32 and this device's size is ` +
      `${caps.subgroupSize || 'not fixed'}` : '';
  const fits = (k: Int8GemmKernel) => int8GemmWorkgroupBytes(k) <= limit;
  const memory = (k: Int8GemmKernel) => `'${k}' needs ${int8GemmWorkgroupBytes(k)} bytes of workgroup memory and ` +
    `the device allows ${limit}`;
  const resultsFit = (p: Int8GemmProblem) => int8StagedResultsBytes(p) <= caps.maxStorageBufferBindingSize;
  if (forced != null && forced !== 'dot4-i8') {
    if (whyNot) throw new Error(`fusedExperts (webgpu): cannot force the int8 tensor-core GEMM '${forced}': ${whyNot}`);
    if (!fits(forced)) throw new Error(`fusedExperts (webgpu): cannot force the int8 GEMM: ${memory(forced)}`);
    if (isStaged(forced) && problem && !resultsFit(problem)) {
      throw new Error(`fusedExperts (webgpu): cannot force the int8 GEMM '${forced}': its i32 results need ` +
        `${int8StagedResultsBytes(problem)} bytes in one binding and the device allows ` +
        `${caps.maxStorageBufferBindingSize}`);
    }
  }
  if (forced) return {kernel: forced, reason: 'forced by setInt8GemmKernel'};
  if (whyNot) return {kernel: 'dot4-i8', reason: `dot4I8Packed tiles: ${whyNot}`};
  // The others are selectable only: slower where measured (see above).
  const rowsPerExpert = problem && problem.pairs / Math.max(1, Math.min(problem.experts, problem.pairs));
  const few = rowsPerExpert != null && rowsPerExpert < INT8_BLOCKED_MIN_ROWS;
  const quantPass: Int8GemmKernel = 'tensor-core-i8-staged-128-quant-pass';
  if (problem && !few && problem.intermediateSize >= INT8_QUANT_PASS_MIN_INTERMEDIATE && fits(quantPass) &&
      resultsFit(problem)) {
    return {kernel: quantPass, reason: 'i8×i8→i32 subgroup matrices 16×16×32, 128 rows of x staged in workgroup ' +
      'memory for four subgroups of 32 weight rows, i32 results stored straight, w13\'s epilogue in the activation ' +
      `quantizer and w2's as a pass (I ≥ ${INT8_QUANT_PASS_MIN_INTERMEDIATE}, experts average ${INT8_BLOCKED_MIN_ROWS} ` +
      'rows or more)'};
  }
  const kernel: Int8GemmKernel = few ? 'tensor-core-i8-plain-32' : 'tensor-core-i8-plain-64';
  if (!fits(kernel)) return {kernel: 'dot4-i8', reason: `dot4I8Packed tiles: ${memory(kernel)}`};
  return {kernel, reason: 'i8×i8→i32 subgroup matrices 16×16×32, both operands in blocks read from storage ' +
    `through block pointers right before their multiplies, ${few ? 32 : 64} rows × 64 columns per subgroup` +
    (few ? ` (experts average fewer than ${INT8_BLOCKED_MIN_ROWS} rows)` : '')};
}

/** int8GemmChoice for this backend's device. */
export function chooseInt8GemmKernel(backend: WebGPUBackend, problem?: Int8GemmProblem): Int8GemmChoice {
  return int8GemmChoice(webgpuCapabilities(backend), problem);
}

/** Why the int8 path cannot run here at these sizes, or null. */
export function unsupportedInt8OnWebGPU(H: number, I: number): string | null {
  if (!hasDot4I8Packed()) {
    return `fusedExperts on 'webgpu' needs the WGSL language feature packed_4x8_integer_dot_product ` +
        `(dot4I8Packed) for useInt8W8A8, and this browser's navigator.gpu.wgslLanguageFeatures lacks it`;
  }
  const shapes = unsupportedInt8Shapes(H, I);
  return shapes ? `fusedExperts on 'webgpu': ${shapes}` : null;
}

/** What the int8 path needs from the FusedExperts kernel call. */
export interface Int8ExpertsCall {
  backend: WebGPUBackend;
  /** Issues the programs (the backend, or a dispatch-plan recorder). */
  issuer: ProgramIssuer;
  config: Omit<ExpertsInt8Config, 'stage'>;
  path: 'decode' | 'decode-grouped' | 'prefill';
  hiddenStates: TensorInfo;
  topkWeights: TensorInfo;
  /** topkIds, and the expertMap when there is one. */
  ids: TensorInfo[];
  shards: {w13: ExpertProjectionShard[]; w2: ExpertProjectionShard[]};
  /** A temporary the caller disposes after the call. */
  temp: (t: TensorInfo) => TensorInfo;
  /** Runs a program into `out` (float32), checking its storage-buffer count. */
  run: (program: WebGPUProgram, inputs: TensorInfo[], uniforms?: Array<{type: string; data: number[]}>,
    out?: TensorInfo) => TensorInfo;
}

export function runInt8Experts(c: Int8ExpertsCall): TensorInfo {
  const {backend, issuer, config, hiddenStates, topkWeights, ids} = c;
  const T = hiddenStates.shape[0];
  const {topK, hiddenSize: H, intermediateSize: I, numLocalExperts: E, applyRouterWeightOnInput: onInput} = config;
  const P = T * topK;
  // A shard's per-channel scales and biases, and with its own data the bindings the dot4 / one-subgroup GEMMs read.
  const scalesOf = (s: ExpertProjectionShard) => [s.scales!, ...(s.bias ? [s.bias] : [])];
  const parts = (s: ExpertProjectionShard) => [s.data, ...scalesOf(s)];
  const quantize = (x: TensorInfo, weighted: boolean) => c.temp(issuer.runWebGPUProgram(
      new ExpertsInt8QuantProgram(x.shape[0], x.shape[1], weighted), weighted ? [x, topkWeights] : [x], 'int32'));
  const weightsFor = (stage: ExpertsStage) => stage === 'w2' && !onInput ? [topkWeights] : [];
  // One dispatch per weight shard, each handling the pairs (or sorted tiles) of its expert range.
  // `weights`: the shard's bindings as the program reads them (the pipelined GEMMs: its blocked copy's).
  const perShard = (stage: ExpertsStage, out: TensorInfo, make: (s: number, n: number) => [WebGPUProgram, TensorInfo[]],
      weights: (s: ExpertProjectionShard, stage: ExpertsStage) => TensorInfo[] = parts) => {
    let first = 0;
    (stage === 'w13' ? c.shards.w13 : c.shards.w2).forEach((shard, s) => {
      const n = shard.data.shape[0];
      const [program, inputs] = make(s, n);
      c.run(program, [...inputs, ...weights(shard, stage)], [{type: 'int32', data: [first]}], out);
      first += n;
    });
  };
  const w13 = {...config, stage: 'w13' as const};
  const w2 = {...config, stage: 'w2' as const};
  const xq = quantize(hiddenStates, onInput);
  let y: TensorInfo;
  const gemm = c.path === 'prefill' ?
    chooseInt8GemmKernel(backend, {pairs: P, experts: E, hiddenSize: H, intermediateSize: I}).kernel : null;
  if (gemm != null && readsBlocked(gemm)) {
    const blockRows = int8GemmBlockRows(gemm);
    const rows = maxPaddedRows(P, E, blockRows);
    const rowBlocks = Math.ceil(rows / 16);
    const staged = isStaged(gemm);
    const layout = int8PipelinedLayout(H, I, staged ? INT8_STAGED_LAYOUT_SUBGROUPS : 1);
    const align = c.temp(issuer.runWebGPUProgram(new ExpertsAlignProgram({...config, blockRows, lanes: alignLanes(backend)}, P), ids, 'int32'));
    const blockedRows = (q: TensorInfo, stage: ExpertsStage) => c.temp(issuer.runWebGPUProgram(
        new ExpertsInt8BlockedRowsProgram({source: stage === 'w13' ? 'gather' : 'rows', K: stage === 'w13' ? H : I,
          Kp: stage === 'w13' ? layout.Hp : layout.Ip, topK, numLocalExperts: E}, rowBlocks), [q, align], 'int32'));
    // The blocked weights, made once per shard and kept (tensor_core_weights.ts) unless the cache flag is off.
    const blockedWeights = (s: ExpertProjectionShard, stage: ExpertsStage) => {
      const program = new ExpertsInt8WeightsBlockedProgram({stage, hiddenSize: H, intermediateSize: I,
        activation: config.activation, layout}, s.data.shape[0]);
      const {copy, kept} = tensorCoreWeightCopy(backend, [s.data], program.shaderKey, program.outputShape,
          (out) => backend.runWebGPUProgram(program, [s.data], 'int32', undefined, out));
      if (!kept) c.temp(copy);
      return [copy, ...scalesOf(s)];
    };
    const tiles = (n: number) => Math.ceil(P / blockRows) + n;
    const xb = blockedRows(xq, 'w13');
    y = c.temp(issuer.makeTensorInfo([P, H], 'float32'));
    if (staged) {
      // The staged GEMM: each stage's i32 results of every shard in one int32 tensor (int8GemmChoice made sure it
      // fits a binding), then w13's epilogue in the activation quantizer and w2's as a pass, per shard (its scales
      // and biases): the act rows never stored in f32.
      const straightResults = (stage: ExpertsStage, input: TensorInfo) => {
        const results = c.temp(issuer.makeTensorInfo([rows, int8StagedResultColumns(stage, layout)], 'int32'));
        const Gemm = bothStaged(gemm) ?
          (stage === 'w13' ? ExpertsW13Int8BothStagedGemmProgram : ExpertsW2Int8BothStagedGemmProgram) :
          (stage === 'w13' ? ExpertsW13Int8StagedGemmProgram : ExpertsW2Int8StagedGemmProgram);
        perShard(stage, results, (s, n) => [new Gemm(stage === 'w13' ? w13 : w2, results.shape, tiles(n), layout),
          [input, align]], (s, st) => blockedWeights(s, st).slice(0, 1));
        return results;
      };
      const results13 = straightResults('w13', xb);
      const aq = c.temp(issuer.makeTensorInfo([rows, int8RowWords(I)], 'int32'));
      perShard('w13', aq, () => [new ExpertsInt8StagedActQuantProgram(w13, rows, layout), [results13, xb, align]],
        scalesOf);
      const ab = blockedRows(aq, 'w2');
      const results2 = straightResults('w2', ab);
      perShard('w2', y, (s, n) => [new ExpertsW2Int8StagedEpilogueProgram(w2, y.shape, tiles(n), layout),
        [results2, ab, align, ...weightsFor('w2')]], scalesOf);
    } else {
      const act = c.temp(issuer.makeTensorInfo([rows, I], 'float32'));
      perShard('w13', act, (s, n) => [new ExpertsW13Int8PipelinedGemmProgram(w13, [rows, I], tiles(n), blockRows,
        layout), [xb, align]], blockedWeights);
      const ab = blockedRows(quantize(act, false), 'w2');
      perShard('w2', y, (s, n) => [new ExpertsW2Int8PipelinedGemmProgram(w2, [P, H], tiles(n), blockRows, layout),
        [ab, align, ...weightsFor('w2')]], blockedWeights);
    }
  } else if (gemm != null) {
    const blockRows = int8GemmBlockRows(gemm);
    const rows = maxPaddedRows(P, E, blockRows);
    const align = c.temp(issuer.runWebGPUProgram(new ExpertsAlignProgram({...config, blockRows, lanes: alignLanes(backend)}, P), ids, 'int32'));
    const act = c.temp(issuer.makeTensorInfo([rows, I], 'float32'));
    const tiles = (n: number) => Math.ceil(P / blockRows) + n;
    const gemmProgram = (stage: ExpertsStage, shape: number[], n: number): WebGPUProgram => {
      const cfg = stage === 'w13' ? w13 : w2;
      if (gemm === 'tensor-core-i8') {
        return new (stage === 'w13' ? ExpertsW13Int8TensorCoreGemmProgram : ExpertsW2Int8TensorCoreGemmProgram)(
            cfg, shape, tiles(n));
      }
      return new (stage === 'w13' ? ExpertsW13Int8GemmProgram : ExpertsW2Int8GemmProgram)(cfg, shape, tiles(n));
    };
    perShard('w13', act, (s, n) => [gemmProgram('w13', [rows, I], n), [xq, align]]);
    const aq = quantize(act, false);
    y = c.temp(issuer.makeTensorInfo([P, H], 'float32'));
    perShard('w2', y, (s, n) => [gemmProgram('w2', [P, H], n), [aq, align, ...weightsFor('w2')]]);
  } else {
    const grouped = c.path === 'decode-grouped';
    const head = grouped ?
      [c.temp(issuer.runWebGPUProgram(new ExpertsAlignProgram({...config, blockRows: 1, lanes: alignLanes(backend)}, P), ids, 'int32'))] : ids;
    const act = c.temp(issuer.makeTensorInfo([P, I], 'float32'));
    perShard('w13', act, (s, n) => [new ExpertsW13Int8GemvProgram(w13, P, n, grouped), [xq, ...head]]);
    const aq = quantize(act, false);
    y = c.temp(issuer.makeTensorInfo([P, H], 'float32'));
    perShard('w2', y, (s, n) => [new ExpertsW2Int8GemvProgram(w2, P, n, grouped), [aq, ...head, ...weightsFor('w2')]]);
  }
  const combine = new ExpertsCombineProgram(config, T, {splits: 1});
  return issuer.runWebGPUProgram(combine, [y, ...ids], 'float32');
}

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
import {ExpertsW13Int8TensorCoreSharedGemmProgram, ExpertsW2Int8TensorCoreSharedGemmProgram,
  int8SharedTileBytes} from './experts_int8_tc_shared_webgpu';
import {ExpertsInt8BlockedRowsProgram, ExpertsInt8WeightsBlockedProgram, ExpertsW13Int8PipelinedGemmProgram,
  ExpertsW2Int8PipelinedGemmProgram, int8PipelinedLayout, int8PipelinedWorkgroupBytes} from './experts_int8_tc_pipelined_webgpu';
import {ExpertsInt8StagedActQuantProgram, ExpertsW13Int8StagedEpilogueProgram, ExpertsW13Int8StagedGemmProgram,
  ExpertsW2Int8StagedEpilogueProgram, ExpertsW2Int8StagedGemmProgram, INT8_STAGED_LAYOUT_SUBGROUPS, INT8_STAGED_TILE,
  int8StagedResultColumns, Int8StagedResults, int8StagedWorkgroupBytes} from './experts_int8_tc_staged_webgpu';
import {WebGPUCapabilities, webgpuCapabilities} from './capabilities';
import {tensorCoreWeightCopy} from './tensor_core_weights';

/**
 * The int8 prefill GEMMs:
 *   'tensor-core-i8-pipelined-64', 'tensor-core-i8-pipelined-32'
 *                    experts_int8_tc_pipelined_webgpu.ts: the f16 'pipelined' layout in i8 (both operands in 16×32
 *                    blocks read from storage, one 64-k step loaded ahead, one subgroup computing 64 or 32 rows × 64
 *                    columns, the weights' blocked copy kept between calls); the default from 2026-12-04 (Mixtral
 *                    M = 4096 on the H200: 16.6 ms, 174 TOPS) until 'tensor-core-i8-plain-64' beat it; selectable;
 *   'tensor-core-i8-plain-64', 'tensor-core-i8-plain-32'
 *                    the same programs with each k block loaded right before its multiplies (blockedLoop without
 *                    prefetch, as the f16 'plain' variants: 210-212 against 193-198 TFLOP/s for the f16 pipelined
 *                    loop on the plain-GEMM probe), operands read through block pointers (the int8 plain loop: 299
 *                    TOPS on that probe, the pipelined one 213) over a trip count the compiler knows (blockedLoop's
 *                    stepsPerTile: 197 → 256 TOPS at Mixtral M = 4096 on an H100); the default: 64 rows where
 *                    experts average INT8_BLOCKED_MIN_ROWS rows or more (and the quant-pass kernel below does not
 *                    run), 32 where they average fewer (see there);
 *   'tensor-core-i8-plain-96'
 *                    the plain loop on 96-row tiles (6 × 4 results): 10 blocks loaded per 24 multiplies against 8
 *                    per 16, as the f16 'plain-96'; selectable only: 179 TOPS at Mixtral M = 4096 on an H100 against
 *                    plain-64's 197;
 *   'tensor-core-i8-plain-64x128'
 *                    'tensor-core-i8-plain-64' with two subgroups side by side per workgroup, as the f16
 *                    '64x128' variants (blocks the two load alike can be L1 hits); selectable only: ties plain-64;
 *   'tensor-core-i8-plain-96x128'
 *                    both: two 96-row subgroups side by side; selectable only: 182 TOPS, as plain-96;
 *   'tensor-core-i8-plain-64x256', 'tensor-core-i8-staggered-64x256', 'tensor-core-i8-pipelined-64x256'
 *                    four subgroups side by side: in step, each one k block ahead of the one before (the plain
 *                    loop), and staggered over the prefetching loop (the f16 'staggered-64x256''s loop);
 *                    selectable only: the staggered two lose everywhere on an H100 (2026-12-06, GPU time, bit-equal
 *                    to the cpu reference; bench/results/2026-12-06-h100-grouped-trimmed-ab.log): Mixtral M = 4096
 *                    14.0 and 15.2 ms against plain-64's 11.2 (w2 6.6 and 4.9 against 3.6), Qwen3 M = 4096 2.63 and
 *                    3.25 against 2.26; plain-64x256 not yet timed;
 *   'tensor-core-i8-grouped-64'
 *                    'tensor-core-i8-plain-64' with its row tiles launched 16 at a time before the next columns
 *                    (groupedGridSnippet: Mixtral M = 4096's w13 has 448 column tiles, each reading all of x again in
 *                    x-major order); selectable only: on an H100 (the same run) ahead at DeepSeek-V3 TP8 M = 4096
 *                    (3.46 against plain-64's 3.64 ms), level at Qwen3 M = 4096 (2.27 against 2.26), behind at
 *                    Mixtral M = 4096 (11.93 against 11.21: w13 7.63 against 6.90; x-major order's 32 MiB of i8 x
 *                    fits the H100's 50 MiB L2, so sweeping it again per column costs little);
 *   'tensor-core-i8-staged-128'
 *                    experts_int8_tc_staged_webgpu.ts: four subgroups share 128 rows of x staged in workgroup memory,
 *                    each multiplying them by its own 32 weight rows streamed from storage two blocks ahead (the
 *                    blocked operands of the plain kernels); on the plain-GEMM probe 361 TOPS against the plain
 *                    loop's 295 (an H100), but slower in the layer everywhere measured (an H100, 2026-12-06, GPU
 *                    time, bit-equal to the cpu reference; bench/results/2026-12-06-h100-int8-check-staged.log):
 *                    Mixtral M = 4096 13.13 ms against plain-64's 11.01 (w13 8.47 against 6.90), Qwen3 2.86
 *                    against 2.20, DeepSeek-V3 TP8 4.78 against 3.52. Neither the launch order nor 8 experts'
 *                    weights slow the probe's loop (tc_probe --round22); what the layer's kernel adds is its
 *                    epilogue (8 staged passes, 16 barriers of four subgroups). Selectable only (its forms below
 *                    that store the results straight win where I is large);
 *   'tensor-core-i8-staged-128-epilogue-pass'
 *                    the same GEMM storing its i32 results straight from the subgroups into an int32 tensor of
 *                    int8StagedResultColumns (the probe's stores: on an H200 the staged epilogue's passes cost the
 *                    probe 18%, 1.335 → 1.573 ms, f16 48%; tc_probe --round23), and the epilogue as its own pass
 *                    over them (ExpertsInt8StagedEpilogueProgram, int8Epilogue's expressions, bit-equal); where that
 *                    tensor would exceed a binding, the in-kernel epilogue. Selectable only: on an H100 (2026-12-07, GPU time,
 *                    bit-equal; bench/results/2026-12-07-h100-int8-check-epilogue-pass.log) Mixtral M = 4096 9.87 ms
 *                    against plain-64's 11.06, but behind the quant-pass form below everywhere;
 *   'tensor-core-i8-staged-128-two-buffers'
 *                    the in-kernel epilogue with its 16-row blocks staged in two buffers taken in turn: one barrier
 *                    of the four subgroups a block, not two (8 KiB more workgroup memory). Selectable only: level with
 *                    'tensor-core-i8-staged-128' everywhere (the same run: Mixtral M = 4096 13.10 ms against 13.10;
 *                    the probe's form too, tc_probe --round24): the barriers are not what the staging costs;
 *   'tensor-core-i8-staged-128-quant-pass'
 *                    'tensor-core-i8-staged-128-epilogue-pass' with w13's pass fused into the activation quantizer
 *                    (ExpertsInt8StagedActQuantProgram: the f32 act rows, 0.53 GB at Mixtral M = 4096, neither
 *                    written nor read back); the default where INT8_QUANT_PASS_MIN_INTERMEDIATE says (the same run:
 *                    Mixtral M = 4096 9.54 ms, 302 TOPS, against plain-64's 11.06; M = 256 1.36 against 1.56);
 *   'tensor-core-i8-shared-128', 'tensor-core-i8-shared-64'
 *                    experts_int8_tc_shared_webgpu.ts: i8×i8→i32 subgroup matrices, four subgroups per workgroup
 *                    sharing 128- or 64-row × 128-column i8 tiles in workgroup memory (the f16 'shared' layout);
 *                    Bit-equal to dot4 on the H200 but slower than one subgroup everywhere measured (2026-12-03,
 *                    GPU time: Mixtral M = 4096 28.0 ms against 21.0, Qwen3 M = 4096 22.6 against 3.4;
 *                    bench/results/2026-12-03-h200-int8-check-shared.log), with the tiles then filled by word
 *                    stores (16-byte stores since, not yet timed): selectable (setInt8GemmKernel), not chosen;
 *   'tensor-core-i8' experts_int8_tc_webgpu.ts: the same matrices, one subgroup per workgroup (32 × 64 tiles of
 *                    workgroup memory): the default where experts average fewer than INT8_BLOCKED_MIN_ROWS rows
 *                    until 'tensor-core-i8-plain-32' beat it there (see INT8_BLOCKED_MIN_ROWS); selectable only
 *                    (Mixtral M = 4096 on the H200: 21.2 ms, 136 TOPS);
 *   'dot4-i8'        experts_int8_webgpu.ts: dot4I8Packed tiles, everywhere the int8 path runs.
 * Removed after measuring: 'tensor-core-i8-fitted-64', 'tensor-core-i8-plain-64' with the f16 'fitted-64x256''s
 * copies of the loop for tails, lost everywhere its 64-row tiles are chosen, also where tiles are full (an H100,
 * 2026-12-06, GPU time: Mixtral M = 4096 13.15 against 11.38 ms, Qwen3 3.07 against 2.27, DeepSeek-V3 TP8 5.02
 * against 3.64; bench/results/2026-12-06-h100-int8-fitted-ab.log): the plain loop's copies are not scheduled as its
 * one loop is, where the f16 prefetching loop's are. So were 'tensor-core-i8-staged-grouped-128' and
 * '-staged-rowwise-128', 'tensor-core-i8-staged-128' with its row tiles launched 8 at a time before the next columns,
 * or each across all columns (the probe's order): Mixtral M = 4096 12.48 and 13.22 ms against 13.16 and plain-64's
 * 11.08, Qwen3 2.62 and 2.61 against 2.86 and 2.19, DeepSeek-V3 TP8 4.61 and 4.53 against 4.79 and 3.51 (an H100,
 * 2026-12-06, GPU time, bit-equal; bench/results/2026-12-06-h100-int8-check-staged-orders.log).
 */
export type Int8GemmKernel = 'tensor-core-i8-pipelined-64' | 'tensor-core-i8-pipelined-32' |
  'tensor-core-i8-shared-128' | 'tensor-core-i8-shared-64' | 'tensor-core-i8' | 'dot4-i8' |
  'tensor-core-i8-plain-64' | 'tensor-core-i8-plain-32' | 'tensor-core-i8-plain-96' | 'tensor-core-i8-plain-64x128' |
  'tensor-core-i8-plain-96x128' | 'tensor-core-i8-plain-64x256' | 'tensor-core-i8-staggered-64x256' |
  'tensor-core-i8-pipelined-64x256' | 'tensor-core-i8-grouped-64' | 'tensor-core-i8-staged-128' |
  'tensor-core-i8-staged-128-epilogue-pass' | 'tensor-core-i8-staged-128-two-buffers' |
  'tensor-core-i8-staged-128-quant-pass';
export const INT8_GEMM_KERNELS: Int8GemmKernel[] = ['tensor-core-i8-pipelined-64', 'tensor-core-i8-pipelined-32',
  'tensor-core-i8-shared-128', 'tensor-core-i8-shared-64', 'tensor-core-i8', 'dot4-i8', 'tensor-core-i8-plain-64',
  'tensor-core-i8-plain-32', 'tensor-core-i8-plain-96', 'tensor-core-i8-plain-64x128', 'tensor-core-i8-plain-96x128',
  'tensor-core-i8-plain-64x256', 'tensor-core-i8-staggered-64x256', 'tensor-core-i8-pipelined-64x256',
  'tensor-core-i8-grouped-64', 'tensor-core-i8-staged-128', 'tensor-core-i8-staged-128-epilogue-pass',
  'tensor-core-i8-staged-128-two-buffers', 'tensor-core-i8-staged-128-quant-pass'];

/**
 * The kernels of experts_int8_tc_pipelined_webgpu.ts (both operands in blocks read from storage): rows per tile,
 * whether the k loop loads one step ahead (blockedLoop's prefetch), reads through block pointers, and how many
 * subgroups a workgroup puts side by side along the columns (default 1).
 */
const BLOCKED_KERNELS: Partial<Record<Int8GemmKernel, {blockRows: number; prefetch: boolean; blockPointers: boolean;
    subgroupsN?: number; kStagger?: boolean; groupRows?: number}>> = {
  'tensor-core-i8-pipelined-64': {blockRows: 64, prefetch: true, blockPointers: false},
  'tensor-core-i8-pipelined-32': {blockRows: 32, prefetch: true, blockPointers: false},
  // Block pointers: the plain int8 loop 258 → 299 TOPS on the plain-GEMM probe, the pipelined one unchanged
  // (bench/results/2026-12-05-h200-tc-probe-round12.log).
  'tensor-core-i8-plain-64': {blockRows: 64, prefetch: false, blockPointers: true},
  'tensor-core-i8-plain-32': {blockRows: 32, prefetch: false, blockPointers: true},
  'tensor-core-i8-plain-96': {blockRows: 96, prefetch: false, blockPointers: true},
  'tensor-core-i8-plain-64x128': {blockRows: 64, prefetch: false, blockPointers: true, subgroupsN: 2},
  'tensor-core-i8-plain-96x128': {blockRows: 96, prefetch: false, blockPointers: true, subgroupsN: 2},
  // Four subgroups side by side, in step or each one k block ahead of the one before (the f16 'staggered-64x256').
  'tensor-core-i8-plain-64x256': {blockRows: 64, prefetch: false, blockPointers: true, subgroupsN: 4},
  'tensor-core-i8-staggered-64x256': {blockRows: 64, prefetch: false, blockPointers: true, subgroupsN: 4, kStagger: true},
  // The f16 default's loop in i8: four staggered subgroups, each step's blocks loaded one step ahead.
  'tensor-core-i8-pipelined-64x256': {blockRows: 64, prefetch: true, blockPointers: true, subgroupsN: 4, kStagger: true},
  // The default 'tensor-core-i8-plain-64' launched 16 row tiles at a time (groupedGridSnippet).
  'tensor-core-i8-grouped-64': {blockRows: 64, prefetch: false, blockPointers: true, groupRows: 16},
};
const isPipelined = (k: Int8GemmKernel) => BLOCKED_KERNELS[k] != null;
/**
 * The kernels with x staged in workgroup memory (experts_int8_tc_staged_webgpu.ts; the blocked operands too): how
 * each one's results leave the GEMM.
 */
const STAGED_KERNELS: Partial<Record<Int8GemmKernel, Int8StagedResults>> = {
  'tensor-core-i8-staged-128': 'epilogue',
  'tensor-core-i8-staged-128-two-buffers': 'epilogue-two-buffers',
  'tensor-core-i8-staged-128-epilogue-pass': 'straight',
  'tensor-core-i8-staged-128-quant-pass': 'straight',
};
const isStaged = (k: Int8GemmKernel) => STAGED_KERNELS[k] != null;
/** The kernels that read blocked rows and the weights' blocked copy (experts_int8_tc_pipelined_webgpu.ts's). */
const readsBlocked = (k: Int8GemmKernel) => isPipelined(k) || isStaged(k);

/** Whether the blocked kernel `k` loads each k step's blocks one step ahead ('pipelined') or not ('plain'). */
export function int8PrefetchesBlocks(k: Int8GemmKernel): boolean {
  return BLOCKED_KERNELS[k]?.prefetch ?? false;
}

/** Whether the blocked kernel `k` reads its operands as arrays of 512-byte blocks (blockedLoop's blockPointers). */
export function int8LoadsBlockPointers(k: Int8GemmKernel): boolean {
  return BLOCKED_KERNELS[k]?.blockPointers ?? false;
}

/** Whether the blocked kernel `k`'s subgroups walk k staggered (blockedLoop's kStagger). */
export function int8StaggersK(k: Int8GemmKernel): boolean {
  return BLOCKED_KERNELS[k]?.kStagger ?? false;
}

/** Row tiles the blocked kernel `k` launches at a time before the next columns (groupedGridSnippet), or 0. */
export function int8GroupedRowTiles(k: Int8GemmKernel): number {
  return BLOCKED_KERNELS[k]?.groupRows ?? 0;
}

/** The subgroups side by side along a blocked kernel's workgroup columns (1 for every other kernel). */
export function int8SubgroupsN(k: Int8GemmKernel): number {
  return BLOCKED_KERNELS[k]?.subgroupsN ?? 1;
}

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
  return BLOCKED_KERNELS[kernel]?.blockRows ?? (isStaged(kernel) ? INT8_STAGED_TILE.rows :
    kernel === 'tensor-core-i8-shared-128' ? 128 :
    kernel === 'tensor-core-i8-shared-64' ? 64 : kernel === 'tensor-core-i8' ? INT8_TC_BLOCK_ROWS : INT8_GEMM_BLOCK_ROWS);
}

/** Workgroup memory each subgroup-matrix kernel declares (0 for dot4: it is not limited by it here). */
export function int8GemmWorkgroupBytes(kernel: Int8GemmKernel): number {
  return isPipelined(kernel) ? int8PipelinedWorkgroupBytes(int8GemmBlockRows(kernel), int8SubgroupsN(kernel)) :
    // The epilogue-pass kernel's GEMM declares less, but it runs its epilogue in the kernel where results do not fit.
    isStaged(kernel) ? int8StagedWorkgroupBytes(STAGED_KERNELS[kernel] === 'straight' ? 'epilogue' : STAGED_KERNELS[kernel]) :
    kernel === 'tensor-core-i8-shared-128' ? int8SharedTileBytes(128) :
    kernel === 'tensor-core-i8-shared-64' ? int8SharedTileBytes(64) :
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
 * The staged epilogue-pass kernels' largest i32 results tensor (w13's or w2's, every row padded to 128), in bytes:
 * where it exceeds a binding they cannot store their results straight.
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
  if (forced != null && forced !== 'dot4-i8') {
    if (whyNot) throw new Error(`fusedExperts (webgpu): cannot force the int8 tensor-core GEMM '${forced}': ${whyNot}`);
    if (!fits(forced)) throw new Error(`fusedExperts (webgpu): cannot force the int8 GEMM: ${memory(forced)}`);
  }
  if (forced) return {kernel: forced, reason: 'forced by setInt8GemmKernel'};
  if (whyNot) return {kernel: 'dot4-i8', reason: `dot4I8Packed tiles: ${whyNot}`};
  // The others are selectable only: slower where measured (see above).
  const rowsPerExpert = problem && problem.pairs / Math.max(1, Math.min(problem.experts, problem.pairs));
  const few = rowsPerExpert != null && rowsPerExpert < INT8_BLOCKED_MIN_ROWS;
  const quantPass: Int8GemmKernel = 'tensor-core-i8-staged-128-quant-pass';
  if (problem && !few && problem.intermediateSize >= INT8_QUANT_PASS_MIN_INTERMEDIATE && fits(quantPass) &&
      int8StagedResultsBytes(problem) <= caps.maxStorageBufferBindingSize) {
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
  const parts = (s: ExpertProjectionShard) => [s.data, s.scales!, ...(s.bias ? [s.bias] : [])];
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
    const subgroupsN = int8SubgroupsN(gemm);
    const staged = isStaged(gemm);
    const layout = int8PipelinedLayout(H, I, staged ? INT8_STAGED_LAYOUT_SUBGROUPS : subgroupsN);
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
      return [copy, s.scales!, ...(s.bias ? [s.bias] : [])];
    };
    const tiles = (n: number) => Math.ceil(P / blockRows) + n;
    const prefetch = int8PrefetchesBlocks(gemm), blockPointers = int8LoadsBlockPointers(gemm);
    const act = c.temp(issuer.makeTensorInfo([rows, I], 'float32'));
    const xb = blockedRows(xq, 'w13');
    // The staged kernel with its epilogue as a pass: the i32 results of every shard in one int32 tensor, then the
    // pass per shard (its scales and biases). Where that tensor would exceed a binding, the in-kernel epilogue.
    const pass = STAGED_KERNELS[gemm] === 'straight' && int8StagedResultsBytes({pairs: P, experts: E, hiddenSize: H,
      intermediateSize: I}) <= webgpuCapabilities(backend).maxStorageBufferBindingSize;
    const straightResults = (stage: ExpertsStage, input: TensorInfo) => {
      const results = c.temp(issuer.makeTensorInfo([rows, int8StagedResultColumns(stage, layout)], 'int32'));
      const Gemm = stage === 'w13' ? ExpertsW13Int8StagedGemmProgram : ExpertsW2Int8StagedGemmProgram;
      perShard(stage, results, (s, n) => [new Gemm(stage === 'w13' ? w13 : w2, results.shape, tiles(n), layout,
        'straight'), [input, align]], (s, st) => blockedWeights(s, st).slice(0, 1));
      return results;
    };
    const scalesOf = (s: ExpertProjectionShard) => [s.scales!, ...(s.bias ? [s.bias] : [])];
    const epiloguePass = (stage: ExpertsStage, input: TensorInfo, out: TensorInfo, head: TensorInfo[]) => {
      const results = straightResults(stage, input);
      const Epilogue = stage === 'w13' ? ExpertsW13Int8StagedEpilogueProgram : ExpertsW2Int8StagedEpilogueProgram;
      perShard(stage, out, (s, n) => [new Epilogue(stage === 'w13' ? w13 : w2, out.shape, tiles(n), layout),
        [results, input, align, ...head]], scalesOf);
    };
    // The staged GEMM with its epilogue in the kernel (the epilogue-pass kernel where its results would not fit).
    const inKernel = STAGED_KERNELS[gemm] === 'straight' ? 'epilogue' : STAGED_KERNELS[gemm];
    // 'quant-pass': w13's epilogue in the activation quantizer, the act rows never stored.
    const quantPass = pass && gemm === 'tensor-core-i8-staged-128-quant-pass';
    let aq: TensorInfo | null = null;
    if (quantPass) {
      const results = straightResults('w13', xb);
      aq = c.temp(issuer.makeTensorInfo([rows, int8RowWords(I)], 'int32'));
      perShard('w13', aq, () => [new ExpertsInt8StagedActQuantProgram(w13, rows, layout), [results, xb, align]], scalesOf);
    } else if (pass) {
      epiloguePass('w13', xb, act, []);
    } else {
      perShard('w13', act, (s, n) => [staged ? new ExpertsW13Int8StagedGemmProgram(w13, [rows, I], tiles(n), layout,
          inKernel) :
        new ExpertsW13Int8PipelinedGemmProgram(w13, [rows, I], tiles(n), blockRows, layout, prefetch, blockPointers,
          subgroupsN, int8StaggersK(gemm), int8GroupedRowTiles(gemm)),
        [xb, align]], blockedWeights);
    }
    const ab = blockedRows(aq ?? quantize(act, false), 'w2');
    y = c.temp(issuer.makeTensorInfo([P, H], 'float32'));
    if (pass) {
      epiloguePass('w2', ab, y, weightsFor('w2'));
    } else {
      perShard('w2', y, (s, n) => [staged ? new ExpertsW2Int8StagedGemmProgram(w2, [P, H], tiles(n), layout,
          inKernel) :
        new ExpertsW2Int8PipelinedGemmProgram(w2, [P, H], tiles(n), blockRows, layout, prefetch, blockPointers,
          subgroupsN, int8StaggersK(gemm), int8GroupedRowTiles(gemm)),
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
      if (gemm === 'tensor-core-i8-shared-128' || gemm === 'tensor-core-i8-shared-64') {
        const Shared = stage === 'w13' ? ExpertsW13Int8TensorCoreSharedGemmProgram :
          ExpertsW2Int8TensorCoreSharedGemmProgram;
        return new Shared(cfg, shape, tiles(n), blockRows as 64 | 128);
      }
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

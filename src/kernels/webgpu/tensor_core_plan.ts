/**
 * The CPU side of the f16 tensor-core prefill GEMMs (issue 11): which variant runs, why one is refused,
 * the padded layouts the storage variants read, and their grid sizes. Pure functions of shapes, attrs and
 * the capability report, so test/tensor_core_plan.test.ts checks them where no GPU has subgroup matrices.
 *
 * Variants (all f16 operands, f32 accumulation on 16×16×16 subgroup matrices, one 32-lane subgroup per
 * workgroup because Tint requires workgroup-uniform subgroup-matrix offsets, unless they derive from
 * @builtin(subgroup_id): the variants with subgroups side by side):
 *   'workgroup-tiles'  experts_gemm_tc_webgpu.ts: the 32 lanes convert each 32×32 x tile and 64×32 weight
 *                      tile (any format, through dequant_wgsl.ts) to f16 in workgroup memory, then 8 MMAs.
 *                      On the H200 the tile loads, not the MMAs, were the limit (README, 2026-12-03).
 *   'storage-32', 'storage-64'
 *                      experts_gemm_tc_storage_webgpu.ts: both operands f16 in storage, read by
 *                      subgroupMatrixLoad straight from the storage buffers (no workgroup tiles, no barriers
 *                      in the k loop); 32 or 64 rows × 64 columns per subgroup (2×4 or 4×4 f32 results).
 *                      x is gathered once into expert-sorted f16 rows (experts_gather_f16_webgpu.ts), w13's
 *                      epilogue writes the activation as f16 rows for w2, and the weights are read as f16
 *                      where they are stored as f16; any other format is first dequantized into an f16 copy
 *                      of the shard (experts_weights_f16_webgpu.ts), per call for now.
 *
 *   (removed 2026-12-07, after every measurement since 2026-12-03 put them behind the pipelined variants below)
 *   'shared-64', 'shared-128': four subgroups sharing f16 tiles of x and the weights in workgroup memory (107
 *                      TFLOP/s on the H200's plain-GEMM probe; Mixtral M = 4096 31.7 ms against pipelined-64's
 *                      16.8); 'blocked-64', 'blocked-128': the same with the weights' copy in 16×16 blocks read from
 *                      storage (152 TFLOP/s on the probe; 34.9 ms in the prefill). Logs and numbers:
 *                      docs/tensor-cores.md; the code: git history (experts_gemm_tc_shared_webgpu.ts).
 *
 *   'pipelined-32', 'pipelined-64' (defaults: see DEFAULT_TENSOR_CORE_VARIANT)
 *                      experts_gemm_tc_storage_webgpu.ts with both operands in 16×16 blocks of 512 contiguous
 *                      bytes (x16 by the gather, act16 by w13's epilogue, the weights by their copy, kept between
 *                      calls): one subgroup per workgroup, 32 or 64 rows × 64 columns, each 32-k step's blocks
 *                      loaded one step ahead of their multiplies, no workgroup memory in the k loop. 198 TFLOP/s
 *                      on the plain-GEMM probe (warm clocks) against 161 for the best workgroup-memory kernel;
 *                      in the expert prefill Mixtral M = 4096 16.8 ms against shared-128's 31.7.
 *
 *   'staggered-64x128' 'pipelined-64' with two subgroups per workgroup side by side along the columns (64 rows ×
 *                      128 columns, PIPELINED_WIDE_TILE), the second's k walk one block ahead of the first's,
 *                      wrapping (ExpertsTensorCoreStorageConfig.kStagger): round 15's 1 × 2 with lag 1 reached 224
 *                      against 214 TFLOP/s for one subgroup on an H100's plain-GEMM probe, where in step (round
 *                      14) the two tie. Subgroup-dependent offsets come from @builtin(subgroup_id) (./device.ts
 *                      `// moe-main-ids`). The default where the four-subgroup variants are not (DEFAULT_STAGGERED).
 *   'staggered-32x256' four of 'pipelined-32''s 32 × 64 subgroups side by side (32 rows × 256 columns), subgroup s
 *                      one k block ahead of subgroup s − 1, so x's row blocks serve four subgroups (round 15's 1 × 4
 *                      with a lag of 2 blocks: 227 against 224 TFLOP/s for 1 × 2 on an H100's probe), for experts of
 *                      fewer than 64 rows, where it is the default (SMALL_ROWS_STAGGERED). Its four staged epilogue
 *                      blocks need 16 KiB and more of workgroup memory (storageWorkgroupBytes).
 *   'grouped-64x256'   four 64-row subgroups staggered alike (64 rows × 256 columns), launched 16 row tiles at a
 *                      time before the next columns (groupedGridSnippet: x-major order reads all of x from memory
 *                      again for each column tile, 112 times in Mixtral M = 4096's w13). The default where the
 *                      shapes and the workgroup memory allow (see DEFAULT_TENSOR_CORE_VARIANT).
 *   'fitted-64x256'    'grouped-64x256' where a tile whose last 16-row blocks are padding (an expert's tail) runs a
 *                      copy of the loop and epilogue over its live row blocks (1, 2 or 3 of 4), chosen by one
 *                      uniform branch per tile, outside the loop: Mixtral M = 256's 11 row tiles hold 8 experts'
 *                      56-74 rows, three of them tails of 6-10 rows that multiply and load a whole 64-row tile's x
 *                      blocks. The default from FITTED_MIN_ROWS rows an expert.
 * Removed after measuring (2026-12-05/07; the code in git history, the logs in bench/results/): each 16-k step's
 * blocks loaded right before their multiplies ('plain-32', 'plain-64': 210 against 198 TFLOP/s on the H200's
 * plain-GEMM probe, but behind the prefetching loop in the layer: Mixtral M = 256 2.22 against 1.71 ms on the H200,
 * -h200-tensor-core-check-merged-copy.log), 96-row tiles ('plain-96', 'plain-96x128': 170 against 210 TFLOP/s,
 * -h100-tensor-core-check-variants.log), two subgroups side by side in step ('pipelined-64x128', 'plain-64x128':
 * ties one subgroup, 209.0 against 209.8), and four staggered launched in x-major order ('staggered-64x256',
 * replaced by 'grouped-64x256': Mixtral M = 4096 12.15 against 11.75 ms, -h100-grouped-trimmed-ab.log).
 * Tiles that skipped the multiplies, staging and stores of their row blocks of padding only, behind uniform
 * branches ('trimmed-64x256', 2026-12-06), were removed: slower everywhere on an H100, also where no block is
 * padding (Mixtral M = 4096 16.1 against 12.1 ms, M = 256 1.71 against 1.46;
 * bench/results/2026-12-06-h100-grouped-trimmed-ab.log). So was 'fitted-64x512' (eight subgroups side by side,
 * staging their results in two turns of four): slower than 'fitted-64x256' at every M = 4096 on an H100 (Mixtral
 * 12.16 against 11.74 ms, Qwen3 2.09 against 2.02, DeepSeek-V3 TP8 3.47 against 3.35) and than 'grouped-64x256' at
 * Mixtral M = 256 (1.450 against 1.434; bench/results/2026-12-06-h100-wide-ab.log).
 *
 * Why a copy rather than a workgroup-memory dequant tile for the right operand: the GEMM then has one shape
 * for every format (both operands from storage, no barrier in the k loop), and the profile separates the
 * dequantization (the copy's own line) from the GEMM, while the device check's f16-weight run measures exactly
 * what a per-layer copy made once would give. Making it once needs an owner for the copy's lifetime (the
 * layer, or a weight-preparation call) that FusedExperts' dispatch does not have today.
 */
import type {Activation} from '../../kernel_names';
import type {WeightFormat} from '../../quant/format';
import type {ExpertsStage} from './experts_gemv_webgpu';

export type TensorCoreVariant = 'workgroup-tiles' | 'storage-32' | 'storage-64' | 'pipelined-32' | 'pipelined-64' |
  'staggered-64x128' | 'staggered-32x256' | 'grouped-64x256' | 'fitted-64x256';

/**
 * What each variant is: its program family (experts_gemm_tc_webgpu.ts 'tiles', _storage_ 'storage' and
 * 'pipelined': x16, act16 and the weights' copy in 16×16 blocks read through block pointers, each step's blocks
 * loaded one step ahead), rows per tile (the align program pads every expert to a multiple of it), and of the
 * pipelined ones how many subgroups a workgroup puts side by side along the columns (tensorCoreSubgroupsN; default
 * 1, and above 1 they walk k staggered: staggersK), the row tiles launched at a time (groupedRowTiles) and whether
 * tails run on their live row blocks (fitsRowBlocks).
 */
const VARIANTS: Record<TensorCoreVariant, {family: 'tiles' | 'storage' | 'pipelined'; blockRows: number;
    subgroupsN?: number; groupRows?: number; fitRowBlocks?: boolean}> = {
  'workgroup-tiles': {family: 'tiles', blockRows: 32},
  'storage-32': {family: 'storage', blockRows: 32},
  'storage-64': {family: 'storage', blockRows: 64},
  'pipelined-32': {family: 'pipelined', blockRows: 32},
  'pipelined-64': {family: 'pipelined', blockRows: 64},
  'staggered-64x128': {family: 'pipelined', blockRows: 64, subgroupsN: 2},
  'staggered-32x256': {family: 'pipelined', blockRows: 32, subgroupsN: 4},
  'grouped-64x256': {family: 'pipelined', blockRows: 64, subgroupsN: 4, groupRows: 16},
  'fitted-64x256': {family: 'pipelined', blockRows: 64, subgroupsN: 4, groupRows: 16, fitRowBlocks: true},
};
export const TENSOR_CORE_VARIANTS = Object.keys(VARIANTS) as TensorCoreVariant[];

/** The staggered variants with half the subgroups side by side (less workgroup memory), for tensorCoreChoice. */
const NARROWER: Partial<Record<TensorCoreVariant, TensorCoreVariant>> = {
  'staggered-32x256': 'pipelined-32', 'grouped-64x256': 'staggered-64x128',
  'fitted-64x256': 'staggered-64x128',
};

/** The variants that run experts_gemm_tc_storage_webgpu.ts (one subgroup, both operands from storage). */
export function isStorageProgramVariant(v: TensorCoreVariant): boolean {
  return VARIANTS[v].family === 'storage' || VARIANTS[v].family === 'pipelined';
}

/**
 * The variants whose left operand (gathered x, act16) is in 16×16 blocks too, read with the weights' blocks
 * one 32-k step ahead of the multiplies (experts_gemm_tc_storage_webgpu.ts, TensorCoreLayout.blockedRows).
 */
export function isPipelinedVariant(v: TensorCoreVariant): boolean {
  return VARIANTS[v].family === 'pipelined';
}

/** Of the pipelined variants, the subgroups side by side along a workgroup's columns (64 columns each). */
export function tensorCoreSubgroupsN(v: TensorCoreVariant): number {
  return VARIANTS[v].subgroupsN ?? 1;
}

/** Row tiles the variant launches at a time before the next columns (ExpertsTensorCoreStorageConfig.groupRows), or 0. */
export function groupedRowTiles(v: TensorCoreVariant): number {
  return VARIANTS[v].groupRows ?? 0;
}

/**
 * Whether a tile whose last row blocks are padding runs the k loop over its live row blocks only
 * (ExpertsTensorCoreStorageConfig.fitRowBlocks).
 */
export function fitsRowBlocks(v: TensorCoreVariant): boolean {
  return VARIANTS[v].fitRowBlocks ?? false;
}

/**
 * Whether the variant's subgroup s walks k s blocks ahead of the first (ExpertsTensorCoreStorageConfig.kStagger):
 * every variant with subgroups side by side.
 */
export function staggersK(v: TensorCoreVariant): boolean {
  return tensorCoreSubgroupsN(v) > 1;
}

/**
 * The variant used when none is forced: the first of DEFAULT_STAGGERED whose workgroups' columns divide H and I
 * (then they pad the weights' copy no more than one subgroup's, and the copy is the one 'pipelined-32' reads: the
 * same layout), else 'pipelined-64'; where experts average fewer than PIPELINED_64_MIN_ROWS rows (less padding per
 * expert) the first of SMALL_ROWS_STAGGERED that way, and from FITTED_MIN_ROWS 'fitted-64x256' where it divides them;
 * tensorCoreChoice takes a narrower one where workgroup memory is short.
 * grouped-64x256 against staggered-64x256 on an H100 (2026-12-06, one call, GPU time;
 * bench/results/2026-12-06-h100-grouped-trimmed-ab.log): Mixtral M = 4096 11.75 against 12.15 ms (246 against 238
 * TFLOP/s; w13 7.67 against 7.94, w2 3.87 against 3.99), M = 256 1.459 against 1.459; Qwen3 M = 4096 2.14 against
 * 2.31, M = 256 0.70 against 0.73; DeepSeek-V3 TP8 M = 4096 3.45 against 3.62, M = 256 0.84 against 0.84.
 * staggered-64x256 against staggered-64x128 on an H100 (2026-12-05, one call, GPU time;
 * bench/results/2026-12-05-h100-staggered-64x256.log): Mixtral M = 4096 12.15 against 12.63 ms (238 against 229
 * TFLOP/s), M = 256 1.43 against 1.68; Qwen3 M = 4096 2.30 against 2.57; DeepSeek-V3 TP8 M = 4096 3.61 against 3.88.
 * staggered-64x128 against pipelined-64 on an H100 (2026-12-05,
 * one call, GPU time; bench/results/2026-12-05-h100-staggered.log): Mixtral M = 4096 12.66 against 13.73 ms
 * (228 against 210 TFLOP/s), M = 256 1.70 against 1.74; Qwen3 M = 4096 2.61 against 2.81; DeepSeek-V3 TP8 M = 4096
 * 3.92 against 4.54. Before it, pipelined-64 was the fastest on the H200 (2026-12-03, GPU time, float32
 * weights, their blocked f16 copy kept between calls): M = 4096 Qwen3 2.96 ms, DeepSeek-V3 TP8 5.18, Mixtral
 * 16.8 against shared-128's 5.45, 9.17, 31.7; at M = 64 and 256 pipelined-32 wins where experts get 8-16 rows
 * (Qwen3 M = 256 0.56 against 0.78 ms), pipelined-64 at 64 (Mixtral M = 256 2.27 against 2.38);
 * bench/results/2026-12-03-h200-tensor-core-check-pipelined*.log.
 */
export const DEFAULT_STAGGERED: TensorCoreVariant[] = ['grouped-64x256', 'staggered-64x128'];
export const DEFAULT_TENSOR_CORE_VARIANT: TensorCoreVariant = DEFAULT_STAGGERED[0];
export const PIPELINED_64_MIN_ROWS = 64;
/**
 * Below PIPELINED_64_MIN_ROWS rows an expert: 'staggered-32x256' where its workgroups' columns divide H and I, else
 * 'pipelined-32'. On an H100 (2026-12-06, two calls, GPU time; bench/results/2026-12-06-h100-rows-ab.log):
 * Mixtral M = 64 1.084 against 1.192 ms, Qwen3 M = 64 0.562 against 0.610, M = 256 0.572 against 0.621,
 * DeepSeek-V3 TP8 M = 64 0.587 against 0.741, M = 256 0.705 against 0.839. ('fitted-64x256' ties it there:
 * 1.084, 0.537, 0.557, 0.578, 0.770.)
 */
export const SMALL_ROWS_STAGGERED: TensorCoreVariant[] = ['staggered-32x256', 'pipelined-32'];
/**
 * From this many rows an expert (two or more row tiles each), 'fitted-64x256' where its columns divide H and I: the
 * tails' copies of the loop then pay for themselves. On an H100 (2026-12-06, two calls, GPU time,
 * bench/results/2026-12-06-h100-rows-ab.log): Qwen3 M = 4096 (256 rows an expert) 2.022 against grouped-64x256's
 * 2.133 ms, DeepSeek-V3 TP8 M = 4096 (128) 3.354 against 3.445, Mixtral M = 4096 (1024) 11.73 against 11.75; but
 * Mixtral M = 256 (64 rows: one full tile and a tail of 6-10 rows an expert, its time in streaming the weights)
 * 1.471 against 1.439, so not below.
 */
export const FITTED_MIN_ROWS = 128;

let forcedVariant: TensorCoreVariant | null = null;

/** The variant forced by setTensorCoreVariant, or null (part of a dispatch plan's key). */
export function forcedTensorCoreVariant(): TensorCoreVariant | null {
  return forcedVariant;
}

/** Forces the tensor-core variant (benchmarks, the device check); null restores the automatic choice. */
export function setTensorCoreVariant(variant: TensorCoreVariant | null): void {
  if (variant != null && !TENSOR_CORE_VARIANTS.includes(variant)) {
    throw new Error(`setTensorCoreVariant: variant must be one of ${TENSOR_CORE_VARIANTS.join(', ')}, got ${variant}`);
  }
  forcedVariant = variant;
}

/** The forced variant, else the default for `rowsPerExpert` (pairs per used expert, when known) and H, I. */
export function tensorCoreVariant(rowsPerExpert: number | undefined, H: number, I: number): TensorCoreVariant {
  if (forcedVariant != null) return forcedVariant;
  // Whole wide workgroups of columns: then the copy's padding (and w2's sorted y) is what one subgroup's would be.
  const whole = (v: TensorCoreVariant) => H % tensorCoreTileShape(v).w2Columns === 0 && I % tensorCoreTileShape(v).w13Columns === 0;
  if (rowsPerExpert != null && rowsPerExpert < PIPELINED_64_MIN_ROWS) return SMALL_ROWS_STAGGERED.find(whole) ?? 'pipelined-32';
  if (rowsPerExpert != null && rowsPerExpert >= FITTED_MIN_ROWS && whole('fitted-64x256')) return 'fitted-64x256';
  return DEFAULT_STAGGERED.find(whole) ?? 'pipelined-64';
}

/** Rows per tile of each variant (the align program pads every expert to a multiple of it). */
export function tensorCoreBlockRows(variant: TensorCoreVariant): number {
  return VARIANTS[variant].blockRows;
}

/**
 * What the f16 layouts must be multiples of for a storage variant: the k step of its loop, and
 * the columns one workgroup computes (w13: act columns, each a gate and an up row; w2: h columns).
 */
export interface TensorCoreTileShape {
  kStep: number;
  w13Columns: number;
  w2Columns: number;
}

export const STORAGE_TILE: TensorCoreTileShape = {kStep: 16, w13Columns: 32, w2Columns: 64};
export const PIPELINED_TILE: TensorCoreTileShape = {kStep: 32, w13Columns: 32, w2Columns: 64};
/**
 * The pipelined tile of `subgroupsN` subgroups side by side (1, 2 or 4): a workgroup's columns, to which the
 * weights' copy is padded.
 */
export function pipelinedTile(subgroupsN: number): TensorCoreTileShape {
  return {kStep: PIPELINED_TILE.kStep, w13Columns: PIPELINED_TILE.w13Columns * subgroupsN,
    w2Columns: PIPELINED_TILE.w2Columns * subgroupsN};
}

/** Two pipelined subgroups side by side. */
export const PIPELINED_WIDE_TILE: TensorCoreTileShape = pipelinedTile(2);

/**
 * Workgroup memory of a storage-program variant (experts_gemm_tc_storage_webgpu.ts): each subgroup's staged
 * 16-row block (4 f32 results), wgTile and wgN0, and w2's per-row pair and weight (epilogueRows) at most.
 */
export function storageWorkgroupBytes(variant: TensorCoreVariant): number {
  return 4 * 256 * 4 * tensorCoreSubgroupsN(variant) + 16 + 4 + 2 * 4 * tensorCoreBlockRows(variant);
}

export function tensorCoreTileShape(variant: TensorCoreVariant): TensorCoreTileShape {
  return isPipelinedVariant(variant) ? pipelinedTile(tensorCoreSubgroupsN(variant)) : STORAGE_TILE;
}

export const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** WGSL: the half index of element (row, k) of a [rows, Kp] f16 matrix in 16×16 blocks (u32 expressions). */
export function blockedRowsIndex(row: string, k: string, Kp: number): string {
  return `(((${row}) / 16u * ${Kp / 16}u + (${k}) / 16u) * 256u + (${row}) % 16u * 16u + (${k}) % 16u)`;
}

/**
 * Where a storage variant's weights come from, per projection:
 *   'direct':  the shard's own data, an f16 format without scales read as array<f16> (its words are
 *              exactly [E, N, K] halves, format.ts), where K is a multiple of 16 (whole 16-k steps) and N of
 *              the tile's columns (32 gate rows for w13, 64 for w2), so no matrix load leaves the binding;
 *   'copy':    an f16 [E, rows, Kp] copy made by ExpertsWeightsF16Program from any format (dequant_wgsl.ts),
 *              padded with zeros to those multiples and with gate/up de-interleaved.
 */
export type WeightSource = 'direct' | 'copy';

export function weightSource(format: WeightFormat, stage: ExpertsStage, H: number, I: number,
    activation: Activation, tile: TensorCoreTileShape = STORAGE_TILE): WeightSource {
  const plainF16 = format.code === 'f16' && format.groupSize === 0 && format.zero === 0 && !format.hasGIdx;
  if (!plainF16) return 'copy';
  if (stage === 'w13') {
    return H % tile.kStep === 0 && I % tile.w13Columns === 0 && activation !== 'swigluoai' ? 'direct' : 'copy';
  }
  return I % tile.kStep === 0 && H % tile.w2Columns === 0 ? 'direct' : 'copy';
}

/**
 * The f16 layouts of a storage variant. Row strides in halves: x16 [rows, Hp], act16 [rows, Ip].
 * Weights as the GEMM reads them, per expert: `rowsPerExpert` rows of `kStride` halves; gate row i of
 * w13 at row `rowStep`·i, up row i at `upOffset` + `rowStep`·i.
 */
export interface TensorCoreWeightLayout {
  source: WeightSource;
  rowsPerExpert: number;
  kStride: number;
  rowStep: number;
  upOffset: number;
  /**
   * The 'blocked' variants' copy: 16×16 blocks of 512 contiguous bytes, block (r/16, k/16) of an expert at
   * ((r/16)·kStride/16 + k/16)·256 halves, row-major inside, so that a subgroup-matrix load from storage reads
   * one contiguous block (on the H200 this beat staging the weights in workgroup memory: 152 against 107
   * TFLOP/s on a plain GEMM, bench/results/2026-12-03-h200-tc-probe-round3.log). Rows are in the order the
   * GEMM's column tiles take them: w13 per 64 act columns c0.., 128 rows: gate c0..c0+31, up c0..c0+31, gate
   * c0+32..c0+63, up c0+32..; w2 h rows in order, padded to 128.
   */
  blocked?: boolean;
}

export interface TensorCoreLayout {
  Hp: number;
  Ip: number;
  /**
   * The pipelined variants: x16 and act16 in 16×16 blocks as the weights' blocked copy, element (r, k) of
   * [rows, Kp] at ((r/16)·Kp/16 + k/16)·256 + (r%16)·16 + k%16 halves (blockedRowsIndex).
   */
  blockedRows?: boolean;
  w13: TensorCoreWeightLayout;
  w2: TensorCoreWeightLayout;
}

export function tensorCoreLayout(format: WeightFormat, H: number, I: number, activation: Activation,
    tile: TensorCoreTileShape = STORAGE_TILE, blocked = false, blockedRows = false): TensorCoreLayout {
  const Hp = roundUp(H, tile.kStep);
  const Ip = roundUp(I, tile.kStep);
  if (blocked) {
    return {Hp, Ip, ...(blockedRows ? {blockedRows} : {}),
      w13: {source: 'copy', rowsPerExpert: 2 * roundUp(I, tile.w13Columns), kStride: Hp, rowStep: 1, upOffset: 0, blocked},
      w2: {source: 'copy', rowsPerExpert: roundUp(H, tile.w2Columns), kStride: Ip, rowStep: 1, upOffset: 0, blocked}};
  }
  const w13Source = weightSource(format, 'w13', H, I, activation, tile);
  const w2Source = weightSource(format, 'w2', H, I, activation, tile);
  const I32 = roundUp(I, tile.w13Columns);
  return {
    Hp, Ip,
    // 'direct' w13 is never interleaved (weightSource sends swigluoai to the copy, which de-interleaves).
    w13: w13Source === 'direct' ? {source: 'direct', rowsPerExpert: 2 * I, kStride: H, rowStep: 1, upOffset: I} :
      {source: 'copy', rowsPerExpert: 2 * I32, kStride: Hp, rowStep: 1, upOffset: I32},
    w2: w2Source === 'direct' ? {source: 'direct', rowsPerExpert: H, kStride: I, rowStep: 1, upOffset: 0} :
      {source: 'copy', rowsPerExpert: roundUp(H, tile.w2Columns), kStride: Ip, rowStep: 1, upOffset: 0},
  };
}

/** The storage GEMM's grid: row tiles × column tiles × K parts. */
export function tensorCoreStorageDispatch(stage: ExpertsStage, numTiles: number, H: number, I: number, splitK: number,
    tile: TensorCoreTileShape = STORAGE_TILE): [number, number, number] {
  return stage === 'w13' ? [numTiles, Math.ceil(I / tile.w13Columns), 1] :
    [numTiles, Math.ceil(H / tile.w2Columns), splitK];
}

/**
 * A flat grid of `invocations` in workgroups of `workgroup`, folded into x × y (x ≤ maxPerDimension) so that
 * a Mixtral expert's 14.7M weight chunks fit the 65535-per-dimension limit; tfjs's getGlobalIndex()
 * reads it back as (y · x + wx) · workgroup + local.
 */
export function foldedDispatch(invocations: number, workgroup: number, maxPerDimension = 65535): [number, number, number] {
  const groups = Math.max(1, Math.ceil(invocations / workgroup));
  const x = Math.min(groups, maxPerDimension);
  return [x, Math.ceil(groups / x), 1];
}

export interface TensorCoreChoice {
  kernel: 'tensor-core-f16' | 'simt-f32';
  /** The variant that runs (tensor-core only). */
  variant?: TensorCoreVariant;
  reason: string;
}

/** What tensorCoreChoice needs to know of the device (webgpuCapabilities' answer). */
export interface TensorCoreDevice {
  tensorCoreF16: boolean;
  tensorCoreReason: string;
  /** The variants' staged results must fit (webgpuCapabilities reports it). */
  maxComputeWorkgroupStorageSize?: number;
}

/** What tensorCoreChoice needs to know of the call (FusedExpertsAttrs' fields). */
export interface TensorCoreCall {
  hasBias?: boolean;
  activation?: Activation;
  activationQuantGroup?: number;
  /** Pairs per used expert, for the default variant's rows per tile. */
  rowsPerExpert?: number;
}

/**
 * Which prefill GEMM runs, and why (vLLM oracle style). Every weight format, biases and 'swigluoai' run on
 * every variant (the formats through dequant_wgsl.ts); what remains refused is said precisely.
 */
export function tensorCoreChoice(device: TensorCoreDevice, H: number, I: number, call: TensorCoreCall = {},
    variant: TensorCoreVariant = tensorCoreVariant(call.rowsPerExpert, H, I)): TensorCoreChoice {
  if (!device.tensorCoreF16) return {kernel: 'simt-f32', reason: device.tensorCoreReason};
  if (H % 8 !== 0 || I % 8 !== 0) {
    return {kernel: 'simt-f32', reason: `the tensor-core GEMMs read weights 8 k at a time (one dequantized chunk) and ` +
      `H = ${H}, I = ${I}`};
  }
  if (variant !== 'workgroup-tiles' && (call.activationQuantGroup ?? 0) > 0) {
    return {kernel: 'tensor-core-f16', variant: 'workgroup-tiles', reason: `f16 operands, f32 accumulation; ` +
      `'workgroup-tiles' instead of '${variant}': fp8 w8a8 quantizes the f32 activation rows between the GEMMs, ` +
      `and the storage variants keep them as f16`};
  }
  const limit = device.maxComputeWorkgroupStorageSize ?? Infinity;
  if (isPipelinedVariant(variant) && storageWorkgroupBytes(variant) > limit) {
    // Half the subgroups side by side, until their staged blocks fit (2 of them always do: 8.5 KiB of WebGPU's
    // guaranteed 16 KiB).
    let fallback = variant;
    while (storageWorkgroupBytes(fallback) > limit && NARROWER[fallback] != null) fallback = NARROWER[fallback]!;
    return {kernel: 'tensor-core-f16', variant: fallback, reason: `f16 operands, f32 accumulation; '${fallback}' ` +
      `instead of '${variant}': it needs ${storageWorkgroupBytes(variant)} bytes of workgroup memory and the device ` +
      `allows ${limit}`};
  }
  // The default's choice by rows an expert (tensorCoreVariant), said where it made it.
  const byRows = forcedVariant == null && call.rowsPerExpert != null &&
      variant === tensorCoreVariant(call.rowsPerExpert, H, I) ?
    `, for ${Math.round(call.rowsPerExpert)} rows an expert on average` : '';
  return {kernel: 'tensor-core-f16', variant, reason: `f16 operands, f32 accumulation on subgroup matrices ('${variant}'${byRows})`};
}

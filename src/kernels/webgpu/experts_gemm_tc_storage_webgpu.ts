/**
 * Prefill GEMMs on tensor cores with both operands f16 in storage ('storage-32' / 'storage-64' of
 * tensor_core_plan.ts): the problem, epilogues and numerics of ExpertsTensorCoreGemmProgram (f16 operands,
 * f32 accumulation, epilogue in f32), without workgroup-memory tiles: subgroupMatrixLoad reads 16×16
 * blocks straight from the storage buffers, so the k loop has no barrier and no lane converts anything.
 *
 *   x16:    f16 [rows, Kp] expert-sorted rows (w13: ExpertsGatherF16Program's gathered x; w2: w13's act16),
 *           padding rows zero, row stride Kp (a multiple of 16)
 *   w16:    f16 weights as tensor_core_plan.ts's TensorCoreWeightLayout says (the shard's own f16 data, or
 *           ExpertsWeightsF16Program's copy); the 16×16 right matrix of columns n, n+15 and k, k+15 is
 *           column-major in it (weight rows are Wᵀ's columns), stride `rowStep`·kStride
 *   result: w13: act16, f16 [rows, Ip] as i32 words of two halves (pack2x16float), zero for I ≤ i < Ip;
 *           w2:  y [splitK·P, H] f32 by pair, as ExpertsGemmProgram; or without biases (sortedOutput)
 *                y [splitK·rows, H] in sorted row order, the routing weight left to the combine
 *
 * One 32-lane subgroup per workgroup (Tint requires workgroup-uniform subgroup-matrix offsets and uniform
 * control flow around the subgroup-matrix builtins). tfjs copies workgroup_id into a module-scope private
 * variable, which Tint's uniformity analysis takes as non-uniform, as it does anything read from storage:
 * so every offset, and the k loop's bounds, derive only from constants and values read back through
 * workgroupUniformLoad (the tile lookup's wgTile, and wgN0, the first column, from workgroupId.y). With
 * subgroupsN = 2 two subgroups sit side by side, the second 64 columns (w13: 32 act columns) after the first, an
 * offset from the subgroup id that ./device.ts passes to main() (`// moe-main-ids`).
 * Each subgroup computes BM = 32 or 64 rows × 64 columns (w13: 32 gate + the 32 matching up
 * columns, so act(gate)·up pairs result c with c + 2) as BM/16 × 4 f32 result matrices; per 16 k it loads BM/16 left and 4 right matrices for 4·BM/16 MMAs.
 * The epilogue stages one 16-row block's 4 results in workgroup memory (4 KiB) to apply the activation,
 * bias and routing weight per element.
 *
 * With TensorCoreLayout.blockedRows (the 'pipelined' variants) x16, act16 and the weights are all in 16×16
 * blocks (512 contiguous bytes each), read through block pointers, and the k loop is blockedLoop's prefetching
 * one: 32 k per step, the next step's blocks loaded before the current step's multiplies.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import type {Activation} from '../../kernel_names';
import {activationSnippet, gateUpRows, gemmGridSnippet} from './experts_wgsl';
import type {ExpertsStage} from './experts_gemv_webgpu';
import {STORAGE_TILE, TensorCoreLayout, blockedRowsIndex, pipelinedTile, tensorCoreStorageDispatch} from './tensor_core_plan';

export interface ExpertsTensorCoreStorageConfig {
  stage: ExpertsStage;
  hiddenSize: number;
  intermediateSize: number;
  numLocalExperts: number;
  activation: Activation;
  applyRouterWeightOnInput: boolean;
  /** 32 or 64 rows per workgroup. */
  blockRows: number;
  /**
   * With TensorCoreLayout.blockedRows: subgroups side by side along a workgroup's columns, 1, 2 or 4 (each 64
   * columns; w13: 32 act columns; the layout padded to pipelinedTile(subgroupsN)). Default 1.
   */
  subgroupsN?: number;
  /**
   * With subgroupsN > 1: subgroup s walks the tile's k blocks s blocks ahead of the
   * first (wrapping to the tile's first block at its end), so the row blocks they all load are not asked for by
   * all at once (the 'staggered' variants; blockedLoop's kStagger). Default false.
   */
  kStagger?: boolean;
  /** Row tiles launched this many at a time before the next columns (groupedGridSnippet); default x-major order. */
  groupRows?: number;
  /**
   * With TensorCoreLayout.blockedRows: a tile whose last 16-row blocks hold no pair (an expert's tail: padding
   * sits at the end of its rows) runs a copy of the k loop and epilogue over its live row blocks only, chosen by
   * one uniform branch per tile, outside the loop ('fitted' variants). Both stages must use it: w13 then leaves
   * act16's dead blocks unwritten, and w2 does not read them. Default false.
   */
  fitRowBlocks?: boolean;
  splitK?: number;
  hasBias: boolean;
  layout: TensorCoreLayout;
  /**
   * w2 only, without biases: y [splitK·rows, H] in the align program's sorted row order, each result matrix
   * stored straight from the subgroup (no staging, no barriers, no per-row pair lookup); the combine reads
   * rows through the align output's positions and applies the routing weight (ExpertsCombineProgram
   * sorted). Else y [splitK·P, H] by pair, through stagedEpilogue.
   */
  sortedOutput?: boolean;
}

/**
 * Marks a binding for ./device.ts to declare by its elements (tfjs declares it from its dtype, i32): 'f16',
 * array<f16>; 'f16-blocks' / 'i32-blocks', arrays of 512-byte blocks (array<array<f16, 256>>,
 * array<array<i32, 128>>: 16 × 16 f16 or 16 × 32 i8) that blockedLoop loads through block pointers.
 */
export const storageElements = (name: string, elements: 'f16' | 'f16-blocks' | 'i32-blocks') =>
  `// moe-storage-${elements} ${name}`;

/** Where stagedEpilogue's 16-row block is: its first row in the tile, first column, staging offset, lane. */
export interface StagedBlock {
  lane: string;
  /** Offset of the block's 4 staged 16×16 results (row-major each) in `staged`. */
  base: string;
  /** First output column: w13 the act column of result 0 (gate) and 2 (up), w2 the h of result 0. */
  n0: string;
  /** The block's first row within the tile (u32). */
  firstRow: string;
}

/**
 * Whether w2's per-row epilogue inputs (the row's pair and routing weight) are read for the whole tile into
 * workgroup memory after the k loop (epilogueRows), rather than per row inside stagedEpilogue's row loop, two
 * dependent storage loads a row, 2·BM in a chain per workgroup. Measured on the H200 at M = 4096 (tf.time, w2):
 * faster where K is short, DeepSeek-V3 TP8 (K = 256) 2.0 → 1.6 ms and Qwen3 (768) 1.11 → 0.97, but slower at
 * Mixtral's 14336, 2.8 → 3.4-3.5 ms a shard, whether the rows are read before or after the k loop (cause not
 * found; bench/results/2026-12-04-h200-epilogue-ab.log, -tensor-core-check-gather.log, -tensor-core-check-rows.log).
 * So only up to EPILOGUE_ROWS_MAX_K, between the measured points.
 */
export const EPILOGUE_ROWS_MAX_K = 4096;

export function prefetchesEpilogueRows(c: ExpertsTensorCoreStorageConfig): boolean {
  return c.stage === 'w2' && c.layout.Ip <= EPILOGUE_ROWS_MAX_K;
}

/**
 * The workgroup arrays and the fill of prefetchesEpilogueRows, by `threads` invocations; empty otherwise (and
 * for w13, whose rows need no lookup). `fill` must run before the barrier that precedes the epilogue.
 */
export function epilogueRows(c: ExpertsTensorCoreStorageConfig, blockRows: number, threads: number):
    {decl: string; fill: string} {
  if (!prefetchesEpilogueRows(c)) return {decl: '', fill: ''};
  const outScale = !c.applyRouterWeightOnInput;
  return {
    decl: `var<workgroup> tilePair : array<i32, ${blockRows}>;   // the tile's sorted pairs (-1: padding)
      ${outScale ? `var<workgroup> tileScale : array<f32, ${blockRows}>;   // their routing weights` : ''}`,
    fill: `for (var m = localIndex; m < ${blockRows}u; m += ${threads}u) {
          let pair = align[${c.numLocalExperts + 1} + rowStart + i32(m)];
          tilePair[m] = pair;
          ${outScale ? 'tileScale[m] = select(0.0, topkWeights[max(pair, 0)], pair >= 0);' : ''}
        }`,
  };
}

/**
 * The storage variants' epilogue for one 16-row block whose 4 results are staged in workgroup
 * memory: w13 applies the bias and activation to gate/up pairs (result c with c + 2) and writes act16 as
 * f16 pairs; w2 applies the bias and routing weight and writes y rows by pair. Run by the 32 lanes of the
 * subgroup that computed the block.
 */
export function stagedEpilogue(c: ExpertsTensorCoreStorageConfig, b: StagedBlock): string {
  const {stage, hiddenSize: H, intermediateSize: I, numLocalExperts: E} = c;
  const w13 = stage === 'w13';
  const Ip = c.layout.Ip;
  const splitK = w13 ? 1 : (c.splitK ?? 1);
  const outScale = !w13 && !c.applyRouterWeightOnInput;
  const rowsKept = prefetchesEpilogueRows(c);
  const gu = gateUpRows(c.activation, I);
  const bias = (row: string) => c.hasBias ? ` + bias0[${row}]` : '';
  const at = (cc: string, r: string) => `staged[${b.base} + (${cc} / 16u) * 256u + ${r} * 16u + ${cc} % 16u]`;
  return w13 ? `
            // 16 rows × 16 words (32 act columns, two halves a word): 8 words per lane.
            for (var q = 0u; q < 8u; q++) {
              let idx = q * 32u + ${b.lane};
              let r = idx / 16u;
              let c = 2u * (idx % 16u);
              let i = ${b.n0} + i32(c);
              if (i < ${Ip}) {
                var v = vec2<f32>(0.0);
                for (var d = 0u; d < 2u; d++) {
                  let cc = c + d;
                  let ii = min(i + i32(d), ${I - 1});
                  let g = ${at('cc', 'r')}${bias(`e * ${2 * I} + ${gu.gate('ii')}`)};
                  let u = ${at('(32u + cc)', 'r')}${bias(`e * ${2 * I} + ${gu.gate('ii')} + ${gu.upOffset}`)};
                  v[d] = select(0.0, expertGlu(g, u), i + i32(d) < ${I});
                }
                let row = rowStart + i32(${b.firstRow} + r);
                result[${c.layout.blockedRows ? `i32(${blockedRowsIndex('u32(row)', 'u32(i)', Ip)} / 2u)` :
                  `row * ${Ip / 2} + i / 2`}] = bitcast<i32>(pack2x16float(v));
              }
            }` : `
            for (var r = 0u; r < 16u; r++) {
              let pair = ${rowsKept ? `tilePair[${b.firstRow} + r]` : `align[${E + 1} + rowStart + i32(${b.firstRow} + r)]`};
              if (pair >= 0) {
                let s = ${!outScale ? '1.0' : rowsKept ? `tileScale[${b.firstRow} + r]` : 'topkWeights[pair]'};
                let outRow = ${splitK > 1 ? `part * (uniforms.outShape.x / ${splitK}) + pair` : 'pair'};
                for (var half = 0u; half < 2u; half++) {
                  let c = half * 32u + ${b.lane};
                  let h = ${b.n0} + i32(c);
                  if (h < ${H}) {
                    var v = ${at('c', 'r')};
                    ${c.hasBias ? `if (${splitK > 1 ? 'part == 0' : 'true'}) { v += bias0[e * ${H} + h]; }` : ''}
                    result[outRow * ${H} + h] = v * s;
                  }
                }
              }
            }`;
}

export class ExpertsTensorCoreStorageGemmProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [32, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsTensorCoreStorageConfig;

  /** Inputs: x16, align, topkWeights? (w2 with the routing weight on the output), w16, bias? */
  constructor(c: ExpertsTensorCoreStorageConfig, outputShape: number[], numTiles: number) {
    if (c.blockRows !== 32 && c.blockRows !== 64) {
      throw new Error(`storage tensor-core GEMM: blockRows 32 or 64, got ${c.blockRows}`);
    }
    this.c = c;
    const w13 = c.stage === 'w13';
    const WN = c.subgroupsN ?? 1;
    if (c.sortedOutput && (w13 || c.hasBias || c.hiddenSize % (WN > 1 ? 64 * WN : 16) !== 0)) {
      throw new Error('storage tensor-core GEMM: sorted output is for w2 without biases, H a multiple of 16 ' +
        `(of ${64 * WN} with ${WN} subgroups side by side)`);
    }
    if (WN !== 1 && !((WN === 2 || WN === 4) && c.layout.blockedRows)) {
      throw new Error(`storage tensor-core GEMM: subgroupsN 1, or 2 or 4 with blocked rows, got ${WN}`);
    }
    if (c.kStagger && WN === 1) {
      throw new Error('storage tensor-core GEMM: kStagger needs subgroups side by side');
    }
    if (c.fitRowBlocks && !c.layout.blockedRows) {
      throw new Error('storage tensor-core GEMM: fitRowBlocks needs blocked rows');
    }
    this.workgroupSize = [32 * WN, 1, 1];
    const splitK = w13 ? 1 : (c.splitK ?? 1);
    this.outputShape = outputShape;
    this.dispatch = tensorCoreStorageDispatch(c.stage, numTiles, c.hiddenSize, c.intermediateSize, splitK,
        c.layout.blockedRows ? pipelinedTile(WN) : STORAGE_TILE);
    const usesWeights = !w13 && !c.applyRouterWeightOnInput && !c.sortedOutput;
    this.variableNames = ['x16', 'align', ...(usesWeights ? ['topkWeights'] : []), 'w16', ...(c.hasBias ? ['bias0'] : [])];
    this.variableComponents = this.variableNames.map(() => 1);
    const L = w13 ? c.layout.w13 : c.layout.w2;
    this.shaderKey = `moeExpertsGemmTcStorage_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.numLocalExperts}_` +
        `${w13 ? c.activation : ''}_${c.applyRouterWeightOnInput}_${c.blockRows}_${splitK}_${c.hasBias}_` +
        `${c.layout.Hp}_${c.layout.Ip}_${L.source}_${L.rowsPerExpert}_${L.kStride}_${L.rowStep}_${L.upOffset}_` +
        `${c.layout.blockedRows ?? false}_${c.sortedOutput ?? false}_${WN}_` +
        `${c.kStagger ?? false}_${c.groupRows ?? 0}_${c.fitRowBlocks ?? false}`;
  }

  getUserCode(): string {
    const {stage, hiddenSize: H, intermediateSize: I, numLocalExperts: E, blockRows: BM} = this.c;
    const w13 = stage === 'w13';
    const L = w13 ? this.c.layout.w13 : this.c.layout.w2;
    const Kp = w13 ? this.c.layout.Hp : this.c.layout.Ip;   // x16's row stride = the weights' kStride
    if (L.kStride !== Kp) throw new Error(`storage tensor-core GEMM: weight k stride ${L.kStride} != x stride ${Kp}`);
    const Ip = this.c.layout.Ip;
    const TM = BM / 16;
    const pipelined = this.c.layout.blockedRows ?? false;
    if (pipelined && !L.blocked) throw new Error('pipelined tensor-core GEMM: the weights must be in 16×16 blocks');
    const WN = this.c.subgroupsN ?? 1;
    const kTiles = Kp / (pipelined ? pipelinedTile(WN).kStep : 16);
    const splitK = w13 ? 1 : (this.c.splitK ?? 1);
    const kTilesPerPart = Math.ceil(kTiles / splitK);
    const left = 'subgroup_matrix_left<f16, 16, 16>';
    const right = 'subgroup_matrix_right<f16, 16, 16>';
    const result = 'subgroup_matrix_result<f32, 16, 16>';
    const rows = Array.from({length: TM}, (_, r) => r);
    const cols = [0, 1, 2, 3];
    // First weight row of right matrix c: w13 c = 0, 1 gate blocks, 2, 3 up blocks; w2 h blocks.
    const bRow = (c: number) => w13 ?
      `e * ${L.rowsPerExpert} + ${c >= 2 ? `${L.upOffset} + ` : ''}${L.rowStep} * (n0 + ${16 * (c % 2)})` :
      `e * ${L.rowsPerExpert} + n0 + ${16 * c}`;
    const sorted = this.c.sortedOutput ?? false;
    // Several subgroups: each stages its own 16-row block (4 KiB) at sid · 1024.
    const base = WN > 1 ? 'sid * 1024u' : '0u';
    const epilogue = sorted ? '' : stagedEpilogue(this.c, {lane: 'lane', base, n0: 'n0', firstRow: 'rt * 16u'});
    const tileRows = sorted ? {decl: '', fill: ''} : epilogueRows(this.c, BM, 32 * WN);
    const colsPerSubgroup = w13 ? 32 : 64;
    // Sorted output: part p's rows start at p · rows (rows = outShape.x / splitK); the part comes from the tile's
    // first k step (uniform), not workgroupId.z (a private copy, non-uniform to Tint). Column blocks past H
    // (H not a multiple of 64) are skipped, a uniform condition; with two subgroups H is a multiple of 128 and
    // there is no condition (n0 differs between the subgroups: no store hangs on it).
    const sortedStore = (r: number, c: number) => {
      const store = `subgroupMatrixStore<row_major>(&result, u32(outRow0 + ${16 * r}) * ${H}u + u32(n0 + ${16 * c}), acc${r}${c}, ${H}u);`;
      return WN > 1 ? store : `if (n0 + ${16 * c} < ${H}) { ${store} }`;
    };
    const sortedStores = (rows: number[]) => `
        let outRow0 = ${splitK > 1 ? `(tile.z / ${kTilesPerPart}) * (uniforms.outShape.x / ${splitK}) + ` : ''}rowStart;
        ${rows.flatMap((r) => cols.map((c) => sortedStore(r, c))).join('\n        ')}`;
    // The accumulators, k loop and epilogue of a tile's first rows.length row blocks.
    const tileBody = (rows: number[]) => `
        ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c} : ${result};`)).join('\n        ')}
        ${pipelined ? blockedLoop(rows, cols, true, {x: 'x16', w: 'w16', left, right, block: 256, stride: 16,
          kStagger: this.c.kStagger ? 'sid' : undefined, kStaggerMax: WN - 1,
          aBlock: (r) => `(u32(rowStart) / 16u + ${r}u) * ${Kp / 16 * 256}u`,
          // w13: 32 gate rows then their 32 up rows per 32 act columns, so right matrix 0 starts at row 2·n0.
          bBlock: (c) => `(u32(e * ${L.rowsPerExpert} + ${w13 ? '2 * n0' : 'n0'}) / 16u + ${c}u) * ${Kp / 16 * 256}u`}) : `
        ${rows.map((r) => `let aOff${r} = u32(rowStart + ${16 * r}) * ${Kp}u;`).join('\n        ')}
        ${cols.map((c) => `let bOff${c} = u32(${bRow(c)}) * ${L.kStride}u;`).join('\n        ')}
        for (var kt = tile.z; kt < tile.w; kt++) {
          let k = u32(kt) * 16u;
          ${rows.map((r) => `let a${r} = subgroupMatrixLoad<${left}, row_major>(&x16, aOff${r} + k, ${Kp}u);`).join('\n          ')}
          ${cols.map((c) => `let b${c} = subgroupMatrixLoad<${right}, col_major>(&w16, bOff${c} + k, ${L.rowStep * L.kStride}u);`)
            .join('\n          ')}
          ${rows.flatMap((r) => cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${r}, b${c}, acc${r}${c});`))
            .join('\n          ')}
        }`}
        ${tileRows.fill}

        ${sorted ? sortedStores(rows) : rows.map((r) => `{
          let rt = ${r}u;
          ${cols.map((c) => `subgroupMatrixStore<row_major>(&staged, ${base} + ${c * 256}u, acc${r}${c}, 16u);`).join(' ')}
          workgroupBarrier();
          ${epilogue}
          workgroupBarrier();
        }`).join('\n        ')}`;
    const fit = this.c.fitRowBlocks ?? false;
    return `
      enable f16;
      ${WN > 1 ? 'enable subgroups;' : ''}
      enable chromium_experimental_subgroup_matrix;
      ${storageElements('x16', pipelined ? 'f16-blocks' : 'f16')}
      ${storageElements('w16', pipelined ? 'f16-blocks' : 'f16')}
      ${w13 ? activationSnippet(this.c.activation) : ''}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end 16-k step
      var<workgroup> wgN0 : i32;           // first column (w13: of gate and of up), workgroup-uniform through it
      ${sorted ? '' : `var<workgroup> staged : array<f32, ${4 * 256 * WN}>;   // a subgroup's 16-row block: 4 results, row-major 16×16 each`}
      ${WN > 1 ? '// moe-main-ids' : ''}
      ${tileRows.decl}

      // x16: ${w13 ? 'gathered x' : 'act16'} f16 [rows, ${Kp}]; align: [E+1] offsets then the sorted pairs;
      // w16: f16 ${w13 ? 'w13' : 'w2'} [experts, ${L.rowsPerExpert}, ${L.kStride}]${this.c.hasBias ? `; bias0: [experts, ${w13 ? 2 * I : H}]` : ''};
      // result: ${w13 ? `act16 f16 [rows, ${Ip}] as i32 pairs` : sorted ? 'y [rows, H] in sorted order' : 'y [P, H] by pair'}.
      fn main(${WN > 1 ? 'wid : vec3<u32>, sid : u32, lane : u32' : ''}) {
        // workgroupId is a private copy (non-uniform to Tint): n0 reaches the offsets through wgN0. The tile
        // lookup's workgroupUniformLoad orders this write; the early return before the load below depends
        // on its uniform result only.${WN > 1 ? ' A second subgroup\'s columns follow the first\'s (sid: subgroup-uniform).' : ''}
        ${gemmGridSnippet('w16', BM, kTilesPerPart, kTiles, colsPerSubgroup * WN, this.c.groupRows ?? 0)}
        let n0 = workgroupUniformLoad(&wgN0)${WN > 1 ? ` + i32(sid) * ${colsPerSubgroup}` : ''};
        ${splitK > 1 && !sorted ? `let part = i32(workgroupId.z);   // the epilogue's output rows only` : ''}
        ${WN > 1 ? '' : 'let lane = localIndex;'}
        ${fit ? fittedRowBlocks(rows, E, tileBody) : tileBody(rows)}
      }
    `;
  }
}

/**
 * fitRowBlocks: the tile's live 16-row blocks counted once from the align output (read-only storage
 * at a uniform index: uniform to Tint; padding sits at the end of an expert's rows, so live blocks come first), and
 * one copy of `body` (accumulators, k loop, epilogue) per count, behind a uniform branch outside the loop, so that
 * each loop is as branch-free as the full tile's: branches inside the loop lost 17-30% on an H100 (the removed
 * 'trimmed' variants, bench/results/2026-12-06-h100-grouped-trimmed-ab.log).
 */
function fittedRowBlocks(rows: number[], numLocalExperts: number, body: (rows: number[]) => string): string {
  return `
        let liveBlocks = 1u${rows.slice(1).map((r) =>
          ` + select(0u, 1u, align[${numLocalExperts + 1} + rowStart + ${16 * r}] >= 0)`).join('')};
        ${rows.map((r) => r + 1 < rows.length ? `if (liveBlocks == ${r + 1}u) {${body(rows.slice(0, r + 1))}
        } else ` : `{${body(rows)}
        }`).join('')}`;
}

/** Where a pipelined k loop's operands are (offsets in matrix elements). */
export interface PipelinedOperands {
  /** The bindings and matrix types of the left (rows) and right (weights) operands. */
  x: string;
  w: string;
  left: string;
  right: string;
  /** First block of left matrix r (16 rows) and of right matrix c (16 weight rows), as u32 expressions. */
  aBlock: (r: number) => string;
  bBlock: (c: number) => string;
  /** Elements per block (one matrix: 16 × 16 f16, or 16 × 32 i8) and a block row's stride. */
  block: number;
  stride: number;
  /**
   * Matrix elements in one element of the bindings' arrays (4: i8 in array<i32>; default 1): subgroupMatrixLoad
   * counts offsets and strides in array elements, so the loop divides by it, outside the k loop where it can.
   */
  perElement?: number;
  /**
   * Every tile's k range is exactly this many steps from tile.z (no split-K part shorter than the others): the
   * plain loop then runs a trip count the compiler knows. On an H100's 4096 × 14336 × 4096 GEMM that form of the
   * plain int8 loop reached 297 TOPS against 200 with the bounds known at run time only, f16 200 against 168; the
   * prefetching loop does not care (216 against 214 TFLOP/s; tc_probe --round16,
   * bench/results/2026-12-05-h100-tc-probe-round16.log).
   */
  stepsPerTile?: number;
  /**
   * A u32 expression, the subgroup's index among those side by side, by which this subgroup's walk over the
   * tile's k blocks runs ahead of the tile's order, wrapping to the tile's first block (the prefetching loop only).
   * Subgroups loading the same row blocks then ask for each one block apart: on an H100's plain-GEMM probe 224
   * against 214 TFLOP/s for one subgroup (tc_probe --round15, 1 × 2, lag 1).
   */
  kStagger?: string;
  /**
   * kStagger's largest value (default 1). Above 1 a lag can pass a step's first block beyond the tile's end (and,
   * in a tile of one step, beyond its length), so each lag is first taken modulo the tile's blocks; at 1 only a
   * step's second block can wrap (the text 'staggered-64x128' was timed with).
   */
  kStaggerMax?: number;
}

/**
 * The k loop over operands in blocks (TensorCoreLayout.blockedRows; the int8 blocked GEMM too), 32-k steps over
 * [tile.z, tile.w), two k blocks a step. x and w are arrays of whole blocks (storageElements' '-blocks'), each
 * loaded as `&x[block]` at offset 0: a pointer to one 512-byte element, where robustness clamps the block index, in
 * place of selects on a runtime offset and stride: the f16 prefetching loop 195 → 220 TFLOP/s and the int8 plain
 * loop 258 → 299 TOPS on the H200's 4096 × 14336 × 4096 GEMM (tc_probe --round12,
 * bench/results/2026-12-05-h200-tc-probe-round12.log).
 *
 * prefetch: each step's TM + 4 matrices of both k blocks are loaded one step ahead of their multiplies. On the
 * H200's plain 4096 × 14336 × 4096 f16 GEMM: 198 TFLOP/s, against 98 with the weights row-major, 85 with x
 * row-major, 152 for workgroup-memory x tiles (bench/tc_probe.ts --round5, -tc-probe-round5.log).
 * Without (the int8 GEMM's loop, which needs stepsPerTile): each k block's matrices are loaded right before its
 * multiplies, fewer live registers: 210-212 against 193-198 on the same GEMM in the same runs (-tc-probe-round8.log,
 * -round9-10.log).
 */
export function blockedLoop(rows: number[], cols: number[], prefetch: boolean, o: PipelinedOperands): string {
  const halves = [0, 1];
  const per = o.perElement ?? 1;
  // aBlock / bBlock: the operand's first block index (from a matrix-element offset).
  const at = (arr: string, first: string, kBlock: string) => `&${arr}[${first} + ${kBlock}], 0u`;
  const firstBlock = (expr: string) => `(${expr}) / ${o.block}u`;
  const stride = `${o.stride / per}u`;
  const mmas = (r: number, mma: (c: number) => string) =>
    cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(${mma(c)}, acc${r}${c});`).join('\n          ');
  const firstBlocks = `
        ${rows.map((r) => `let aBlock${r} = ${firstBlock(o.aBlock(r))};`).join('\n        ')}
        ${cols.map((c) => `let bBlock${c} = ${firstBlock(o.bBlock(c))};`).join('\n        ')}`;
  if (!prefetch) {
    if (o.kStagger != null || o.stepsPerTile == null) throw new Error('blockedLoop: the plain loop needs stepsPerTile, unstaggered');
    return `${firstBlocks}
        let kbFirst = u32(tile.z) * 2u;
        for (var j = 0u; j < ${2 * o.stepsPerTile}u; j++) {
          let kb = kbFirst + j;
          ${rows.map((r) => `let a${r} = subgroupMatrixLoad<${o.left}, row_major>(${at(o.x, `aBlock${r}`, 'kb')}, ${stride});`).join('\n          ')}
          ${cols.map((c) => `let b${c} = subgroupMatrixLoad<${o.right}, col_major>(${at(o.w, `bBlock${c}`, 'kb')}, ${stride});`).join('\n          ')}
          ${rows.map((r) => mmas(r, (c) => `a${r}, b${c}`)).join('\n          ')}
        }`;
  }
  // Without kStagger a step's blocks are (step · 2 + h), inline (the text the H200 timed); with it, kb_0 / kb_1
  // below: step · 2 + kStagger, and the next block, wrapped to the tile's first at the tile's end.
  const kBlock = (h: number, step: string) => o.kStagger == null ? `(${step} * 2u + ${h}u)` : `${step}Block${h}`;
  const far = (o.kStaggerMax ?? 1) > 1;
  // lag < the tile's blocks, so one subtraction wraps a step's first block; its second wraps only at the end.
  const lag = o.kStagger == null ? '' : !far ? '' : `
        let kBlocks = u32(tile.w - tile.z) * 2u;
        let kLag = (${o.kStagger}) % kBlocks;`;
  const staggered = (step: string) => o.kStagger == null ? '' : !far ? `
        let ${step}Block0 = ${step} * 2u + ${o.kStagger};
        let ${step}Block1 = select(${step}Block0 + 1u, u32(tile.z) * 2u, ${step}Block0 + 1u == u32(tile.w) * 2u);` : `
        let ${step}Ahead = ${step} * 2u + kLag;
        let ${step}Block0 = select(${step}Ahead, ${step}Ahead - kBlocks, ${step}Ahead >= u32(tile.w) * 2u);
        let ${step}Block1 = select(${step}Block0 + 1u, u32(tile.z) * 2u, ${step}Block0 + 1u == u32(tile.w) * 2u);`;
  const a = (h: number, r: number, step: string) =>
    `subgroupMatrixLoad<${o.left}, row_major>(${at(o.x, `aBlock${r}`, kBlock(h, step))}, ${stride})`;
  const b = (h: number, c: number, step: string) =>
    `subgroupMatrixLoad<${o.right}, col_major>(${at(o.w, `bBlock${c}`, kBlock(h, step))}, ${stride})`;
  return `${firstBlocks}${lag}
        let k0 = u32(min(tile.z, tile.w - 1));${staggered('k0')}
        ${halves.flatMap((h) => rows.map((r) => `var a${h}${r} = ${a(h, r, 'k0')};`)).join(' ')}
        ${halves.flatMap((h) => cols.map((c) => `var b${h}${c} = ${b(h, c, 'k0')};`)).join(' ')}
        for (var kt = tile.z; kt < tile.w; kt++) {
          let nk = u32(min(kt + 1, tile.w - 1));${staggered('nk')}
          ${halves.flatMap((h) => rows.map((r) => `let na${h}${r} = ${a(h, r, 'nk')};`)).join(' ')}
          ${halves.flatMap((h) => cols.map((c) => `let nb${h}${c} = ${b(h, c, 'nk')};`)).join(' ')}
          ${halves.flatMap((h) => rows.map((r) => mmas(r, (c) => `a${h}${r}, b${h}${c}`))).join('\n          ')}
          ${halves.flatMap((h) => rows.map((r) => `a${h}${r} = na${h}${r};`)).join(' ')}
          ${halves.flatMap((h) => cols.map((c) => `b${h}${c} = nb${h}${c};`)).join(' ')}
        }`;
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13TensorCoreStorageGemmProgram extends ExpertsTensorCoreStorageGemmProgram {}
export class ExpertsW2TensorCoreStorageGemmProgram extends ExpertsTensorCoreStorageGemmProgram {}

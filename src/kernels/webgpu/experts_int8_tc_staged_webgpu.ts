/**
 * int8 w8a8 prefill GEMMs on tensor cores with the activation rows staged in workgroup memory: a workgroup of four
 * subgroups takes 128 expert-sorted rows, copies each 64-k step of their blocked rows into workgroup memory (one
 * barrier a step, two buffers, the next step's copy in flight in registers while this one is multiplied), and each
 * subgroup multiplies all 128 rows by its own 32 weight rows (8 × 2 results of 16 × 16), the weight blocks read from
 * storage through block pointers two k blocks ahead of their multiplies.
 *
 * Why this shape: with x off storage, a subgroup's tile is limited by the weight blocks it streams; a tall, narrow
 * 128 × 32 tile loads 2 of them per 16 multiplies where 64 × 64 loads 4 (and 4 x blocks). On an H100's plain
 * 4096 × 14336 × 4096 int8 GEMM: 1.333 ms (361 TOPS) against the plain 64 × 64 loop's 1.631 (295); deeper or
 * shallower weight prefetch, eight subgroups, or both operands staged were slower (bench/tc_probe.ts --round20,
 * bench/results/2026-12-06-h100-tc-probe-round20-tall.log).
 *
 * Why the results leave straight: staged through workgroup memory for an in-kernel epilogue (16 barriers of the
 * four subgroups a tile, or 8 with two buffers), they cost the probe's loop 18% on an H200 (tc_probe --round23) and
 * made the layer's kernel slower than the plain 64-row one (Mixtral M = 4096 13.1 ms against 11.1 on an H100;
 * removed 2026-12-07, see experts_int8_run.ts). Stored straight into an int32 tensor, with w13's epilogue in the
 * activation quantizer (ExpertsInt8StagedActQuantProgram) and w2's as a pass (ExpertsInt8StagedEpilogueProgram),
 * it is the int8 default where I is large.
 *
 * Operands, weights' blocked copy and layout are experts_int8_tc_pipelined_webgpu.ts's (int8PipelinedLayout with
 * two 64-column subgroups' padding: w13 in 64 act columns, w2 in 128 h columns a workgroup). A w13 workgroup's 128
 * weight rows are two groups of 32 gate then 32 up rows; subgroup s takes group s / 2's 16 columns (s % 2): its
 * gate block and the up block two after it. The i32 accumulators are exact and the epilogues are int8Epilogue's
 * expressions (narrow), so the outputs equal the dot4 path's and the cpu reference's bit for bit.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {activationSnippet, gateUpRows, gemmGridSnippet, gemmTileInRegistersSnippet, segmentOwnerSnippet}
  from './experts_wgsl';
import type {ExpertsInt8Config} from './experts_int8_webgpu';
import {int8Dequantized, int8Epilogue} from './experts_int8_tc_webgpu';
import {ExpertsInt8QuantProgram} from './experts_int8_quant_webgpu';
import {blockedRowBlockWords, Int8PipelinedLayout, INT8_PIPELINED_TILE} from './experts_int8_tc_pipelined_webgpu';
import {storageElements} from './experts_gemm_tc_storage_webgpu';

/**
 * Rows per workgroup tile, subgroups, k blocks (of 32) a stage, weight blocks loaded ahead of their multiplies, and
 * row tiles launched at a time before the next columns (groupedGridSnippet). In x-major order each column tile
 * reads all of x again (33.5 MB of int8 rows at Mixtral M = 4096, beside 0.9 GB of i32 results streaming out: most
 * likely not from L2). On an H100, two calls (bench/results/2026-12-07-h100-int8-staged-order-pad.log,
 * -order-depth.log), M = 4096, 8 at a time against x-major: Mixtral 9.13 against 9.52 ms, Qwen3 2.13 against 2.30,
 * DeepSeek-V3 TP8 3.92 against 4.10; 16 at a time 9.18, 2.15, 3.95.
 */
export const INT8_STAGED_TILE = {rows: 128, subgroups: 4, kBlocksPerStage: 2, ahead: 2, groupRows: 8};

/** The layout's padding: two 64-column subgroups' (w13 64 act columns, w2 128 h columns a workgroup). */
export const INT8_STAGED_LAYOUT_SUBGROUPS = 2;

/**
 * The GEMM's workgroup memory: the tile lookup and first column, two buffers of the rows' k blocks (8 row blocks ×
 * 2 × 512 bytes each). Its epilogue pass declares less (the tile lookup, row scales, w2's pairs and weights).
 */
export function int8StagedWorkgroupBytes(): number {
  const t = INT8_STAGED_TILE;
  return 16 + 4 + 2 * (t.rows / 16) * t.kBlocksPerStage * 512;
}

/**
 * The both-staged GEMM's workgroup memory: two buffers each of the tile's 8 row blocks of x and of the workgroup's 8
 * weight block rows, one 32-k block each, every 32-byte row padded to 48 bytes (no tile lookup variables).
 */
export function int8BothStagedWorkgroupBytes(): number {
  const t = INT8_STAGED_TILE;
  return 2 * 2 * (t.rows / 16) * 768;
}

/**
 * The i32 results' columns a row (ExpertsInt8StagedGemmProgram's output): the blocked weights' rows (w13 gate and
 * up of every act column, w2 h, both padded). w13's act column i has its gate at column 32·(i / 16) + i % 16 and
 * its up 16 after it (subgroup s of a workgroup stores gate block then up block at 32·s).
 */
export function int8StagedResultColumns(stage: 'w13' | 'w2', layout: Int8PipelinedLayout): number {
  return stage === 'w13' ? layout.w13Rows : layout.w2Rows;
}

/** The subgroup's first result column (u32 WGSL) in int8StagedResultColumns' layout; `wgN`: the workgroup's first output column. */
function resultColumn(w13: boolean): string {
  return w13 ? '2u * u32(wgN) + sid * 32u' : 'u32(wgN) + sid * 32u';
}

/** The epilogue pass's workgroup arrays: the tile's row scales, w2's pairs and weights. */
function epilogueRowsDecl(c: ExpertsInt8Config): string {
  const {rows: BM} = INT8_STAGED_TILE;
  const w13 = c.stage === 'w13';
  return `var<workgroup> rowScale : array<f32, ${BM}>;
      ${w13 ? '' : `var<workgroup> tilePair : array<i32, ${BM}>;
      var<workgroup> tileWeight : array<f32, ${BM}>;`}`;
}

/** WGSL: the scale of `row` (a u32 expression) from xb, blocked rows of Kp k read as vec4 words (its block row's scales block). */
function blockedRowScale(row: string, Kp: number): string {
  const RV = blockedRowBlockWords(Kp) / 4;
  return `bitcast<f32>(xb[(${row} / 16u) * ${RV}u + ${Kp}u + ${row} % 16u / 4u][${row} % 4u])`;
}

/** Fills epilogueRowsDecl's arrays for the tile at rowStart: the row scales from xb's scales blocks, w2's pairs. */
function epilogueRowsFill(c: ExpertsInt8Config, Kp: number): string {
  const {rows: BM, subgroups: WN} = INT8_STAGED_TILE;
  const w13 = c.stage === 'w13', usesWeights = !w13 && !c.applyRouterWeightOnInput;
  return `for (var m = localIndex; m < ${BM}u; m += ${32 * WN}u) {
          let row = u32(rowStart) + m;
          rowScale[m] = ${blockedRowScale('row', Kp)};
          ${w13 ? '' : `let pair = align[${c.numLocalExperts + 1} + i32(row)];
          tilePair[m] = pair;
          tileWeight[m] = ${usesWeights ? 'select(0.0, topkWeights[max(pair, 0)], pair >= 0)' : '1.0'};`}
        }`;
}

/**
 * What the staged GEMM and its epilogue pass share: a workgroup of four groups of 32 invocations per (128-row tile,
 * output columns of INT8_STAGED_LAYOUT_SUBGROUPS 64-column subgroups), the shard's first expert as a uniform, the
 * shader key's problem and layout.
 */
abstract class Int8StagedTileProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  abstract variableNames: string[];
  abstract variableComponents: number[];
  workgroupSize: [number, number, number] = [32 * INT8_STAGED_TILE.subgroups, 1, 1];
  uniforms = 'firstExpert : i32,';
  protected readonly c: ExpertsInt8Config;
  protected readonly layout: Int8PipelinedLayout;

  constructor(name: string, c: ExpertsInt8Config, outputShape: number[], numTiles: number, layout: Int8PipelinedLayout) {
    const w13 = c.stage === 'w13';
    const columns = (w13 ? INT8_PIPELINED_TILE.w13Columns : INT8_PIPELINED_TILE.w2Columns) * INT8_STAGED_LAYOUT_SUBGROUPS;
    if ((w13 ? layout.w13Rows / 2 : layout.w2Rows) % columns !== 0) {
      throw new Error(`int8 staged GEMM: the layout's ${c.stage} rows are not padded to ${columns} columns`);
    }
    this.c = c;
    this.layout = layout;
    this.outputShape = outputShape;
    this.dispatch = [numTiles, Math.ceil((w13 ? c.intermediateSize : c.hiddenSize) / columns), 1];
    this.shaderKey = `${name}_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.topK}_` +
      `${c.numLocalExperts}_${w13 ? c.activation : ''}_${c.applyRouterWeightOnInput}_${c.hasBias}_` +
      `${layout.Hp}_${layout.Ip}_${layout.w13Rows}_${layout.w2Rows}`;
  }

  abstract getUserCode(): string;
}

/**
 * The staged GEMMs' inputs and output. Inputs: xb (blocked rows, read as vec4 words for the copies), align (built
 * with blockRows 128), wb (the shard's blocked weights, int8PipelinedLayout(H, I, INT8_STAGED_LAYOUT_SUBGROUPS)).
 * Output: the i32 results, int32 [rows, int8StagedResultColumns], for ExpertsInt8StagedActQuantProgram (w13) or
 * ExpertsInt8StagedEpilogueProgram.
 */
abstract class Int8StagedGemmBase extends Int8StagedTileProgram {
  variableNames = ['xb', 'align', 'wb'];

  constructor(name: string, what: string, c: ExpertsInt8Config, outputShape: number[], numTiles: number,
      layout: Int8PipelinedLayout) {
    super(name, c, outputShape, numTiles, layout);
    if (outputShape[1] !== int8StagedResultColumns(c.stage, layout)) {
      throw new Error(`int8 ${what} GEMM: its results need ${int8StagedResultColumns(c.stage, layout)} columns, ` +
        `got ${outputShape[1]}`);
    }
  }
}

export class ExpertsInt8StagedGemmProgram extends Int8StagedGemmBase {
  variableComponents = [4, 1, 1];

  constructor(c: ExpertsInt8Config, outputShape: number[], numTiles: number, layout: Int8PipelinedLayout) {
    super('moeExpertsInt8GemmTcStaged', 'staged', c, outputShape, numTiles, layout);
  }

  getUserCode(): string {
    const c = this.c;
    const w13 = c.stage === 'w13';
    const {rows: BM, subgroups: WN, kBlocksPerStage: SK, ahead: D, groupRows} = INT8_STAGED_TILE;
    const Kp = w13 ? this.layout.Hp : this.layout.Ip;
    const rowsPerExpert = w13 ? this.layout.w13Rows : this.layout.w2Rows;
    const KB = Kp / 32;              // k blocks a block row
    const stages = KB / SK;
    const RV = blockedRowBlockWords(Kp) / 4;   // vec4 words a block row of xb (KB blocks of 32, then the scales' block)
    const RB = BM / 16;              // row blocks a tile
    const threads = 32 * WN;
    const copies = Array.from({length: RB * SK * 32 / threads}, (_, p) => p);
    const left = 'subgroup_matrix_left<i8, 32, 16>';
    const right = 'subgroup_matrix_right<i8, 16, 32>';
    const result = 'subgroup_matrix_result<i32, 16, 16>';
    const rowsT = Array.from({length: RB}, (_, r) => r);
    const cols = [0, 1];
    const ds = Array.from({length: D}, (_, d) => d);
    // Copy p of a lane: vec4 q = li + p·threads of the stage, block row q / (32·SK), vec4 q % (32·SK) of that row's
    // SK contiguous k blocks (in storage and in workgroup memory alike).
    const q = (p: number) => `(localIndex + ${p * threads}u)`;
    const fetch = (p: number, st: string) =>
      `bitcast<vec4<u32>>(xb[aFirst + ${q(p)} / ${32 * SK}u * ${RV}u + (${st}) * ${32 * SK}u + ${q(p)} % ${32 * SK}u])`;
    const put = (p: number, buf: string) =>
      `As[(${buf} * ${RB}u + ${q(p)} / ${32 * SK}u) * ${SK}u + ${q(p)} % ${32 * SK}u / 32u][${q(p)} % 32u] = rA${p};`;
    const b = (cc: number, kb: string) => `subgroupMatrixLoad<${right}, col_major>(&wb[bBlock${cc} + ${kb}], 0u, 8u)`;
    const steps = Array.from({length: SK}, (_, j) => `{
            let nk = min(st * ${SK}u + ${j + D}u, ${KB - 1}u);
            ${cols.map((cc) => `let nb${cc} = ${b(cc, 'nk')};`).join('\n            ')}
            ${rowsT.map((r) => `let a${r} = subgroupMatrixLoad<${left}, row_major>(&As[(buf * ${RB}u + ${r}u) * ${SK}u + ${j}u], 0u, 2u);`).join('\n            ')}
            ${rowsT.flatMap((r) => cols.map((cc) => `acc${r}${cc} = subgroupMatrixMultiplyAccumulate(a${r}, b0${cc}, acc${r}${cc});`)).join('\n            ')}
            ${ds.flatMap((d) => cols.map((cc) => `b${d}${cc} = ${d + 1 < D ? `b${d + 1}${cc}` : `nb${cc}`};`)).join(' ')}
          }`).join('\n          ');
    const columns = int8StagedResultColumns(c.stage, this.layout);
    const stores = rowsT.flatMap((r) => cols.map((cc) => `subgroupMatrixStore<row_major>(&result, ` +
      `(u32(rowStart) + ${16 * r}u) * ${columns}u + ${resultColumn(w13)} + ${16 * cc}u, acc${r}${cc}, ${columns}u);`))
      .join('\n        ');
    // The subgroup's first weight block row (of 16 rows).
    const bRow = w13 ? `(u32(e) * ${rowsPerExpert}u + 2u * u32(wgN)) / 16u + (sid / 2u) * 4u + sid % 2u` :
      `(u32(e) * ${rowsPerExpert}u + u32(wgN)) / 16u + sid * 2u`;
    return `
      enable subgroups;
      enable chromium_experimental_subgroup_matrix;
      // moe-main-ids
      ${storageElements('wb', 'i32-blocks')}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end 64-k step
      var<workgroup> wgN0 : i32;           // first column, workgroup-uniform through it
      var<workgroup> As : array<array<vec4<u32>, 32>, ${2 * RB * SK}>;   // [buffer][row block][k block]: 16 rows × 32 i8

      // xb: ${w13 ? 'gathered x' : 'act'} in blocked rows (${RV} vec4 words a block row); align: [E+1] offsets then the sorted
      // pairs; wb: blocked weights [experts, ${rowsPerExpert}/16, ${KB}] blocks; result: i32 [rows, ${columns}].
      fn main(wid : vec3<u32>, sid : u32, lane : u32) {
        ${gemmGridSnippet('wb', BM, stages, stages, (w13 ? 64 : 128), groupRows)}
        let aFirst = u32(rowStart) / 16u * ${RV}u;   // the tile's first block row, in vec4 words
        let wgN = workgroupUniformLoad(&wgN0);   // the workgroup's first column
        let bFirst = (${bRow}) * ${KB}u;
        ${cols.map((cc) => `let bBlock${cc} = bFirst + ${w13 ? (cc === 0 ? 0 : 2) * KB : cc * KB}u;`).join('\n        ')}
        ${rowsT.flatMap((r) => cols.map((cc) => `var acc${r}${cc} : ${result};`)).join('\n        ')}
        ${copies.map((p) => `var rA${p} = ${fetch(p, '0u')};`).join('\n        ')}
        ${copies.map((p) => put(p, '0u')).join('\n        ')}
        ${ds.flatMap((d) => cols.map((cc) => `var b${d}${cc} = ${b(cc, `${d}u`)};`)).join('\n        ')}
        workgroupBarrier();
        for (var st = 0u; st < ${stages}u; st++) {
          let buf = st % 2u;
          let nst = min(st + 1u, ${stages - 1}u);   // the last step copies itself into the idle buffer, read by no one
          ${copies.map((p) => `rA${p} = ${fetch(p, 'nst')};`).join('\n          ')}
          ${steps}
          ${copies.map((p) => put(p, '(1u - buf)')).join('\n          ')}
          workgroupBarrier();
        }
        ${stores}
      }
    `;
  }
}

/**
 * 'tensor-core-i8-both-staged-128-quant-pass' (selectable; experts_int8_run.ts): ExpertsInt8StagedGemmProgram's
 * tiles, results and epilogues with the weights staged in workgroup memory too. Per 32-k block the tile's 8 row
 * blocks of x and the workgroup's 8 weight block rows (its four subgroups' two each) are copied in with 16-byte
 * copies, each 32-byte row padded to 48 bytes so that the rows a matrix load reads at once meet distinct banks; two
 * buffers, one barrier a block, the copies fetched two blocks ahead; the tile found in registers
 * (gemmTileInRegistersSnippet: main takes every id). On an H100's plain 4096 × 14336 × 4096 int8 GEMM this loop
 * took 1.046 ms (460 TOPS) against the x-staged loop's 1.295 (tc_probe rounds 27-28); in the layer, with the tile
 * through workgroup memory, Mixtral M = 4096 9.32 ms against 9.13 (docs/tensor-cores.md, "a nineteenth session"),
 * and round 31 then found that lookup costing the padded loops 52%. wb is read as vec4 words.
 */
export class ExpertsInt8BothStagedGemmProgram extends Int8StagedGemmBase {
  variableComponents = [4, 1, 4];

  constructor(c: ExpertsInt8Config, outputShape: number[], numTiles: number, layout: Int8PipelinedLayout) {
    super('moeExpertsInt8GemmTcBothStaged', 'both-staged', c, outputShape, numTiles, layout);
  }

  getUserCode(): string {
    const c = this.c;
    const w13 = c.stage === 'w13';
    const {rows: BM, subgroups: WN, groupRows} = INT8_STAGED_TILE;
    const Kp = w13 ? this.layout.Hp : this.layout.Ip;
    const rowsPerExpert = w13 ? this.layout.w13Rows : this.layout.w2Rows;
    const KB = Kp / 32;                          // k blocks, one a stage
    const RV = blockedRowBlockWords(Kp) / 4;     // vec4 words a block row of xb
    const RB = BM / 16, CB = 2 * WN;             // row blocks of x and weight block rows a workgroup
    const threads = 32 * WN;
    const aCopies = Array.from({length: RB * 32 / threads}, (_, p) => p);
    const bCopies = Array.from({length: CB * 32 / threads}, (_, p) => p);
    const rowsT = Array.from({length: RB}, (_, r) => r);
    const cols = [0, 1];
    const columns = int8StagedResultColumns(c.stage, this.layout);
    // Copy p of a lane: vec4 q = li + p·threads of the stage, block q / 32, vec4 q % 32 of that block (16 rows of
    // 32 bytes, 2 vec4 a row: in workgroup memory 3 a row).
    const q = (p: number) => `(li + ${p * threads}u)`;
    const fetchA = (p: number, kb: string) =>
      `bitcast<vec4<u32>>(xb[aFirst + ${q(p)} / 32u * ${RV}u + (${kb}) * 32u + ${q(p)} % 32u])`;
    const fetchB = (p: number, kb: string) =>
      `bitcast<vec4<u32>>(wb[(wBase + ${q(p)} / 32u) * ${KB * 32}u + (${kb}) * 32u + ${q(p)} % 32u])`;
    const put = (X: 'A' | 'B', n: number, p: number, buf: string, v: string) =>
      `${X}s[${buf} * ${n}u + ${q(p)} / 32u][${q(p)} % 32u / 2u * 3u + ${q(p)} % 2u] = ${v};`;
    const puts = (buf: string, prefix: string) => [...aCopies.map((p) => put('A', RB, p, buf, `${prefix}A${p}`)),
      ...bCopies.map((p) => put('B', CB, p, buf, `${prefix}B${p}`))].join('\n          ');
    const fetches = (decl: string, prefix: string, kb: string) => [
      ...aCopies.map((p) => `${decl}${prefix}A${p} = ${fetchA(p, kb)};`),
      ...bCopies.map((p) => `${decl}${prefix}B${p} = ${fetchB(p, kb)};`)].join('\n          ');
    // Subgroup sid's column block cc among the workgroup's weight block rows (the x-staged kernel's bRow, bBlock).
    const slot = (cc: number) => w13 ? `(sid / 2u) * 4u + sid % 2u + ${2 * cc}u` : `sid * 2u + ${cc}u`;
    const left = 'subgroup_matrix_left<i8, 32, 16>';
    const right = 'subgroup_matrix_right<i8, 16, 32>';
    const result = 'subgroup_matrix_result<i32, 16, 16>';
    return `
      enable subgroups;
      enable chromium_experimental_subgroup_matrix;
      // moe-main-ids
      var<workgroup> As : array<array<vec4<u32>, 48>, ${2 * RB}>;   // [buffer][row block]: 16 rows × 32 i8, padded
      var<workgroup> Bs : array<array<vec4<u32>, 48>, ${2 * CB}>;   // [buffer][weight block row]: the same

      // xb: ${w13 ? 'gathered x' : 'act'} in blocked rows (${RV} vec4 words a block row); align: [E+1] offsets then the
      // sorted pairs; wb: blocked weights [experts, ${rowsPerExpert}/16, ${KB}] blocks of 32 vec4; result: i32 [rows, ${columns}].
      fn main(wid : vec3<u32>, sid : u32, lane : u32, li : u32, nwg : vec3<u32>) {
        ${gemmTileInRegistersSnippet('wb', BM, w13 ? 64 : 128, groupRows)}
        let aFirst = u32(rowStart) / 16u * ${RV}u;   // the tile's first block row, in vec4 words
        let wBase = (u32(e) * ${rowsPerExpert}u + ${w13 ? '2u * u32(wgN)' : 'u32(wgN)'}) / 16u;   // its first weight block row
        ${rowsT.flatMap((r) => cols.map((cc) => `var acc${r}${cc} : ${result};`)).join('\n        ')}
        {
          ${fetches('let ', 'r', '0u')}
          ${puts('0u', 'r')}
        }
        ${fetches('var ', 'n', `${Math.min(1, KB - 1)}u`)}
        workgroupBarrier();
        for (var st = 0u; st < ${KB}u; st++) {
          let buf = st % 2u;
          ${fetches('let ', 'f', `min(st + 2u, ${KB - 1}u)`)}
          ${rowsT.map((r) => `let a${r} = subgroupMatrixLoad<${left}, row_major>(&As[buf * ${RB}u + ${r}u], 0u, 3u);`).join('\n          ')}
          ${cols.map((cc) => `let b${cc} = subgroupMatrixLoad<${right}, col_major>(&Bs[buf * ${CB}u + ${slot(cc)}], 0u, 3u);`).join('\n          ')}
          ${rowsT.flatMap((r) => cols.map((cc) => `acc${r}${cc} = subgroupMatrixMultiplyAccumulate(a${r}, b${cc}, acc${r}${cc});`)).join('\n          ')}
          // Block st + 1 into the idle buffer (past the end, a repeat that no one reads).
          ${puts('(1u - buf)', 'n')}
          ${[...aCopies.map((p) => `nA${p} = fA${p};`), ...bCopies.map((p) => `nB${p} = fB${p};`)].join(' ')}
          workgroupBarrier();
        }
        ${rowsT.flatMap((r) => cols.map((cc) => `subgroupMatrixStore<row_major>(&result, (u32(rowStart) + ${16 * r}u) * ` +
          `${columns}u + ${resultColumn(w13)} + ${16 * cc}u, acc${r}${cc}, ${columns}u);`)).join('\n        ')}
      }
    `;
  }
}

/**
 * The staged GEMM's epilogue as its own pass over the i32 results it stored straight (int8StagedResultColumns'
 * layout): the same grid of 128-row tiles and output columns, four groups of 32 invocations each taking the columns
 * that subgroup of the GEMM computed, and int8Epilogue's narrow f32 expressions read from storage instead of
 * workgroup memory, so that act (w13) and y by pair (w2) equal the in-kernel epilogue's, and dot4's, bit for bit.
 * No subgroup operations: it runs wherever the GEMM does. Inputs: results, xb (the GEMM's, for the row scales),
 * align, topkWeights (w2 with the weight on the output), scales, bias?.
 */
export class ExpertsInt8StagedEpilogueProgram extends Int8StagedTileProgram {
  variableNames: string[];
  variableComponents: number[];

  constructor(c: ExpertsInt8Config, outputShape: number[], numTiles: number, layout: Int8PipelinedLayout) {
    super('moeExpertsInt8StagedEpilogue', c, outputShape, numTiles, layout);
    const usesWeights = c.stage === 'w2' && !c.applyRouterWeightOnInput;
    this.variableNames = ['results', 'xb', 'align', ...(usesWeights ? ['topkWeights'] : []), 'scales',
      ...(c.hasBias ? ['bias'] : [])];
    this.variableComponents = this.variableNames.map((n) => n === 'xb' ? 4 : 1);
  }

  getUserCode(): string {
    const c = this.c;
    const w13 = c.stage === 'w13';
    const {rows: BM} = INT8_STAGED_TILE;
    const Kp = w13 ? this.layout.Hp : this.layout.Ip;
    const columns = int8StagedResultColumns(c.stage, this.layout);
    const epilogue = int8Epilogue(c, '0u', true, (i) => `resultAt(u32(rowStart) + rt * 16u, col0, ${i})`);
    const firstColumn = w13 ? 'wgN + i32(sid) * 16' : 'wgN + i32(sid) * 32';
    return `
      ${w13 ? activationSnippet(c.activation) : ''}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end k step (one)
      var<workgroup> wgN0 : i32;
      ${epilogueRowsDecl(c)}

      // Element i of the 16-row block at row0 of the results a GEMM subgroup stored from column col0: its result
      // i / 256 (w13 gate, up; w2 two h blocks), row i % 256 / 16, column i % 16.
      fn resultAt(row0 : u32, col0 : u32, i : u32) -> i32 {
        return results[(row0 + i % 256u / 16u) * ${columns}u + col0 + i / 256u * 16u + i % 16u];
      }

      fn main() {
        ${gemmGridSnippet('scales', BM, 1, 1, (w13 ? 64 : 128), 0)}
        ${epilogueRowsFill(c, Kp)}
        let wgN = workgroupUniformLoad(&wgN0);
        let sid = localIndex / 32u;   // the GEMM subgroup whose columns these invocations take
        let lane = localIndex % 32u;
        let n0 = ${firstColumn};
        let col0 = ${resultColumn(w13)};
        ${epilogue.columns}
        for (var rt = 0u; rt < ${BM / 16}u; rt++) {
          ${epilogue.block}
        }
      }
    `;
  }
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13Int8StagedGemmProgram extends ExpertsInt8StagedGemmProgram {}
export class ExpertsW2Int8StagedGemmProgram extends ExpertsInt8StagedGemmProgram {}
export class ExpertsW2Int8StagedEpilogueProgram extends ExpertsInt8StagedEpilogueProgram {}
export class ExpertsW13Int8BothStagedGemmProgram extends ExpertsInt8BothStagedGemmProgram {}
export class ExpertsW2Int8BothStagedGemmProgram extends ExpertsInt8BothStagedGemmProgram {}

/**
 * The staged w13 GEMM's epilogue (its straight i32 results, int8StagedResultColumns' layout) fused into the
 * activation quantizer: each row's act values, int8Epilogue's expressions computed in registers, quantized as
 * ExpertsInt8QuantProgram does, so that the f32 act rows never go through memory (at Mixtral M = 4096 0.53 GB
 * written and read back) and the quantized rows equal the epilogue pass's, and dot4's, bit for bit. One dispatch per
 * shard (its scales and biases) over every row, each workgroup taking the rows of the shard's experts.
 * Inputs: results, xb (the GEMM's, for the row scales), align, scales, bias?; output as ExpertsInt8QuantProgram's.
 */
export class ExpertsInt8StagedActQuantProgram extends ExpertsInt8QuantProgram {
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsInt8Config;
  private readonly layout: Int8PipelinedLayout;

  constructor(c: ExpertsInt8Config, rows: number, layout: Int8PipelinedLayout) {
    super(rows, c.intermediateSize);
    if (c.stage !== 'w13') throw new Error('ExpertsInt8StagedActQuantProgram: the act rows are w13\'s');
    this.c = c;
    this.layout = layout;
    this.variableNames = ['results', 'xb', 'align', 'scales', ...(c.hasBias ? ['bias'] : [])];
    this.variableComponents = this.variableNames.map((n) => n === 'results' || n === 'xb' ? 4 : 1);
    this.shaderKey = `moeExpertsInt8StagedActQuant_${c.hiddenSize}_${c.intermediateSize}_${c.numLocalExperts}_` +
      `${c.activation}_${c.hasBias}_${layout.Hp}_${layout.w13Rows}`;
  }

  protected valueDecls(): string {
    const c = this.c, I = c.intermediateSize;
    const gu = gateUpRows(c.activation, I);
    const C4 = int8StagedResultColumns('w13', this.layout) / 4;
    const lane = (j: number) => {
      const i = `(4 * i32(v) + ${j})`;
      return `{
          let gateRow = e * ${2 * I} + ${gu.gate(i)};
          out[${j}] = expertGlu(${int8Dequantized(c.hasBias, `g[${j}]`, 'scales[gateRow]', 'bias[gateRow]')},
            ${int8Dequantized(c.hasBias, `u[${j}]`, `scales[gateRow + ${gu.upOffset}]`, `bias[gateRow + ${gu.upOffset}]`)});
        }`;
    };
    return `${activationSnippet(c.activation)}
      var<workgroup> wgExpert : i32;

      // The act values of vec4 v of the row (columns 4v .. 4v + 3, one 16-column block's gate and up results).
      fn actQuad(row : u32, v : u32, e : i32, xs : f32) -> vec4<f32> {
        let at = row * ${C4}u + (v / 4u) * 8u + v % 4u;
        let g = results[at];
        let u = results[at + 4u];
        var out : vec4<f32>;
        ${[0, 1, 2, 3].map(lane).join('\n        ')}
        return out;
      }`;
  }

  protected rowSetup(): string {
    return `// The row's expert in the shard (binary search over its segments), or -1: the row is another shard's.
        if (localIndex == 0u) {
          let first = uniforms.firstExpert;
          let r = i32(row);
          var owner = -1;
          if (r >= align[first] && r < align[first + uniforms.scalesShape.x]) {
            ${segmentOwnerSnippet('uniforms.scalesShape.x', 'r')}
            owner = lo - first;
          }
          wgExpert = owner;
        }
        let e = workgroupUniformLoad(&wgExpert);
        if (e < 0) { return; }
        let xs = ${blockedRowScale('row', this.layout.Hp)};`;
  }

  protected value(i: string): string {
    return `actQuad(row, ${i}, e, xs)`;
  }
}

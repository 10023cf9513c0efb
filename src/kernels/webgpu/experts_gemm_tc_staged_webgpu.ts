/**
 * f16 prefill GEMMs on tensor cores with the rows staged in workgroup memory ('staged-128x128' of
 * tensor_core_plan.ts): the int8 default's loop (experts_int8_tc_staged_webgpu.ts) on f16 operands. A workgroup of
 * four subgroups takes 128 expert-sorted rows, copies each 32-k step of their blocked rows (x16 or act16) into
 * workgroup memory (one barrier a step, two buffers, the next step's copy in flight in registers), and each subgroup
 * multiplies all 128 rows by its own 32 weight rows (8 × 2 f32 results of 16 × 16), the weights' 16 × 16 blocks
 * read from storage through block pointers two k blocks ahead of their multiplies.
 *
 * Why: with both operands streamed from storage (the pipelined variants, 64 × 64 subgroup tiles) a subgroup loads
 * 8 blocks per 16 multiplies; here 2 from storage and 8 from workgroup memory. On an H100's plain
 * 4096 × 14336 × 4096 GEMM this loop ran at 246 TFLOP/s, 269 with each 32-byte row of a staged block padded to 48
 * bytes (the 8 rows a load reads at once then fall in distinct banks; tc_probe --round28,
 * bench/results/2026-12-07-h100-tc-probe-round28.log).
 *
 * Why the results leave straight: staged through workgroup memory between barriers for an in-kernel epilogue they
 * cost the probe's f16 loop 48% (tc_probe --round23). So w2 stores y in sorted row order (the combine applies the
 * routing weight, as the other variants' sorted y), and w13 stores its f32 gate and up results, which
 * ExpertsTensorCoreActPassProgram turns into act16 with the other variants' epilogue expressions. Neither takes
 * biases (the choice falls back where there are any: tensor_core_plan.ts).
 *
 * Layout: the weights' blocked copy of two pipelined subgroups' tiles (pipelinedTile(2): w13 64 act columns, w2 128
 * h columns a workgroup). A w13 workgroup's 128 weight rows are two groups of 32 gate then 32 up rows; subgroup s
 * takes group s / 2's 16 act columns s % 2: its gate block and the up block two after it, stored as gate block then
 * up block at result column 2·n0 + 32·s (stagedResultColumn).
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import type {Activation} from '../../kernel_names';
import {EXPERTS_WORKGROUP, activationSnippet, gemmGridSnippet} from './experts_wgsl';
import type {ExpertsStage} from './experts_gemv_webgpu';
import {storageElements} from './experts_gemm_tc_storage_webgpu';
import {F16_STAGED_TILE, TensorCoreLayout, f16StagedBlockVec4s, foldedDispatch, tensorCoreTileShape}
  from './tensor_core_plan';

export interface ExpertsTensorCoreStagedConfig {
  stage: ExpertsStage;
  hiddenSize: number;
  intermediateSize: number;
  numLocalExperts: number;
  activation: Activation;
  layout: TensorCoreLayout;
}

/**
 * w13's f32 results a row: gate and up of every act column of the padded copy. Act column i has its gate at
 * column 32·(i / 16) + i % 16 and its up 16 after it.
 */
export function stagedResultColumns(layout: TensorCoreLayout): number {
  return layout.w13.rowsPerExpert;
}

export class ExpertsTensorCoreStagedGemmProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames = ['x16', 'align', 'w16'];
  variableComponents = [4, 1, 1];
  workgroupSize: [number, number, number] = [32 * F16_STAGED_TILE.subgroups, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsTensorCoreStagedConfig;

  /**
   * Inputs: x16 (w13: gathered x; w2: act16; blocked rows, read as vec4 words for the copies), align (built with
   * blockRows 128), w16 (the shard's blocked f16 copy in tensorCoreTileShape('staged-128x128')'s layout). Output: w13 the f32
   * results [rows, stagedResultColumns]; w2 y [rows, H] in sorted row order (H a multiple of 128).
   */
  constructor(c: ExpertsTensorCoreStagedConfig, outputShape: number[], numTiles: number) {
    const w13 = c.stage === 'w13';
    const L = w13 ? c.layout.w13 : c.layout.w2;
    if (!c.layout.blockedRows || !L.blocked) throw new Error('staged tensor-core GEMM: rows and weights must be blocked');
    if (L.kStride !== (w13 ? c.layout.Hp : c.layout.Ip) || (w13 ? c.layout.Hp : c.layout.Ip) % 32 !== 0) {
      throw new Error(`staged tensor-core GEMM: the weights' k stride ${L.kStride} must be the rows' (a multiple of 32)`);
    }
    const tile = tensorCoreTileShape('staged-128x128');
    const columns = w13 ? tile.w13Columns : tile.w2Columns;
    if ((w13 ? L.rowsPerExpert / 2 : L.rowsPerExpert) % columns !== 0) {
      throw new Error(`staged tensor-core GEMM: the layout's ${c.stage} rows are not padded to ${columns} columns`);
    }
    const wantColumns = w13 ? stagedResultColumns(c.layout) : c.hiddenSize;
    if (!w13 && c.hiddenSize % columns !== 0) {
      throw new Error(`staged tensor-core GEMM: w2 stores whole ${columns}-column workgroups, H = ${c.hiddenSize}`);
    }
    if (outputShape[1] !== wantColumns) {
      throw new Error(`staged tensor-core GEMM: its ${c.stage} output needs ${wantColumns} columns, got ${outputShape[1]}`);
    }
    this.c = c;
    this.outputShape = outputShape;
    this.dispatch = [numTiles, Math.ceil((w13 ? c.intermediateSize : c.hiddenSize) / columns), 1];
    const t = F16_STAGED_TILE;
    this.shaderKey = `moeExpertsGemmTcStaged_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.numLocalExperts}_` +
      `${c.layout.Hp}_${c.layout.Ip}_${L.rowsPerExpert}_${t.rows}_${t.kBlocksPerStage}_${t.ahead}_${t.groupRows}_${t.padRows}`;
  }

  getUserCode(): string {
    const c = this.c;
    const w13 = c.stage === 'w13';
    const L = w13 ? c.layout.w13 : c.layout.w2;
    const {rows: BM, subgroups: WN, kBlocksPerStage: SK, ahead: D, groupRows} = F16_STAGED_TILE;
    const tile = tensorCoreTileShape('staged-128x128');
    const Kp = L.kStride;
    const KB = Kp / 16;              // k blocks a block row
    const stages = KB / SK;
    const RV = KB * 32;              // vec4 words a block row of x16 (KB blocks of 16 × 16 halves)
    const BV = f16StagedBlockVec4s(), rowStride = F16_STAGED_TILE.padRows ? 3 : 2;
    const RB = BM / 16;              // row blocks a tile
    const threads = 32 * WN;
    const copies = Array.from({length: RB * SK * 32 / threads}, (_, p) => p);
    const left = 'subgroup_matrix_left<f16, 16, 16>';
    const right = 'subgroup_matrix_right<f16, 16, 16>';
    const result = 'subgroup_matrix_result<f32, 16, 16>';
    const rowsT = Array.from({length: RB}, (_, r) => r);
    const cols = [0, 1];
    const ds = Array.from({length: D}, (_, d) => d);
    // Copy p of a lane: vec4 q = li + p·threads of the stage, block row q / (32·SK), vec4 q % (32·SK) of that row's
    // SK contiguous k blocks; in workgroup memory vec4 v of a block (row v / 2, half v % 2) at 3·(v / 2) + v % 2
    // when padded.
    const q = (p: number) => `(localIndex + ${p * threads}u)`;
    const fetch = (p: number, st: string) =>
      `bitcast<vec4<u32>>(x16[aFirst + ${q(p)} / ${32 * SK}u * ${RV}u + (${st}) * ${32 * SK}u + ${q(p)} % ${32 * SK}u])`;
    const within = (p: number) => F16_STAGED_TILE.padRows ? `${q(p)} % 32u / 2u * 3u + ${q(p)} % 2u` : `${q(p)} % 32u`;
    const put = (p: number, buf: string) =>
      `As[(${buf} * ${RB}u + ${q(p)} / ${32 * SK}u) * ${SK}u + ${q(p)} % ${32 * SK}u / 32u][${within(p)}] = rA${p};`;
    const b = (cc: number, kb: string) => `subgroupMatrixLoad<${right}, col_major>(&w16[bBlock${cc} + ${kb}], 0u, 16u)`;
    const steps = Array.from({length: SK}, (_, j) => `{
            let nk = min(st * ${SK}u + ${j + D}u, ${KB - 1}u);
            ${cols.map((cc) => `let nb${cc} = ${b(cc, 'nk')};`).join('\n            ')}
            ${rowsT.map((r) => `let a${r} = subgroupMatrixLoad<${left}, row_major>(&As[(buf * ${RB}u + ${r}u) * ${SK}u + ${j}u], 0u, ${rowStride}u);`).join('\n            ')}
            ${rowsT.flatMap((r) => cols.map((cc) => `acc${r}${cc} = subgroupMatrixMultiplyAccumulate(a${r}, b0${cc}, acc${r}${cc});`)).join('\n            ')}
            ${ds.flatMap((d) => cols.map((cc) => `b${d}${cc} = ${d + 1 < D ? `b${d + 1}${cc}` : `nb${cc}`};`)).join(' ')}
          }`).join('\n          ');
    const columns = w13 ? stagedResultColumns(c.layout) : c.hiddenSize;
    const firstColumn = w13 ? '2u * u32(wgN) + sid * 32u' : 'u32(wgN) + sid * 32u';
    const stores = rowsT.flatMap((r) => cols.map((cc) => `subgroupMatrixStore<row_major>(&result, ` +
      `(u32(rowStart) + ${16 * r}u) * ${columns}u + ${firstColumn} + ${16 * cc}u, acc${r}${cc}, ${columns}u);`))
      .join('\n        ');
    // The subgroup's first weight block row (of 16 rows).
    const bRow = w13 ? `(u32(e) * ${L.rowsPerExpert}u + 2u * u32(wgN)) / 16u + (sid / 2u) * 4u + sid % 2u` :
      `(u32(e) * ${L.rowsPerExpert}u + u32(wgN)) / 16u + sid * 2u`;
    return `
      enable f16;
      enable subgroups;
      enable chromium_experimental_subgroup_matrix;
      // moe-main-ids
      ${storageElements('w16', 'f16-blocks')}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end k stage
      var<workgroup> wgN0 : i32;           // first column, workgroup-uniform through it
      var<workgroup> As : array<array<vec4<u32>, ${BV}>, ${2 * RB * SK}>;   // [buffer][row block][k block]: 16 × 16 f16

      // x16: ${w13 ? 'gathered x' : 'act16'} in blocked rows (${RV} vec4 words a block row); align: [E+1] offsets then the
      // sorted pairs; w16: blocked f16 weights [experts, ${L.rowsPerExpert}/16, ${KB}] blocks;
      // result: ${w13 ? `f32 gate and up results [rows, ${columns}]` : `y [rows, ${columns}] in sorted order`}.
      fn main(wid : vec3<u32>, sid : u32, lane : u32) {
        ${gemmGridSnippet('w16', BM, stages, stages, w13 ? tile.w13Columns : tile.w2Columns, groupRows)}
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

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13TensorCoreStagedGemmProgram extends ExpertsTensorCoreStagedGemmProgram {}
export class ExpertsW2TensorCoreStagedGemmProgram extends ExpertsTensorCoreStagedGemmProgram {}

/**
 * The staged w13 GEMM's epilogue as a pass: act16 (blocked f16 rows, [rows, Ip / 2] words) from its f32 gate and up
 * results, with the storage variants' expressions (stagedEpilogue: expertGlu in f32, zero for I ≤ i < Ip, two
 * halves a word by pack2x16float), so act16 is what their in-kernel epilogue would write. One invocation per 8 act
 * columns of a row (two vec4s of gate and two of up in, one 16-byte store out, as the f16 gather's, whose 16-byte
 * stores beat 4-byte ones by 25%), in act16's blocked order: each subgroup writes one block's 512 contiguous bytes.
 * Rows from align[E] on (no GEMM tile wrote them, no w2 tile reads them) are left unwritten.
 * Inputs: results (read as vec4), align.
 */
export class ExpertsTensorCoreActPassProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames = ['results', 'align'];
  variableComponents = [4, 1];
  outputComponent = 4;
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  private readonly E: number;
  private readonly I: number;
  private readonly activation: Activation;
  private readonly layout: TensorCoreLayout;

  constructor(c: {intermediateSize: number; numLocalExperts: number; activation: Activation; layout: TensorCoreLayout},
      rows: number) {
    if (rows % 16 !== 0) throw new Error(`ExpertsTensorCoreActPassProgram: rows must be whole 16-row blocks, got ${rows}`);
    this.E = c.numLocalExperts;
    this.I = c.intermediateSize;
    this.activation = c.activation;
    this.layout = c.layout;
    this.outputShape = [rows, c.layout.Ip / 2];
    this.dispatch = foldedDispatch(rows * c.layout.Ip / 8, EXPERTS_WORKGROUP);
    this.shaderKey = `moeExpertsTcActPass_${c.intermediateSize}_${c.numLocalExperts}_${c.activation}_${c.layout.Ip}_` +
      `${stagedResultColumns(c.layout)}`;
  }

  getUserCode(): string {
    const I = this.I, Ip = this.layout.Ip, C = stagedResultColumns(this.layout);
    return `
      ${activationSnippet(this.activation)}
      fn glu4(g : vec4<f32>, u : vec4<f32>, i : u32) -> vec4<f32> {
        var v : vec4<f32>;
        for (var d = 0u; d < 4u; d++) { v[d] = select(0.0, expertGlu(g[d], u[d]), i + d < ${I}u); }
        return v;
      }

      // results: f32 [rows, ${C}] as vec4s (act column i: gate at 32·(i / 16) + i % 16, up 16 after it); align: [E+1]
      // offsets then the sorted pairs; result: act16 [rows, ${Ip / 2}] i32 words of two halves, in 16×16 blocks, as vec4s.
      fn main() {
        let index = getGlobalIndex();
        if (index >= uniforms.outShape.x * ${Ip / 8}) { return; }
        // 16 bytes v of act16's blocks: block v / 32 (block row b / ${Ip / 16}, k block b % ${Ip / 16}), its row v % 32 / 2,
        // act columns 8·(v % 2) .. + 7 of the block.
        let v = u32(index);
        let b = v / 32u;
        let row = b / ${Ip / 16}u * 16u + v % 32u / 2u;
        let i = b % ${Ip / 16}u * 16u + 8u * (v % 2u);
        if (i32(row) >= align[${this.E}]) { return; }
        let at = (row * ${C}u + 32u * (i / 16u) + i % 16u) / 4u;
        let lo = glu4(results[at], results[at + 4u], i);
        let hi = glu4(results[at + 1u], results[at + 5u], i + 4u);
        result[v] = bitcast<vec4<i32>>(vec4<u32>(pack2x16float(lo.xy), pack2x16float(lo.zw), pack2x16float(hi.xy),
          pack2x16float(hi.zw)));
      }
    `;
  }
}

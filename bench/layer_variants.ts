/**
 * WGSL of the diagnostic builds that bench/gpu_layer_variants.sh makes from patched copies of src/ (never the
 * product): the patches call these, so that the builds' code is TypeScript here rather than text in the script.
 *
 * - gemmGridRegistersSnippet ('reg' builds): the staged GEMMs' tile lookup run by every invocation, no workgroup
 *   variables or barrier. Probe round 31 put the padded loops' loss in the lookup through workgroup memory.
 * - int8BothStagedGemmCode ('both' builds): the int8 staged GEMM with the weights staged in workgroup memory too,
 *   probe round 27's loop (460 TOPS on an H100 against the default loop's 371) in the layer.
 */
import {gemmGridSnippet, groupedGridSnippet, segmentOwnerSnippet} from '../src/kernels/webgpu/experts_wgsl';
import type {ExpertsInt8Config} from '../src/kernels/webgpu/experts_int8_webgpu';
import {blockedRowBlockWords, Int8PipelinedLayout} from '../src/kernels/webgpu/experts_int8_tc_pipelined_webgpu';
import {INT8_STAGED_TILE, int8StagedResultColumns} from '../src/kernels/webgpu/experts_int8_tc_staged_webgpu';

/**
 * gemmGridSnippet's tile, found by every invocation: uniform to Tint where workgroupId and numWorkgroups are main's
 * arguments (the build passes them), since the uniforms and align (read-only storage) are. Leaves wgN (the first
 * column), rowStart and e defined; an empty tile returns.
 */
export function gemmGridRegistersSnippet(weights: string, blockRows: number, kTilesPerPart: number, kTiles: number,
    workgroupColumns: number, groupRows: number): string {
  return `${groupRows ? groupedGridSnippet(groupRows) : ''}
        let wgN = i32(${groupRows ? 'gridCol' : 'workgroupId.y'}) * ${workgroupColumns};
        let first = uniforms.firstExpert;
        let segEnd = align[first + uniforms.${weights}Shape.x];
        let rowStart = align[first] + i32(${groupRows ? 'gridRow' : 'workgroupId.x'}) * ${blockRows};
        if (rowStart >= segEnd) { return; }
        ${segmentOwnerSnippet(`uniforms.${weights}Shape.x`, 'rowStart')}
        let kt0 = i32(workgroupId.z) * ${kTilesPerPart};
        let tile = vec4<i32>(rowStart, lo - first, kt0, min(kt0 + ${kTilesPerPart}, ${kTiles}));
        let e = tile.y;`;
}

/**
 * ExpertsInt8StagedGemmProgram's code with both operands staged: per 32-k block, the tile's 8 row blocks of x and the
 * workgroup's 8 weight block rows (its 4 subgroups' 2 each) copied into workgroup memory with 16-byte copies, each
 * 32-byte row padded to 48 bytes (matrix loads then meet distinct banks), two buffers, one barrier a block, the
 * copies fetched two blocks ahead (the nineteenth session's best form in the layer). wb is read as vec4 words (the
 * build declares it with 4 components). Results stored straight, as the product's. `lookupInRegisters`: the tile
 * from gemmGridRegistersSnippet instead of gemmGridSnippet's workgroup variables.
 */
export function int8BothStagedGemmCode(c: ExpertsInt8Config, layout: Int8PipelinedLayout, lookupInRegisters: boolean):
    string {
  const w13 = c.stage === 'w13';
  const {rows: BM, subgroups: WN, groupRows} = INT8_STAGED_TILE;
  const Kp = w13 ? layout.Hp : layout.Ip;
  const rowsPerExpert = w13 ? layout.w13Rows : layout.w2Rows;
  const KB = Kp / 32;                          // k blocks (stages)
  const RV = blockedRowBlockWords(Kp) / 4;     // vec4 words a block row of xb
  const RB = BM / 16, CB = 2 * WN;             // row blocks and weight block rows a workgroup
  const threads = 32 * WN;
  const aCopies = Array.from({length: RB * 32 / threads}, (_, p) => p);
  const bCopies = Array.from({length: CB * 32 / threads}, (_, p) => p);
  const rowsT = Array.from({length: RB}, (_, r) => r);
  const cols = [0, 1];
  const columns = int8StagedResultColumns(c.stage, layout);
  const q = (p: number) => `(localIndex + ${p * threads}u)`;
  const fetchA = (p: number, kb: string) => `bitcast<vec4<u32>>(xb[aFirst + ${q(p)} / 32u * ${RV}u + (${kb}) * 32u + ${q(p)} % 32u])`;
  const fetchB = (p: number, kb: string) => `bitcast<vec4<u32>>(wb[(wBase + ${q(p)} / 32u) * ${KB * 32}u + (${kb}) * 32u + ${q(p)} % 32u])`;
  const padded = (p: number) => `${q(p)} % 32u / 2u * 3u + ${q(p)} % 2u`;
  const put = (X: 'A' | 'B', n: number, p: number, buf: string, v: string) =>
    `${X}s[${buf} * ${n}u + ${q(p)} / 32u][${padded(p)}] = ${v};`;
  const puts = (buf: string, prefix: string) => [...aCopies.map((p) => put('A', RB, p, buf, `${prefix}A${p}`)),
    ...bCopies.map((p) => put('B', CB, p, buf, `${prefix}B${p}`))].join('\n          ');
  const fetches = (decl: string, prefix: string, kb: string) => [...aCopies.map((p) => `${decl}${prefix}A${p} = ${fetchA(p, kb)};`),
    ...bCopies.map((p) => `${decl}${prefix}B${p} = ${fetchB(p, kb)};`)].join('\n          ');
  // Subgroup sid's column block cc among the workgroup's weight block rows (the product's bRow and bBlock offsets).
  const slot = (cc: number) => w13 ? `(sid / 2u) * 4u + sid % 2u + ${2 * cc}u` : `sid * 2u + ${cc}u`;
  const left = 'subgroup_matrix_left<i8, 32, 16>';
  const right = 'subgroup_matrix_right<i8, 16, 32>';
  const result = 'subgroup_matrix_result<i32, 16, 16>';
  const resultColumn = w13 ? '2u * u32(wgN) + sid * 32u' : 'u32(wgN) + sid * 32u';
  const grid = lookupInRegisters ?
    gemmGridRegistersSnippet('wb', BM, KB, KB, w13 ? 64 : 128, groupRows) :
    `${gemmGridSnippet('wb', BM, KB, KB, w13 ? 64 : 128, groupRows)}
        let wgN = workgroupUniformLoad(&wgN0);`;
  return `
      enable subgroups;
      enable chromium_experimental_subgroup_matrix;
      // moe-main-ids
      ${lookupInRegisters ? '' : `var<workgroup> wgTile : vec4<i32>;
      var<workgroup> wgN0 : i32;`}
      var<workgroup> As : array<array<vec4<u32>, 48>, ${2 * RB}>;   // [buffer][row block]: 16 rows × 32 i8, padded
      var<workgroup> Bs : array<array<vec4<u32>, 48>, ${2 * CB}>;   // [buffer][weight block row]: 16 rows × 32 i8, padded

      fn main(wid : vec3<u32>, sid : u32, lane : u32) {
        ${grid}
        let aFirst = u32(rowStart) / 16u * ${RV}u;
        let wBase = (u32(e) * ${rowsPerExpert}u + ${w13 ? '2u * u32(wgN)' : 'u32(wgN)'}) / 16u;
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
          ${puts('(1u - buf)', 'n')}   // block st + 1 (past the end, a repeat into the idle buffer, read by no one)
          ${[...aCopies.map((p) => `nA${p} = fA${p};`), ...bCopies.map((p) => `nB${p} = fB${p};`)].join(' ')}
          workgroupBarrier();
        }
        ${rowsT.flatMap((r) => cols.map((cc) => `subgroupMatrixStore<row_major>(&result, (u32(rowStart) + ${16 * r}u) * ` +
          `${columns}u + ${resultColumn} + ${16 * cc}u, acc${r}${cc}, ${columns}u);`)).join('\n        ')}
      }
    `;
}

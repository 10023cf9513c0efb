/**
 * Prefill GEMMs on tensor cores, four subgroups per workgroup sharing f16 tiles in workgroup memory
 * ('shared-64' / 'shared-128' of tensor_core_plan.ts). Same problem, inputs, layouts (SHARED_TILE) and
 * epilogues as ExpertsTensorCoreStorageGemmProgram; only the k loop differs:
 *
 *   per 32 k: the 128 lanes copy the x tile [BM, 32] and the weight tile [128, 32] (one 16-byte load per lane
 *   and part) into workgroup memory, rows padded to 40 halves (unpadded rows cost 3.8× on the H200: bank
 *   conflicts), while the next tile's loads are in flight; then each subgroup multiplies its BM/2 rows × 64
 *   columns (TM × 4 results of 16×16) out of workgroup memory.
 *
 * Each operand element is read from storage once per workgroup instead of once per subgroup, and the matrix
 * loads read workgroup memory: 107 TFLOP/s on the H200 for the 128-row shape on a plain GEMM, against 15-58 for
 * storage-64 (bench/tc_probe.ts). w13's weight tile holds 32 gate rows, their 32 up rows, then the next 32 of
 * each, so that every subgroup has the gate and up columns its epilogue pairs.
 *
 * Subgroup-matrix offsets must be uniform per subgroup for Tint: they derive from the workgroup and subgroup
 * ids that ./device.ts passes to main() (`// moe-main-ids`), never from tfjs's private copies.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {activationSnippet, gemmTileSnippet} from './experts_wgsl';
import {ExpertsTensorCoreStorageConfig, epilogueRows, stagedEpilogue, storageElements} from './experts_gemm_tc_storage_webgpu';
import {SHARED_TILE, tensorCoreStorageDispatch} from './tensor_core_plan';

/** Halves per workgroup-memory tile row: 32 k and 8 of padding. */
const ROW = 40;
const BK = SHARED_TILE.kStep;
const THREADS = 128;

export class ExpertsTensorCoreSharedGemmProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsTensorCoreStorageConfig;

  /** Inputs: x16, align, topkWeights? (w2 with the routing weight on the output), w16, bias? */
  constructor(c: ExpertsTensorCoreStorageConfig, outputShape: number[], numTiles: number) {
    if (c.blockRows !== 64 && c.blockRows !== 128) throw new Error(`shared tensor-core GEMM: blockRows 64 or 128, got ${c.blockRows}`);
    this.c = c;
    const w13 = c.stage === 'w13';
    const splitK = w13 ? 1 : (c.splitK ?? 1);
    this.outputShape = outputShape;
    this.dispatch = tensorCoreStorageDispatch(c.stage, numTiles, c.hiddenSize, c.intermediateSize, splitK, SHARED_TILE);
    const usesWeights = !w13 && !c.applyRouterWeightOnInput;
    this.variableNames = ['x16', 'align', ...(usesWeights ? ['topkWeights'] : []), 'w16', ...(c.hasBias ? ['bias0'] : [])];
    const L = w13 ? c.layout.w13 : c.layout.w2;
    // x16 (and w16 unless read in blocks as array<f16>) as vec4<i32>: 8 halves a load.
    this.variableComponents = this.variableNames.map((n) => n === 'x16' || (n === 'w16' && !L.blocked) ? 4 : 1);
    this.shaderKey = `moeExpertsGemmTcShared_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.numLocalExperts}_` +
        `${w13 ? c.activation : ''}_${c.applyRouterWeightOnInput}_${c.blockRows}_${splitK}_${c.hasBias}_` +
        `${c.layout.Hp}_${c.layout.Ip}_${L.source}_${L.rowsPerExpert}_${L.kStride}_${L.rowStep}_${L.upOffset}_${L.blocked ?? false}`;
  }

  getUserCode(): string {
    const {stage, blockRows: BM} = this.c;
    const w13 = stage === 'w13';
    const L = w13 ? this.c.layout.w13 : this.c.layout.w2;
    const Kp = w13 ? this.c.layout.Hp : this.c.layout.Ip;
    if (L.kStride !== Kp) throw new Error(`shared tensor-core GEMM: weight k stride ${L.kStride} != x stride ${Kp}`);
    if (Kp % BK !== 0) throw new Error(`shared tensor-core GEMM: k stride ${Kp} is not a multiple of ${BK}`);
    const kSteps = Kp / BK;
    const splitK = w13 ? 1 : (this.c.splitK ?? 1);
    const kStepsPerPart = Math.ceil(kSteps / splitK);
    const kBlocks = Kp / 16;
    const TM = BM / 32;   // 16-row blocks per subgroup: 2 subgroups along the rows
    const vecsPerRow = BK / 8;
    const perA = BM * vecsPerRow / THREADS;
    const blocked = L.blocked ?? false;
    const perB = blocked ? 0 : 128 * vecsPerRow / THREADS;
    const rows = Array.from({length: TM}, (_, r) => r);
    const cols = [0, 1, 2, 3];
    const ia = Array.from({length: perA}, (_, i) => i);
    const ib = Array.from({length: perB}, (_, i) => i);
    const left = 'subgroup_matrix_left<f16, 16, 16>';
    const right = 'subgroup_matrix_right<f16, 16, 16>';
    const result = 'subgroup_matrix_result<f32, 16, 16>';
    // Tile row t of the weights: w13 32 gate rows, their up rows, the next 32 gate, their up; w2 h rows.
    const bRow = (t: string) => w13 ?
      `e * ${L.rowsPerExpert} + select(0, ${L.upOffset}, ((${t}) / 32u) % 2u == 1u) + ` +
        `${L.rowStep} * (n0 + 32 * i32((${t}) / 64u) + i32((${t}) % 32u))` :
      `e * ${L.rowsPerExpert} + n0 + i32(${t})`;
    const epilogue = stagedEpilogue(this.c, {lane: 'lane', base: 'sid * 1024u',
      n0: `n0 + ${w13 ? 32 : 64} * i32(wn)`, firstRow: `wm * ${TM * 16}u + rt * 16u`});
    const tileRows = epilogueRows(this.c, BM, THREADS);
    const put = (tile: string, i: number, v: string) =>
      `put_${tile}((localIndex + ${i * THREADS}u) / ${vecsPerRow}u * ${ROW}u + (localIndex + ${i * THREADS}u) % ${vecsPerRow}u * 8u, ${v});`;
    return `
      enable f16;
      enable subgroups;
      enable chromium_experimental_subgroup_matrix;
      // moe-main-ids
      ${blocked ? storageElements('w16', 'f16') : ''}
      ${w13 ? activationSnippet(this.c.activation) : ''}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end 32-k step
      var<workgroup> tileX : array<f16, ${BM * ROW}>;
      ${blocked ? '' : `var<workgroup> tileW : array<f16, ${128 * ROW}>;`}
      var<workgroup> staged : array<f32, ${4 * 1024}>;   // per subgroup: one 16-row block's 4 results
      ${tileRows.decl}

      ${(blocked ? ['tileX'] : ['tileX', 'tileW']).map((t) => `fn put_${t}(o: u32, v: vec4<i32>) {
        for (var j = 0u; j < 4u; j++) {
          let h = bitcast<vec2<f16>>(v[j]);
          ${t}[o + 2u * j] = h.x;
          ${t}[o + 2u * j + 1u] = h.y;
        }
      }`).join('\n      ')}

      // x16: ${w13 ? 'gathered x' : 'act16'} f16 [rows, ${Kp}] as vec4<i32>; align: [E+1] offsets then the sorted pairs;
      // w16: f16 ${w13 ? 'w13' : 'w2'} [experts, ${L.rowsPerExpert}, ${L.kStride}] ${blocked ? 'in 16×16 blocks, as array<f16>' : 'as vec4<i32>'}.
      fn main(wid : vec3<u32>, sid : u32, lane : u32) {
        ${gemmTileSnippet('w16', BM, kStepsPerPart, kSteps)}
        let n0 = i32(wid.y) * ${w13 ? 64 : 128};
        ${splitK > 1 ? 'let part = i32(wid.z);' : ''}
        let wn = sid % 2u;
        let wm = sid / 2u;
        // This lane's tile rows (one 16-byte part of each), as vec4 offsets into x16 and w16.
        ${ia.map((i) => `let xAt${i} = u32(rowStart + i32((localIndex + ${i * THREADS}u) / ${vecsPerRow}u)) * ${Kp / 8}u + ` +
          `(localIndex + ${i * THREADS}u) % ${vecsPerRow}u;`).join('\n        ')}
        ${ib.map((i) => `let wAt${i} = u32(${bRow(`(localIndex + ${i * THREADS}u) / ${vecsPerRow}u`)}) * ${L.kStride / 8}u + ` +
          `(localIndex + ${i * THREADS}u) % ${vecsPerRow}u;`).join('\n        ')}
        ${blocked ? `// This subgroup's first weight block: the expert's rows, this workgroup's 128, this subgroup's 64.
        let wBlock = ((u32(e) * ${L.rowsPerExpert / 16}u + wid.y * 8u + wn * 4u) * ${kBlocks}u) * 256u;` : ''}
        ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c} : ${result};`)).join('\n        ')}
        var k = u32(tile.z) * ${BK / 8}u;
        ${ia.map((i) => `var xv${i} = x16[xAt${i} + k];`).join(' ')}
        ${ib.map((i) => `var wv${i} = w16[wAt${i} + k];`).join(' ')}
        for (var kt = tile.z; kt < tile.w; kt++) {
          ${ia.map((i) => put('tileX', i, `xv${i}`)).join('\n          ')}
          ${ib.map((i) => put('tileW', i, `wv${i}`)).join('\n          ')}
          workgroupBarrier();
          if (kt + 1 < tile.w) {
            k += ${BK / 8}u;
            ${ia.map((i) => `xv${i} = x16[xAt${i} + k];`).join(' ')}
            ${ib.map((i) => `wv${i} = w16[wAt${i} + k];`).join(' ')}
          }
          for (var kk = 0u; kk < ${BK}u; kk += 16u) {
            ${rows.map((r) => `let a${r} = subgroupMatrixLoad<${left}, row_major>(&tileX, (wm * ${TM * 16}u + ${16 * r}u) * ${ROW}u + kk, ${ROW}u);`).join('\n            ')}
            ${cols.map((c) => blocked ?
              `let b${c} = subgroupMatrixLoad<${right}, col_major>(&w16, wBlock + ${c * kBlocks * 256}u + (u32(kt) * ${BK / 16}u + kk / 16u) * 256u, 16u);` :
              `let b${c} = subgroupMatrixLoad<${right}, col_major>(&tileW, (wn * 64u + ${16 * c}u) * ${ROW}u + kk, ${ROW}u);`).join('\n            ')}
            ${rows.flatMap((r) => cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${r}, b${c}, acc${r}${c});`)).join('\n            ')}
          }
          workgroupBarrier();
        }
        ${tileRows.fill}

        ${rows.map((r) => `{
          let rt = ${r}u;
          ${cols.map((c) => `subgroupMatrixStore<row_major>(&staged, sid * 1024u + ${c * 256}u, acc${r}${c}, 16u);`).join(' ')}
          workgroupBarrier();
          ${epilogue}
          workgroupBarrier();
        }`).join('\n        ')}
      }
    `;
  }
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13TensorCoreSharedGemmProgram extends ExpertsTensorCoreSharedGemmProgram {}
export class ExpertsW2TensorCoreSharedGemmProgram extends ExpertsTensorCoreSharedGemmProgram {}

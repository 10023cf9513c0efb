/**
 * int8 w8a8 prefill GEMMs on tensor cores, four subgroups per workgroup sharing i8 tiles in workgroup memory
 * ('tensor-core-i8-shared-128' / '-64' of experts_int8_run.ts). Same problem, inputs, outputs and epilogues as
 * ExpertsInt8TensorCoreGemmProgram (experts_int8_tc_webgpu.ts: i8 × i8 → i32 subgroup matrices 16×16×32, int32
 * accumulators equal to the dot4I8Packed path's and the cpu reference's, the same f32 epilogue); the layout is
 * that of the f16 'shared' kernels (experts_gemm_tc_shared_webgpu.ts), which the H200 ran 2-4× faster than one
 * subgroup per workgroup:
 *
 *   128 threads = 4 subgroups of 32 (2 × 2), a workgroup tile of BM (64 or 128) expert-sorted rows × 128 weight
 *   rows; per step of 64 k (16 words a row) the 128 lanes copy the x tile [BM, 64] and the weight tile [128, 64]
 *   into workgroup memory (one 16-byte load per lane and part, BM/32 + 4 parts) while the next step's loads are
 *   in flight (register prefetch: the best of tc_probe's f16 loops); then each subgroup multiplies its BM/2 rows
 *   × 64 weight rows (BM/32 × 4 results of 16×16) out of workgroup memory, in two 32-k matrix steps.
 *
 * Bytes: a tile row is 64 i8 + 16 bytes of padding = 80 bytes (5 vec4), the byte layout of the f16 kernels'
 * 32 halves + 8 (unpadded rows cost 3.8× there: bank conflicts). The tiles are array<vec4<u32>>, filled with
 * one 16-byte store per part (4 word stores cost the f16 probe a third of its rate: 107 against 155 TFLOP/s,
 * bench/results/2026-12-04-h200-tc-probe-round8.log) and read with the new subgroupMatrixLoad form, offsets and
 * strides in vec4s; tc_probe's round 10 kernel of this shape on i8 blocks reached 240 TOPS against 208 for the
 * pipelined storage kernel (-tc-probe-round9-10.log). A load whose last element would lie past its array is
 * skipped: the last load of a tile starts at row 16·(rows/16 − 1), vec4 2, and ends at vec4 5·(rows − 1) + 4,
 * inside the array.
 *   tileX BM·80, tileW 128·80, staged 4 subgroups × 4 results × 256 i32 = 16384, row scales BM·4, tile lookup 16:
 *   37392 bytes for BM = 128, 32016 for 64 (int8SharedTileBytes), within the H200's 49152.
 * Weight words are turned from 'uint8' codes to int8 (`^ 0x80808080`) when they are loaded.
 *
 * w13's weight tile holds 32 gate rows, their 32 up rows, then the next 32 of each (act columns n0 .. n0 + 63),
 * so that every subgroup has the gate and up columns its epilogue pairs (accumulator column block c with c + 2).
 *
 * Subgroup-matrix offsets must be uniform per subgroup for Tint: they derive from the subgroup id that
 * ./device.ts passes to main() (`// moe-main-ids`), never from local_invocation_index or tfjs's private copies.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {activationSnippet, gateUpRows, gemmTileSnippet} from './experts_wgsl';
import {ExpertsInt8Config, I8_FROM_U8} from './experts_int8_webgpu';
import {int8RowWords} from './experts_int8_quant_webgpu';

export type Int8SharedBlockRows = 64 | 128;
/** Weight rows per workgroup (w13: 64 gate and their 64 up rows; w2: 128 h rows). */
const BN = 128;
/** k per step (i8), and words per tile row: 16 of data and 4 of padding. */
const BK = 64;
const ROW_WORDS = 20;
const ROW_VEC4 = ROW_WORDS / 4;
const THREADS = 128;
/** Words of the staged results: per subgroup, one 16-row block's 4 results of 16×16. */
const STAGED = 4 * 4 * 256;

/** Workgroup memory of the shared int8 kernel with `blockRows` rows per tile (see the header). */
export function int8SharedTileBytes(blockRows: number): number {
  return (blockRows + BN) * ROW_WORDS * 4 + STAGED * 4 + blockRows * 4 + 16;
}

export class ExpertsInt8TensorCoreSharedGemmProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsInt8Config;
  private readonly blockRows: Int8SharedBlockRows;

  /** Inputs as ExpertsInt8GemmProgram (align built with `blockRows`). */
  constructor(c: ExpertsInt8Config, outputShape: number[], numTiles: number, blockRows: Int8SharedBlockRows) {
    if (blockRows !== 64 && blockRows !== 128) {
      throw new Error(`shared int8 tensor-core GEMM: blockRows 64 or 128, got ${blockRows}`);
    }
    this.c = c;
    this.blockRows = blockRows;
    const w13 = c.stage === 'w13';
    const N = w13 ? c.intermediateSize : c.hiddenSize;
    this.outputShape = outputShape;
    this.dispatch = [numTiles, Math.ceil(N / (w13 ? BN / 2 : BN)), 1];
    const usesWeights = !w13 && !c.applyRouterWeightOnInput;
    this.variableNames = ['xq', 'align', ...(usesWeights ? ['topkWeights'] : []), 'weights', 'scales',
      ...(c.hasBias ? ['bias'] : [])];
    this.variableComponents = this.variableNames.map((n) => n === 'xq' || n === 'weights' ? 4 : 1);
    this.shaderKey = `moeExpertsInt8GemmTcShared_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.topK}_` +
      `${c.numLocalExperts}_${w13 ? c.activation : ''}_${c.applyRouterWeightOnInput}_${c.hasBias}_${blockRows}`;
  }

  getUserCode(): string {
    const c = this.c;
    const BM = this.blockRows;
    const w13 = c.stage === 'w13';
    const I = c.intermediateSize, H = c.hiddenSize;
    const K = w13 ? H : I;
    const KV = K / 16;                        // vec4 per weight row (and per x row before its scale)
    const XV = int8RowWords(K) / 4;           // vec4 per int8 x row
    const kSteps = Math.ceil(KV / 4);
    const kTail = KV % 4 !== 0;               // the last step reads past K: zeros there
    const TM = BM / 32;                       // 16-row blocks per subgroup (2 subgroups along the rows)
    const perA = BM * 4 / THREADS;            // vec4 parts per lane and step
    const perB = BN * 4 / THREADS;
    const sorted = `align[${c.numLocalExperts + 1} + `;
    const usesWeights = !w13 && !c.applyRouterWeightOnInput;
    const gu = gateUpRows(c.activation, I);
    const rows = Array.from({length: TM}, (_, r) => r);
    const cols = [0, 1, 2, 3];
    const ia = Array.from({length: perA}, (_, i) => i);
    const ib = Array.from({length: perB}, (_, i) => i);
    const left = 'subgroup_matrix_left<i8, 32, 16>';
    const right = 'subgroup_matrix_right<i8, 16, 32>';
    const result = 'subgroup_matrix_result<i32, 16, 16>';
    const scaled = (acc: string, row: string) => {
      const v = `(f32(${acc}) * xs * scales[${row}])`;
      return c.hasBias ? `(${v} + bias[${row}])` : v;
    };
    // Tile row t (0..127) of the weights as a row of this shard's data, or -1 past N. w13: t / 32 odd → up row,
    // act column n0 + 32·(t / 64) + t % 32.
    const weightRow = w13 ?
      `fn weightRow(e : i32, n0 : i32, t : i32) -> i32 {
        let i = n0 + 32 * (t / 64) + t % 32;
        if (i >= ${I}) { return -1; }
        return e * ${2 * I} + select(0, ${gu.upOffset}, (t / 32) % 2 == 1) + ${gu.gate('i')};
      }` :
      `fn weightRow(e : i32, n0 : i32, t : i32) -> i32 {
        let h = n0 + t;
        if (h >= ${H}) { return -1; }
        return e * ${H} + h;
      }`;
    const inK = kTail ? ' && kv < ' + KV : '';
    const loadX = (i: number) => `xv${i} = vec4<i32>(0);
            if (xAt${i} >= 0${inK}) { xv${i} = xq[xAt${i} + kv]; }`;
    const loadW = (i: number) => `wv${i} = vec4<i32>(0);
            if (wAt${i} >= 0${inK}) { wv${i} = bitcast<vec4<i32>>(bitcast<vec4<u32>>(weights[wAt${i} + kv]) ^ vec4<u32>(${I8_FROM_U8})); }`;
    const put = (tile: string, i: number, v: string) =>
      `${tile}[(tRow + ${32 * i}u) * ${ROW_VEC4}u + part] = bitcast<vec4<u32>>(${v});`;
    const epilogue = w13 ? `
            for (var r = 0u; r < 16u; r++) {
              let m = wm * ${TM * 16}u + rt * 16u + r;
              let row = rowStart + i32(m);
              let xs = rowScale[m];
              let i = n0 + 32 * i32(wn) + i32(lane);
              if (i < ${I}) {
                let ra = u32(e * ${2 * I} + ${gu.gate('i')});
                let rb = ra + ${gu.upOffset}u;
                let g = staged[base + (lane / 16u) * 256u + r * 16u + lane % 16u];
                let u = staged[base + (2u + lane / 16u) * 256u + r * 16u + lane % 16u];
                result[row * ${I} + i] = expertGlu(${scaled('g', 'ra')}, ${scaled('u', 'rb')});
              }
            }` : `
            for (var r = 0u; r < 16u; r++) {
              let m = wm * ${TM * 16}u + rt * 16u + r;
              let pair = ${sorted}rowStart + i32(m)];
              if (pair >= 0) {
                let xs = rowScale[m];
                for (var half = 0u; half < 2u; half++) {
                  let col = half * 32u + lane;
                  let h = n0 + 64 * i32(wn) + i32(col);
                  if (h < ${H}) {
                    let rw = u32(e * ${H} + h);
                    let v = staged[base + (col / 16u) * 256u + r * 16u + col % 16u];
                    result[pair * ${H} + h] = ${scaled('v', 'rw')}${usesWeights ? ' * topkWeights[pair]' : ''};
                  }
                }
              }
            }`;
    return `
      enable subgroups;
      enable chromium_experimental_subgroup_matrix;
      // moe-main-ids
      ${w13 ? activationSnippet(c.activation) : ''}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end k step
      var<workgroup> tileX : array<vec4<u32>, ${BM * ROW_VEC4}>;   // ${BM} rows × (64 + 16 padding) i8
      var<workgroup> tileW : array<vec4<u32>, ${BN * ROW_VEC4}>;   // ${BN} weight rows × (64 + 16 padding) i8
      var<workgroup> staged : array<i32, ${STAGED}>;   // per subgroup: one 16-row block's 4 results
      var<workgroup> rowScale : array<f32, ${BM}>;
      ${weightRow}

      // xq: ${w13 ? 'hidden int8 rows [T, ·], gathered through the sorted pairs' : 'act int8 rows [rows, ·], in sorted order'};
      // align: [E+1] offsets then the sorted pairs; weights: this shard's words as vec4; result: ${w13 ? 'act [rows, I]' : 'y [P, H] by pair'}.
      fn main(wid : vec3<u32>, sid : u32, lane : u32) {
        ${gemmTileSnippet('weights', BM, kSteps, kSteps)}
        let n0 = i32(wid.y) * ${w13 ? BN / 2 : BN};
        let wn = sid % 2u;
        let wm = sid / 2u;
        // This lane's tile rows tRow + 32·i and 16-byte part of each (vec4 offsets of their starts, -1: zeros).
        let tRow = localIndex / 4u;
        let part = localIndex % 4u;
        ${ia.map((i) => {
          const m = `tRow + ${32 * i}u`;
          return w13 ? `var xAt${i} = -1;
        {
          let pair = ${sorted}rowStart + i32(${m})];
          if (pair >= 0) { xAt${i} = (pair / ${c.topK}) * ${XV}; }
        }` : `let xAt${i} = (rowStart + i32(${m})) * ${XV};`;
        }).join('\n        ')}
        ${ib.map((i) => `var wAt${i} = weightRow(e, n0, i32(tRow) + ${32 * i});
        if (wAt${i} >= 0) { wAt${i} = wAt${i} * ${KV}; }`).join('\n        ')}
        if (localIndex < ${BM}u) {
          var s = 0.0;
          ${w13 ? `let pair = ${sorted}rowStart + i32(localIndex)];
          if (pair >= 0) { s = bitcast<f32>(xq[(pair / ${c.topK}) * ${XV} + ${KV}].x); }` :
            `s = bitcast<f32>(xq[(rowStart + i32(localIndex)) * ${XV} + ${KV}].x);`}
          rowScale[localIndex] = s;
        }
        ${rows.flatMap((r) => cols.map((cc) => `var acc${r}${cc} : ${result};`)).join('\n        ')}
        ${ia.map((i) => `var xv${i} : vec4<i32>;`).join(' ')}
        ${ib.map((i) => `var wv${i} : vec4<i32>;`).join(' ')}
        {
          let kv = tile.z * 4 + i32(part);
          ${ia.map(loadX).join('\n          ')}
          ${ib.map(loadW).join('\n          ')}
        }
        for (var kt = tile.z; kt < tile.w; kt++) {
          ${ia.map((i) => put('tileX', i, `xv${i}`)).join('\n          ')}
          ${ib.map((i) => put('tileW', i, `wv${i}`)).join('\n          ')}
          workgroupBarrier();
          if (kt + 1 < tile.w) {
            let kv = (kt + 1) * 4 + i32(part);
            ${ia.map(loadX).join('\n            ')}
            ${ib.map(loadW).join('\n            ')}
          }
          for (var kk = 0u; kk < ${BK / 16}u; kk += 2u) {   // vec4s: 32 k a step
            ${rows.map((r) => `let a${r} = subgroupMatrixLoad<${left}, row_major>(&tileX, (wm * ${TM * 16}u + ${16 * r}u) * ${ROW_VEC4}u + kk, ${ROW_VEC4}u);`).join('\n            ')}
            ${cols.map((cc) => `let b${cc} = subgroupMatrixLoad<${right}, col_major>(&tileW, (wn * 64u + ${16 * cc}u) * ${ROW_VEC4}u + kk, ${ROW_VEC4}u);`).join('\n            ')}
            ${rows.flatMap((r) => cols.map((cc) => `acc${r}${cc} = subgroupMatrixMultiplyAccumulate(a${r}, b${cc}, acc${r}${cc});`)).join('\n            ')}
          }
          workgroupBarrier();
        }

        let base = sid * 1024u;
        ${rows.map((r) => `{
          let rt = ${r}u;
          ${cols.map((cc) => `subgroupMatrixStore<row_major>(&staged, base + ${cc * 256}u, acc${r}${cc}, 16u);`).join(' ')}
          workgroupBarrier();
          ${epilogue}
          workgroupBarrier();
        }`).join('\n        ')}
      }
    `;
  }
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13Int8TensorCoreSharedGemmProgram extends ExpertsInt8TensorCoreSharedGemmProgram {}
export class ExpertsW2Int8TensorCoreSharedGemmProgram extends ExpertsInt8TensorCoreSharedGemmProgram {}

/**
 * Prefill path: a grouped GEMM over the expert-sorted rows built by ExpertsAlignProgram (ggml-webgpu
 * `mul_mat_id` / vLLM `fused_moe` style). Each workgroup takes one tile of `blockRows` sorted rows (all
 * of one expert, thanks to the padding) and 128 weight rows, and finds its expert from the offsets.
 *
 * stage 'w13': act[row, i] = act(gate_i · x) · (up_i · x) for the 64 i of its tile; the 128 weight rows
 *              are gate rows i0..i0+63 and up rows I+i0..I+i0+63, so the activation is fused.
 *              x = hidden[pair / k] gathered through the sorted list (· w[pair] when applied on the input).
 * stage 'w2':  y[pair, h] = (w2_h · act[row]) · w[pair] for 128 h; rows are scattered back to pair order
 *              (padding rows dropped), so the combine reads y by pair.
 *
 * Tiling: 256 threads as 16 × 16; each computes blockRows/16 rows × 8 columns (4 gate + 4 up, or h and
 * h + 64), from shared-memory tiles of 16 or 32 k; the next k tile is loaded into registers while the current
 * one is multiplied. Weights are read [rows, K] with K contiguous, as vec4 where K % 4 == 0; packed formats
 * as one dequantized 8-k chunk per thread (dequant_wgsl.ts), so the tile in shared memory is float32 either way.
 *
 * Split-K (w2, `splitK` > 1): grid z takes a contiguous range of k tiles (tile boundaries are multiples of 16 k,
 * so of every packed word and of every 8-multiple scale group; a bias is added by part 0 only), so a w2 with few row tiles (Mixtral
 * at M = 256: ~12 row tiles × 32 column tiles, each looping over K = 14336) fills the GPU.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import type {Activation} from '../../kernel_names';
import type {WeightFormat} from '../../quant/format';
import {ChunkShape, chunkShape, dequantSnippets, weightBindingComponents, weightBindings, weightFormatKey}
  from './dequant_wgsl';
import {EXPERTS_WORKGROUP, activationSnippet, gateUpRows, gemmTileSnippet, weightRowSnippet} from './experts_wgsl';
import type {ExpertsStage} from './experts_gemv_webgpu';

export interface ExpertsGemmConfig {
  stage: ExpertsStage;
  hiddenSize: number;
  intermediateSize: number;
  topK: number;
  numLocalExperts: number;
  activation: Activation;
  applyRouterWeightOnInput: boolean;
  /** Rows per tile: 16, 32, 64 or 128 (the align program pads each expert to a multiple of it). */
  blockRows: number;
  /** k per shared-memory tile: 16 or 32 (32 needs (blockRows + 128)·32·4 bytes of workgroup memory). */
  tileK: number;
  /**
   * w2 only: the K (= I) range is cut into this many parts, one per grid z; part z writes its partial
   * sums to rows [z·P, (z+1)·P) of y, and the combine adds the parts in order (no atomics).
   */
  splitK?: number;
  format: WeightFormat;
  hasBias: boolean;
}

export const GEMM_BLOCK_ROWS = [16, 32, 64, 128];
const BN = 128;         // weight rows per tile
const THREADS_X = 16;   // column groups; 16 row groups

export class ExpertsGemmProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  outputComponent: number;
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsGemmConfig;
  private readonly vec: number;
  private readonly ch: ChunkShape;

  /**
   * Inputs, in order: x (hidden [T, H] for w13, act [rows, I] for w2), align, topkWeights?, then the shard's
   * data, scales, zeros, gidx, bias (as the format has them: weightBindings).
   * `numTiles` bounds the row tiles of this shard: ceil(P / blockRows) + its experts.
   */
  constructor(c: ExpertsGemmConfig, outputShape: number[], numTiles: number) {
    this.c = c;
    const w13 = c.stage === 'w13';
    const K = w13 ? c.hiddenSize : c.intermediateSize;
    const N = w13 ? c.intermediateSize : c.hiddenSize;
    this.ch = chunkShape(c.format, K);
    this.vec = this.ch.vec;
    this.outputComponent = N % 4 === 0 ? 4 : 1;
    this.outputShape = outputShape;
    const splitK = w13 ? 1 : (c.splitK ?? 1);
    this.dispatch = [numTiles, Math.ceil(N / (w13 ? BN / 2 : BN)), splitK];
    const usesWeights = w13 ? c.applyRouterWeightOnInput : !c.applyRouterWeightOnInput;
    const head = ['x', 'align', ...(usesWeights ? ['topkWeights'] : [])];
    this.variableNames = [...head, ...weightBindings(c.format, c.hasBias, 0)];
    this.variableComponents = [...head.map((n) => n === 'x' ? this.vec : 1),
      ...weightBindingComponents(c.format, c.hasBias, 0, this.ch)];
    this.shaderKey = `moeExpertsGemm_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.topK}_` +
        `${c.numLocalExperts}_${w13 ? c.activation : ''}_${c.applyRouterWeightOnInput}_${c.blockRows}_${c.tileK}_${this.vec}_${splitK}_` +
        weightFormatKey(c.format, c.hasBias, this.ch);
  }

  getUserCode(): string {
    const {stage, hiddenSize: H, intermediateSize: I, topK, numLocalExperts: E, blockRows: BM} = this.c;
    const w13 = stage === 'w13';
    const K = w13 ? H : I;
    const N = w13 ? I : H;
    const TM = BM / 16;
    const BM4 = BM / 4;
    const vec = this.vec;
    const KV = K / vec;                 // row length in vector units
    const BK = this.c.tileK;
    const kTiles = Math.ceil(K / BK);
    const splitK = w13 ? 1 : (this.c.splitK ?? 1);
    const kTilesPerPart = Math.ceil(kTiles / splitK);
    // Loads: QPR consecutive threads read the QPR quads (4 k each) of one row, so a warp reads whole
    // 64- or 128-byte row segments. (Giving a warp 32 rows of one quad instead, which makes the shared-
    // memory stores conflict-free, was 15-20% slower on the H200: 2026-11-30, Mixtral M=4096 26.9 vs
    // 32.3 TFLOP/s.)
    const QPR = BK / 4;                                  // quads (4 k) per row of a tile
    const rowsPerPass = EXPERTS_WORKGROUP / QPR;         // tile rows one load pass covers
    const aLoads = Math.ceil(BM / rowsPerPass);
    // Weight loads: one chunk (chunkShape: 4 k of f32, 8 k of packed codes) per thread and pass.
    const ch = this.ch;
    const packed = this.c.format.code !== 'f32';
    const CPR = packed ? BK / ch.values : QPR;           // chunks per row of a tile
    const bRowsPerPass = EXPERTS_WORKGROUP / CPR;
    const bLoads = BN / bRowsPerPass;
    const sorted = `align[${E + 1} + `;
    const inScale = w13 && this.c.applyRouterWeightOnInput;
    const outScale = !w13 && !this.c.applyRouterWeightOnInput;

    // One quad (4 consecutive k) of a row, zero past K.
    const quad = (buf: string, rowBase: string, k: string) => vec === 4 ?
        `select(vec4<f32>(0.0), ${buf}[${rowBase} + u32(${k}) / 4u], ${k} < ${K})` :
        `vec4<f32>(${[0, 1, 2, 3].map((d) =>
            `select(0.0, ${buf}[${rowBase} + u32(min(${k} + ${d}, ${K - 1}))], ${k} + ${d} < ${K})`).join(', ')})`;

    // B (weight) row r of the tile, r in [0, 128): its row in the shard, or -1 past N.
    const gu = gateUpRows(this.c.activation, I);
    const bRow = weightRowSnippet(w13 ? 'w13' : 'w2', this.c.activation, H, I, BN / 2);

    const aRows = Array.from({length: aLoads}, (_, q) => q);
    const bRowsList = Array.from({length: bLoads}, (_, j) => j);
    const bLoad = bRowsList.map((j) => packed ?
        `if (bRow${j} >= 0 && k0 + bkq${j} < ${K}) { rb${j} = wload0(u32(bRow${j}), u32(k0 + bkq${j}) / 8u); } ` +
        `else { rb${j} = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0)); }` :
        `if (bRow${j} >= 0) { rb${j} = ${quad('weights0', `u32(bRow${j}) * ${KV}u`, `k0 + bkq${j}`)}; } else { rb${j} = vec4<f32>(0.0); }`)
        .join('\n          ');
    const accDecl = Array.from({length: TM}, (_, r) =>
        `var accA${r} = vec4<f32>(0.0); var accB${r} = vec4<f32>(0.0);`).join('\n        ');
    const aRead = TM >= 4 ?
        Array.from({length: TM / 4}, (_, q) => `let av${q} = As[kk * ${BM4}u + ty * ${TM / 4}u + ${q}u];`).join(' ') :
        `let av = As[kk * ${BM4}u + (ty * ${TM}u) / 4u];`;
    const aVal = (r: number) => TM >= 4 ? `av${Math.floor(r / 4)}[${r % 4}]` : `av[(ty * ${TM}u) % 4u + ${r}u]`;
    const fmas = Array.from({length: TM}, (_, r) =>
        `accA${r} += ${aVal(r)} * bA; accB${r} += ${aVal(r)} * bB;`).join('\n            ');

    const epilogue = w13 ? Array.from({length: TM}, (_, r) => `
        {
          let row = rowStart + i32(ty) * ${TM} + ${r};
          let i = n0 + i32(tx) * 4;
          ${this.c.hasBias ? `let bG = vec4<f32>(${[0, 1, 2, 3].map((d) =>
            `wbias0(u32(e * ${2 * I} + ${gu.gate(`min(i + ${d}, ${I - 1})`)}))`).join(', ')});
          let bU = vec4<f32>(${[0, 1, 2, 3].map((d) =>
            `wbias0(u32(e * ${2 * I} + ${gu.gate(`min(i + ${d}, ${I - 1})`)} + ${gu.upOffset}))`).join(', ')});
          let gate = accA${r} + bG;
          let up = accB${r} + bU;` : `let gate = accA${r};
          let up = accB${r};`}
          let v = vec4<f32>(expertGlu(gate.x, up.x), expertGlu(gate.y, up.y), expertGlu(gate.z, up.z),
                            expertGlu(gate.w, up.w));
          ${this.outputComponent === 4 ?
            `if (i < ${I}) { result[(row * ${I} + i) / 4] = v; }` :
            [0, 1, 2, 3].map((d) => `if (i + ${d} < ${I}) { result[row * ${I} + i + ${d}] = v[${d}]; }`).join('\n          ')}
        }`).join('') :
      Array.from({length: TM}, (_, r) => `
        {
          let pair = ${sorted}rowStart + i32(ty) * ${TM} + ${r}];
          if (pair >= 0) {
            let s = ${outScale ? 'topkWeights[pair]' : '1.0'};
            let outRow = ${splitK > 1 ? `part * (uniforms.outShape.x / ${splitK}) + pair` : 'pair'};
            let h = n0 + i32(tx) * 4;
            ${[['accA', 0], ['accB', 64]].map(([acc, off]) => {
              // Expert biases: added once, by K part 0.
              const b = this.c.hasBias ? ` + select(vec4<f32>(0.0), vec4<f32>(${[0, 1, 2, 3].map((d) =>
                `wbias0(u32(e * ${H} + min(h + ${Number(off) + d}, ${H - 1})))`).join(', ')}), ${splitK > 1 ? 'part == 0' : 'true'})` : '';
              return this.outputComponent === 4 ?
              `if (h + ${off} < ${H}) { result[(outRow * ${H} + h + ${off}) / 4] = (${acc}${r}${b}) * s; }` :
              `{ let v = (${acc}${r}${b}) * s;
            ${[0, 1, 2, 3].map((d) =>
                `if (h + ${off} + ${d} < ${H}) { result[outRow * ${H} + h + ${off} + ${d}] = v[${d}]; }`)
                .join('\n            ')} }`;
            }).join('\n            ')}
          }
        }`).join('');

    return `
      ${w13 ? activationSnippet(this.c.activation) : ''}
      ${dequantSnippets(this.c.format, this.c.hasBias, 1, w13 ? 2 * I : H, K, ch)}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end k tile
      var<workgroup> As : array<vec4<f32>, ${BK * BM4}>;   // [k][m / 4]
      var<workgroup> Bs : array<vec4<f32>, ${BK * BN / 4}>;   // [k][n / 4]
      var<private> n0 : i32;
      ${bRow}

      // x: ${w13 ? 'hidden [T, H], rows gathered through the sorted pairs' : 'act [rows, I], in sorted order'};
      // align: [E+1] offsets then the sorted pairs; weights: this shard's ${w13 ? 'w13 [n, 2I, H]' : 'w2 [n, H, I]'};
      // result: ${w13 ? 'act [rows, I]' : 'y [P, H] by pair'}.
      fn main() {
        ${gemmTileSnippet('weights0', BM, kTilesPerPart, kTiles)}
        let ktEnd = tile.w;
        ${splitK > 1 ? `let part = i32(workgroupId.z);` : ''}
        n0 = i32(workgroupId.y) * ${w13 ? BN / 2 : BN};
        let tx = localIndex % ${THREADS_X}u;
        let ty = localIndex / ${THREADS_X}u;

        // This thread's A rows (m) and B rows (r) for loading, with their bases in vector units.
        ${aRows.map((q) => `
        let am${q} = i32(localIndex / ${QPR}u) + ${q * rowsPerPass};
        let akq${q} = i32(localIndex % ${QPR}u) * 4;
        var aBase${q} = -1;
        var aScale${q} = 1.0;
        if (am${q} < ${BM}) {
          ${w13 ? `let pair = ${sorted}rowStart + am${q}];
          if (pair >= 0) {
            aBase${q} = (pair / ${topK}) * ${KV};
            ${inScale ? `aScale${q} = topkWeights[pair];` : ''}
          }` : `aBase${q} = (rowStart + am${q}) * ${KV};`}
        }`).join('')}
        ${bRowsList.map((j) => `let br${j} = i32(localIndex / ${CPR}u) + ${j * bRowsPerPass};
        let bkq${j} = i32(localIndex % ${CPR}u) * ${packed ? ch.values : 4};
        let bRow${j} = weightRow(e, br${j});`).join('\n        ')}

        ${aRows.map((q) => `var ra${q} = vec4<f32>(0.0);`).join(' ')}
        ${bRowsList.map((j) => packed ? `var rb${j} = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));` :
          `var rb${j} = vec4<f32>(0.0);`).join(' ')}
        ${accDecl}

        {
          let k0 = tile.z * ${BK};
          ${aRows.map((q) => `if (aBase${q} >= 0) { ra${q} = ${quad('x', `u32(aBase${q})`, `k0 + akq${q}`)} * aScale${q}; } else { ra${q} = vec4<f32>(0.0); }`).join('\n          ')}
          ${bLoad}
        }
        for (var kt = tile.z; kt < ktEnd; kt++) {
          // Transpose into shared memory: As[k][m], Bs[k][n].
          ${aRows.map((q) => `if (am${q} < ${BM}) {
            for (var d = 0; d < 4; d++) { As[u32(akq${q} + d) * ${BM4}u + u32(am${q}) / 4u][am${q} % 4] = ra${q}[d]; }
          }`).join('\n          ')}
          for (var d = 0; d < 4; d++) {
            ${bRowsList.map((j) => packed ? [0, 1].map((v) =>
              `Bs[u32(bkq${j} + ${4 * v} + d) * ${BN / 4}u + u32(br${j}) / 4u][br${j} % 4] = rb${j}[${v}][d];`).join('\n            ') :
              `Bs[u32(bkq${j} + d) * ${BN / 4}u + u32(br${j}) / 4u][br${j} % 4] = rb${j}[d];`).join('\n            ')}
          }
          workgroupBarrier();
          // Prefetch the next k tile into registers while this one is multiplied.
          if (kt + 1 < ktEnd) {
            let k0 = (kt + 1) * ${BK};
            ${aRows.map((q) => `if (aBase${q} >= 0) { ra${q} = ${quad('x', `u32(aBase${q})`, `k0 + akq${q}`)} * aScale${q}; } else { ra${q} = vec4<f32>(0.0); }`).join('\n            ')}
            ${bLoad}
          }
          for (var kk = 0u; kk < ${BK}u; kk++) {
            ${aRead}
            let bA = Bs[kk * ${BN / 4}u + tx];
            let bB = Bs[kk * ${BN / 4}u + 16u + tx];
            ${fmas}
          }
          workgroupBarrier();
        }
        ${epilogue}
      }
    `;
  }
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13GemmProgram extends ExpertsGemmProgram {}
export class ExpertsW2GemmProgram extends ExpertsGemmProgram {}

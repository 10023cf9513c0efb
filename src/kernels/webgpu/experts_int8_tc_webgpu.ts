/**
 * int8 w8a8 prefill GEMMs on tensor cores: the problem, inputs, outputs and epilogues of ExpertsInt8GemmProgram
 * (experts_int8_webgpu.ts), the products on WGSL subgroup matrices (`chromium_experimental_subgroup_matrix`,
 * i8 × i8 → i32, M×N×K = 16×16×32). The accumulators are int32 and exact, so they equal the dot4I8Packed
 * path's and the cpu reference's bit for bit, and the shared f32 epilogue makes the outputs equal too.
 *
 * Layout as the f16 tensor-core GEMM (experts_gemm_tc_webgpu.ts): one 32-wide subgroup per workgroup (the
 * builtins need workgroup-uniform offsets), 32 expert-sorted rows × 64 weight rows per workgroup, k in tiles of 32
 * (one matrix K): 2 (row blocks) × 4 (column blocks) i32 accumulators.
 *   w13: weight rows gate i0..i0+31 and up i0..i0+31; act(gate)·up pairs accumulator column block c with c + 2
 *   w2:  weight rows h0..h0+63
 * Types (Dawn's subgroup_matrix.md): subgroup_matrix_left<i8, K, M> is M rows × K columns, _right<i8, N, K> is
 * K × N, _result<i32, N, M>; i8 matrices live in array<i32> (4 per element), and a load's offset and stride count
 * the array's i32 elements (the deprecated form counted i8 elements, which Tint divided by 4); Tint skips (zero
 * matrix) a load whose last byte would lie past the array (Dawn's
 * test/tint/builtins/gen/var/subgroupMatrixLoad/0f7739.wgsl.expected.spvasm). Each 16×32 operand tile has its
 * own workgroup array of exactly 512 bytes, loaded at offset 0 with a stride of 8 words: A0/A1 hold rows
 * 0-15/16-31 row-major (32 bytes a row), B0..B3 weight rows 0-15, .., 48-63, i.e. the right matrix column-major
 * (a weight row is a column of Wᵀ). Weight words are turned from
 * 'uint8' codes to int8 (`^ 0x80808080`) as they are stored.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {activationSnippet, gateUpRows, gemmTileSnippet, weightRowSnippet} from './experts_wgsl';
import {ExpertsInt8Config, I8_FROM_U8} from './experts_int8_webgpu';
import {int8RowWords} from './experts_int8_quant_webgpu';
import type {SubgroupMatrixConfig} from './capabilities';

/** Rows per tile (the align program pads every expert to a multiple of it). */
export const INT8_TC_BLOCK_ROWS = 32;
const BN = 64;
const BKW = 8;     // words of 4 k per tile row: K = 32 of the matrix config
const WG = 32;
/** A0, A1, B0..B3 (512 bytes each), 4 staged 16×16 i32 accumulators, 32 row scales, w2: 32 pairs and weights. */
export const INT8_TC_WORKGROUP_BYTES = 6 * 512 + 4 * 256 * 4 + 3 * INT8_TC_BLOCK_ROWS * 4;

/** The adapter's i8 × i8 → i32 16×16×32 config, if it lists one. */
export function int8TensorCoreConfig(configs: SubgroupMatrixConfig[]): SubgroupMatrixConfig | undefined {
  return configs.find((c) => c.componentType === 'i8' && c.resultComponentType === 'i32' && c.M === 16 &&
    c.N === 16 && c.K === 32);
}

/**
 * The int8 GEMMs' epilogue (this file's, experts_int8_tc_pipelined_webgpu.ts's and, `narrow`,
 * experts_int8_tc_staged_webgpu.ts's), 64 weight rows a subgroup (4 staged results), `narrow` 32 (2: w13 gate and
 * up of 16 act columns, w2 32 h columns): `columns` reads each lane's column weight scales and biases once (read per row they were a storage load
 * in each of the epilogue's 16-row steps); `block` turns staged 16-row block `rt` of i32 results into act rows (w13)
 * or y rows by pair (w2) with ExpertsInt8GemmProgram's f32 expressions, so the outputs equal dot4's bit for bit.
 * It reads n0, e, lane, rt, rowStart, staged (from offset `base`, a u32 expression: a subgroup's own block where
 * several share a workgroup, as stagedEpilogue's), rowScale and, for w2, tilePair and tileWeight (routing weight
 * on the output). `at` reads element i of the staged block (result i / 256, row i % 256 / 16, column i % 16): the
 * workgroup array `staged` unless given (the epilogue pass reads the GEMM's i32 results from storage).
 */
/**
 * An i32 accumulator as the f32 output value: ExpertsInt8GemmProgram's expression (row scale `xs`, the column's
 * weight scale, its bias), which every int8 epilogue shares so that they agree bit for bit.
 */
export function int8Dequantized(hasBias: boolean, acc: string, scale: string, bias: string): string {
  const v = `(f32(${acc}) * xs * ${scale})`;
  return hasBias ? `(${v} + ${bias})` : v;
}

export function int8Epilogue(c: ExpertsInt8Config, base = '0u', narrow = false,
    at: (i: string) => string = (i) => `staged[${i}]`): {columns: string; block: string} {
  const w13 = c.stage === 'w13';
  const I = c.intermediateSize, H = c.hiddenSize;
  const gu = gateUpRows(c.activation, I);
  const usesWeights = !w13 && !c.applyRouterWeightOnInput;
  const scaled = (acc: string, col: string) => int8Dequantized(c.hasBias, acc, `colScale${col}`, `colBias${col}`);
  const columns = w13 ? `
        let iLane = n0 + i32(lane${narrow ? ' % 16u' : ''});
        let gateRow = u32(e * ${2 * I} + ${gu.gate(`min(iLane, ${I - 1})`)});
        let colScaleA = scales[gateRow];
        let colScaleB = scales[gateRow + ${gu.upOffset}u];
        ${c.hasBias ? `let colBiasA = bias[gateRow];
        let colBiasB = bias[gateRow + ${gu.upOffset}u];` : ''}` : `
        let hRow0 = u32(e * ${H} + min(n0 + i32(lane), ${H - 1}));
        let colScale0 = scales[hRow0];
        ${c.hasBias ? 'let colBias0 = bias[hRow0];' : ''}${narrow ? '' : `
        let hRow1 = u32(e * ${H} + min(n0 + 32 + i32(lane), ${H - 1}));
        let colScale1 = scales[hRow1];
        ${c.hasBias ? 'let colBias1 = bias[hRow1];' : ''}`}`;
  // narrow w13: 16 act columns, so a lane takes column lane % 16 of every other row.
  const block = w13 && narrow ? `
            for (var i = 0u; i < 8u; i++) {
              let r = lane / 16u + 2u * i;
              let m = rt * 16u + r;
              let row = rowStart + i32(m);
              let xs = rowScale[m];
              if (iLane < ${I}) {
                let g = ${at(`${base} + r * 16u + lane % 16u`)};
                let u = ${at(`${base} + 256u + r * 16u + lane % 16u`)};
                result[row * ${I} + iLane] = expertGlu(${scaled('g', 'A')}, ${scaled('u', 'B')});
              }
            }` : w13 ? `
            for (var r = 0u; r < 16u; r++) {
              let m = rt * 16u + r;
              let row = rowStart + i32(m);
              let xs = rowScale[m];
              if (iLane < ${I}) {
                let g = ${at(`${base} + (lane / 16u) * 256u + r * 16u + lane % 16u`)};
                let u = ${at(`${base} + (2u + lane / 16u) * 256u + r * 16u + lane % 16u`)};
                result[row * ${I} + iLane] = expertGlu(${scaled('g', 'A')}, ${scaled('u', 'B')});
              }
            }` : `
            for (var r = 0u; r < 16u; r++) {
              let m = rt * 16u + r;
              let pair = tilePair[m];
              if (pair >= 0) {
                let xs = rowScale[m];
                ${(narrow ? [0] : [0, 1]).map((part) => `{
                  let col = ${32 * part}u + lane;
                  let h = n0 + i32(col);
                  if (h < ${H}) {
                    let v = ${at(`${base} + (col / 16u) * 256u + r * 16u + col % 16u`)};
                    result[pair * ${H} + h] = ${scaled('v', `${part}`)}${usesWeights ? ' * tileWeight[m]' : ''};
                  }
                }`).join('\n                ')}
              }
            }`;
  return {columns, block};
}

export class ExpertsInt8TensorCoreGemmProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [WG, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsInt8Config;

  /** Inputs as ExpertsInt8GemmProgram (align built with blockRows 32). */
  constructor(c: ExpertsInt8Config, outputShape: number[], numTiles: number) {
    this.c = c;
    const w13 = c.stage === 'w13';
    const N = w13 ? c.intermediateSize : c.hiddenSize;
    this.outputShape = outputShape;
    this.dispatch = [numTiles, Math.ceil(N / (w13 ? BN / 2 : BN)), 1];
    const usesWeights = !w13 && !c.applyRouterWeightOnInput;
    this.variableNames = ['xq', 'align', ...(usesWeights ? ['topkWeights'] : []), 'weights', 'scales',
      ...(c.hasBias ? ['bias'] : [])];
    this.variableComponents = this.variableNames.map((n) => n === 'xq' || n === 'weights' ? 4 : 1);
    this.shaderKey = `moeExpertsInt8GemmTc_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.topK}_` +
      `${c.numLocalExperts}_${w13 ? c.activation : ''}_${c.applyRouterWeightOnInput}_${c.hasBias}`;
  }

  getUserCode(): string {
    const c = this.c;
    const w13 = c.stage === 'w13';
    const I = c.intermediateSize, H = c.hiddenSize;
    const K = w13 ? H : I;
    const KV = K / 16;
    const XV = int8RowWords(K) / 4;
    const BM = INT8_TC_BLOCK_ROWS;
    const kTiles = Math.ceil(K / (4 * BKW));
    const sorted = `align[${c.numLocalExperts + 1} + `;
    const usesWeights = !w13 && !c.applyRouterWeightOnInput;
    const HALF = BN / 2;
    const left = 'subgroup_matrix_left<i8, 32, 16>';
    const right = 'subgroup_matrix_right<i8, 16, 32>';
    const result = 'subgroup_matrix_result<i32, 16, 16>';
    const bRow = weightRowSnippet(w13 ? 'w13' : 'w2', c.activation, H, I, HALF);
    // One vec4 (16 k) of row `row` of a tile into `tile` (words [row % 16][half·4 .. +3]), zero past K or base -1.
    const store = (tile: string, row: string, half: string, v: string) =>
      [0, 1, 2, 3].map((d) => `${tile}[(${row} % 16u) * ${BKW}u + ${half} * 4u + ${d}u] = i32(${v}[${d}]);`).join(' ');
    const aPasses = [0, 1];
    const bPasses = [0, 1, 2, 3];
    const epilogue = int8Epilogue(c);
    return `
      enable chromium_experimental_subgroup_matrix;
      ${w13 ? activationSnippet(c.activation) : ''}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end k tile
      ${aPasses.map((p) => `var<workgroup> A${p} : array<i32, ${16 * BKW}>;   // rows ${16 * p}..${16 * p + 15} × 32 i8`).join('\n      ')}
      ${bPasses.map((p) => `var<workgroup> B${p} : array<i32, ${16 * BKW}>;   // weight rows ${16 * p}..${16 * p + 15} × 32 i8`).join('\n      ')}
      var<workgroup> staged : array<i32, ${4 * 256}>;   // one row block's 4 accumulators, 16×16 each
      var<workgroup> rowScale : array<f32, ${BM}>;
      ${w13 ? '' : `// w2's rows: their pairs and routing weights, read once before the k loop (experts_gemm_tc_storage_webgpu.ts epilogueRows says why).
      var<workgroup> tilePair : array<i32, ${BM}>;
      ${usesWeights ? `var<workgroup> tileWeight : array<f32, ${BM}>;` : ''}`}
      var<private> n0 : i32;
      ${bRow}

      // xq: ${w13 ? 'hidden int8 rows [T, ·], gathered through the sorted pairs' : 'act int8 rows [rows, ·], in sorted order'};
      // align: [E+1] offsets then the sorted pairs; weights: this shard's words as vec4; result: ${w13 ? 'act [rows, I]' : 'y [P, H] by pair'}.
      fn main() {
        ${gemmTileSnippet('weights', BM, kTiles, kTiles)}
        n0 = i32(workgroupId.y) * ${w13 ? HALF : BN};
        let lane = localIndex;
        ${epilogue.columns}
        // Load pass p: vec4 v = p·32 + lane of the tile, row v / 2, words (v % 2)·4 .. +3.
        let half = lane % 2u;
        let sub = lane / 2u;
        ${aPasses.map((p) => `var aBase${p} = -1;
        {
          let m = ${16 * p}u + sub;
          ${w13 ? `let pair = ${sorted}rowStart + i32(m)];
          if (pair >= 0) { aBase${p} = (pair / ${c.topK}) * ${XV}; }` : `aBase${p} = (rowStart + i32(m)) * ${XV};`}
        }`).join('\n        ')}
        {
          var s = 0.0;
          ${w13 ? `let pair = ${sorted}rowStart + i32(lane)];
          if (pair >= 0) { s = bitcast<f32>(xq[(pair / ${c.topK}) * ${XV} + ${KV}].x); }` :
            `s = bitcast<f32>(xq[(rowStart + i32(lane)) * ${XV} + ${KV}].x);
          let pair = ${sorted}rowStart + i32(lane)];
          tilePair[lane] = pair;
          ${usesWeights ? 'tileWeight[lane] = select(0.0, topkWeights[max(pair, 0)], pair >= 0);' : ''}`}
          rowScale[lane] = s;
        }
        ${bPasses.map((p) => `let bRow${p} = weightRow(e, ${16 * p} + i32(sub));`).join('\n        ')}
        ${Array.from({length: 8}, (_, a) => `var acc${a} : ${result};`).join('\n        ')}

        for (var kt = tile.z; kt < tile.w; kt++) {
          let kv = kt * 2 + i32(half);
          ${aPasses.map((p) => `{
            var v = vec4<u32>(0u);
            if (aBase${p} >= 0 && kv < ${KV}) { v = bitcast<vec4<u32>>(xq[aBase${p} + kv]); }
            ${store(`A${p}`, 'sub', 'half', 'v')}
          }`).join('\n          ')}
          ${bPasses.map((p) => `{
            var v = vec4<u32>(0u);
            if (bRow${p} >= 0 && kv < ${KV}) { v = bitcast<vec4<u32>>(weights[bRow${p} * ${KV} + kv]) ^ vec4<u32>(${I8_FROM_U8}); }
            ${store(`B${p}`, 'sub', 'half', 'v')}
          }`).join('\n          ')}
          workgroupBarrier();
          // Strides in the tiles' i32 words: a row of 32 i8 is 8 words.
          let a0 = subgroupMatrixLoad<${left}, row_major>(&A0, 0u, 8u);
          let a1 = subgroupMatrixLoad<${left}, row_major>(&A1, 0u, 8u);
          ${bPasses.map((p) => `let b${p} = subgroupMatrixLoad<${right}, col_major>(&B${p}, 0u, 8u);`).join('\n          ')}
          ${bPasses.map((p) => `acc${p} = subgroupMatrixMultiplyAccumulate(a0, b${p}, acc${p});
          acc${4 + p} = subgroupMatrixMultiplyAccumulate(a1, b${p}, acc${4 + p});`).join('\n          ')}
          workgroupBarrier();
        }

        for (var rt = 0u; rt < 2u; rt++) {
          if (rt == 0u) {
            ${bPasses.map((p) => `subgroupMatrixStore<row_major>(&staged, ${p * 256}u, acc${p}, 16u);`).join(' ')}
          } else {
            ${bPasses.map((p) => `subgroupMatrixStore<row_major>(&staged, ${p * 256}u, acc${4 + p}, 16u);`).join(' ')}
          }
          workgroupBarrier();
          ${epilogue.block}
          workgroupBarrier();
        }
      }
    `;
  }
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13Int8TensorCoreGemmProgram extends ExpertsInt8TensorCoreGemmProgram {}
export class ExpertsW2Int8TensorCoreGemmProgram extends ExpertsInt8TensorCoreGemmProgram {}

/**
 * int8 w8a8 expert programs on `dot4I8Packed` (WGSL's packed 4×8-bit integer dot product): vLLM's
 * `use_int8_w8a8` with per-channel weights, with the numerics of src/kernels/cpu/int8_w8a8_impl.ts bit for bit.
 *
 *   x    int8 rows from ExpertsInt8QuantProgram: [rows, K/4 + 4] int32, packed i8x4 words then the row's scale
 *   w    format.ts 'uint8' words (zero 128) read as vec4<i32> (16 k); `word ^ 0x80808080` turns 4 codes into 4 int8
 *        (code − 128) in place, so the weights are never unpacked
 *   acc  Σ dot4I8Packed(w, x) in i32: integer sums are exact in any order, so the lanes' partial sums and the tree
 *        that adds them give the reference's accumulator whatever the tiling
 *   out  f32(f32(f32(acc) · xScale) · wScale[n]) (+ bias), then act(gate)·up (w13) or · routing weight (w2)
 *
 * ExpertsInt8GemvProgram (decode): a workgroup per (pair, 8 rows) — or, grouped, per (expert, 8 rows) looping
 * over the expert's pairs 4 at a time from ExpertsAlignProgram (blockRows 1) — 32 lanes per row.
 * ExpertsInt8GemmProgram (prefill): tiles of 64 expert-sorted rows × 128 weight rows, k in tiles of 32 (8 words);
 * each of 256 threads holds 4 × 8 i32 accumulators (w13: 4 gate + 4 up columns, act fused; w2: h and h + 64).
 * No split-K: partial sums would leave the integers before the epilogue.
 *
 * Every program binds, per weight shard, its data as vec4<i32>, its scales [E, N, 1] and its bias [E, N] when the
 * layer has one; K (H for w13, I for w2) must be a multiple of 16 (unsupportedInt8).
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {EXPERTS_WORKGROUP, activationSnippet, gateUpRows, gemmTileSnippet, localExpertSnippet, weightRowSnippet}
  from './experts_wgsl';
import type {ExpertsStageConfig} from './experts_gemv_webgpu';
import {int8RowWords} from './experts_int8_quant_webgpu';

/** The int8 channel format's programs need no format descriptor: their weights are always 'uint8' words. */
export type ExpertsInt8Config = ExpertsStageConfig;

/** The 4 codes of a 'uint8' word as 4 int8 (code − 128): flipping each byte's top bit. */
export const I8_FROM_U8 = '0x80808080u';

/** Rows per prefill tile of the dot4 GEMM (the align program pads each expert to a multiple of it). */
export const INT8_GEMM_BLOCK_ROWS = 64;

/** Why the int8 programs cannot run at these sizes, or null. */
export function unsupportedInt8Shapes(H: number, I: number): string | null {
  if (H % 16 !== 0 || I % 16 !== 0) {
    return `int8 w8a8 on webgpu reads 16 k per load and needs H and I multiples of 16, got H = ${H}, I = ${I}`;
  }
  return null;
}

const usesWeights = (c: ExpertsInt8Config) => c.stage === 'w13' ? false : !c.applyRouterWeightOnInput;
const dims = (c: ExpertsInt8Config) => c.stage === 'w13' ?
  {K: c.hiddenSize, N: c.intermediateSize, rows: 2 * c.intermediateSize} :
  {K: c.intermediateSize, N: c.hiddenSize, rows: c.hiddenSize};

/** The shader-key part every int8 program shares. */
function int8Key(c: ExpertsInt8Config): string {
  return `${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.topK}_${c.numLocalExperts}_${c.globalNumExperts}_` +
    `${c.hasExpertMap}_${c.stage === 'w13' ? c.activation : ''}_${c.applyRouterWeightOnInput}_${c.hasBias}`;
}

/**
 * The epilogue of one output: `f32(acc)·xs·ws (+ bias)`, as WGSL; `acc`, `xs` and the weight row are expressions.
 * Left to right, each product rounded on its own: the reference's order.
 */
function scaled(c: ExpertsInt8Config, acc: string, xs: string, row: string): string {
  const v = `(f32(${acc}) * ${xs} * scales[${row}])`;
  return c.hasBias ? `(${v} + bias[${row}])` : v;
}

const LANES = 32;
const ROWS = EXPERTS_WORKGROUP / LANES;
/** Pairs of one expert per pass over its rows (grouped GEMV). */
const PAIRS_PER_PASS = 4;

export class ExpertsInt8GemvProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsInt8Config;
  private readonly grouped: boolean;

  /**
   * Inputs, in order: xq (int8 rows: hidden [T, ·] for w13, act [P, ·] for w2), topkIds (per pair) or align
   * (grouped, blockRows 1), expertMap? (per pair), topkWeights? (w2 unless on the input), then the shard's
   * weights, scales, bias?.
   */
  constructor(c: ExpertsInt8Config, numPairs: number, shardExperts: number, grouped: boolean) {
    this.c = c;
    this.grouped = grouped;
    const {N} = dims(c);
    this.outputShape = [numPairs, N];
    this.dispatch = [grouped ? shardExperts : numPairs, Math.ceil(N / ROWS), 1];
    const head = ['xq', ...(grouped ? ['align'] : ['topkIds', ...(c.hasExpertMap ? ['expertMap'] : [])]),
      ...(usesWeights(c) ? ['topkWeights'] : [])];
    this.variableNames = [...head, 'weights', 'scales', ...(c.hasBias ? ['bias'] : [])];
    this.variableComponents = this.variableNames.map((n) => n === 'xq' || n === 'weights' ? 4 : 1);
    this.shaderKey = `moeExpertsInt8Gemv_${int8Key(c)}_${grouped}_${shardExperts}`;
  }

  getUserCode(): string {
    const c = this.c;
    const w13 = c.stage === 'w13';
    const {K, N, rows} = dims(c);
    const KV = K / 16;                     // vec4 words per weight row (and per x row, before the scale)
    const XV = int8RowWords(K) / 4;        // vec4 per int8 x row
    const gu = gateUpRows(c.activation, c.intermediateSize);
    const TP = this.grouped ? PAIRS_PER_PASS : 1;
    const qs = Array.from({length: TP}, (_, q) => q);
    const sets = w13 ? [0, 1] : [0];
    const E = c.numLocalExperts;
    const xRowOf = (pair: string) => w13 ? `(${pair} / ${c.topK})` : pair;
    const dotRow = (acc: string, row: string, x: string) => `{
              let w = bitcast<vec4<u32>>(weights[${row} * ${KV}u + kv]) ^ vec4<u32>(${I8_FROM_U8});
              let xv = bitcast<vec4<u32>>(xq[${x} + kv]);
              ${acc} += dot4I8Packed(w.x, xv.x) + dot4I8Packed(w.y, xv.y) + dot4I8Packed(w.z, xv.z) + dot4I8Packed(w.w, xv.w);
            }`;
    // Lane q of a row writes pair q's output (the row's sums sit at lane 0's slots).
    const epilogue = (q: number) => {
      const out = w13 ?
        `expertGlu(${scaled(c, 'sums[0]', 'xs', 'rowA')}, ${scaled(c, 'sums[1]', 'xs', 'rowB')})` :
        `${scaled(c, 'sums[0]', 'xs', 'rowA')}${usesWeights(c) ? ` * topkWeights[pair${q}]` : ''}`;
      return `if (q == ${q}u && pair${q} >= 0) {
              let xs = bitcast<f32>(xq[xBase${q} + ${KV}u].x);
              result[u32(pair${q}) * ${N}u + u32(n)] = ${out};
            }`;
    };
    const pairsHead = this.grouped ? `
        if (localIndex == 0u) {
          let local = uniforms.firstExpert + i32(workgroupId.x);
          wgRange = vec3<i32>(align[local], align[local + 1], i32(workgroupId.x));
        }
        let range = workgroupUniformLoad(&wgRange);
        let e = u32(range.z);` : `
        if (localIndex == 0u) {
          let pair = i32(workgroupId.x);
          let local = localExpertOf(topkIds[pair]) - uniforms.firstExpert;
          let inShard = local >= 0 && local < uniforms.weightsShape.x;
          wgRange = select(vec3<i32>(0, 0, 0), vec3<i32>(pair, pair + 1, local), inShard);
        }
        let range = workgroupUniformLoad(&wgRange);
        let e = u32(range.z);`;
    const pairAt = (i: string) => this.grouped ? `align[${E + 1} + ${i}]` : i;
    return `
      ${w13 ? activationSnippet(c.activation) : ''}
      ${this.grouped ? '' : localExpertSnippet(c.hasExpertMap, c.globalNumExperts, c.numLocalExperts)}
      var<workgroup> wgRange : vec3<i32>;   // first and end pair (or sorted position), expert in the shard
      var<workgroup> partial : array<i32, ${sets.length * TP * EXPERTS_WORKGROUP}>;

      // xq: int8 rows [·, ${XV * 4}] (packed words, scale); weights: this shard's ${w13 ? 'w13 [n, 2I·H/4]' : 'w2 [n, H·I/4]'}
      // as vec4; result: ${w13 ? 'act [P, I]' : 'y [P, H]'} by pair.
      fn main() {
        ${pairsHead}
        let lane = localIndex % ${LANES}u;
        let g = localIndex / ${LANES}u;
        let n = i32(workgroupId.y) * ${ROWS} + i32(g);
        let rowA = e * ${rows}u + u32(select(0, ${w13 ? gu.gate('n') : 'n'}, n < ${N}));
        ${w13 ? `let rowB = rowA + ${gu.upOffset}u;` : 'let rowB = rowA;'}
        for (var first = range.x; first < range.y; first += ${TP}) {
          ${qs.map((q) => `let pair${q} = select(-1, ${pairAt(`first + ${q}`)}, first + ${q} < range.y);
          let xBase${q} = u32(select(0, ${xRowOf(`pair${q}`)} * ${XV}, pair${q} >= 0));`).join('\n          ')}
          ${qs.map((q) => sets.map((s) => `var acc${s}_${q} = 0;`).join(' ')).join(' ')}
          if (n < ${N}) {
            for (var kv = lane; kv < ${KV}u; kv += ${LANES}u) {
              ${qs.map((q) => `${dotRow(`acc0_${q}`, 'rowA', `xBase${q}`)}${w13 ? `\n              ${dotRow(`acc1_${q}`, 'rowB', `xBase${q}`)}` : ''}`).join('\n              ')}
            }
          }
          ${qs.map((q) => sets.map((s) => `partial[${(s * TP + q) * EXPERTS_WORKGROUP}u + localIndex] = acc${s}_${q};`).join(' ')).join('\n          ')}
          workgroupBarrier();
          // Integer tree over the row's lanes: exact in any order.
          for (var stride = ${LANES / 2}u; stride > 0u; stride >>= 1u) {
            if (lane < stride) {
              for (var v = 0u; v < ${sets.length * TP}u; v++) {
                partial[v * ${EXPERTS_WORKGROUP}u + localIndex] += partial[v * ${EXPERTS_WORKGROUP}u + localIndex + stride];
              }
            }
            workgroupBarrier();
          }
          if (lane < ${TP}u && n < ${N}) {
            let q = lane;
            let src = localIndex - lane;
            var sums = array<i32, ${sets.length}>(${sets.map((s) => `partial[(${s * TP}u + q) * ${EXPERTS_WORKGROUP}u + src]`).join(', ')});
            ${qs.map(epilogue).join('\n            ')}
          }
          workgroupBarrier();
        }
      }
    `;
  }
}

export class ExpertsW13Int8GemvProgram extends ExpertsInt8GemvProgram {}
export class ExpertsW2Int8GemvProgram extends ExpertsInt8GemvProgram {}

const BM = INT8_GEMM_BLOCK_ROWS;
const BN = 128;
const BKW = 8;   // words (4 k each) per k tile

export class ExpertsInt8GemmProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsInt8Config;

  /**
   * Inputs, in order: xq (hidden int8 rows [T, ·] gathered through the sorted pairs for w13; act int8 rows
   * [rows, ·] in sorted order for w2), align (blockRows 64), topkWeights? (w2), then weights, scales, bias?.
   * `numTiles` bounds the row tiles of this shard: ceil(P / 64) + its experts.
   */
  constructor(c: ExpertsInt8Config, outputShape: number[], numTiles: number) {
    this.c = c;
    const {N} = dims(c);
    this.outputShape = outputShape;
    this.dispatch = [numTiles, Math.ceil(N / (c.stage === 'w13' ? BN / 2 : BN)), 1];
    this.variableNames = ['xq', 'align', ...(usesWeights(c) ? ['topkWeights'] : []), 'weights', 'scales',
      ...(c.hasBias ? ['bias'] : [])];
    this.variableComponents = this.variableNames.map((n) => n === 'xq' || n === 'weights' ? 4 : 1);
    this.shaderKey = `moeExpertsInt8Gemm_${int8Key(c)}`;
  }

  getUserCode(): string {
    const c = this.c;
    const w13 = c.stage === 'w13';
    const {K, N} = dims(c);
    const I = c.intermediateSize, H = c.hiddenSize;
    const KV = K / 16;
    const XV = int8RowWords(K) / 4;
    const kTiles = Math.ceil(K / (4 * BKW));
    const sorted = `align[${c.numLocalExperts + 1} + `;
    const gu = gateUpRows(c.activation, I);
    const bRow = weightRowSnippet(w13 ? 'w13' : 'w2', c.activation, H, I, BN / 2);
    const R = [0, 1, 2, 3];
    const epilogue = w13 ? R.map((r) => `
        {
          let m = ty * 4u + ${r}u;
          let row = rowStart + i32(m);
          let xs = rowScale[m];
          ${R.map((d) => `{
            let i = n0 + i32(tx) * 4 + ${d};
            if (i < ${I}) {
              let ra = u32(e * ${2 * I} + ${gu.gate('i')});
              let rb = ra + ${gu.upOffset}u;
              result[row * ${I} + i] = expertGlu(${scaled(c, `accA${r}[${d}]`, 'xs', 'ra')}, ${scaled(c, `accB${r}[${d}]`, 'xs', 'rb')});
            }
          }`).join('\n          ')}
        }`).join('') : R.map((r) => `
        {
          let m = ty * 4u + ${r}u;
          let pair = ${sorted}rowStart + i32(m)];
          if (pair >= 0) {
            let xs = rowScale[m];
            ${[['accA', 0], ['accB', 64]].map(([acc, off]) => R.map((d) => `{
              let h = n0 + i32(tx) * 4 + ${Number(off) + d};
              if (h < ${H}) {
                let rw = u32(e * ${H} + h);
                result[pair * ${H} + h] = ${scaled(c, `${acc}${r}[${d}]`, 'xs', 'rw')}${usesWeights(c) ? ' * topkWeights[pair]' : ''};
              }
            }`).join('\n            ')).join('\n            ')}
          }
        }`).join('');
    return `
      ${w13 ? activationSnippet(c.activation) : ''}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end k tile
      var<workgroup> As : array<vec4<u32>, ${BKW * BM / 4}>;   // [word][m / 4]
      var<workgroup> Bs : array<vec4<u32>, ${BKW * BN / 4}>;   // [word][n / 4]
      var<workgroup> rowScale : array<f32, ${BM}>;
      var<private> n0 : i32;
      ${bRow}

      // xq: ${w13 ? 'hidden int8 rows [T, ·], gathered through the sorted pairs' : 'act int8 rows [rows, ·], in sorted order'};
      // align: [E+1] offsets then the sorted pairs; weights: this shard's words as vec4; result: ${w13 ? 'act [rows, I]' : 'y [P, H] by pair'}.
      fn main() {
        ${gemmTileSnippet('weights', BM, kTiles, kTiles)}
        n0 = i32(workgroupId.y) * ${w13 ? BN / 2 : BN};
        let tx = localIndex % 16u;
        let ty = localIndex / 16u;
        // Loads: A rows m = localIndex / 2 (threads < 128), B rows r = localIndex / 2; half = which 4 words of 8.
        let half = localIndex % 2u;
        let am = localIndex / 2u;
        var aBase = -1;
        if (am < ${BM}u) {
          ${w13 ? `let pair = ${sorted}rowStart + i32(am)];
          if (pair >= 0) { aBase = (pair / ${c.topK}) * ${XV}; }` : `aBase = (rowStart + i32(am)) * ${XV};`}
        }
        if (localIndex < ${BM}u) {
          var s = 0.0;
          ${w13 ? `let pair = ${sorted}rowStart + i32(localIndex)];
          if (pair >= 0) { s = bitcast<f32>(xq[(pair / ${c.topK}) * ${XV} + ${KV}].x); }` :
            `s = bitcast<f32>(xq[(rowStart + i32(localIndex)) * ${XV} + ${KV}].x);`}
          rowScale[localIndex] = s;
        }
        let br = i32(localIndex / 2u);
        let bRowIndex = weightRow(e, br);
        ${R.map((r) => `var accA${r} = vec4<i32>(0); var accB${r} = vec4<i32>(0);`).join('\n        ')}
        for (var kt = tile.z; kt < tile.w; kt++) {
          let kv = kt * 2 + i32(half);     // vec4 index along the row
          var a = vec4<u32>(0u);
          if (aBase >= 0 && kv < ${KV}) { a = bitcast<vec4<u32>>(xq[aBase + kv]); }
          var b = vec4<u32>(0u);
          if (bRowIndex >= 0 && kv < ${KV}) { b = bitcast<vec4<u32>>(weights[bRowIndex * ${KV} + kv]) ^ vec4<u32>(${I8_FROM_U8}); }
          for (var d = 0u; d < 4u; d++) {
            let wd = half * 4u + d;
            if (am < ${BM}u) { As[(wd * ${BM}u + am) / 4u][am % 4u] = a[d]; }
            Bs[(wd * ${BN}u + u32(br)) / 4u][u32(br) % 4u] = b[d];
          }
          workgroupBarrier();
          for (var wd = 0u; wd < ${BKW}u; wd++) {
            let av = As[wd * ${BM / 4}u + ty];
            let bA = Bs[wd * ${BN / 4}u + tx];
            let bB = Bs[wd * ${BN / 4}u + 16u + tx];
            ${R.map((r) => `accA${r} += vec4<i32>(dot4I8Packed(av[${r}], bA.x), dot4I8Packed(av[${r}], bA.y), dot4I8Packed(av[${r}], bA.z), dot4I8Packed(av[${r}], bA.w));
            accB${r} += vec4<i32>(dot4I8Packed(av[${r}], bB.x), dot4I8Packed(av[${r}], bB.y), dot4I8Packed(av[${r}], bB.z), dot4I8Packed(av[${r}], bB.w));`).join('\n            ')}
          }
          workgroupBarrier();
        }
        ${epilogue}
      }
    `;
  }
}

export class ExpertsW13Int8GemmProgram extends ExpertsInt8GemmProgram {}
export class ExpertsW2Int8GemmProgram extends ExpertsInt8GemmProgram {}

/**
 * int8 w8a8 prefill GEMMs on tensor cores in the f16 'pipelined' layout (experts_gemm_tc_storage_webgpu.ts):
 * both operands in blocks of 16 rows × 32 k i8 (512 contiguous bytes, one i8 × i8 → i32 16×16×32 matrix),
 * read by subgroupMatrixLoad straight from storage through block pointers, each k block right before its
 * multiplies (blockedLoop's plain loop over a trip count the compiler knows), one subgroup per workgroup computing
 * 32 or 64 rows × 64 columns. The accumulators are int32 and exact and the f32 epilogue is int8Epilogue's, so the
 * outputs equal the dot4 path's and the cpu reference's bit for bit. The blocked rows and weights are also the
 * staged kernel's operands (experts_int8_tc_staged_webgpu.ts).
 *
 *   ExpertsInt8BlockedRowsProgram     quantized rows (ExpertsInt8QuantProgram's [rows, K/4 + 4] words) into
 *                                     blocked rows: w13 gathered through the sorted pairs, w2 in order
 *   ExpertsInt8WeightsBlockedProgram  a shard's 'uint8' weight codes into blocked int8 (kept between calls by
 *                                     tensor_core_weights.ts, as the f16 copies are)
 *   ExpertsInt8PipelinedGemmProgram   the GEMM
 *
 * Blocked rows, [rowBlocks] of: Kp/32 blocks of 16 rows × 32 k (row-major inside, 4 k per i32 word, byte b of a
 * word = k 4w + b), then one more 512-byte block whose first 16 words are the 16 rows' scales (f32 bits): a row
 * block is Kp·16 + 512 bytes, whole blocks, so that the plain kernels can read xb as an array of blocks (the rest
 * of the scale block, 448 bytes a row block, 0.7% at Kp = 4096, is never read). Blocked weights:
 * [experts, rows/16, Kp/32] blocks, no scales (the shard's per-channel scales are read by the original row);
 * rows in the GEMM's column-tile order: w13 per 32 act columns c0.., 32 gate rows then their 32 up rows
 * (gate/up de-interleaved as gateUpRows says, zero past I), w2 h rows, zero past H. k past K is zero in both,
 * and adds nothing to an integer dot product.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {activationSnippet, EXPERTS_WORKGROUP, gateUpRows, gemmGridSnippet} from './experts_wgsl';
import {ExpertsInt8Config, I8_FROM_U8} from './experts_int8_webgpu';
import {int8RowWords} from './experts_int8_quant_webgpu';
import {int8Epilogue} from './experts_int8_tc_webgpu';
import type {ExpertsStage} from './experts_gemv_webgpu';
import {foldedDispatch, roundUp} from './tensor_core_plan';
import {blockedLoop, storageElements} from './experts_gemm_tc_storage_webgpu';

/** k per loop step (two 16×16×32 multiplies), act columns of a w13 workgroup, h columns of a w2 one. */
export const INT8_PIPELINED_TILE = {kStep: 64, w13Columns: 32, w2Columns: 64};

export interface Int8PipelinedLayout {
  /** H and I padded to the k step. */
  Hp: number;
  Ip: number;
  /** Blocked weight rows per expert: w13 2·roundUp(I, 32) (gate and up per 32 columns), w2 roundUp(H, 64). */
  w13Rows: number;
  w2Rows: number;
}

/** `subgroupsN` subgroups side by side per workgroup: the weight rows padded to whole workgroups of columns. */
export function int8PipelinedLayout(H: number, I: number, subgroupsN = 1): Int8PipelinedLayout {
  const t = INT8_PIPELINED_TILE;
  return {Hp: roundUp(H, t.kStep), Ip: roundUp(I, t.kStep), w13Rows: 2 * roundUp(I, t.w13Columns * subgroupsN),
    w2Rows: roundUp(H, t.w2Columns * subgroupsN)};
}

/** i32 words of one block row of blocked rows (Kp/32 blocks of 128 words, then a block of 16 scales). */
export const blockedRowBlockWords = (Kp: number) => Kp * 4 + 128;

/** Workgroup memory: the tile lookup, the subgroup's 4 staged 16×16 i32 results, the row scales, w2's pairs and weights. */
export function int8PipelinedWorkgroupBytes(blockRows: number): number {
  return 16 + 4 + 4 * 256 * 4 + 3 * blockRows * 4;
}

export interface ExpertsInt8BlockedRowsConfig {
  /** 'gather': row r is token sorted[r] / topK's (w13); 'rows': row r is source row r (w2's act). */
  source: 'gather' | 'rows';
  K: number;
  Kp: number;
  topK: number;
  numLocalExperts: number;
}

export class ExpertsInt8BlockedRowsProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames = ['xq', 'align'];
  variableComponents = [4, 1];
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  private readonly c: ExpertsInt8BlockedRowsConfig;

  /** Inputs: xq [N, K/4 + 4] quantized rows, align. Output int32 [rowBlocks, blockedRowBlockWords(Kp)]. */
  constructor(c: ExpertsInt8BlockedRowsConfig, rowBlocks: number) {
    if (c.K % 16 !== 0 || c.Kp % 32 !== 0 || c.Kp < c.K) {
      throw new Error(`ExpertsInt8BlockedRowsProgram: K a multiple of 16 and Kp ≥ K of 32, got K ${c.K}, Kp ${c.Kp}`);
    }
    this.c = c;
    this.outputShape = [rowBlocks, blockedRowBlockWords(c.Kp)];
    // One invocation per 16 k (a vec4 of words): Kp per block row.
    this.dispatch = foldedDispatch(rowBlocks * c.Kp, EXPERTS_WORKGROUP);
    this.shaderKey = `moeExpertsInt8BlockedRows_${c.source}_${c.K}_${c.Kp}_${c.topK}_${c.numLocalExperts}`;
  }

  getUserCode(): string {
    const {K, Kp, topK, numLocalExperts: E} = this.c;
    const SV = int8RowWords(K) / 4;
    return `
      // xq: [N, ${SV}] vec4 words (K/16 vec4s of i8, then the scale); result: blocked rows, ${blockedRowBlockWords(Kp)} words a block row.
      fn main() {
        let idx = getGlobalIndex();
        if (idx >= uniforms.outShape.x * ${Kp}) { return; }
        let rowBlock = idx / ${Kp};
        let kb = (idx % ${Kp}) / 32;
        let within = idx % 32;
        let row = rowBlock * 16 + within / 2;
        let k = kb * 32 + (within % 2) * 16;
        if (row >= align[${E}]) { return; }   // no GEMM tile reaches it
        ${this.c.source === 'gather' ? `let pair = align[${E + 1} + row];
        let src = select(-1, pair / ${topK}, pair >= 0);` : 'let src = row;'}
        var v = vec4<i32>(0);
        if (src >= 0 && k < ${K}) { v = xq[src * ${SV} + k / 16]; }
        let out = rowBlock * ${blockedRowBlockWords(Kp)} + kb * 128 + within * 4;
        result[out] = v.x;
        result[out + 1] = v.y;
        result[out + 2] = v.z;
        result[out + 3] = v.w;
        if (kb == 0 && within % 2 == 0) {
          result[rowBlock * ${blockedRowBlockWords(Kp)} + ${Kp * 4} + within / 2] = select(0, xq[src * ${SV} + ${K / 16}].x, src >= 0);
        }
      }
    `;
  }
}

export interface ExpertsInt8WeightsBlockedConfig {
  stage: ExpertsStage;
  hiddenSize: number;
  intermediateSize: number;
  activation: ExpertsInt8Config['activation'];
  layout: Int8PipelinedLayout;
}

export class ExpertsInt8WeightsBlockedProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames = ['weights'];
  variableComponents = [4];
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  private readonly c: ExpertsInt8WeightsBlockedConfig;

  /** Input: the shard's 'uint8' words [n, N·K/4] (read as vec4). Output int32 [n, rows·Kp/4]. */
  constructor(c: ExpertsInt8WeightsBlockedConfig, numExperts: number) {
    this.c = c;
    const w13 = c.stage === 'w13';
    const rows = w13 ? c.layout.w13Rows : c.layout.w2Rows;
    const Kp = w13 ? c.layout.Hp : c.layout.Ip;
    this.outputShape = [numExperts, rows * Kp / 4];
    this.dispatch = foldedDispatch(numExperts * rows * Kp / 16, EXPERTS_WORKGROUP);
    this.shaderKey = `moeExpertsInt8WeightsBlocked_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_` +
      `${w13 ? c.activation : ''}_${rows}_${Kp}`;
  }

  getUserCode(): string {
    const {stage, hiddenSize: H, intermediateSize: I} = this.c;
    const w13 = stage === 'w13';
    const rows = w13 ? this.c.layout.w13Rows : this.c.layout.w2Rows;
    const Kp = w13 ? this.c.layout.Hp : this.c.layout.Ip;
    const K = w13 ? H : I;
    const gu = gateUpRows(this.c.activation, I);
    const source = w13 ? `
        let col = (t / 64) * 32 + t % 32;
        let src = select(-1, e * ${2 * I} + ${gu.gate('col')} + select(0, ${gu.upOffset}, t % 64 >= 32), col < ${I});` : `
        let src = select(-1, e * ${H} + t, t < ${H});`;
    return `
      // weights: [n, ${w13 ? 2 * I : H} rows × ${K / 16} vec4] 'uint8' codes; result: [n, ${rows}/16, ${Kp}/32] blocks of 16×32 i8.
      fn main() {
        let idx = getGlobalIndex();
        if (idx >= uniforms.outShape.x * ${rows * Kp / 16}) { return; }
        let e = idx / ${rows * Kp / 16};
        let r = idx % ${rows * Kp / 16};
        let kb = (r % ${Kp}) / 32;
        let within = r % 32;
        let t = (r / ${Kp}) * 16 + within / 2;   // the blocked row
        let k = kb * 32 + (within % 2) * 16;
        ${source}
        var v = vec4<u32>(0u);
        if (src >= 0 && k < ${K}) { v = bitcast<vec4<u32>>(weights[src * ${K / 16} + k / 16]) ^ vec4<u32>(${I8_FROM_U8}); }
        let out = idx * 4;
        result[out] = i32(v.x);
        result[out + 1] = i32(v.y);
        result[out + 2] = i32(v.z);
        result[out + 3] = i32(v.w);
      }
    `;
  }
}

export class ExpertsInt8PipelinedGemmProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [32, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsInt8Config;
  private readonly blockRows: number;
  private readonly layout: Int8PipelinedLayout;

  /**
   * Inputs: xb (blocked rows), align (built with `blockRows`), topkWeights (w2 with the weight on the output),
   * wb (the shard's blocked weights, int8PipelinedLayout(H, I)), scales, bias?. xb and wb are read as arrays of
   * 512-byte blocks (blockedLoop's blockPointers: 258 → 299 TOPS for this loop on the plain-GEMM probe, H200).
   */
  constructor(c: ExpertsInt8Config, outputShape: number[], numTiles: number, blockRows: number,
      layout: Int8PipelinedLayout) {
    if (blockRows !== 32 && blockRows !== 64) {
      throw new Error(`int8 blocked GEMM: blockRows 32 or 64, got ${blockRows}`);
    }
    this.c = c;
    this.blockRows = blockRows;
    this.layout = layout;
    const w13 = c.stage === 'w13';
    this.outputShape = outputShape;
    this.dispatch = [numTiles, w13 ? Math.ceil(c.intermediateSize / INT8_PIPELINED_TILE.w13Columns) :
      Math.ceil(c.hiddenSize / INT8_PIPELINED_TILE.w2Columns), 1];
    const usesWeights = !w13 && !c.applyRouterWeightOnInput;
    this.variableNames = ['xb', 'align', ...(usesWeights ? ['topkWeights'] : []), 'wb', 'scales',
      ...(c.hasBias ? ['bias'] : [])];
    this.variableComponents = this.variableNames.map(() => 1);
    this.shaderKey = `moeExpertsInt8GemmTcPipelined_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.topK}_` +
      `${c.numLocalExperts}_${w13 ? c.activation : ''}_${c.applyRouterWeightOnInput}_${c.hasBias}_${blockRows}_` +
      `${layout.Hp}_${layout.Ip}`;
  }

  getUserCode(): string {
    const c = this.c;
    const w13 = c.stage === 'w13';
    const I = c.intermediateSize, H = c.hiddenSize, E = c.numLocalExperts;
    const BM = this.blockRows;
    const Kp = w13 ? this.layout.Hp : this.layout.Ip;
    const rowsPerExpert = w13 ? this.layout.w13Rows : this.layout.w2Rows;
    const steps = Kp / INT8_PIPELINED_TILE.kStep;
    const KB = Kp / 32;                        // blocks per block row
    const usesWeights = !w13 && !c.applyRouterWeightOnInput;
    const left = 'subgroup_matrix_left<i8, 32, 16>';
    const right = 'subgroup_matrix_right<i8, 16, 32>';
    const result = 'subgroup_matrix_result<i32, 16, 16>';
    const TM = BM / 16;
    const rows = Array.from({length: TM}, (_, r) => r);
    const cols = [0, 1, 2, 3];
    const epilogue = int8Epilogue(c, '0u');
    const columns = w13 ? 32 : 64;
    return `
      enable chromium_experimental_subgroup_matrix;
      ${storageElements('xb', 'i32-blocks')}
      ${storageElements('wb', 'i32-blocks')}
      ${w13 ? activationSnippet(c.activation) : ''}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end 64-k step
      var<workgroup> wgN0 : i32;           // first column, workgroup-uniform through it
      var<workgroup> staged : array<i32, 1024>;   // a 16-row block: 4 results, row-major 16×16 each
      var<workgroup> rowScale : array<f32, ${BM}>;
      ${w13 ? '' : `// w2's rows: their pairs and routing weights, read once before the k loop (epilogueRows says why).
      var<workgroup> tilePair : array<i32, ${BM}>;
      var<workgroup> tileWeight : array<f32, ${BM}>;`}

      // xb: ${w13 ? 'gathered x' : 'act'} in blocked rows (${KB + 1} blocks a block row); align: [E+1] offsets then the sorted
      // pairs; wb: blocked weights [experts, ${rowsPerExpert}/16, ${KB}] blocks; result: ${w13 ? `act [rows, ${I}]` : 'y [P, H] by pair'}.
      fn main() {
        ${gemmGridSnippet('wb', BM, steps, steps, columns, 0)}
        let n0 = workgroupUniformLoad(&wgN0);
        let lane = localIndex;
        for (var m = localIndex; m < ${BM}u; m += 32u) {
          let row = u32(rowStart) + m;
          rowScale[m] = bitcast<f32>(xb[(row / 16u) * ${KB + 1}u + ${KB}u][row % 16u]);
          ${w13 ? '' : `let pair = align[${E + 1} + i32(row)];
          tilePair[m] = pair;
          tileWeight[m] = ${usesWeights ? 'select(0.0, topkWeights[max(pair, 0)], pair >= 0)' : '1.0'};`}
        }
        ${epilogue.columns}
        ${rows.flatMap((r) => cols.map((cc) => `var acc${r}${cc} : ${result};`)).join('\n        ')}
        ${blockedLoop(rows, cols, false, {x: 'xb', w: 'wb', left, right, block: 512, stride: 32, perElement: 4,
          stepsPerTile: steps,
          aBlock: (r) => `(u32(rowStart) / 16u + ${r}u) * ${blockedRowBlockWords(Kp) * 4}u`,
          bBlock: (cc) => `((u32(e) * ${rowsPerExpert}u + u32(${w13 ? '2 * n0' : 'n0'})) / 16u + ${cc}u) * ${KB * 512}u`})}

        ${rows.map((r) => `{
          let rt = ${r}u;
          ${cols.map((cc) => `subgroupMatrixStore<row_major>(&staged, ${cc * 256}u, acc${r}${cc}, 16u);`).join(' ')}
          workgroupBarrier();
          ${epilogue.block}
          workgroupBarrier();
        }`).join('\n        ')}
      }
    `;
  }
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13Int8PipelinedGemmProgram extends ExpertsInt8PipelinedGemmProgram {}
export class ExpertsW2Int8PipelinedGemmProgram extends ExpertsInt8PipelinedGemmProgram {}

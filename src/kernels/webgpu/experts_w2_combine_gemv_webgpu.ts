/**
 * Decode at T = 1 with k ≥ 4 (Qwen3, DeepSeek-V3): the w2 GEMV and the combine in one program.
 *   out[t, h] = Σ_j w[t, j] · (w2[e_j, h] · act[t·k + j])     (j in slot order; -1 experts skipped)
 * Each workgroup owns some rows h of one token and reads the k experts' rows for them, all k streams
 * interleaved (k independent 16-byte loads in flight per lane). Each slot's dot product is reduced on
 * its own, then the slots are summed in slot order, as the separate combine does, with no atomics.
 * Saves the combine dispatch and the [P, H] buffer. Weights split into several tensors are all bound
 * (weights0, weights1, ...), and each slot reads the tensor that holds its expert.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {EXPERTS_WORKGROUP, localExpertSnippet} from './experts_wgsl';
import {ChunkShape, chunkShape, dequantSnippets, weightFormatKey} from './dequant_wgsl';
import {ExpertsGemvConfig, chunkDot, gemvBindings, gemvRowsPerWorkgroup, perShardSnippet, shardOfSnippet}
  from './experts_gemv_webgpu';

/** The fused program holds k per-slot partial sums per lane: worth it, and affordable, for 4 ≤ k ≤ 8. */
export const W2_COMBINE_TOPK = {min: 4, max: 8};

export class ExpertsW2CombineGemvProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  private readonly c: ExpertsGemvConfig;
  private readonly ch: ChunkShape;
  private readonly rows: number;
  private readonly shards: number[];

  /**
   * Inputs, in order: act [P, I], topkIds, expertMap?, topkWeights? (unless applied on the input), then every
   * w2 tensor, `shards` giving each one's number of experts.
   */
  constructor(c: ExpertsGemvConfig, numTokens: number, shards: number[]) {
    this.c = c;
    this.shards = shards;
    const {hiddenSize: H, intermediateSize: I} = c;
    this.ch = chunkShape(c.format, I, c.wideChunks);
    // The grid is tokens × row blocks (not pairs × row blocks as in the unfused GEMV).
    this.rows = gemvRowsPerWorkgroup(numTokens, H, I / this.ch.values);
    this.outputShape = [numTokens, H];
    this.dispatch = [numTokens, Math.ceil(H / this.rows), 1];
    ({variableNames: this.variableNames, variableComponents: this.variableComponents} =
      gemvBindings(c, !c.applyRouterWeightOnInput, shards, this.ch));
    this.shaderKey = `moeExpertsW2CombineGemv_${H}_${I}_${c.topK}_${c.numLocalExperts}_${c.globalNumExperts}_` +
        `${c.hasExpertMap}_${c.applyRouterWeightOnInput}_${this.ch.vec}_${this.rows}_${shards.join('-')}_` +
        weightFormatKey(c.format, c.hasBias, this.ch);
  }

  getUserCode(): string {
    const {hiddenSize: H, intermediateSize: I, topK: k} = this.c;
    const ch = this.ch;
    const KX = I / ch.vec;       // act row in vector units
    const K = I / ch.values;     // weight row in chunks
    const ROWS = this.rows;
    const LANES = EXPERTS_WORKGROUP / ROWS;
    const W = EXPERTS_WORKGROUP;
    const dotSlot = (j: number, s: number) =>
      `{ let wv = wload${s}(w${j}, c); ${chunkDot(ch, `acc${j}`, 'wv', (v) => `x${j} + c * ${ch.vecs}u + ${v}u`)} }`;
    const slots = Array.from({length: k}, (_, j) => j);
    return `
      ${localExpertSnippet(this.c.hasExpertMap, this.c.globalNumExperts, this.c.numLocalExperts)}
      ${dequantSnippets(this.c.format, this.c.hasBias, this.shards.length, H, I, ch)}
      fn mul1(a : f32, b : f32) -> f32 { return a * b; }
      var<workgroup> partial : array<f32, ${k * W}>;

      // x: act [P, I] by pair; weights0..: w2 [n, H, I] over consecutive experts; result: out [T, H].
      fn main() {
        let token = i32(workgroupId.x);
        let lane = localIndex % ${LANES}u;
        let g = localIndex / ${LANES}u;
        let n = i32(workgroupId.y) * ${ROWS} + i32(g);
        let row = u32(min(n, ${H - 1}));
        ${slots.map((j) => `
        let local${j} = localExpertOf(topkIds[token * ${k} + ${j}]);
        ${shardOfSnippet(this.shards, `local${j}`, `s${j}`, `e${j}`)}
        let w${j} = u32(max(e${j}, 0)) * ${H}u + row;
        let x${j} = u32(token * ${k} + ${j}) * ${KX}u;
        var acc${j} = 0.0;`).join('')}
        for (var c = lane; c < ${K}u; c += ${LANES}u) {
          ${slots.map((j) => this.shards.length === 1 ?
            `if (s${j} >= 0) ${dotSlot(j, 0)}` :
            perShardSnippet(this.shards, `s${j}`, (s) => ` ${dotSlot(j, s)} `))
            .join('\n          ')}
        }
        ${slots.map((j) => `partial[${j * W}u + localIndex] = acc${j};`).join(' ')}
        workgroupBarrier();
        for (var stride = ${LANES / 2}u; stride > 0u; stride >>= 1u) {
          if (lane < stride) {
            ${slots.map((j) => `partial[${j * W}u + localIndex] += partial[${j * W}u + localIndex + stride];`).join('\n            ')}
          }
          workgroupBarrier();
        }
        // (reading uniforms.outShape also keeps the uniforms binding in the pipeline's layout)
        if (lane == 0u && n < ${H} && token < uniforms.outShape.x) {
          var sum = 0.0;
          ${slots.map((j) => `if (s${j} >= 0) {
            var b = 0.0;
            ${this.c.hasBias ? perShardSnippet(this.shards, `s${j}`, (s) => ` b = wbias${s}(w${j}); `) : ''}
            sum += (partial[${j * W}u + localIndex] + b) * ${
            this.c.applyRouterWeightOnInput ? '1.0' : `topkWeights[token * ${k} + ${j}]`}; }`).join('\n          ')}
          result[token * ${H} + n] = sum;
        }
      }
    `;
  }
}

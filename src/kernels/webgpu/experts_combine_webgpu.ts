/**
 * The deterministic combine: out[t, h] = Σ_j y[t·k + j, h] over token t's k slots, in slot order, for the
 * slots whose expert this rank holds (the others contribute exactly 0 and their y rows are never read).
 * No atomics: one thread owns each output vec4. The routing weight is already in y (by pair).
 * With a split-K w2 GEMM, y holds `splits` partial sums per pair ([splits·P, H]); each pair's parts are
 * added in part order before the slot sum, so the result is the same on every call.
 * With `sorted`, y's rows are in the align program's sorted order ([splits·rows, H], written
 * straight from the w2 GEMM's result matrices: experts_gemm_tc_storage_webgpu.ts), a pair's row is the align
 * output's positions entry, and the routing weight (unless it went on the input) is applied here, once per
 * pair after its parts are added: out[t] = Σ_j w[t·k + j] · Σ_z y[z·rows + pos[t·k + j]].
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {EXPERTS_WORKGROUP, localExpertSnippet} from './experts_wgsl';

export interface ExpertsCombineConfig {
  hiddenSize: number;
  topK: number;
  numLocalExperts: number;
  globalNumExperts: number;
  hasExpertMap: boolean;
  applyRouterWeightOnInput?: boolean;
}

export interface ExpertsCombineSplits {
  /** Partial sums per pair in y (split-K w2 GEMM); 1 when y is [P, H]. */
  splits: number;
  /** y's rows are in sorted order, [splits·rows, H] (read through the align output's positions). */
  sorted?: boolean;
}

const MAX_GRID_Y = 65535;

export class ExpertsCombineProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [1], y: [0]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  outputComponent: number;
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  private readonly c: ExpertsCombineConfig;
  private readonly splits: number;
  private readonly sorted: boolean;

  /**
   * Inputs: y [splits·P, H], topkIds [T, k], expertMap?; sorted, y is [splits·rows, H], then the align output
   * (with positions) and topkWeights unless the router weight went on the input.
   */
  constructor(c: ExpertsCombineConfig, numTokens: number, {splits, sorted = false}: ExpertsCombineSplits = {splits: 1}) {
    this.c = c;
    this.splits = splits;
    this.sorted = sorted;
    this.outputComponent = c.hiddenSize % 4 === 0 ? 4 : 1;
    this.outputShape = [numTokens, c.hiddenSize];
    this.dispatch = [Math.ceil(c.hiddenSize / this.outputComponent / EXPERTS_WORKGROUP),
      Math.min(numTokens, MAX_GRID_Y), 1];
    const scales = sorted && !c.applyRouterWeightOnInput;
    this.variableNames = ['y', 'topkIds', ...(c.hasExpertMap ? ['expertMap'] : []),
      ...(sorted ? ['align'] : []), ...(scales ? ['topkWeights'] : [])];
    this.variableComponents = this.variableNames.map((n) => n === 'y' ? this.outputComponent : 1);
    this.shaderKey = `moeExpertsCombine_${c.hiddenSize}_${c.topK}_${c.numLocalExperts}_${c.globalNumExperts}_` +
        `${c.hasExpertMap}_${this.outputComponent}_${splits}_${sorted}_${scales}`;
  }

  getUserCode(): string {
    const {topK} = this.c;
    const HV = this.c.hiddenSize / this.outputComponent;
    const vt = this.outputComponent === 4 ? 'vec4<f32>' : 'f32';
    const S = this.splits;
    const numPairs = `uniforms.outShape.x * ${topK}`;
    const sorted = this.sorted;
    const row = sorted ? 'align[uniforms.alignShape - ' + numPairs + ' + pair]' : 'pair';
    // Rows per part from y's shape (a uniform), not baked in: the shader key does not hold the row count.
    const rowsPerPart = sorted ? `(uniforms.yShape.x / ${S})` : numPairs;
    const pairSum = S === 1 ? `y[u32(${row}) * ${HV}u + h]` :
      Array.from({length: S}, (_, z) => `y[u32(${z} * ${rowsPerPart} + ${row}) * ${HV}u + h]`).join(' + ');
    const scale = sorted && !this.c.applyRouterWeightOnInput ? 'topkWeights[pair] * ' : '';
    return `
      ${localExpertSnippet(this.c.hasExpertMap, this.c.globalNumExperts, this.c.numLocalExperts)}
      // y: [${S > 1 ? `${S}·` : ''}${sorted ? 'rows' : 'P'}, H] ${sorted ? 'in sorted order' : 'by pair'}; result: [T, H].
      fn main() {
        let h = workgroupId.x * ${EXPERTS_WORKGROUP}u + localIndex;
        if (h >= ${HV}u) { return; }
        for (var t = i32(workgroupId.y); t < uniforms.outShape.x; t += i32(numWorkgroups.y)) {
          var acc = ${vt}(0.0);
          for (var j = 0; j < ${topK}; j++) {
            let pair = t * ${topK} + j;
            if (localExpertOf(topkIds[pair]) >= 0) { acc += ${scale}${S === 1 ? pairSum : `(${pairSum})`}; }
          }
          result[u32(t) * ${HV}u + h] = acc;
        }
      }
    `;
  }
}

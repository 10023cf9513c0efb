/**
 * The deterministic combine: out[t, h] = Σ_j y[t·k + j, h] over token t's k slots, in slot order, for the
 * slots whose expert this rank holds (the others contribute exactly 0 and their y rows are never read).
 * No atomics: one thread owns each output vec4. The routing weight is already in y.
 * With a split-K w2 GEMM, y holds `splits` partial sums per pair ([splits·P, H]); each pair's parts are
 * added in part order before the slot sum, so the result is the same on every call.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {EXPERTS_WORKGROUP, localExpertSnippet} from './experts_wgsl';

export interface ExpertsCombineConfig {
  hiddenSize: number;
  topK: number;
  numLocalExperts: number;
  globalNumExperts: number;
  hasExpertMap: boolean;
}

export interface ExpertsCombineSplits {
  /** Partial sums per pair in y (split-K w2 GEMM); 1 when y is [P, H]. */
  splits: number;
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

  /** Inputs: y [splits·P, H], topkIds [T, k], expertMap?. */
  constructor(c: ExpertsCombineConfig, numTokens: number, {splits}: ExpertsCombineSplits = {splits: 1}) {
    this.c = c;
    this.splits = splits;
    this.outputComponent = c.hiddenSize % 4 === 0 ? 4 : 1;
    this.outputShape = [numTokens, c.hiddenSize];
    this.dispatch = [Math.ceil(c.hiddenSize / this.outputComponent / EXPERTS_WORKGROUP),
      Math.min(numTokens, MAX_GRID_Y), 1];
    this.variableNames = c.hasExpertMap ? ['y', 'topkIds', 'expertMap'] : ['y', 'topkIds'];
    this.variableComponents = this.variableNames.map((n) => n === 'y' ? this.outputComponent : 1);
    this.shaderKey = `moeExpertsCombine_${c.hiddenSize}_${c.topK}_${c.numLocalExperts}_${c.globalNumExperts}_` +
        `${c.hasExpertMap}_${this.outputComponent}_${splits}`;
  }

  getUserCode(): string {
    const {topK} = this.c;
    const HV = this.c.hiddenSize / this.outputComponent;
    const vt = this.outputComponent === 4 ? 'vec4<f32>' : 'f32';
    const S = this.splits;
    const numPairs = `uniforms.outShape.x * ${topK}`;
    const pairSum = S === 1 ? `y[u32(pair) * ${HV}u + h]` :
      Array.from({length: S}, (_, z) => `y[u32(${z} * ${numPairs} + pair) * ${HV}u + h]`).join(' + ');
    return `
      ${localExpertSnippet(this.c.hasExpertMap, this.c.globalNumExperts, this.c.numLocalExperts)}
      // y: [${S > 1 ? `${S}·` : ''}P, H] by pair; result: [T, H].
      fn main() {
        let h = workgroupId.x * ${EXPERTS_WORKGROUP}u + localIndex;
        if (h >= ${HV}u) { return; }
        for (var t = i32(workgroupId.y); t < uniforms.outShape.x; t += i32(numWorkgroups.y)) {
          var acc = ${vt}(0.0);
          for (var j = 0; j < ${topK}; j++) {
            let pair = t * ${topK} + j;
            if (localExpertOf(topkIds[pair]) >= 0) { acc += ${S === 1 ? pairSum : `(${pairSum})`}; }
          }
          result[u32(t) * ${HV}u + h] = acc;
        }
      }
    `;
  }
}

/**
 * The left operand of the storage tensor-core w13 GEMM (experts_gemm_tc_storage_webgpu.ts): x's rows in
 * the align program's expert-sorted order, rounded to f16 once here instead of once per column tile.
 *
 *   result[row, h] = f16(x[pair / k, h] · (w[pair] when the router weight goes on the input))
 *                    for row < align[E] with sorted[row] = pair ≥ 0; 0 for padding rows, for rows past
 *                    align[E], and for H ≤ h < Hp (the zero k the GEMM's 16-k steps read past H)
 *
 * Stored as i32 words of two halves (pack2x16float: tfjs has no f16 dtype), [rows, Hp / 2] (or in 16×16
 * blocks for the pipelined variants, tensor_core_plan.ts blockedRowsIndex); the GEMM
 * declares the same buffer array<f16> (./device.ts). One invocation per word, the grid folded into x × y.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {EXPERTS_WORKGROUP} from './experts_wgsl';
import {blockedRowsIndex, foldedDispatch} from './tensor_core_plan';

export interface ExpertsGatherF16Config {
  hiddenSize: number;
  topK: number;
  numLocalExperts: number;
  applyRouterWeightOnInput: boolean;
  /** Write the rows in 16×16 blocks (the pipelined tensor-core variants, TensorCoreLayout.blockedRows). */
  blockedRows?: boolean;
}

export class ExpertsGatherF16Program implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  private readonly c: ExpertsGatherF16Config;

  /** Inputs: x [T, H], align, topkWeights? Output int32 [rows, Hp / 2]. */
  constructor(c: ExpertsGatherF16Config, rows: number, Hp: number) {
    this.c = c;
    this.outputShape = [rows, Hp / 2];
    this.dispatch = foldedDispatch(rows * Hp / 2, EXPERTS_WORKGROUP);
    this.variableNames = ['x', 'align', ...(c.applyRouterWeightOnInput ? ['topkWeights'] : [])];
    this.shaderKey = `moeExpertsGatherF16_${c.hiddenSize}_${Hp}_${c.topK}_${c.numLocalExperts}_${c.applyRouterWeightOnInput}_` +
        `${c.blockedRows ?? false}`;
  }

  getUserCode(): string {
    const {hiddenSize: H, topK, numLocalExperts: E} = this.c;
    const words = this.outputShape[1];
    return `
      // x: [T, ${H}] f32; align: [E+1] offsets then the sorted pairs; result: [rows, ${words}] i32 (two f16 each).
      fn main() {
        let idx = getGlobalIndex();
        if (idx >= uniforms.outShape.x * ${words}) { return; }
        let row = idx / ${words};
        let h = 2 * (idx % ${words});
        var v = vec2<f32>(0.0);
        if (row < align[${E}]) {
          let pair = align[${E + 1} + row];
          if (pair >= 0) {
            let base = (pair / ${topK}) * ${H};
            let s = ${this.c.applyRouterWeightOnInput ? 'topkWeights[pair]' : '1.0'};
            if (h < ${H}) { v.x = x[base + h] * s; }
            if (h + 1 < ${H}) { v.y = x[base + h + 1] * s; }
          }
        }
        result[${this.c.blockedRows ? `i32(${blockedRowsIndex('u32(row)', 'u32(h)', 2 * words)} / 2u)` : 'idx'}] =
            bitcast<i32>(pack2x16float(v));
      }
    `;
  }
}

/**
 * An f16 copy of one weight shard in the layout the storage tensor-core GEMM reads (tensor_core_plan.ts
 * TensorCoreWeightLayout 'copy'), from any format through dequant_wgsl.ts:
 *
 *   w13: [E, 2·I32, Hp]  gate row i at row i, up row i at row I32 + i (de-interleaved for 'swigluoai')
 *   w2:  [E, H64, Ip]
 *   copy[e, row, k] = f16(dequantized w[e, n(row), k]), 0 for rows past N and for k ≥ K
 *
 * or, for the 'blocked' variants, in 16×16 blocks with w13's rows in tile order (TensorCoreWeightLayout.blocked).
 * (I32, H64: I and H rounded up to the GEMM's 32 / 64 columns per tile; Hp, Ip: up to 16 k.) So the GEMM's
 * matrix loads never leave the binding and the padded k multiply zeros. Biases stay where they are.
 * Stored as i32 words of two halves; one invocation per 8 k of a row (4 words), the grid folded into x × y.
 *
 * Made per call today (a read of the weights in their format and a write of half their f32 size): the
 * numbers in the device check's per-program profile show what a per-layer copy, made once, would save.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import type {Activation} from '../../kernel_names';
import type {WeightFormat} from '../../quant/format';
import {chunkShape, dequantSnippets, weightBindingComponents, weightBindings, weightFormatKey, wload8Snippet}
  from './dequant_wgsl';
import {EXPERTS_WORKGROUP, gateUpRows} from './experts_wgsl';
import type {ExpertsStage} from './experts_gemv_webgpu';
import {TensorCoreWeightLayout, blockedRowsIndex, foldedDispatch} from './tensor_core_plan';

export interface ExpertsWeightsF16Config {
  stage: ExpertsStage;
  hiddenSize: number;
  intermediateSize: number;
  activation: Activation;
  format: WeightFormat;
  layout: TensorCoreWeightLayout;
}

export class ExpertsWeightsF16Program implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  private readonly c: ExpertsWeightsF16Config;

  private readonly numExperts: number;
  private readonly firstExpert: number;

  /**
   * Inputs: the shard's data, scales, zeros, gidx (weightBindings, no bias). Output int32 [totalExperts,
   * rows·kStride/2], of which this shard's `numExperts` experts fill those from `firstExpert` on (one copy of
   * several shards: tensor_core_prefill.ts mergedCopy).
   */
  constructor(c: ExpertsWeightsF16Config, numExperts: number, firstExpert = 0, totalExperts = numExperts) {
    if (firstExpert < 0 || firstExpert + numExperts > totalExperts) {
      throw new Error(`f16 weight copy: experts [${firstExpert}, ${firstExpert + numExperts}) outside the output's ${totalExperts}`);
    }
    this.c = c;
    this.numExperts = numExperts;
    this.firstExpert = firstExpert;
    const L = c.layout;
    const K = c.stage === 'w13' ? c.hiddenSize : c.intermediateSize;
    const ch = chunkShape(c.format, K);
    this.outputShape = [totalExperts, L.rowsPerExpert * L.kStride / 2];
    this.dispatch = foldedDispatch(numExperts * L.rowsPerExpert * L.kStride / 8, EXPERTS_WORKGROUP);
    this.variableNames = weightBindings(c.format, false, 0);
    this.variableComponents = weightBindingComponents(c.format, false, 0, ch);
    this.shaderKey = `moeExpertsWeightsF16_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.activation}_` +
        `${L.rowsPerExpert}_${L.kStride}_${L.upOffset}_${L.blocked ?? false}_${weightFormatKey(c.format, false, ch)}_` +
        `${numExperts}_${firstExpert}`;
  }

  getUserCode(): string {
    const {stage, hiddenSize: H, intermediateSize: I} = this.c;
    const L = this.c.layout;
    const w13 = stage === 'w13';
    const K = w13 ? H : I;
    const N = w13 ? 2 * I : H;
    const ch = chunkShape(this.c.format, K);
    const chunks = L.kStride / 8;
    const gu = gateUpRows(this.c.activation, I);
    // w13's row lr: gate or up of act column i (blocked: in the GEMM's tile order, TensorCoreWeightLayout).
    const gateOrUp = L.blocked ? `
        let t = lr % 128;
        let up = (t / 32) % 2 == 1;
        let i = (lr / 128) * 64 + 32 * (t / 64) + t % 32;` : `
        let up = lr >= ${L.upOffset};
        let i = select(lr, lr - ${L.upOffset}, up);`;
    // Where 8 halves (4 words) of row (e, lr) from k go: row-major, or inside the row's 16×16 block.
    const out = L.blocked ? `${blockedRowsIndex('u32(row)', 'u32(k)', L.kStride)} / 2u` : 'idx * 4';
    const source = w13 ? `${gateOrUp}
        let valid = i < ${I};
        let src = e * ${N} + ${gu.gate('min(i, ' + (I - 1) + ')')} + select(0, ${gu.upOffset}, up);` : `
        let valid = lr < ${H};
        let src = e * ${N} + min(lr, ${H - 1});`;
    return `
      ${dequantSnippets(this.c.format, false, 1, N, K, ch)}
      ${wload8Snippet(this.c.format, 0, ch)}

      // weights0..: the shard in its format, [E, ${N}, ${K}] logically; result: f16 [E, ${L.rowsPerExpert}, ${L.kStride}]
      // as i32 words of two halves.
      fn main() {
        let idx = getGlobalIndex();
        // (The output must hold this shard's experts; the check also keeps tfjs's uniforms bound.)
        if (idx >= ${this.numExperts * L.rowsPerExpert * chunks} ||
            uniforms.outShape.x < ${this.firstExpert + this.numExperts}) { return; }
        let row = idx / ${chunks};
        let k = (idx % ${chunks}) * 8;
        let e = row / ${L.rowsPerExpert};
        let lr = row % ${L.rowsPerExpert};
        ${source}
        var v = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
        if (valid && k < ${K}) { v = wload8_0(u32(src), u32(k)); }
        let out = ${out}${this.firstExpert > 0 ? ` + ${this.firstExpert * L.rowsPerExpert * L.kStride / 2}` : ''};
        result[out] = bitcast<i32>(pack2x16float(v[0].xy));
        result[out + 1] = bitcast<i32>(pack2x16float(v[0].zw));
        result[out + 2] = bitcast<i32>(pack2x16float(v[1].xy));
        result[out + 3] = bitcast<i32>(pack2x16float(v[1].zw));
      }
    `;
  }
}

/**
 * vLLM's dynamic fp8 w8a8 activations (`per_token_group_quant_fp8`), as a fake quantization in place of the
 * GEMM input: for each row and each group of `group` consecutive values,
 *
 *   s = max(max|v|, 1e-10) / 448,   v ← e4m3_rne(clamp(v / s, ±448)) · s
 *
 * One workgroup of 128 threads per (group, row): a max-tree in workgroup memory, then each thread rounds its
 * values. e4m3 round-to-nearest-even by bit operations: normal values keep 3 mantissa bits (add 0x7ffff plus
 * the kept lsb, mask), subnormals (|v| < 2^-6) are round(|v|·512)/512 (WGSL's round is half-to-even).
 * The same math as fakeQuantizeFp8 in src/kernels/cpu/fused_experts_impl.ts, in float32.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';

const THREADS = 128;

export const E4M3_RNE_WGSL = `
  fn e4m3Rne(v : f32) -> f32 {
    let a = abs(v);
    var q : f32;
    if (a < 0.015625) {
      q = round(a * 512.0) * 0.001953125;
    } else {
      let b = bitcast<u32>(a);
      q = bitcast<f32>((b + 0x7ffffu + ((b >> 20u) & 1u)) & 0xfff00000u);
    }
    q = min(q, 448.0);
    return select(q, -q, v < 0.0);
  }`;

export class ExpertsFp8QuantProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [1], y: [0]};
  dispatch: [number, number, number];
  variableNames = ['x'];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  private readonly group: number;

  /** x [rows, cols] float32 → its fake-quantized copy. */
  constructor(rows: number, cols: number, group: number) {
    this.group = group;
    this.outputShape = [rows, cols];
    this.dispatch = [Math.ceil(cols / group), rows, 1];
    this.shaderKey = `moeExpertsFp8Quant_${cols}_${group}`;
  }

  getUserCode(): string {
    const C = this.outputShape[1];
    const G = this.group;
    return `
      ${E4M3_RNE_WGSL}
      var<workgroup> red : array<f32, ${THREADS}>;

      // x: [rows, ${C}]; result: the same, each ${G}-group of a row rounded to e4m3 · its scale.
      fn main() {
        let row = workgroupId.y;
        let g0 = workgroupId.x * ${G}u;
        let end = min(g0 + ${G}u, ${C}u);
        let base = row * ${C}u;
        var m = 0.0;
        for (var i = g0 + localIndex; i < end; i += ${THREADS}u) { m = max(m, abs(x[base + i])); }
        red[localIndex] = m;
        workgroupBarrier();
        for (var stride = ${THREADS / 2}u; stride > 0u; stride >>= 1u) {
          if (localIndex < stride) { red[localIndex] = max(red[localIndex], red[localIndex + stride]); }
          workgroupBarrier();
        }
        // (reading uniforms.outShape keeps the uniforms binding in the pipeline's layout)
        let s = max(red[0], 1e-10) / 448.0;
        if (i32(row) >= uniforms.outShape.x) { return; }
        for (var i = g0 + localIndex; i < end; i += ${THREADS}u) {
          result[base + i] = e4m3Rne(clamp(x[base + i] / s, -448.0, 448.0)) * s;
        }
      }
    `;
  }
}

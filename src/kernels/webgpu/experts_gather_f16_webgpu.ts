/**
 * The left operand of the storage tensor-core w13 GEMM (experts_gemm_tc_storage_webgpu.ts): x's rows in
 * the align program's expert-sorted order, rounded to f16 once here instead of once per column tile.
 *
 *   result[row, h] = f16(x[pair / k, h] · (w[pair] when the router weight goes on the input))
 *                    for row < align[E] with sorted[row] = pair ≥ 0; 0 for padding rows and for H ≤ h < Hp
 *                    (the zero k the GEMM's 16-k steps read past H); rows from align[E] on unwritten
 *
 * Stored as i32 words of two halves (pack2x16float: tfjs has no f16 dtype), [rows, Hp / 2] (or in 16×16
 * blocks for the pipelined variants, tensor_core_plan.ts blockedRowsIndex); the GEMM declares the same
 * buffer array<f16> (./device.ts). One invocation per 8 halves, reading two vec4s of x; the grid folded
 * into x × y. Blocked, a subgroup writes one whole block (512 contiguous bytes) and the grid runs a few k blocks
 * at a time, so that x's columns in flight ([T, 128] f32 at most) stay in L2 and each x sector comes from memory once:
 * in row order, DeepSeek-V3 TP8's x (117 MB, more than L2) was read once per slot (8×), and the gather took
 * 0.56 ms at M = 4096 on the H200 (0.73 ms with one invocation per word). Rows from align[E] on are left
 * unwritten (no GEMM tile reaches them).
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {EXPERTS_WORKGROUP} from './experts_wgsl';
import {foldedDispatch} from './tensor_core_plan';

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
  variableComponents: number[];
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  // An invocation's 8 halves as one 16-byte store: four 4-byte stores took DeepSeek-V3 TP8 M = 4096's gather 0.45
  // against 0.34 ms on an H100 (bench/results/2026-12-06-h100-gather-vec4.log).
  outputComponent = 4;
  private readonly c: ExpertsGatherF16Config;

  /** Inputs: x [T, H], align, topkWeights? Output int32 [rows, Hp / 2]. */
  constructor(c: ExpertsGatherF16Config, rows: number, Hp: number) {
    this.c = c;
    this.outputShape = [rows, Hp / 2];
    if (Hp % 16 !== 0 || c.hiddenSize % 8 !== 0) {
      throw new Error(`ExpertsGatherF16Program: Hp must be a multiple of 16 and H of 8, got Hp ${Hp}, H ${c.hiddenSize}`);
    }
    if (c.blockedRows && rows % 16 !== 0) {
      // The k-block-major grid walks rows / 16 whole blocks; a partial one would wrap into the next k block.
      throw new Error(`ExpertsGatherF16Program: rows must be whole 16-row blocks when blocked, got ${rows}`);
    }
    this.dispatch = foldedDispatch(rows * Hp / 8, EXPERTS_WORKGROUP);
    this.variableNames = ['x', 'align', ...(c.applyRouterWeightOnInput ? ['topkWeights'] : [])];
    this.variableComponents = this.variableNames.map((n) => n === 'x' ? 4 : 1);
    this.shaderKey = `moeExpertsGatherF16_${c.hiddenSize}_${Hp}_${c.topK}_${c.numLocalExperts}_${c.applyRouterWeightOnInput}_` +
        `${c.blockedRows ?? false}`;
  }

  getUserCode(): string {
    const {hiddenSize: H, topK, numLocalExperts: E} = this.c;
    const words = this.outputShape[1];
    const Hp = 2 * words;
    // Invocation idx's 8 halves: blocked, half a row of block idx / 32; blocks taken G k blocks at a time (one
    // workgroup's 8 subgroups: G adjacent blocks, contiguous in x16), row block after row block, then the next G
    // k blocks (one k block at a time: DeepSeek-V3 TP8 M = 4096 0.339 against 0.301 ms on an H100,
    // bench/results/2026-12-06-h100-gather-groups.log); else [row, k .. k + 7] of the row-major [rows, Hp].
    const KB = Hp / 16;
    const G = [8, 4, 2, 1].find((g) => KB % g === 0)!;
    const at = this.c.blockedRows ? `
        let rowBlocks = uniforms.outShape.x / 16;
        let block = idx / 32;
        let rest = block / ${G};
        let rb = rest % rowBlocks;
        let kb = (rest / rowBlocks) * ${G} + block % ${G};
        let row = rb * 16 + (idx % 32) / 2;
        let k = kb * 16 + (idx % 2) * 8;
        let w = ((rb * ${KB} + kb) * 32 + idx % 32) * 4;` : `
        let row = idx / ${Hp / 8};
        let k = (idx % ${Hp / 8}) * 8;
        let w = idx * 4;`;
    return `
      // x: [T, ${H}] f32 as vec4; align: [E+1] offsets then the sorted pairs; result: [rows, ${words}] i32 (two f16
      // each) as vec4s.
      fn main() {
        let idx = getGlobalIndex();
        if (idx >= uniforms.outShape.x * ${Hp / 8}) { return; }
        ${at}
        if (row >= align[${E}]) { return; }
        var v0 = vec4<f32>(0.0);
        var v1 = vec4<f32>(0.0);
        if (k < ${H}) {
          let pair = align[${E + 1} + row];
          if (pair >= 0) {
            let base = (pair / ${topK}) * ${H / 4} + k / 4;
            let s = ${this.c.applyRouterWeightOnInput ? 'topkWeights[pair]' : '1.0'};
            v0 = x[base] * s;
            v1 = x[base + 1] * s;
          }
        }
        result[w / 4] = bitcast<vec4<i32>>(vec4<u32>(pack2x16float(v0.xy), pack2x16float(v0.zw),
            pack2x16float(v1.xy), pack2x16float(v1.zw)));
      }
    `;
  }
}

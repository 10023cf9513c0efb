/**
 * Prefill GEMMs on tensor cores: the same problem, inputs, outputs and epilogues as
 * ExpertsGemmProgram (experts_gemm_webgpu.ts), computed with WGSL subgroup matrices
 * (`chromium_experimental_subgroup_matrix`, f16 × f16 → f32, 16×16×16).
 *
 * Numerics (as vLLM's bf16 path has bf16 operands and f32 accumulation): both operands are rounded to
 * f16 when a tile is loaded into workgroup memory (activations, and weights after dequantization), the
 * products are accumulated in f32, and the epilogue (activation, routing weight) runs in f32.
 *
 * Tile: 64 expert-sorted rows × 128 weight rows × 32 k, 256 threads = 8 subgroups of 32 (the path is
 * taken only where the device's subgroup size is fixed at 32), as 2 (rows) × 4 (columns):
 *
 *   subgroup (sm, sn) holds 2 × 2 accumulators of 16×16:
 *     rows     sm·32 + {0, 16}
 *     w13:     columns gate i0 + sn·16 and up i0 + sn·16 (Bs rows sn·16 and 64 + sn·16), so act(gate)·up
 *              pairs two accumulators of the same subgroup
 *     w2:      columns h0 + sn·32 + {0, 16}
 *
 * Each k tile: every thread converts 8 activations and 16 weights to f16 into As [64][32] and Bs [128][32]
 * (k contiguous), then each subgroup loads its left (row-major) and right (column-major: Bs holds Wᵀ's
 * columns) matrices and issues 4 multiply-accumulates per 16 k. The epilogue stores the accumulators of
 * one row block into a per-subgroup staging area and applies the activation or routing weight there.
 * A subgroup's index comes from an atomic counter (elected lane, then broadcast), so nothing assumes how
 * invocations are grouped into subgroups.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {EXPERTS_WORKGROUP, activationSnippet} from './experts_wgsl';
import type {ExpertsGemmConfig} from './experts_gemm_webgpu';

/** Rows per tile of the tensor-core GEMM (the align program pads every expert to a multiple of it). */
export const TC_BLOCK_ROWS = 64;
const BN = 128;
const BK = 32;
/** Workgroup memory: As and Bs in f16, plus 2 staged 16×16 f32 accumulators per subgroup. */
export const TC_WORKGROUP_BYTES = (TC_BLOCK_ROWS + BN) * BK * 2 + 8 * 2 * 256 * 4;

export class ExpertsTensorCoreGemmProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsGemmConfig;

  /** Inputs as ExpertsGemmProgram: x, align, topkWeights?, weights (K a multiple of 8). */
  constructor(c: ExpertsGemmConfig, outputShape: number[], numTiles: number) {
    if (c.blockRows !== TC_BLOCK_ROWS) throw new Error(`tensor-core GEMM needs blockRows ${TC_BLOCK_ROWS}`);
    this.c = c;
    const w13 = c.stage === 'w13';
    const N = w13 ? c.intermediateSize : c.hiddenSize;
    this.outputShape = outputShape;
    const splitK = w13 ? 1 : (c.splitK ?? 1);
    this.dispatch = [numTiles, Math.ceil(N / (w13 ? BN / 2 : BN)), splitK];
    const usesWeights = w13 ? c.applyRouterWeightOnInput : !c.applyRouterWeightOnInput;
    this.variableNames = ['x', 'align', ...(usesWeights ? ['topkWeights'] : []), 'weights'];
    this.variableComponents = this.variableNames.map((n) => (n === 'x' || n === 'weights') ? 4 : 1);
    this.shaderKey = `moeExpertsGemmTc_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.topK}_` +
        `${c.numLocalExperts}_${w13 ? c.activation : ''}_${c.applyRouterWeightOnInput}_${splitK}`;
  }

  getUserCode(): string {
    const {stage, hiddenSize: H, intermediateSize: I, topK, numLocalExperts: E} = this.c;
    const w13 = stage === 'w13';
    const K = w13 ? H : I;
    const KV = K / 4;
    const BM = TC_BLOCK_ROWS;
    const kTiles = Math.ceil(K / BK);
    const splitK = w13 ? 1 : (this.c.splitK ?? 1);
    const kTilesPerPart = Math.ceil(kTiles / splitK);
    const sorted = `align[${E + 1} + `;
    const inScale = w13 && this.c.applyRouterWeightOnInput;
    const outScale = !w13 && !this.c.applyRouterWeightOnInput;
    const left = 'subgroup_matrix_left<f16, 16, 16>';
    const right = 'subgroup_matrix_right<f16, 16, 16>';
    const result = 'subgroup_matrix_result<f32, 16, 16>';

    // Weight row r of the tile (r in [0, 128)): its row in the shard, or -1 past N.
    const bRow = w13 ?
      `fn weightRow(e : i32, r : i32) -> i32 {
        let i = n0 + (r % 64);
        if (i >= ${I}) { return -1; }
        return e * ${2 * I} + select(0, ${I}, r >= 64) + i;
      }` :
      `fn weightRow(e : i32, r : i32) -> i32 {
        let h = n0 + r;
        if (h >= ${H}) { return -1; }
        return e * ${H} + h;
      }`;
    // 8 consecutive k (from k, K % 8 == 0) of a row as f16 into a tile, zero past K or for row -1.
    const load8 = (tile: string, at: string, buf: string, base: string, scale: string) => `{
            var v0 = vec4<f32>(0.0);
            var v1 = vec4<f32>(0.0);
            if (${base} >= 0 && k < ${K}) {
              v0 = ${buf}[u32(${base}) + u32(k) / 4u] * ${scale};
              v1 = ${buf}[u32(${base}) + u32(k) / 4u + 1u] * ${scale};
            }
            let at = ${at};
            ${[0, 1, 2, 3].map((d) => `${tile}[at + ${d}u] = f16(v0[${d}]); ${tile}[at + ${4 + d}u] = f16(v1[${d}]);`).join('\n            ')}
          }`;
    const epilogue = w13 ? `
          let g = staged[sgBase + idx];
          let u = staged[sgBase + 256u + idx];
          let row = rowStart + i32(sm * 32u + rt * 16u + r);
          let i = n0 + i32(sn * 16u + c);
          if (i < ${I}) { result[row * ${I} + i] = expertAct(g) * u; }` : `
          let pair = ${sorted}rowStart + i32(sm * 32u + rt * 16u + r)];
          if (pair >= 0) {
            let s = ${outScale ? 'topkWeights[pair]' : '1.0'};
            let outRow = ${splitK > 1 ? `part * (uniforms.outShape.x / ${splitK}) + pair` : 'pair'};
            for (var ct = 0u; ct < 2u; ct++) {
              let h = n0 + i32(sn * 32u + ct * 16u + c);
              if (h < ${H}) { result[outRow * ${H} + h] = staged[sgBase + ct * 256u + idx] * s; }
            }
          }`;

    return `
      enable f16;
      enable subgroups;
      enable chromium_experimental_subgroup_matrix;
      ${w13 ? activationSnippet(this.c.activation) : ''}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end k tile
      var<workgroup> subgroupCounter : atomic<u32>;
      var<workgroup> As : array<f16, ${BM * BK}>;     // [row][k]
      var<workgroup> Bs : array<f16, ${BN * BK}>;     // [weight row][k]
      var<workgroup> staged : array<f32, ${8 * 2 * 256}>;   // per subgroup: two 16×16 accumulators
      var<private> n0 : i32;
      ${bRow}

      // x: ${w13 ? 'hidden [T, H], rows gathered through the sorted pairs' : 'act [rows, I], in sorted order'};
      // align: [E+1] offsets then the sorted pairs; weights: this shard's ${w13 ? 'w13 [n, 2I, H]' : 'w2 [n, H, I]'};
      // result: ${w13 ? 'act [rows, I]' : 'y [P, H] by pair'}.
      fn main() {
        if (localIndex == 0u) {
          let first = uniforms.firstExpert;
          let segEnd = align[first + uniforms.weightsShape.x];
          let rowStart = align[first] + i32(workgroupId.x) * ${BM};
          var tile = vec4<i32>(-1, 0, 0, 0);
          if (rowStart < segEnd) {
            var lo = first;
            var hi = first + uniforms.weightsShape.x - 1;
            while (lo < hi) {
              let mid = (lo + hi + 1) / 2;
              if (align[mid] <= rowStart) { lo = mid; } else { hi = mid - 1; }
            }
            let kt0 = i32(workgroupId.z) * ${kTilesPerPart};
            tile = vec4<i32>(rowStart, lo - first, kt0, min(kt0 + ${kTilesPerPart}, ${kTiles}));
          }
          wgTile = tile;
        }
        let tile = workgroupUniformLoad(&wgTile);
        if (tile.x < 0) { return; }
        let rowStart = tile.x;
        let e = tile.y;
        ${splitK > 1 ? `let part = i32(workgroupId.z);` : ''}
        n0 = i32(workgroupId.y) * ${w13 ? BN / 2 : BN};

        // Which subgroup this is (0..7) and this invocation's lane in it.
        var sgIndex = 0u;
        if (subgroupElect()) { sgIndex = atomicAdd(&subgroupCounter, 1u); }
        sgIndex = subgroupBroadcastFirst(sgIndex);
        let lane = subgroupExclusiveAdd(1u);
        let sm = sgIndex % 2u;
        let sn = sgIndex / 2u;

        // Loads: thread t takes 8 k of A row t/4 and of B rows t/4 and t/4 + 64.
        let am = i32(localIndex / 4u);
        let kq = i32(localIndex % 4u) * 8;
        var aBase = -1;
        var aScale = 1.0;
        ${w13 ? `let pair = ${sorted}rowStart + am];
        if (pair >= 0) {
          aBase = (pair / ${topK}) * ${KV};
          ${inScale ? 'aScale = topkWeights[pair];' : ''}
        }` : `aBase = (rowStart + am) * ${KV};`}
        let bRow0 = weightRow(e, am);
        let bRow1 = weightRow(e, am + 64);
        let bBase0 = select(-1, bRow0 * ${KV}, bRow0 >= 0);
        let bBase1 = select(-1, bRow1 * ${KV}, bRow1 >= 0);

        var acc00 : ${result};
        var acc01 : ${result};
        var acc10 : ${result};
        var acc11 : ${result};
        let aOff0 = (sm * 32u) * ${BK}u;
        let aOff1 = (sm * 32u + 16u) * ${BK}u;
        let bOff0 = ${w13 ? `(sn * 16u) * ${BK}u` : `(sn * 32u) * ${BK}u`};
        let bOff1 = ${w13 ? `(64u + sn * 16u) * ${BK}u` : `(sn * 32u + 16u) * ${BK}u`};

        for (var kt = tile.z; kt < tile.w; kt++) {
          let k = kt * ${BK} + kq;
          ${load8('As', `u32(am) * ${BK}u + u32(kq)`, 'x', 'aBase', 'aScale')}
          ${[0, 1].map((j) => load8('Bs', `u32(am + ${64 * j}) * ${BK}u + u32(kq)`, 'weights', `bBase${j}`, '1.0'))
            .join('\n          ')}
          workgroupBarrier();
          for (var kk = 0u; kk < ${BK}u; kk += 16u) {
            let a0 = subgroupMatrixLoad<${left}>(&As, aOff0 + kk, false, ${BK}u);
            let a1 = subgroupMatrixLoad<${left}>(&As, aOff1 + kk, false, ${BK}u);
            let b0 = subgroupMatrixLoad<${right}>(&Bs, bOff0 + kk, true, ${BK}u);
            let b1 = subgroupMatrixLoad<${right}>(&Bs, bOff1 + kk, true, ${BK}u);
            acc00 = subgroupMatrixMultiplyAccumulate(a0, b0, acc00);
            acc01 = subgroupMatrixMultiplyAccumulate(a0, b1, acc01);
            acc10 = subgroupMatrixMultiplyAccumulate(a1, b0, acc10);
            acc11 = subgroupMatrixMultiplyAccumulate(a1, b1, acc11);
          }
          workgroupBarrier();
        }

        let sgBase = sgIndex * 512u;
        for (var rt = 0u; rt < 2u; rt++) {
          if (rt == 0u) {
            subgroupMatrixStore(&staged, sgBase, acc00, false, 16u);
            subgroupMatrixStore(&staged, sgBase + 256u, acc01, false, 16u);
          } else {
            subgroupMatrixStore(&staged, sgBase, acc10, false, 16u);
            subgroupMatrixStore(&staged, sgBase + 256u, acc11, false, 16u);
          }
          workgroupBarrier();
          for (var q = 0u; q < 8u; q++) {
            let idx = lane * 8u + q;
            let r = idx / 16u;
            let c = idx % 16u;
            ${epilogue}
          }
          workgroupBarrier();
        }
      }
    `;
  }
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13TensorCoreGemmProgram extends ExpertsTensorCoreGemmProgram {}
export class ExpertsW2TensorCoreGemmProgram extends ExpertsTensorCoreGemmProgram {}

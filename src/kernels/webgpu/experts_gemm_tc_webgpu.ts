/**
 * Prefill GEMMs on tensor cores: the same problem, inputs, outputs and epilogues as
 * ExpertsGemmProgram (experts_gemm_webgpu.ts), computed with WGSL subgroup matrices
 * (`chromium_experimental_subgroup_matrix`, f16 × f16 → f32, 16×16×16).
 *
 * Numerics (as vLLM's bf16 path has bf16 operands and f32 accumulation): both operands are rounded to
 * f16 when a tile is loaded into workgroup memory (weights of any format dequantized to f32 first, through
 * dequant_wgsl.ts's wload8), the products are accumulated in f32, and the epilogue (bias, activation or
 * 'swigluoai', routing weight) runs in f32. This is the 'workgroup-tiles' variant of tensor_core_plan.ts.
 *
 * One subgroup per workgroup (32 invocations; the path is taken only where the subgroup size is fixed
 * at 32): the subgroup-matrix builtins need workgroup-uniform offsets, which a workgroup of several
 * subgroups, each with its own tiles, cannot give them (Tint rejects it). A workgroup takes 32
 * expert-sorted rows and 64 weight rows, k in tiles of 32:
 *
 *   w13:  weight rows gate i0..i0+31 and up i0..i0+31 → 2 (rows) × 4 (gate, gate, up, up) accumulators;
 *         act(gate)·up pairs accumulator c with c + 2
 *   w2:   weight rows h0..h0+63 → 2 × 4 accumulators
 *
 * Each k tile: the 32 invocations convert the 32×32 activations and 64×32 weights to f16 into As and Bs
 * (k contiguous), then the subgroup loads left (row-major) and right (column-major: Bs holds Wᵀ's
 * columns) matrices and issues 8 multiply-accumulates per 16 k. The epilogue stores one row block's
 * accumulators to workgroup memory and applies the activation or routing weight there.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {ChunkShape, chunkShape, dequantSnippets, weightBindingComponents, weightBindings, weightFormatKey,
  wload8Snippet} from './dequant_wgsl';
import {activationSnippet, gateUpRows, gemmTileSnippet, weightRowSnippet} from './experts_wgsl';
import type {ExpertsGemmConfig} from './experts_gemm_webgpu';

/** Rows per tile of the tensor-core GEMM (the align program pads every expert to a multiple of it). */
export const TC_BLOCK_ROWS = 32;
const BN = 64;
const BK = 32;
const WG = 32;
/** Workgroup memory: As and Bs in f16, and one row block of 4 staged 16×16 f32 accumulators. */
export const TC_WORKGROUP_BYTES = (TC_BLOCK_ROWS + BN) * BK * 2 + 4 * 256 * 4;

export class ExpertsTensorCoreGemmProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [WG, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsGemmConfig;
  private readonly ch: ChunkShape;

  /** Inputs as ExpertsGemmProgram: x, align, topkWeights?, then the shard's weight bindings (K a multiple of 8). */
  constructor(c: ExpertsGemmConfig, outputShape: number[], numTiles: number) {
    if (c.blockRows !== TC_BLOCK_ROWS) throw new Error(`tensor-core GEMM needs blockRows ${TC_BLOCK_ROWS}`);
    this.c = c;
    const w13 = c.stage === 'w13';
    const N = w13 ? c.intermediateSize : c.hiddenSize;
    this.outputShape = outputShape;
    const splitK = w13 ? 1 : (c.splitK ?? 1);
    this.dispatch = [numTiles, Math.ceil(N / (w13 ? BN / 2 : BN)), splitK];
    const usesWeights = w13 ? c.applyRouterWeightOnInput : !c.applyRouterWeightOnInput;
    this.ch = chunkShape(c.format, w13 ? c.hiddenSize : c.intermediateSize);
    const head = ['x', 'align', ...(usesWeights ? ['topkWeights'] : [])];
    this.variableNames = [...head, ...weightBindings(c.format, c.hasBias, 0)];
    this.variableComponents = [...head.map((n) => n === 'x' ? 4 : 1),
      ...weightBindingComponents(c.format, c.hasBias, 0, this.ch)];
    this.shaderKey = `moeExpertsGemmTc_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.topK}_` +
        `${c.numLocalExperts}_${w13 ? c.activation : ''}_${c.applyRouterWeightOnInput}_${splitK}_` +
        weightFormatKey(c.format, c.hasBias, this.ch);
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
    const HALF = BN / 2;

    const gu = gateUpRows(this.c.activation, I);
    const bRow = weightRowSnippet(w13 ? 'w13' : 'w2', this.c.activation, H, I, HALF);
    // 8 consecutive k (from k, K % 8 == 0) of a row as f16 into a tile; zero past K or for base -1.
    // x rows are f32 vec4s (base in vec4 units, times the row's scale); weight rows any format (wload8_0).
    const load8 = (tile: string, at: string, buf: string, base: string, scale: string) => `{
            var v0 = vec4<f32>(0.0);
            var v1 = vec4<f32>(0.0);
            if (${base} >= 0 && k < ${K}) {
              ${buf === 'weights' ? `let w = wload8_0(u32(${base}), u32(k));
              v0 = w[0];
              v1 = w[1];` : `v0 = ${buf}[u32(${base}) + u32(k) / 4u] * ${scale};
              v1 = ${buf}[u32(${base}) + u32(k) / 4u + 1u] * ${scale};`}
            }
            let at = ${at};
            ${[0, 1, 2, 3].map((d) => `${tile}[at + ${d}u] = f16(v0[${d}]); ${tile}[at + ${4 + d}u] = f16(v1[${d}]);`)
              .join('\n            ')}
          }`;
    // Row r (of 32) and chunk q (of 4, 8 k each) for load pass p: lanes cover 8 rows × 4 chunks a pass.
    const aLoads = Array.from({length: BM / 8}, (_, p) => p);
    const bLoads = Array.from({length: BN / 8}, (_, p) => p);
    const epilogue = w13 ? `
            // 16 rows × 32 act columns: lane l takes column l of every row.
            for (var r = 0u; r < 16u; r++) {
              let c = lane;
              let row = rowStart + i32(rt * 16u + r);
              let i = n0 + i32(c);
              if (i < ${I}) {
                let g = staged[(c / 16u) * 256u + r * 16u + c % 16u]${this.c.hasBias ? ` + wbias0(u32(e * ${2 * I} + ${gu.gate('i')}))` : ''};
                let u = staged[(2u + c / 16u) * 256u + r * 16u + c % 16u]${this.c.hasBias ? ` + wbias0(u32(e * ${2 * I} + ${gu.gate('i')} + ${gu.upOffset}))` : ''};
                result[row * ${I} + i] = expertGlu(g, u);
              }
            }` : `
            for (var r = 0u; r < 16u; r++) {
              let pair = ${sorted}rowStart + i32(rt * 16u + r)];
              if (pair >= 0) {
                let s = ${outScale ? 'topkWeights[pair]' : '1.0'};
                let outRow = ${splitK > 1 ? `part * (uniforms.outShape.x / ${splitK}) + pair` : 'pair'};
                for (var half = 0u; half < 2u; half++) {
                  let c = half * 32u + lane;
                  let h = n0 + i32(c);
                  if (h < ${H}) {
                    var v = staged[(c / 16u) * 256u + r * 16u + c % 16u];
                    ${this.c.hasBias ? `if (${splitK > 1 ? 'part == 0' : 'true'}) { v += wbias0(u32(e * ${H} + h)); }` : ''}
                    result[outRow * ${H} + h] = v * s;
                  }
                }
              }
            }`;

    return `
      enable f16;
      enable chromium_experimental_subgroup_matrix;
      ${w13 ? activationSnippet(this.c.activation) : ''}
      ${dequantSnippets(this.c.format, this.c.hasBias, 1, w13 ? 2 * I : H, K, this.ch)}
      ${wload8Snippet(this.c.format, 0, this.ch)}
      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end k tile
      var<workgroup> As : array<f16, ${BM * BK}>;     // [row][k]
      var<workgroup> Bs : array<f16, ${BN * BK}>;     // [weight row][k]
      var<workgroup> staged : array<f32, ${4 * 256}>;   // one row block's 4 accumulators, 16×16 each
      var<private> n0 : i32;
      ${bRow}

      // x: ${w13 ? 'hidden [T, H], rows gathered through the sorted pairs' : 'act [rows, I], in sorted order'};
      // align: [E+1] offsets then the sorted pairs; weights: this shard's ${w13 ? 'w13 [n, 2I, H]' : 'w2 [n, H, I]'};
      // result: ${w13 ? 'act [rows, I]' : 'y [P, H] by pair'}.
      fn main() {
        ${gemmTileSnippet('weights0', BM, kTilesPerPart, kTiles)}
        ${splitK > 1 ? `let part = i32(workgroupId.z);` : ''}
        n0 = i32(workgroupId.y) * ${w13 ? HALF : BN};
        let lane = localIndex;
        let rowInPass = i32(lane / 4u);
        let kq = i32(lane % 4u) * 8;

        // Sources of this lane's rows: pass p loads A row p·8 + lane/4 and B rows likewise.
        ${aLoads.map((p) => `var aBase${p} = -1;
        var aScale${p} = 1.0;
        {
          let m = ${p * 8} + rowInPass;
          ${w13 ? `let pair = ${sorted}rowStart + m];
          if (pair >= 0) {
            aBase${p} = (pair / ${topK}) * ${KV};
            ${inScale ? `aScale${p} = topkWeights[pair];` : ''}
          }` : `aBase${p} = (rowStart + m) * ${KV};`}
        }`).join('\n        ')}
        ${bLoads.map((p) => `let bRow${p} = weightRow(e, ${p * 8} + rowInPass);
        let bBase${p} = bRow${p};`).join('\n        ')}

        ${Array.from({length: 8}, (_, a) => `var acc${a} : ${result};`).join('\n        ')}

        for (var kt = tile.z; kt < tile.w; kt++) {
          let k = kt * ${BK} + kq;
          ${aLoads.map((p) => load8('As', `u32(${p * 8} + rowInPass) * ${BK}u + u32(kq)`, 'x', `aBase${p}`, `aScale${p}`))
            .join('\n          ')}
          ${bLoads.map((p) => load8('Bs', `u32(${p * 8} + rowInPass) * ${BK}u + u32(kq)`, 'weights', `bBase${p}`, '1.0'))
            .join('\n          ')}
          workgroupBarrier();
          for (var kk = 0u; kk < ${BK}u; kk += 16u) {
            let a0 = subgroupMatrixLoad<${left}, row_major>(&As, kk, ${BK}u);
            let a1 = subgroupMatrixLoad<${left}, row_major>(&As, ${16 * BK}u + kk, ${BK}u);
            ${[0, 1, 2, 3].map((c) => `let b${c} = subgroupMatrixLoad<${right}, col_major>(&Bs, ${c * 16 * BK}u + kk, ${BK}u);`)
              .join('\n            ')}
            ${[0, 1, 2, 3].map((c) => `acc${c} = subgroupMatrixMultiplyAccumulate(a0, b${c}, acc${c});
            acc${4 + c} = subgroupMatrixMultiplyAccumulate(a1, b${c}, acc${4 + c});`).join('\n            ')}
          }
          workgroupBarrier();
        }

        for (var rt = 0u; rt < 2u; rt++) {
          if (rt == 0u) {
            ${[0, 1, 2, 3].map((c) => `subgroupMatrixStore<row_major>(&staged, ${c * 256}u, acc${c}, 16u);`).join(' ')}
          } else {
            ${[0, 1, 2, 3].map((c) => `subgroupMatrixStore<row_major>(&staged, ${c * 256}u, acc${4 + c}, 16u);`).join(' ')}
          }
          workgroupBarrier();
          ${epilogue}
          workgroupBarrier();
        }
      }
    `;
  }
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13TensorCoreGemmProgram extends ExpertsTensorCoreGemmProgram {}
export class ExpertsW2TensorCoreGemmProgram extends ExpertsTensorCoreGemmProgram {}

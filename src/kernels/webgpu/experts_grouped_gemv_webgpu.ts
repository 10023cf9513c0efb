/**
 * Decode path for T > 1: a GEMV per expert over all of its pairs, so that each selected weight row is
 * read from memory once however many tokens chose the expert (the per-pair GEMV reads it once per pair
 * and relies on L2 for the repeats). Pairs come grouped by ExpertsAlignProgram with blockRows = 1.
 *
 * Workgroup (expert e of this shard, 8 output rows); 32 lanes per row read it as vec4s, coalesced, and
 * each lane multiplies every vec4 of weights with the x vectors of up to PAIRS_PER_PASS pairs before
 * moving on. More pairs take more passes over the same rows, which then hit L1/L2.
 *
 * stage 'w13':  act[p, i] = act(gate_i · x_p) · (up_i · x_p),  x_p = hidden[p / k] (· w[p] on the input)
 * stage 'w2':   y[p, h]   = (w2_h · act[p]) · w[p]
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {ChunkShape, chunkShape, dequantSnippets, weightBindingComponents, weightBindings, weightFormatKey}
  from './dequant_wgsl';
import {EXPERTS_WORKGROUP, activationSnippet, gateUpRows} from './experts_wgsl';
import {ExpertsGemvConfig, chunkDot} from './experts_gemv_webgpu';

const LANES = 32;
const ROWS = EXPERTS_WORKGROUP / LANES;
/** Pairs of one expert multiplied per pass over its rows. */
export const PAIRS_PER_PASS = 4;

export class ExpertsGroupedGemvProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0], y: [1]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [EXPERTS_WORKGROUP, 1, 1];
  uniforms = 'firstExpert : i32,';
  private readonly c: ExpertsGemvConfig;
  private readonly ch: ChunkShape;
  private readonly usesWeights: boolean;

  /**
   * Inputs, in order: x (hidden [T, H] or act [P, I]), align (blockRows 1), topkWeights?, then the shard's
   * data, scales, zeros, gidx, bias (as the format has them: weightBindings).
   */
  constructor(c: ExpertsGemvConfig, numPairs: number, shardExperts: number) {
    this.c = c;
    const K = c.stage === 'w13' ? c.hiddenSize : c.intermediateSize;
    const N = c.stage === 'w13' ? c.intermediateSize : c.hiddenSize;
    this.ch = chunkShape(c.format, K);
    this.usesWeights = c.stage === 'w13' ? c.applyRouterWeightOnInput : !c.applyRouterWeightOnInput;
    this.outputShape = [numPairs, N];
    this.dispatch = [shardExperts, Math.ceil(N / ROWS), 1];
    const head = ['x', 'align', ...(this.usesWeights ? ['topkWeights'] : [])];
    this.variableNames = [...head, ...weightBindings(c.format, c.hasBias, 0)];
    this.variableComponents = [...head.map((n) => n === 'x' ? this.ch.vec : 1),
      ...weightBindingComponents(c.format, c.hasBias, 0, this.ch)];
    this.shaderKey = `moeExpertsGroupedGemv_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.topK}_` +
        `${c.numLocalExperts}_${c.stage === 'w13' ? c.activation : ''}_${c.applyRouterWeightOnInput}_${this.ch.vec}_` +
        `${PAIRS_PER_PASS}_${weightFormatKey(c.format, c.hasBias, this.ch)}`;
  }

  getUserCode(): string {
    const {stage, hiddenSize: H, intermediateSize: I, topK, numLocalExperts: E} = this.c;
    const w13 = stage === 'w13';
    const N = w13 ? I : H;
    const ch = this.ch;
    const KX = (w13 ? H : I) / ch.vec;     // x row in vector units
    const K = (w13 ? H : I) / ch.values;   // weight row in chunks
    const gu = gateUpRows(this.c.activation, I);
    const gateRow = (n: string) => w13 ? `e * ${2 * I} + ${gu.gate(n)}` : `e * ${H} + ${n}`;
    const TP = PAIRS_PER_PASS;
    const rowSets = w13 ? 2 : 1;                     // gate and up rows, or one w2 row
    const outputs = ROWS * TP * rowSets;             // partial sums per pass
    const threadsPerOutput = EXPERTS_WORKGROUP / outputs;
    const lanesPerThread = LANES / threadsPerOutput;
    const qs = Array.from({length: TP}, (_, q) => q);
    const sets = Array.from({length: rowSets}, (_, s) => s);
    const scale = (q: number) => this.usesWeights ? `select(0.0, topkWeights[pair${q}], pair${q} >= 0)` : '1.0';
    return `
      ${w13 ? activationSnippet(this.c.activation) : ''}
      ${dequantSnippets(this.c.format, this.c.hasBias, 1, w13 ? 2 * I : H, w13 ? H : I, ch)}
      fn mul1(a : f32, b : f32) -> f32 { return a * b; }
      var<workgroup> wgRange : vec2<i32>;
      var<workgroup> partial : array<f32, ${outputs * LANES}>;
      var<workgroup> half : array<f32, ${EXPERTS_WORKGROUP}>;

      // x: ${w13 ? 'hidden [T, H]' : 'act [P, I]'}; align: [E+1] offsets, then pairs grouped by expert;
      // weights: this shard's ${w13 ? 'w13 [n, 2I, H]' : 'w2 [n, H, I]'}; result: ${w13 ? 'act [P, I]' : 'y [P, H]'} by pair.
      fn main() {
        let e = i32(workgroupId.x);
        if (localIndex == 0u) {
          let local = uniforms.firstExpert + e;
          wgRange = vec2<i32>(align[local], align[local + 1]);
        }
        let range = workgroupUniformLoad(&wgRange);
        let lane = localIndex % ${LANES}u;
        let g = localIndex / ${LANES}u;
        let n = i32(workgroupId.y) * ${ROWS} + i32(g);
        let rowA = u32(select(0, ${gateRow('n')}, n < ${N}));
        ${w13 ? `let rowB = rowA + ${gu.upOffset}u;` : ''}
        for (var first = range.x; first < range.y; first += ${TP}) {
          ${qs.map((q) => `
          let pair${q} = select(-1, align[${E + 1} + first + ${q}], first + ${q} < range.y);
          let x${q} = u32(select(0, ${w13 ? `(pair${q} / ${topK})` : `pair${q}`} * ${KX}, pair${q} >= 0));`).join('')}
          ${qs.map((q) => sets.map((s) => `var acc${s}_${q} = 0.0;`).join(' ')).join(' ')}
          if (n < ${N}) {
            for (var c = lane; c < ${K}u; c += ${LANES}u) {
              let wA = wload0(rowA, c);
              ${w13 ? 'let wB = wload0(rowB, c);' : ''}
              ${qs.map((q) => `${chunkDot(ch, `acc0_${q}`, 'wA', (j) => `x${q} + c * ${ch.vecs}u + ${j}u`)}${
                w13 ? ` ${chunkDot(ch, `acc1_${q}`, 'wB', (j) => `x${q} + c * ${ch.vecs}u + ${j}u`)}` : ''}`).join('\n              ')}
            }
          }
          // partial[(set·TP + q)·8 + g][lane]
          ${qs.map((q) => sets.map((s) => `partial[(${(s * TP + q) * ROWS}u + g) * ${LANES}u + lane] = acc${s}_${q};`).join(' ')).join('\n          ')}
          workgroupBarrier();
          {
            // ${threadsPerOutput} threads per output, ${lanesPerThread} lanes each.
            let o = localIndex / ${threadsPerOutput}u;
            let l0 = (localIndex % ${threadsPerOutput}u) * ${lanesPerThread}u;
            var s = 0.0;
            for (var l = 0u; l < ${lanesPerThread}u; l++) { s += partial[o * ${LANES}u + l0 + l]; }
            half[localIndex] = s;
          }
          workgroupBarrier();
          if (localIndex < ${ROWS * TP}u) {
            let q = i32(localIndex / ${ROWS}u);
            let row = i32(workgroupId.y) * ${ROWS} + i32(localIndex % ${ROWS}u);
            let pair = select(-1, align[${E + 1} + first + q], first + q < range.y);
            if (pair >= 0 && row < ${N}) {
              var sums = array<f32, ${rowSets}>(${sets.map(() => '0.0').join(', ')});
              for (var s = 0; s < ${rowSets}; s++) {
                let o = u32(s * ${TP * ROWS}) + localIndex;
                for (var t = 0u; t < ${threadsPerOutput}u; t++) { sums[s] += half[o * ${threadsPerOutput}u + t]; }
              }
              let w = ${this.usesWeights ? 'topkWeights[pair]' : '1.0'};
              ${this.c.hasBias ? `let bA = wbias0(u32(${gateRow('row')}));${
                w13 ? ` let bB = wbias0(u32(${gateRow('row')}) + ${gu.upOffset}u);` : ''}` : 'let bA = 0.0; let bB = 0.0;'}
              ${w13 ? `result[pair * ${N} + row] = expertGlu(sums[0] * w + bA, sums[1] * w + bB);` :
                `result[pair * ${N} + row] = (sums[0] + bA) * w;`}
            }
          }
          workgroupBarrier();
        }
      }
    `;
  }
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13GroupedGemvProgram extends ExpertsGroupedGemvProgram {}
export class ExpertsW2GroupedGemvProgram extends ExpertsGroupedGemvProgram {}

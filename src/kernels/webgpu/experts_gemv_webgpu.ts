/**
 * Decode path (few (token, slot) pairs): a gather-GEMV per pair that reads only the rows of the
 * pair's expert. Memory-bound, so every byte counts:
 *   - 32 to 256 lanes share one weight row and read it as consecutive vec4s (512+ contiguous bytes a
 *     step), four steps unrolled, so each lane has several 16-byte loads in flight;
 *   - 8 rows per workgroup and a grid of (pairs × rows/8) workgroups (for Mixtral at T = 1, 2 × 1792
 *     for w13), or fewer, wider rows where that grid would leave SMs idle (gemvRowsPerWorkgroup);
 *   - the pair index is the fastest grid dimension, so pairs that share an expert read the same rows at
 *     about the same time and the second read comes from L2: DRAM sees each selected row about once.
 *
 * stage 'w13':  act[p, i] = act(gate_i · x) · (up_i · x),  x = hidden[p / k] (· w[p] on the input)
 * stage 'w2':   y[p, h]   = (w2_h · act[p]) · w[p]           (weight 1 when applied on the input)
 * Weights split into several tensors: the program binds `shards.length` of them (weights0, weights1, ..., holding
 * shards[0], shards[1], ... consecutive experts from uniform firstExpert on) and each workgroup reads the tensor
 * that holds its pair's expert, so a split layer still takes one dispatch per stage. Pairs whose expert is in
 * none of the bound tensors (or is -1) are skipped; the combine ignores them.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import type {Activation} from '../../kernel_names';
import type {WeightFormat} from '../../quant/format';
import {ChunkShape, chunkShape, dequantSnippets, weightBindingComponents, weightBindings, weightFormatKey}
  from './dequant_wgsl';
import {EXPERTS_WORKGROUP, activationSnippet, gateUpRows, localExpertSnippet} from './experts_wgsl';

export type ExpertsStage = 'w13' | 'w2';

/** One stage of the expert programs over a shard: the layer's sizes and routing, whatever the weights' format. */
export interface ExpertsStageConfig {
  stage: ExpertsStage;
  hiddenSize: number;
  intermediateSize: number;
  topK: number;
  numLocalExperts: number;
  globalNumExperts: number;
  hasExpertMap: boolean;
  activation: Activation;
  applyRouterWeightOnInput: boolean;
  /** Whether each projection adds a bias. */
  hasBias: boolean;
}

export interface ExpertsGemvConfig extends ExpertsStageConfig {
  /** The weights' format (dequant_wgsl.ts reads every one). */
  format: WeightFormat;
  /** Packed formats: 16-byte chunks per lane (dequant_wgsl.ts chunkShape `wide`); per-pair GEMVs only. */
  wideChunks?: boolean;
}

const UNROLL = 4;
/** Aim for at least this many workgroups (132 SMs × ~16 resident) before giving a row fewer lanes. */
const TARGET_WORKGROUPS = 2048;

/**
 * Rows per workgroup (32 to 1; the 256 threads split evenly over them): 8 rows of 32 lanes where the
 * grid is large, more and narrower rows where rows are short, fewer and wider rows where the grid is small (DeepSeek-V3 TP8 at T = 1 has 8 pairs × 512
 * w13 rows: 256 workgroups of 8 rows would leave most SMs idle).
 */
/**
 * WGSL that sets `shard` (index of the bound weight tensor, -1 if none) and `expert` (index inside it) from
 * `local`, a local expert counted from the first bound tensor.
 */
export function shardOfSnippet(shards: number[], local: string, shard: string, expert: string): string {
  return `var ${shard} = -1;
        var ${expert} = ${local};
        ${shards.map((n, s) => `if (${shard} < 0 && ${expert} >= 0) {
          if (${expert} < ${n}) { ${shard} = ${s}; } else { ${expert} -= ${n}; }
        }`).join('\n        ')}`;
}

/**
 * The bindings of a GEMV over (token, slot) pairs, in order: x, topkIds, expertMap?, topkWeights?, then
 * per weight tensor its data, scales, zeros, gidx, bias (as the format has them: weightBindings); x is read
 * `vec` floats at a time, the data as chunkShape says.
 */
export function gemvBindings(c: ExpertsGemvConfig, usesWeights: boolean, shards: number[], ch: ChunkShape):
    {variableNames: string[]; variableComponents: number[]} {
  const head = ['x', 'topkIds', ...(c.hasExpertMap ? ['expertMap'] : []), ...(usesWeights ? ['topkWeights'] : [])];
  return {
    variableNames: [...head, ...shards.flatMap((_, s) => weightBindings(c.format, c.hasBias, s))],
    variableComponents: [...head.map((n) => n === 'x' ? ch.vec : 1),
      ...shards.flatMap((_, s) => weightBindingComponents(c.format, c.hasBias, s, ch))],
  };
}

/** WGSL `if (shard == 0) { body(0) } else if ...`: one copy of `body` per bound tensor. */
export function perShardSnippet(shards: number[], shard: string, body: (s: number) => string): string {
  if (shards.length === 1) return body(0);
  return shards.map((_, s) => `${s > 0 ? ' else ' : ''}if (${shard} == ${s}) {${body(s)}}`).join('');
}

/** `acc += w · x` over one chunk: `w` the chunk's loads, x read at vector index `xIndex(j)`. */
export function chunkDot(ch: ChunkShape, acc: string, w: string, xIndex: (j: number) => string): string {
  const dot = ch.vec === 4 ? 'dot' : 'mul1';
  return Array.from({length: ch.vecs}, (_, j) => `${acc} += ${dot}(${w}[${j}], x[${xIndex(j)}]);`).join(' ');
}

export function gemvRowsPerWorkgroup(numPairs: number, outputRows: number, rowVectors: number): number {
  // Short rows (DeepSeek-V3 TP8's w2: 64 vec4) get fewer lanes, so each lane still makes 4+ loads.
  let rows = 8;
  while (rows < 32 && rowVectors < 4 * (EXPERTS_WORKGROUP / rows)) rows *= 2;
  while (rows > 1 && numPairs * Math.ceil(outputRows / rows) < TARGET_WORKGROUPS) rows /= 2;
  return rows;
}

export class ExpertsGemvProgram implements WebGPUProgram {
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
  private readonly rows: number;
  private readonly shards: number[];

  /**
   * Inputs, in order: x (hidden [T, H] or act [P, I]), topkIds, expertMap?, topkWeights?, then one weight
   * tensor per entry of `shards` (its number of experts).
   */
  constructor(c: ExpertsGemvConfig, numPairs: number, shards: number[]) {
    this.c = c;
    this.shards = shards;
    const K = c.stage === 'w13' ? c.hiddenSize : c.intermediateSize;
    const N = c.stage === 'w13' ? c.intermediateSize : c.hiddenSize;
    this.ch = chunkShape(c.format, K, c.wideChunks);
    this.usesWeights = c.stage === 'w13' ? c.applyRouterWeightOnInput : !c.applyRouterWeightOnInput;
    this.outputShape = [numPairs, N];
    this.rows = gemvRowsPerWorkgroup(numPairs, N, K / this.ch.values);
    this.dispatch = [numPairs, Math.ceil(N / this.rows), 1];
    ({variableNames: this.variableNames, variableComponents: this.variableComponents} =
      gemvBindings(c, this.usesWeights, shards, this.ch));
    this.shaderKey = `moeExpertsGemv_${c.stage}_${c.hiddenSize}_${c.intermediateSize}_${c.topK}_` +
        `${c.numLocalExperts}_${c.globalNumExperts}_${c.hasExpertMap}_${c.stage === 'w13' ? c.activation : ''}_` +
        `${c.applyRouterWeightOnInput}_${this.ch.vec}_${this.rows}_${shards.join('-')}_${weightFormatKey(c.format, c.hasBias, this.ch)}`;
  }

  getUserCode(): string {
    const {stage, hiddenSize: H, intermediateSize: I, topK} = this.c;
    const w13 = stage === 'w13';
    const N = w13 ? I : H;
    const ch = this.ch;
    const KX = (w13 ? H : I) / ch.vec;     // x row in vector units
    const K = (w13 ? H : I) / ch.values;   // weight row in chunks
    const ROWS = this.rows;
    const LANES = EXPERTS_WORKGROUP / ROWS;
    // Rows of this workgroup's expert inside its tensor; w13 reads gate row n and up row I + n (2n, 2n + 1
    // interleaved for 'swigluoai').
    const gu = gateUpRows(this.c.activation, I);
    const rowA = w13 ? `e * ${2 * I} + ${gu.gate('n')}` : `e * ${H} + n`;
    const xBase = w13 ? `(pair / ${topK}) * ${KX}` : `pair * ${KX}`;
    const twoRows = w13;
    const step = (s: number, c: string, u: number) => `
          { let cc = ${c};
            let wa = wload${s}(rowA, cc);
            ${chunkDot(ch, `a${u}`, 'wa', (j) => `xBase + cc * ${ch.vecs}u + ${j}u`)}${twoRows ? `
            let wb = wload${s}(rowB, cc);
            ${chunkDot(ch, `b${u}`, 'wb', (j) => `xBase + cc * ${ch.vecs}u + ${j}u`)}` : ''} }`;
    const loops = (s: number) => `
          var c = lane;
          for (; c + ${(UNROLL - 1) * LANES}u < ${K}u; c += ${UNROLL * LANES}u) {${
            Array.from({length: UNROLL}, (_, u) => step(s, `c + ${u * LANES}u`, u)).join('')}
          }
          for (; c < ${K}u; c += ${LANES}u) {${step(s, 'c', 0)}
          }`;
    const {hasBias} = this.c;
    const biasA = hasBias ? perShardSnippet(this.shards, 'shard', (s) => ` bA = wbias${s}(rowA);${
      twoRows ? ` bB = wbias${s}(rowB);` : ''} `) : '';
    const scale = this.usesWeights ? 'topkWeights[pair]' : '1.0';
    return `
      ${w13 ? activationSnippet(this.c.activation) : ''}
      ${localExpertSnippet(this.c.hasExpertMap, this.c.globalNumExperts, this.c.numLocalExperts)}
      ${dequantSnippets(this.c.format, this.c.hasBias, this.shards.length, w13 ? 2 * I : H, w13 ? H : I, ch)}
      fn mul1(a : f32, b : f32) -> f32 { return a * b; }
      var<workgroup> wgExpert : vec2<i32>;   // expert in its tensor, which bound tensor
      var<workgroup> partial : array<f32, ${(twoRows ? 2 : 1) * EXPERTS_WORKGROUP}>;

      // x: ${w13 ? 'hidden [T, H]' : 'act [P, I]'}; weights0..: the bound tensors, ${w13 ? 'w13 [n, 2I, H]' : 'w2 [n, H, I]'};
      // result: ${w13 ? 'act [P, I]' : 'y [P, H]'}, row p written only when p's expert is in a bound tensor.
      fn main() {
        let pair = i32(workgroupId.x);
        if (localIndex == 0u) {
          let local = localExpertOf(topkIds[pair]) - uniforms.firstExpert;
          ${shardOfSnippet(this.shards, 'local', 'shard', 'expert')}
          wgExpert = select(vec2<i32>(-1, -1), vec2<i32>(expert, shard), shard >= 0);
        }
        let es = workgroupUniformLoad(&wgExpert);
        let e = es.x;
        let shard = es.y;
        if (e < 0) { return; }
        let lane = localIndex % ${LANES}u;
        let g = localIndex / ${LANES}u;
        let n = i32(workgroupId.y) * ${ROWS} + i32(g);
        ${Array.from({length: UNROLL}, (_, u) => `var a${u} = 0.0;${twoRows ? ` var b${u} = 0.0;` : ''}`).join(' ')}
        if (n < ${N}) {
          let rowA = u32(${rowA});
          ${twoRows ? `let rowB = rowA + ${gu.upOffset}u;` : ''}
          let xBase = u32(${xBase});
          ${perShardSnippet(this.shards, 'shard', loops)}
        }
        partial[localIndex] = ${Array.from({length: UNROLL}, (_, u) => `a${u}`).join(' + ')};
        ${twoRows ? `partial[${EXPERTS_WORKGROUP}u + localIndex] = ${
          Array.from({length: UNROLL}, (_, u) => `b${u}`).join(' + ')};` : ''}
        workgroupBarrier();
        // Tree sum over the row's lanes (barriers stay in uniform control flow).
        for (var stride = ${LANES / 2}u; stride > 0u; stride >>= 1u) {
          if (lane < stride) {
            partial[localIndex] += partial[localIndex + stride];${twoRows ? `
            partial[${EXPERTS_WORKGROUP}u + localIndex] += partial[${EXPERTS_WORKGROUP}u + localIndex + stride];` : ''}
          }
          workgroupBarrier();
        }
        if (lane == 0u && n < ${N}) {
          let sumA = partial[localIndex];${twoRows ? `
          let sumB = partial[${EXPERTS_WORKGROUP}u + localIndex];` : ''}
          let s = ${scale};
          var bA = 0.0;
          var bB = 0.0;
          ${hasBias ? `{
            let rowA = u32(${rowA});
            ${twoRows ? `let rowB = rowA + ${gu.upOffset}u;` : ''}
            ${biasA}
          }` : ''}
          ${w13 ? `result[pair * ${N} + n] = expertGlu(sumA * s + bA, sumB * s + bB);` :
            `result[pair * ${N} + n] = (sumA + bA) * s;`}
        }
      }
    `;
  }
}

/** The two stages under their own names, so that timestamp profiles (keyed by class name) tell them apart. */
export class ExpertsW13GemvProgram extends ExpertsGemvProgram {}
export class ExpertsW2GemvProgram extends ExpertsGemvProgram {}

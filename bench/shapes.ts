/**
 * The benchmark's problems: the three real MoE layers, two routing-alone problems, and a tiny
 * set with the same structure for functional runs on cpu and SwiftShader. Also the work each
 * problem does: FLOPs (prefill) and the expert-weight bytes it must read (decode).
 */

export type Routing =
  | {kind: 'topk'; scoringFunc: 'softmax'; renormalize: boolean}
  | {kind: 'grouped'; scoringFunc: 'sigmoid'; renormalize: boolean; numExpertGroup: number; topkGroup: number;
      routedScalingFactor: number};

export interface MoEShape {
  kind: 'moe';
  name: string;
  E: number;
  k: number;
  H: number;
  I: number;
  routing: Routing;
  /** Force w13/w2 into tensors of at most this many experts (tiny shapes: exercise the split path). */
  maxExpertsPerShard?: number;
}

/** Routing alone: T tokens of E logits → top-k (the M of a row is T). */
export interface RoutingShape {
  kind: 'routing';
  name: string;
  E: number;
  k: number;
  routing: Routing;
}

export type BenchShape = MoEShape | RoutingShape;

const softmaxTopK: Routing = {kind: 'topk', scoringFunc: 'softmax', renormalize: true};
const deepseekV3: Routing = {kind: 'grouped', scoringFunc: 'sigmoid', renormalize: true, numExpertGroup: 8,
  topkGroup: 4, routedScalingFactor: 2.5};

export const SHAPES: {[name: string]: BenchShape} = {
  // Mixtral-8x7B: H 4096, I 14336; w13 alone is 3.76 GB in float32.
  'mixtral': {kind: 'moe', name: 'mixtral', E: 8, k: 2, H: 4096, I: 14336, routing: softmaxTopK},
  // Qwen3-30B-A3B.
  'qwen3': {kind: 'moe', name: 'qwen3', E: 128, k: 8, H: 2048, I: 768, routing: softmaxTopK},
  // DeepSeek-V3 with its 2048-wide experts split over 8 tensor-parallel ranks: I = 256 per rank.
  'dsv3tp8': {kind: 'moe', name: 'dsv3tp8', E: 256, k: 8, H: 7168, I: 256, routing: deepseekV3},
  // gpt-oss-20b's experts (H = I = 2880; its 'swigluoai' activation is benchmarked as silu: the same work).
  // Not in the `real` set: the shape of the MXFP4 rows (bench/torch_anchor.py's torch-dequant-mxfp4).
  'gptoss20b': {kind: 'moe', name: 'gptoss20b', E: 32, k: 4, H: 2880, I: 2880, routing: softmaxTopK},
  // One expert, top-1, I = 7168: w13 is tc_probe's plain 4096 × 14336 × 4096 GEMM at M = 4096, so that a layer
  // kernel's time there reads against the probe's loop directly (the layer's conditions minus the experts).
  'plain-gemm': {kind: 'moe', name: 'plain-gemm', E: 1, k: 1, H: 4096, I: 7168, routing: softmaxTopK},
  'topk-e256': {kind: 'routing', name: 'topk-e256', E: 256, k: 8, routing: softmaxTopK},
  'grouped-dsv3': {kind: 'routing', name: 'grouped-dsv3', E: 256, k: 8, routing: deepseekV3},
  // The tiny set: same routing and k/E structure, sizes that are no tile's multiple, split weights.
  'tiny-mixtral': {kind: 'moe', name: 'tiny-mixtral', E: 8, k: 2, H: 72, I: 100, routing: softmaxTopK,
    maxExpertsPerShard: 3},
  'tiny-qwen3': {kind: 'moe', name: 'tiny-qwen3', E: 32, k: 8, H: 40, I: 24, routing: softmaxTopK,
    maxExpertsPerShard: 12},
  'tiny-dsv3': {kind: 'moe', name: 'tiny-dsv3', E: 32, k: 8, H: 56, I: 20, routing: deepseekV3,
    maxExpertsPerShard: 16},
};

export const SHAPE_SETS: {[name: string]: string[]} = {
  real: ['mixtral', 'qwen3', 'dsv3tp8', 'topk-e256', 'grouped-dsv3'],
  routing: ['topk-e256', 'grouped-dsv3'],
  tiny: ['tiny-mixtral', 'tiny-qwen3', 'tiny-dsv3', 'topk-e256', 'grouped-dsv3'],
};

export const DEFAULT_TOKENS: {[set: string]: number[]} = {real: [1, 16, 256, 4096], tiny: [1, 16, 64]};

/** `mixtral,qwen3` or a set name (`real`, `tiny`, `routing`), in the order given, without repeats. */
export function parseShapes(list: string): BenchShape[] {
  const names: string[] = [];
  for (const item of list.split(',').map((s) => s.trim()).filter(Boolean)) {
    const expanded = SHAPE_SETS[item] ?? [item];
    for (const name of expanded) {
      if (!(name in SHAPES)) {
        throw new Error(`--shapes: unknown shape '${name}'; known shapes are ${Object.keys(SHAPES).join(', ')} ` +
            `and sets ${Object.keys(SHAPE_SETS).join(', ')}`);
      }
      if (!names.includes(name)) names.push(name);
    }
  }
  return names.map((n) => SHAPES[n]);
}

/** 2·M·k·(2I·H + H·I): the multiply-adds of the two expert GEMMs, counted as 2 FLOPs each. */
export function moeFlops(s: MoEShape, M: number): number {
  return 2 * M * s.k * (2 * s.I * s.H + s.H * s.I);
}

/**
 * The expert-weight bytes a call must read at least once: w13 and w2 of every distinct expert
 * that the routing hit (3·I·H values each). Decode is bound by this.
 */
export function expertBytes(s: MoEShape, distinctExperts: number, bytesPerValue = 4): number {
  return distinctExperts * 3 * s.I * s.H * bytesPerValue;
}

/** Consecutive expert ranges so that each w13 tensor fits in one storage binding. */
export function shardExpertCounts(s: MoEShape, maxBindingBytes: number): number[] {
  const w13ExpertBytes = 2 * s.I * s.H * 4;
  let perShard = Math.floor(maxBindingBytes / w13ExpertBytes);
  if (perShard < 1) {
    throw new Error(`shape ${s.name}: one expert's w13 (${w13ExpertBytes} bytes) exceeds the storage binding ` +
        `limit of ${maxBindingBytes} bytes`);
  }
  if (s.maxExpertsPerShard != null) perShard = Math.min(perShard, s.maxExpertsPerShard);
  const counts: number[] = [];
  for (let left = s.E; left > 0; left -= perShard) counts.push(Math.min(perShard, left));
  return counts;
}

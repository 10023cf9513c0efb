/**
 * The identity of every kernel this package registers: its name, its inputs and its attributes.
 * Each backend (cpu, webgpu, tensorflow) imports these; no kernel name is spelled anywhere else.
 *
 *   [Router]  FusedTopK / GroupedTopK  →  topkWeights [T, k] f32, topkIds [T, k] i32 (global ids)
 *   [EPLB]    EplbMapIds, ExpertLoad   →  physical ids [T, k] i32;  per-expert load [P] i32
 *   [Experts] FusedExperts             →  out [T, H]  (permute → w13 GEMM + act → w2 GEMM → combine)
 */
import type {NamedAttrMap, TensorInfo} from '@tensorflow/tfjs-core';

export type ScoringFunc = 'softmax' | 'sigmoid';
/**
 * Of the gate half, times the up half. 'swigluoai' is gpt-oss's (vLLM's name): gate and up rows interleaved
 * in w13 (gate 2i, up 2i+1), g = min(gate, 7), u = clamp(up, -7, 7), act = (u + 1) · g · σ(1.702 g).
 */
export type Activation = 'silu' | 'gelu' | 'swigluoai';

/** Softmax or sigmoid top-k over all experts (vLLM `fused_topk`, plus sigmoid scoring). */
export const FusedTopK = 'MoeFusedTopK';
export type FusedTopKInputs = {gatingOutput: TensorInfo; eScoreCorrectionBias?: TensorInfo};
export interface FusedTopKAttrs extends NamedAttrMap {
  topK: number;
  renormalize: boolean;
  scoringFunc: ScoringFunc;
  routedScalingFactor: number;
}

/** DeepSeek-style group-limited top-k (vLLM `grouped_topk`). */
export const GroupedTopK = 'MoeGroupedTopK';
export type GroupedTopKInputs = FusedTopKInputs;
export interface GroupedTopKAttrs extends FusedTopKAttrs {
  numExpertGroup: number;
  topkGroup: number;
}

/**
 * fusedMoE in one kernel call: the routing (FusedTopK, or GroupedTopK when numExpertGroup > 1) and then
 * FusedExperts, with the routing's outputs internal. Only webgpu registers it (one dispatch plan and one
 * submit per decode call, src/kernels/webgpu/dispatch_plan.ts); elsewhere fusedMoE runs the two kernels.
 */
export const FusedMoE = 'MoeFusedMoE';
export type FusedMoEInputs = {
  hiddenStates: TensorInfo; gatingOutput: TensorInfo; eScoreCorrectionBias?: TensorInfo; expertMap?: TensorInfo;
  [weightPart: string]: TensorInfo | undefined;
};
export interface FusedMoEAttrs extends GroupedTopKAttrs, FusedExpertsAttrs {}

/** EPLB: replaces each logical id by replica (token mod replicaCount[id]) of logicalToPhysicalMap[id]. */
export const EplbMapIds = 'MoeEplbMapIds';
export type EplbMapIdsInputs = {topkIds: TensorInfo; logicalToPhysicalMap: TensorInfo; logicalReplicaCount: TensorInfo};

/**
 * The expert computation (vLLM `fused_experts`). Weights may be split by expert range into
 * several tensors (`w13_0`, `w13_1`, ... and `w2_0`, ...), each holding consecutive local experts,
 * so that one layer can exceed a device's storage-binding limit.
 */
export const FusedExperts = 'MoeFusedExperts';
export type FusedExpertsInputs = {
  hiddenStates: TensorInfo; topkWeights: TensorInfo; topkIds: TensorInfo; expertMap?: TensorInfo;
  [w13OrW2Shard: string]: TensorInfo | undefined;
};
export interface FusedExpertsAttrs extends NamedAttrMap {
  activation: Activation;
  applyRouterWeightOnInput: boolean;
  globalNumExperts: number;
  /** Number of tensors w13 (and w2) are split into; inputs `w13_0 .. w13_{n-1}`, `w2_0 ..`. */
  numWeightShards: number;
  /**
   * `formatKey` of the weights' format (src/quant/format.ts), the same for w13 and w2; per shard and
   * projection the inputs `w13_scales_i`, `w13_zeros_i`, `w13_gidx_i` hold what the format needs.
   */
  weightFormat: string;
  /** I of this rank (w2's K); packed weights' shapes do not show it. */
  intermediateSize: number;
  /** Inputs `w13_bias_i` [E, 2I] and `w2_bias_i` [E, H] are added to each projection's output. */
  hasBias: boolean;
  /**
   * 0: activations stay float32 (weights-only quantization). 128: vLLM's dynamic fp8 w8a8 with block
   * scales: each GEMM input is rounded per token and per 128 inputs to e4m3 · s, s = max|x|/448.
   */
  activationQuantGroup: number;
  /**
   * vLLM's int8 w8a8 (`use_int8_w8a8`, per-channel weights): 'uint8' weights with zero 128 and row scales are
   * used as int8, each GEMM input row is quantized to int8 with its own scale (max|x|/127), the dot products
   * are accumulated in int32 (src/kernels/cpu/int8_w8a8_impl.ts gives the exact numerics).
   */
  useInt8W8A8: boolean;
}

/** The per-projection tensors a format adds beside the weight data. */
export type ExpertTensorPart = 'scales' | 'zeros' | 'gidx' | 'bias';
export function expertPartName(projection: 'w13' | 'w2', part: ExpertTensorPart, i: number): string {
  return `${projection}_${part}_${i}`;
}

export function w13ShardName(i: number): string { return `w13_${i}`; }
export function w2ShardName(i: number): string { return `w2_${i}`; }

/** The weight shards of a FusedExperts call, in expert order. */
export function expertWeightShards(inputs: FusedExpertsInputs, attrs: FusedExpertsAttrs):
    {w13: TensorInfo[]; w2: TensorInfo[]} {
  const w13: TensorInfo[] = [];
  const w2: TensorInfo[] = [];
  for (let i = 0; i < attrs.numWeightShards; i++) {
    w13.push(inputs[w13ShardName(i)]!);
    w2.push(inputs[w2ShardName(i)]!);
  }
  return {w13, w2};
}

/** One shard of one projection: its data and what the format adds (absent when the format has none). */
export interface ExpertProjectionShard {
  data: TensorInfo;
  scales?: TensorInfo;
  zeros?: TensorInfo;
  gidx?: TensorInfo;
  bias?: TensorInfo;
}

/** Every shard of both projections with the format's extra tensors. */
export function expertProjectionShards(inputs: FusedExpertsInputs, attrs: FusedExpertsAttrs):
    {w13: ExpertProjectionShard[]; w2: ExpertProjectionShard[]} {
  const {w13, w2} = expertWeightShards(inputs, attrs);
  const withParts = (projection: 'w13' | 'w2', data: TensorInfo[]) => data.map((d, i) => {
    const shard: ExpertProjectionShard = {data: d};
    for (const part of ['scales', 'zeros', 'gidx', 'bias'] as const) {
      const t = inputs[expertPartName(projection, part, i)];
      if (t) shard[part] = t;
    }
    return shard;
  });
  return {w13: withParts('w13', w13), w2: withParts('w2', w2)};
}

/** Number of (token, slot) pairs routed to each expert; ids that `expertMap` marks -1 are not counted. */
export const ExpertLoad = 'MoeExpertLoad';
export type ExpertLoadInputs = {topkIds: TensorInfo; expertMap?: TensorInfo};
export interface ExpertLoadAttrs extends NamedAttrMap {
  numExperts: number;
}

/**
 * Why a backend's FusedExperts cannot run these attrs, or null. Backends that have not implemented a
 * weight format, expert biases, 'swigluoai' or fp8 activations call this and throw the reason, rather
 * than compute something else.
 */
export function unsupportedExpertsFeature(attrs: FusedExpertsAttrs, backendName: string,
    supported: {formats: (key: string) => boolean; bias: boolean; swigluoai: boolean; fp8Activations: boolean;
      int8Activations: boolean}): string | null {
  const missing: string[] = [];
  if (!supported.formats(attrs.weightFormat)) missing.push(`weight format ${attrs.weightFormat}`);
  if (attrs.hasBias && !supported.bias) missing.push('expert biases');
  if (attrs.activation === 'swigluoai' && !supported.swigluoai) missing.push(`activation 'swigluoai'`);
  if (attrs.activationQuantGroup > 0 && !supported.fp8Activations) missing.push('fp8 w8a8 activations');
  if (attrs.useInt8W8A8 && !supported.int8Activations) missing.push('int8 w8a8 (useInt8W8A8)');
  return missing.length ? `fusedExperts on '${backendName}' does not support ${missing.join(', ')} yet` : null;
}

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
export type Activation = 'silu' | 'gelu';

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

/** Number of (token, slot) pairs routed to each expert; ids that `expertMap` marks -1 are not counted. */
export const ExpertLoad = 'MoeExpertLoad';
export type ExpertLoadInputs = {topkIds: TensorInfo; expertMap?: TensorInfo};
export interface ExpertLoadAttrs extends NamedAttrMap {
  numExperts: number;
}

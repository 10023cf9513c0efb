/**
 * Routing on the 'tensorflow' backend, composed of raw TensorFlow ops (reference: cpu/routing_impl.ts).
 *
 *   x       = NaN → -FLT_MAX, clip to ±FLT_MAX, -0 → +0          IsNan, SelectV2, ClipByValue, AddV2
 *   scores  = Softmax(x) | Sigmoid(x)                              [T, E]
 *   choice  = sanitize(scores + bias) with a bias, else x           (ids are chosen on the raw logits)
 *   groups  = top-2 sum (bias) | max of choice per group;           TopKV2 / Max over [T, G, E/G]
 *             keep the topkGroup best, others -inf                  TopKV2, OneHot, Sum, SelectV2
 *   ids     = TopKV2(choice, k)                                     ties: lower id first
 *   w       = scores[ids], / (Σw + 1e-20), · routedScalingFactor   GatherV2 (batch_dims 1)
 *   rows    = by weight descending, then id ascending               TopKV2 on ids in ascending order
 *
 * The -0 → +0 step matters on the GPU: its TopKV2 radix-sorts float bits and would put +0 above -0,
 * where the reference (and the CPU kernel) see a tie.
 */
import {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {FusedTopK, FusedTopKAttrs, FusedTopKInputs, GroupedTopK, GroupedTopKAttrs} from '../../kernel_names';
import {FLT_MAX} from '../../math';
import type {RoutingConfig} from '../cpu/routing_impl';
import {RawOps, tensorflowBackend} from './raw_ops';

/** NaN → -FLT_MAX, ±Inf → ±FLT_MAX, -0 → +0, as the reference's sanitizeLogit. */
function sanitize(ops: RawOps, x: TensorInfo): TensorInfo {
  return ops.select(ops.isNan(x), -FLT_MAX, ops.clip(ops.add(x, 0), -FLT_MAX, FLT_MAX));
}

/** choice [T, E] with the experts outside each row's topkGroup best groups set to -inf. */
function keepBestGroups(ops: RawOps, choice: TensorInfo, withBias: boolean, numExpertGroup: number,
    topkGroup: number): TensorInfo {
  const [T, E] = choice.shape;
  const G = numExpertGroup, groupSize = E / G;
  const grouped = ops.reshape(choice, [T, G, groupSize]);
  const groupScore = !withBias ? ops.max(grouped, 2) :
    groupSize > 1 ? ops.sum(ops.topK(grouped, 2).values, 2) : ops.reshape(choice, [T, G]);
  const best = ops.topK(groupScore, topkGroup).indices;               // [T, topkGroup] int32
  const kept = ops.sum(ops.oneHot(best, G), 1);                        // [T, G] 1 = kept
  const keep = ops.reshape(ops.greaterEqual(kept, 0.5), [T, G, 1]);
  return ops.reshape(ops.select(keep, grouped, -Infinity), [T, E]);
}

export function routing(ops: RawOps, gatingOutput: TensorInfo, bias: TensorInfo | undefined, cfg: RoutingConfig):
    TensorInfo[] {
  const {topK: k, numExpertGroup, topkGroup} = cfg;
  const x = sanitize(ops, gatingOutput);
  const scores = cfg.scoringFunc === 'softmax' ? ops.softmax(x) : ops.sigmoid(x);
  const choice = bias ? sanitize(ops, ops.add(scores, bias)) : x;
  const candidates = numExpertGroup > 1 && topkGroup < numExpertGroup ?
    keepBestGroups(ops, choice, bias != null, numExpertGroup, topkGroup) : choice;
  const picked = ops.topK(candidates, k).indices;                      // [T, k] int32

  // The picked ids in ascending order, so that the final sort's tie rule (lower position first)
  // means lower id first.
  const idsAscending = ops.neg(ops.topK(ops.neg(ops.cast(picked, 'float32')), k).values);
  let w: TensorInfo = ops.gatherAt(scores, idsAscending, 1, 1);        // [T, k]
  if (cfg.renormalize) w = ops.div(w, ops.add(ops.sum(w, 1, true), 1e-20));
  if (cfg.routedScalingFactor !== 1) w = ops.mul(w, cfg.routedScalingFactor);
  const {values: weights, indices: order} = ops.topK(w, k);
  const ids = ops.cast(ops.gather(idsAscending, order, 1, 1), 'int32');
  return [weights, ids];
}

function routingKernel(kernelName: string, groups: (attrs: FusedTopKAttrs) => [number, number]): KernelFunc {
  return ({inputs, attrs, backend}) => {
    const {gatingOutput, eScoreCorrectionBias} = inputs as FusedTopKInputs;
    const a = attrs as unknown as FusedTopKAttrs;
    const [numExpertGroup, topkGroup] = groups(a);
    return RawOps.run(tensorflowBackend(backend, kernelName),
        (ops) => routing(ops, gatingOutput, eScoreCorrectionBias, {...a, numExpertGroup, topkGroup}));
  };
}

export const fusedTopKConfig: KernelConfig = {
  kernelName: FusedTopK,
  backendName: 'tensorflow',
  kernelFunc: routingKernel(FusedTopK, () => [1, 1]),
};

export const groupedTopKConfig: KernelConfig = {
  kernelName: GroupedTopK,
  backendName: 'tensorflow',
  kernelFunc: routingKernel(GroupedTopK, (a) => [(a as GroupedTopKAttrs).numExpertGroup, (a as GroupedTopKAttrs).topkGroup]),
};

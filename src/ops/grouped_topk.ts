import {Tensor2D, TensorLike, engine, op} from '@tensorflow/tfjs-core';
import {FusedTopKInputs, GroupedTopK, GroupedTopKAttrs} from '../kernel_names';
import {FusedTopKOptions, RoutingResult, routingArgs, routingResult} from './fused_topk';
import {intArg} from './validate';

export interface GroupedTopKOptions extends FusedTopKOptions {
  topK: number;
  renormalize: boolean;
  numExpertGroup: number;
  topkGroup: number;
}

/**
 * Group-limited routing (vLLM `grouped_topk`, DeepSeek-V2/V3): experts form `numExpertGroup`
 * contiguous groups; only the `topkGroup` best groups compete for the top-k. With a correction bias
 * a group scores the sum of its two best biased scores, without one its best score. Weights are the
 * unbiased scores, renormalized if asked, times `routedScalingFactor`.
 *
 * ```js
 * // DeepSeek-V3: 256 experts, 8 groups, 4 kept, 8 chosen, sigmoid + bias, scale 2.5
 * groupedTopK(logits, {topK: 8, renormalize: true, numExpertGroup: 8, topkGroup: 4,
 *   scoringFunc: 'sigmoid', eScoreCorrectionBias: bias, routedScalingFactor: 2.5});
 * ```
 */
/** Validates groupedTopK's arguments into its kernel's inputs and attributes. */
export function groupedRoutingArgs(opName: string, gatingOutput: Tensor2D | TensorLike, o: GroupedTopKOptions):
    {inputs: FusedTopKInputs; attrs: GroupedTopKAttrs; numExperts: number} {
  if (o == null) throw new Error(`${opName}: options {topK, renormalize, numExpertGroup, topkGroup} are required`);
  const {inputs, attrs, numExperts: E} = routingArgs(opName, gatingOutput, o.topK, o.renormalize, o);
  const numExpertGroup = intArg(o.numExpertGroup, 'numExpertGroup', opName, 1, E);
  if (E % numExpertGroup !== 0) {
    throw new Error(`${opName}: the ${E} experts of 'gatingOutput' must divide evenly into 'numExpertGroup' = ` +
        `${numExpertGroup} groups`);
  }
  const topkGroup = intArg(o.topkGroup, 'topkGroup', opName, 1, numExpertGroup);
  const kept = topkGroup * (E / numExpertGroup);
  if (o.topK > kept) {
    throw new Error(`${opName}: 'topK' = ${o.topK} is more than the ${kept} experts in the 'topkGroup' = ${topkGroup} ` +
        `kept groups of ${E / numExpertGroup}`);
  }
  return {inputs, attrs: {...attrs, numExpertGroup, topkGroup}, numExperts: E};
}

function groupedTopK_(gatingOutput: Tensor2D | TensorLike, o: GroupedTopKOptions): RoutingResult {
  const {inputs, attrs, numExperts} = groupedRoutingArgs('groupedTopK', gatingOutput, o);
  return routingResult(engine().runKernel(GroupedTopK, inputs as {}, attrs as {}) as unknown as Tensor2D[],
      numExperts);
}

export const groupedTopK = op({groupedTopK_});

import {Tensor2D, TensorLike, op} from '@tensorflow/tfjs-core';
import {ExpertWeightsArg, FusedExpertsOptions, fusedExperts} from './fused_experts';
import {SelectExpertsOptions, selectExperts} from './select_experts';

export type FusedMoEOptions = SelectExpertsOptions & FusedExpertsOptions;

/**
 * The whole MoE block without its router matmul (vLLM `FusedMoE.forward`): routing, then the
 * expert computation.
 *
 *   [Router: selectExperts] → topkWeights, topkIds → [Experts: fusedExperts] → out [T, H]
 *
 * ```js
 * // Mixtral: 8 experts, top-2, softmax, renormalized
 * const out = fusedMoE(hidden, hidden.matMul(gate, false, true), w13, w2, {topK: 2, renormalize: true});
 * ```
 */
function fusedMoE_(hiddenStates: Tensor2D | TensorLike, routerLogits: Tensor2D | TensorLike,
    w13: ExpertWeightsArg, w2: ExpertWeightsArg, o: FusedMoEOptions): Tensor2D {
  const {topkWeights, topkIds} = selectExperts(hiddenStates, routerLogits, o);
  try {
    return fusedExperts(hiddenStates, w13, w2, topkWeights, topkIds, o);
  } finally {
    topkWeights.dispose();
    topkIds.dispose();
  }
}

export const fusedMoE = op({fusedMoE_});

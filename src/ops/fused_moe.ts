import {Tensor2D, TensorLike, engine, getKernel, op} from '@tensorflow/tfjs-core';
import {FusedMoE, FusedMoEAttrs, FusedMoEInputs} from '../kernel_names';
import {ExpertWeightsArg, FusedExpertsOptions, expertsCallArgs, fusedExperts} from './fused_experts';
import {routingArgs} from './fused_topk';
import {groupedRoutingArgs} from './grouped_topk';
import {SelectExpertsOptions, selectExperts} from './select_experts';
import {checkDim, tensorArg} from './validate';

export type FusedMoEOptions = SelectExpertsOptions & FusedExpertsOptions;

/**
 * The whole MoE block without its router matmul (vLLM `FusedMoE.forward`): routing, then the
 * expert computation.
 *
 *   [Router: selectExperts] → topkWeights, topkIds → [Experts: fusedExperts] → out [T, H]
 *
 * Where the backend registers the one-call kernel (webgpu: routing and experts replayed from one dispatch
 * plan, one submit per decode call) and the routing is fusedTopK or groupedTopK without EPLB, the two
 * steps run as that one kernel, validated exactly as the two ops validate them; otherwise as two ops.
 *
 * ```js
 * // Mixtral: 8 experts, top-2, softmax, renormalized
 * const out = fusedMoE(hidden, hidden.matMul(gate, false, true), w13, w2, {topK: 2, renormalize: true});
 * ```
 */
function fusedMoE_(hiddenStates: Tensor2D | TensorLike, routerLogits: Tensor2D | TensorLike,
    w13: ExpertWeightsArg, w2: ExpertWeightsArg, o: FusedMoEOptions): Tensor2D {
  if (o != null && o.customRoutingFunction == null && o.eplb == null &&
      getKernel(FusedMoE, engine().backendName) != null) {
    return oneKernel(hiddenStates, routerLogits, w13, w2, o);
  }
  const {topkWeights, topkIds} = selectExperts(hiddenStates, routerLogits, o);
  try {
    return fusedExperts(hiddenStates, w13, w2, topkWeights, topkIds, o);
  } finally {
    topkWeights.dispose();
    topkIds.dispose();
  }
}

/** selectExperts' and fusedExperts' checks, in their order and with their messages, then one kernel. */
function oneKernel(hiddenStates: Tensor2D | TensorLike, routerLogits: Tensor2D | TensorLike,
    w13: ExpertWeightsArg, w2: ExpertWeightsArg, o: FusedMoEOptions): Tensor2D {
  const x = tensorArg<Tensor2D>(hiddenStates, 'hiddenStates', 'selectExperts', ['T', 'H'], 'float32');
  const logits = tensorArg<Tensor2D>(routerLogits, 'routerLogits', 'selectExperts', ['T', 'E'], 'float32');
  checkDim(logits, 0, x.shape[0], 'routerLogits', 'selectExperts', ['T', 'E'], 'tokens in hiddenStates');
  const routingOptions = {scoringFunc: o.scoringFunc, eScoreCorrectionBias: o.eScoreCorrectionBias,
    routedScalingFactor: o.routedScalingFactor};
  const routing = o.useGroupedTopk ?
    groupedRoutingArgs('groupedTopK', logits, {topK: o.topK, renormalize: o.renormalize,
      numExpertGroup: o.numExpertGroup!, topkGroup: o.topkGroup!, ...routingOptions}) :
    (() => {
      const r = routingArgs('fusedTopK', logits, o.topK, o.renormalize, routingOptions);
      return {...r, attrs: {...r.attrs, numExpertGroup: 1, topkGroup: 1}};
    })();
  const experts = expertsCallArgs('fusedExperts', x, w13, w2, o.topK, o);
  const E = routing.numExperts;
  const G = experts.globalNumExperts;
  if (E > G) {
    throw new Error(`fusedExperts: 'topkIds' must hold expert ids in [0, ${G}) but comes from routing over ${E} ` +
        `experts (values in [0, ${E - 1}]); ${G} is ${experts.rangeSource}`);
  }
  const inputs: FusedMoEInputs = {...experts.inputs, ...routing.inputs};
  const attrs: FusedMoEAttrs = {...routing.attrs, ...experts.attrs};
  return engine().runKernel(FusedMoE, inputs as {}, attrs as {}) as Tensor2D;
}

export const fusedMoE = op({fusedMoE_});

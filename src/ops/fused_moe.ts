import {Tensor, Tensor2D, TensorInfo, TensorLike, Variable, engine, getKernel, op} from '@tensorflow/tfjs-core';
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

const DIMS_TH = ['T', 'H'];
const DIMS_TE = ['T', 'E'];

/**
 * What oneKernel checked for one w13 (the very object passed: a tensor, an array of shards, quantized
 * weights), kept so that a decode loop's next call with the same weights and options skips those checks and
 * the building of the kernel's inputs and attributes (issue 13: they were most of the op's host time). A hit
 * needs the same w2 and shard lists (element by element: arrays can change), the same option values (compared
 * one by one: the options object may be a new literal every call, or the same one changed), E and H of the
 * call's tensors, and none of the bound tensors disposed (a tensor's shape and dtype never change; a
 * Variable's assign keeps both, and the kernel reads its current data id). Anything else takes the full
 * checks, which throw what they always threw.
 */
interface OneKernelMemo {
  w2: ExpertWeightsArg;
  w13Parts: readonly unknown[] | null;
  w2Parts: readonly unknown[] | null;
  numExperts: number;
  hiddenSize: number;
  topK: unknown;
  renormalize: unknown;
  useGroupedTopk: unknown;
  numExpertGroup: unknown;
  topkGroup: unknown;
  scoringFunc: unknown;
  eScoreCorrectionBias: unknown;
  routedScalingFactor: unknown;
  activation: unknown;
  applyRouterWeightOnInput: unknown;
  expertMap: unknown;
  globalNumExperts: unknown;
  useFp8W8A8: unknown;
  useInt8W8A8: unknown;
  /** The kernel's inputs besides hiddenStates and gatingOutput, in the order the full checks give them. */
  expertNames: string[];
  expertTensors: Tensor[];
  bias: Tensor | undefined;
  /** Every tensor bound above: a disposed one makes the memo miss. */
  tensors: Tensor[];
  /** Frozen: the webgpu kernel keeps its plan-key part per attributes object (expertsAttrsKey). */
  attrs: FusedMoEAttrs;
}
const memos = new WeakMap<object, OneKernelMemo>();

function sameParts(parts: readonly unknown[] | null, w: ExpertWeightsArg): boolean {
  if (parts === null) return !Array.isArray(w);
  if (!Array.isArray(w) || w.length !== parts.length) return false;
  for (let i = 0; i < parts.length; i++) if (parts[i] !== w[i]) return false;
  return true;
}

function memoHit(m: OneKernelMemo | undefined, w13: ExpertWeightsArg, w2: ExpertWeightsArg, x: Tensor2D,
    logits: Tensor2D, o: FusedMoEOptions): m is OneKernelMemo {
  if (m === undefined || m.w2 !== w2 || m.numExperts !== logits.shape[1] || m.hiddenSize !== x.shape[1] ||
      m.topK !== o.topK || m.renormalize !== o.renormalize || m.useGroupedTopk !== o.useGroupedTopk ||
      m.numExpertGroup !== o.numExpertGroup || m.topkGroup !== o.topkGroup || m.scoringFunc !== o.scoringFunc ||
      m.eScoreCorrectionBias !== o.eScoreCorrectionBias || m.routedScalingFactor !== o.routedScalingFactor ||
      m.activation !== o.activation || m.applyRouterWeightOnInput !== o.applyRouterWeightOnInput ||
      m.expertMap !== o.expertMap || m.globalNumExperts !== o.globalNumExperts || m.useFp8W8A8 !== o.useFp8W8A8 ||
      m.useInt8W8A8 !== o.useInt8W8A8 || !sameParts(m.w13Parts, w13) || !sameParts(m.w2Parts, w2)) {
    return false;
  }
  const tensors = m.tensors;
  for (let i = 0; i < tensors.length; i++) if (tensors[i].isDisposed) return false;
  return true;
}

/** The kernel's output where a memo of these weights and options hits (x and logits checked), else null. */
function runKept(x: Tensor2D, logits: Tensor2D, w13: ExpertWeightsArg, w2: ExpertWeightsArg, o: FusedMoEOptions):
    Tensor2D | null {
  const m = w13 != null && typeof w13 === 'object' ? memos.get(w13) : undefined;
  if (!memoHit(m, w13, w2, x, logits, o)) return null;
  // The inputs in the order the full checks give them (the kernel's plan key follows it).
  const inputs = {hiddenStates: x} as {[name: string]: TensorInfo};
  for (let i = 0; i < m.expertNames.length; i++) inputs[m.expertNames[i]] = m.expertTensors[i];
  inputs.gatingOutput = logits;
  if (m.bias !== undefined) inputs.eScoreCorrectionBias = m.bias;
  return engine().runKernel(FusedMoE, inputs as {}, m.attrs as {}) as Tensor2D;
}

/** selectExperts' and fusedExperts' checks, in their order and with their messages, then one kernel. */
function oneKernel(hiddenStates: Tensor2D | TensorLike, routerLogits: Tensor2D | TensorLike,
    w13: ExpertWeightsArg, w2: ExpertWeightsArg, o: FusedMoEOptions): Tensor2D {
  const x = tensorArg<Tensor2D>(hiddenStates, 'hiddenStates', 'selectExperts', DIMS_TH, 'float32');
  const logits = tensorArg<Tensor2D>(routerLogits, 'routerLogits', 'selectExperts', DIMS_TE, 'float32');
  checkDim(logits, 0, x.shape[0], 'routerLogits', 'selectExperts', DIMS_TE, 'tokens in hiddenStates');
  const kept = runKept(x, logits, w13, w2, o);
  if (kept !== null) return kept;
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
  let attrs: FusedMoEAttrs = {...routing.attrs, ...experts.attrs};
  const memo = w13 != null && typeof w13 === 'object' ? makeMemo(w13, w2, x, logits, o, inputs, attrs) : null;
  if (memo) {
    memos.set(w13, memo);
    attrs = memo.attrs;
  }
  return engine().runKernel(FusedMoE, inputs as {}, attrs as {}) as Tensor2D;
}

/** A memo of a call that passed the full checks, or null where its inputs are not all kept tensors. */
function makeMemo(w13: ExpertWeightsArg, w2: ExpertWeightsArg, x: Tensor2D, logits: Tensor2D, o: FusedMoEOptions,
    inputs: FusedMoEInputs, attrs: FusedMoEAttrs): OneKernelMemo | null {
  const expertNames: string[] = [];
  const expertTensors: Tensor[] = [];
  for (const name of Object.keys(inputs)) {
    if (name === 'hiddenStates' || name === 'gatingOutput' || name === 'eScoreCorrectionBias') continue;
    const t = inputs[name];
    // Made from host values by this call (disposed with its scope), or a Variable expert map (re-read every
    // call, since assign can change its values): not kept.
    if (!(t instanceof Tensor) || (name === 'expertMap' && t instanceof Variable)) return null;
    expertNames.push(name);
    expertTensors.push(t);
  }
  const bias = inputs.eScoreCorrectionBias;
  if (bias !== undefined && !(bias instanceof Tensor && bias === o.eScoreCorrectionBias)) return null;
  if (o.expertMap != null && o.expertMap !== inputs.expertMap) return null;
  return {
    w2, w13Parts: Array.isArray(w13) ? [...w13] : null, w2Parts: Array.isArray(w2) ? [...w2] : null,
    numExperts: logits.shape[1], hiddenSize: x.shape[1], topK: o.topK, renormalize: o.renormalize,
    useGroupedTopk: o.useGroupedTopk, numExpertGroup: o.numExpertGroup, topkGroup: o.topkGroup,
    scoringFunc: o.scoringFunc, eScoreCorrectionBias: o.eScoreCorrectionBias,
    routedScalingFactor: o.routedScalingFactor, activation: o.activation,
    applyRouterWeightOnInput: o.applyRouterWeightOnInput, expertMap: o.expertMap,
    globalNumExperts: o.globalNumExperts, useFp8W8A8: o.useFp8W8A8, useInt8W8A8: o.useInt8W8A8,
    expertNames, expertTensors, bias: bias as Tensor | undefined,
    tensors: bias instanceof Tensor ? [...expertTensors, bias] : expertTensors,
    attrs: Object.freeze(attrs),
  };
}

const fusedMoEOp = op({fusedMoE_});

/**
 * A decode call with tensors that fusedMoE checked before (a memo hit, see OneKernelMemo) runs its kernel
 * without op()'s scope: it makes no tensor but its output, which the engine then tracks in the caller's
 * scope, as op()'s scope would have passed it on. Everything else, errors included, goes through op().
 */
function fusedMoEKept(hiddenStates: Tensor2D | TensorLike, routerLogits: Tensor2D | TensorLike,
    w13: ExpertWeightsArg, w2: ExpertWeightsArg, o: FusedMoEOptions): Tensor2D {
  if (o != null && o.customRoutingFunction == null && o.eplb == null && w13 != null && typeof w13 === 'object' &&
      memos.has(w13) && isChecked2D(hiddenStates) && isChecked2D(routerLogits) &&
      routerLogits.shape[0] === hiddenStates.shape[0] && getKernel(FusedMoE, engine().backendName) != null) {
    const y = runKept(hiddenStates, routerLogits, w13, w2, o);
    if (y !== null) return y;
  }
  return fusedMoEOp(hiddenStates, routerLogits, w13, w2, o);
}

/** A live float32 2-D tensor: what tensorArg lets through unchanged for hiddenStates and routerLogits. */
function isChecked2D(t: unknown): t is Tensor2D {
  return t instanceof Tensor && !t.isDisposed && t.rank === 2 && t.dtype === 'float32';
}

export const fusedMoE = fusedMoEKept as typeof fusedMoEOp;

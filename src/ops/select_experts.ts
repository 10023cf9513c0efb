import {NamedTensorMap, Tensor, Tensor1D, Tensor2D, TensorLike, Variable, add, cast, engine, op, tidy} from '@tensorflow/tfjs-core';
import {EplbMapIds, ExpertLoad, ExpertLoadAttrs, ScoringFunc} from '../kernel_names';
import {RoutingResult, fusedTopK} from './fused_topk';
import {groupedTopK} from './grouped_topk';
import {checkDim, checkRangeOnce, markRange, oneOf, readValues, tensorArg} from './validate';

/** A routing function of the user's, called like vLLM's `custom_routing_function`. */
export type CustomRoutingFunction = (args: {
  hiddenStates: Tensor2D; gatingOutput: Tensor2D; topK: number; renormalize: boolean;
}) => RoutingResult;

/** Built-in custom routings, by name (so that a layer using one serializes). */
export type BuiltinRouting = 'llama4';
export const BUILTIN_ROUTINGS: readonly BuiltinRouting[] = ['llama4'];

export interface EplbState {
  /** [E, maxReplicas] int32: the physical ids of each logical expert's replicas. */
  logicalToPhysicalMap: Tensor2D | TensorLike;
  /** [E] int32: how many replicas of each logical expert exist (entries of the map row that count). */
  logicalReplicaCount: Tensor1D | TensorLike;
  /** [P] int32 or float32, incremented by each physical expert's (token, slot) pairs. */
  expertLoad?: Variable;
}

export interface SelectExpertsOptions {
  topK: number;
  renormalize: boolean;
  useGroupedTopk?: boolean;
  numExpertGroup?: number;
  topkGroup?: number;
  scoringFunc?: ScoringFunc;
  eScoreCorrectionBias?: Tensor1D | TensorLike;
  routedScalingFactor?: number;
  customRoutingFunction?: CustomRoutingFunction | BuiltinRouting;
  eplb?: EplbState;
  /** Physical experts that this rank does not hold (-1) do not count towards the EPLB load. */
  expertMap?: Tensor1D | TensorLike;
}

/**
 * Picks each token's experts (vLLM `FusedMoE.select_experts`): grouped top-k if `useGroupedTopk`,
 * else the custom routing function if given, else (softmax or sigmoid) top-k; then, with EPLB, maps
 * logical ids to physical replicas and counts the load.
 *
 * ```js
 * const {topkWeights, topkIds} = selectExperts(hidden, logits, {topK: 2, renormalize: true});
 * ```
 */
function selectExperts_(hiddenStates: Tensor2D | TensorLike, routerLogits: Tensor2D | TensorLike,
    o: SelectExpertsOptions): RoutingResult {
  const opName = 'selectExperts';
  if (o == null) throw new Error(`${opName}: options {topK, renormalize, ...} are required`);
  const x = tensorArg<Tensor2D>(hiddenStates, 'hiddenStates', opName, ['T', 'H'], 'float32');
  const logits = tensorArg<Tensor2D>(routerLogits, 'routerLogits', opName, ['T', 'E'], 'float32');
  checkDim(logits, 0, x.shape[0], 'routerLogits', opName, ['T', 'E'], 'tokens in hiddenStates');

  let routed: RoutingResult;
  const custom = o.customRoutingFunction;
  if (o.useGroupedTopk) {
    routed = groupedTopK(logits, {
      topK: o.topK, renormalize: o.renormalize, numExpertGroup: o.numExpertGroup!, topkGroup: o.topkGroup!,
      scoringFunc: o.scoringFunc, eScoreCorrectionBias: o.eScoreCorrectionBias,
      routedScalingFactor: o.routedScalingFactor,
    });
  } else if (custom != null) {
    routed = typeof custom === 'function' ? customRouting(custom, x, logits, o) : builtinRouting(custom, logits, o);
  } else {
    routed = fusedTopK(logits, o.topK, o.renormalize, {
      scoringFunc: o.scoringFunc, eScoreCorrectionBias: o.eScoreCorrectionBias,
      routedScalingFactor: o.routedScalingFactor,
    });
  }
  return o.eplb ? applyEplb(routed, logits.shape[1], o.eplb, o.expertMap, opName) : routed;
}

/** Llama 4: the top-k raw logits, weighted by their sigmoid = sigmoid top-k without renormalizing. */
function builtinRouting(name: BuiltinRouting, logits: Tensor2D, o: SelectExpertsOptions): RoutingResult {
  oneOf(name, 'customRoutingFunction', 'selectExperts', BUILTIN_ROUTINGS);
  return fusedTopK(logits, o.topK, false, {scoringFunc: 'sigmoid'});
}

function customRouting(fn: CustomRoutingFunction, x: Tensor2D, logits: Tensor2D, o: SelectExpertsOptions):
    RoutingResult {
  const opName = 'selectExperts';
  const result = fn({hiddenStates: x, gatingOutput: logits, topK: o.topK, renormalize: o.renormalize});
  const what = 'returned by customRoutingFunction';
  if (result == null || result.topkWeights == null || result.topkIds == null) {
    throw new Error(`${opName}: 'customRoutingFunction' must return {topkWeights, topkIds}`);
  }
  const w = tensorArg<Tensor2D>(result.topkWeights, `topkWeights ${what}`, opName, ['T', 'k'], 'float32');
  const ids = tensorArg<Tensor2D>(result.topkIds, `topkIds ${what}`, opName, ['T', 'k'], 'int32');
  for (const [t, name] of [[w, 'topkWeights'], [ids, 'topkIds']] as const) {
    if (t.shape[0] !== logits.shape[0] || t.shape[1] !== o.topK) {
      throw new Error(`${opName}: '${name}' ${what} must have shape [${logits.shape[0]}, ${o.topK}] but got ` +
          `[${t.shape.join(', ')}]`);
    }
  }
  return {topkWeights: w, topkIds: ids};
}

/** Logical → physical ids (one replica per token, chosen as token mod replicaCount), then the load. */
function applyEplb(routed: RoutingResult, numLogical: number, eplb: EplbState,
    expertMapLike: Tensor1D | TensorLike | undefined, opName: string): RoutingResult {
  const map = tensorArg<Tensor2D>(eplb.logicalToPhysicalMap, 'eplb.logicalToPhysicalMap', opName,
      ['E', 'maxReplicas'], 'int32');
  const count = tensorArg<Tensor1D>(eplb.logicalReplicaCount, 'eplb.logicalReplicaCount', opName, ['E'], 'int32');
  checkDim(map, 0, numLogical, 'eplb.logicalToPhysicalMap', opName, ['E', 'maxReplicas'], 'experts in routerLogits');
  checkDim(count, 0, numLogical, 'eplb.logicalReplicaCount', opName, ['E'], 'experts in routerLogits');
  const maxReplicas = map.shape[1];
  checkRangeOnce(count, 'eplb.logicalReplicaCount', opName, 1, maxReplicas, `replica counts in [1, ${maxReplicas}]`);
  // Ids from a customRoutingFunction are the caller's; they index the map's rows.
  checkRangeOnce(routed.topkIds, 'topkIds', opName, 0, numLogical - 1, `logical expert ids in [0, ${numLogical})`);
  const load = eplb.expertLoad;
  const expertMap = expertMapLike != null ?
    tensorArg<Tensor1D>(expertMapLike, 'expertMap', opName, ['P'], 'int32') : undefined;
  if (load != null && !(load instanceof Variable)) {
    throw new Error(`${opName}: 'eplb.expertLoad' must be a tf.Variable (it is incremented in place) but got ` +
        `${(load as unknown) instanceof Tensor ? 'a Tensor' : String(load)}`);
  }
  if (load?.isDisposed) throw new Error(`${opName}: 'eplb.expertLoad' is a disposed Variable`);
  const numPhysical = load?.shape[0] ?? expertMap?.shape[0];
  if (load && (load.rank !== 1 || (load.dtype !== 'int32' && load.dtype !== 'float32'))) {
    throw new Error(`${opName}: 'eplb.expertLoad' must be a 1-D int32 or float32 Variable of shape [P] but got ` +
        `${load.dtype} [${load.shape.join(', ')}]`);
  }
  if (load && expertMap) checkDim(expertMap, 0, load.shape[0], 'expertMap', opName, ['P'], 'length of eplb.expertLoad');
  const maxUsed = checkEplbMap(map, count, numPhysical, opName);

  const physicalIds = engine().runKernel(EplbMapIds,
      {topkIds: routed.topkIds, logicalToPhysicalMap: map, logicalReplicaCount: count}) as Tensor2D;
  routed.topkIds.dispose();
  if (load) {
    const attrs: ExpertLoadAttrs = {numExperts: load.shape[0]};
    const inputs: NamedTensorMap = expertMap ? {topkIds: physicalIds, expertMap} : {topkIds: physicalIds};
    tidy(() => {
      const counts = engine().runKernel(ExpertLoad, inputs, attrs as {}) as Tensor1D;
      load.assign(add(load, cast(counts, load.dtype)));
    });
  }
  return {topkWeights: routed.topkWeights,
    topkIds: markRange(physicalIds, 0, maxUsed, `EPLB's logicalToPhysicalMap (physical ids up to ${maxUsed})`)};
}

/** Maps checked against their replica counts: the count tensor and the largest physical id a used entry holds. */
const eplbMapsChecked = new WeakMap<Tensor, {count: Tensor; maxUsed: number}>();

/**
 * Checks the replica table once per (map, count) pair: the first replicaCount[e] entries of row e must be
 * physical ids (in [0, P) when P is known: a -1 there would route tokens to no expert), the rest -1 or ids.
 * Returns the largest physical id the used entries hold, the range of the ids the mapping produces.
 */
function checkEplbMap(map: Tensor2D, count: Tensor1D, numPhysical: number | undefined, opName: string): number {
  const hit = eplbMapsChecked.get(map);
  if (hit && hit.count === count && (numPhysical == null || hit.maxUsed < numPhysical)) return hit.maxUsed;
  const m = readValues(map, 'eplb.logicalToPhysicalMap', opName);
  const c = readValues(count, 'eplb.logicalReplicaCount', opName);
  const [E, R] = map.shape;
  const ids = numPhysical != null ? `physical expert ids in [0, ${numPhysical})` : 'physical expert ids >= 0';
  const isId = (v: number) => v >= 0 && (numPhysical == null || v < numPhysical);
  let maxUsed = 0;
  for (let e = 0; e < E; e++) {
    for (let r = 0; r < R; r++) {
      const v = m[e * R + r];
      if (r < c[e] && !isId(v)) {
        throw new Error(`${opName}: 'eplb.logicalToPhysicalMap' row ${e} must hold ${ids} in its first ${c[e]} ` +
            `entries (logicalReplicaCount[${e}]) but entry ${r} is ${v}`);
      }
      if (r >= c[e] && v !== -1 && !isId(v)) {
        throw new Error(`${opName}: 'eplb.logicalToPhysicalMap' row ${e} must hold -1 or ${ids} past its ${c[e]} ` +
            `replicas but entry ${r} is ${v}`);
      }
      if (r < c[e]) maxUsed = Math.max(maxUsed, v);
    }
  }
  // Variables can be reassigned, so only immutable tables are remembered.
  if (!(map instanceof Variable) && !(count instanceof Variable)) eplbMapsChecked.set(map, {count, maxUsed});
  return maxUsed;
}

export const selectExperts = op({selectExperts_});

import {Tensor1D, Tensor2D, Tensor3D, TensorLike, engine, op} from '@tensorflow/tfjs-core';
import {Activation, FusedExperts, FusedExpertsAttrs, FusedExpertsInputs, w13ShardName, w2ShardName}
  from '../kernel_names';
import {FLOAT32_FORMAT, formatKey} from '../quant/format';
import {checkDim, checkRangeOnce, intArg, oneOf, shapeStr, tensorArg} from './validate';

export interface FusedExpertsOptions {
  /** 'silu' (default) or 'gelu' (exact, erf form) of the gate half, times the up half. */
  activation?: Activation;
  /** Scale the input by the routing weight instead of the output (Llama 4); needs topK = 1. */
  applyRouterWeightOnInput?: boolean;
  /** [globalNumExperts] int32: global id → local expert, -1 where the expert is on another rank. */
  expertMap?: Tensor1D | TensorLike;
  /** E, the range of the ids; -1 or absent: the expertMap's length, else the number of experts in w13. */
  globalNumExperts?: number;
}

export const ACTIVATIONS: readonly Activation[] = ['silu', 'gelu'];

/** w13 / w2 as one tensor or as consecutive expert ranges, checked against each other. */
export interface ExpertWeights {
  w13: Tensor3D[];
  w2: Tensor3D[];
  numLocalExperts: number;
  hiddenSize: number;
  intermediateSize: number;
}

export function expertWeightsArg(w13: Tensor3D | Tensor3D[], w2: Tensor3D | Tensor3D[], opName: string):
    ExpertWeights {
  const w13List = Array.isArray(w13) ? w13 : [w13];
  const w2List = Array.isArray(w2) ? w2 : [w2];
  if (w13List.length === 0 || w13List.length !== w2List.length) {
    throw new Error(`${opName}: 'w13' and 'w2' must be tensors or equally long non-empty arrays of tensors split by ` +
        `expert range, but got ${w13List.length} and ${w2List.length}`);
  }
  const w13s = w13List.map((w, i) =>
      tensorArg<Tensor3D>(w, w13List.length > 1 ? `w13[${i}]` : 'w13', opName, ['E_local', '2I', 'H'], 'float32'));
  const [, twoI, H] = w13s[0].shape;
  if (twoI % 2 !== 0 || twoI === 0) {
    throw new Error(`${opName}: 'w13' must have an even, non-zero 2I (gate rows then up rows) but got shape ` +
        shapeStr(w13s[0].shape));
  }
  const I = twoI / 2;
  const w2s = w2List.map((w, i) => {
    const name = w2List.length > 1 ? `w2[${i}]` : 'w2';
    const t = tensorArg<Tensor3D>(w, name, opName, ['E_local', 'H', 'I'], 'float32');
    const w13Name = w13List.length > 1 ? `w13[${i}]` : 'w13';
    checkDim(w13s[i], 1, twoI, w13Name, opName, ['E_local', '2I', 'H'], `2I of w13${w13List.length > 1 ? '[0]' : ''}`);
    checkDim(w13s[i], 2, H, w13Name, opName, ['E_local', '2I', 'H'], `H of w13${w13List.length > 1 ? '[0]' : ''}`);
    checkDim(t, 0, w13s[i].shape[0], name, opName, ['E_local', 'H', 'I'], `experts in ${w13Name}`);
    checkDim(t, 1, H, name, opName, ['E_local', 'H', 'I'], 'H of w13');
    checkDim(t, 2, I, name, opName, ['E_local', 'H', 'I'], 'half of 2I in w13');
    return t;
  });
  const numLocalExperts = w13s.reduce((n, w) => n + w.shape[0], 0);
  return {w13: w13s, w2: w2s, numLocalExperts, hiddenSize: H, intermediateSize: I};
}

/** Checks an expert map once: int32 [E], every value -1 or a local expert. */
export function expertMapArg(expertMap: Tensor1D | TensorLike, numLocalExperts: number, opName: string): Tensor1D {
  const map = tensorArg<Tensor1D>(expertMap, 'expertMap', opName, ['E'], 'int32');
  checkRangeOnce(map, 'expertMap', opName, -1, numLocalExperts - 1,
      `-1 or a local expert id in [0, ${numLocalExperts})`);
  return map;
}

/**
 * The expert computation (vLLM `fused_experts`): for every token and each of its k (expert, weight)
 * pairs, `w2 · (act(gate) * up)` with `[gate; up] = w13 · x`, summed over the k pairs.
 *
 * ```js
 * const out = fusedExperts(hidden, w13, w2, topkWeights, topkIds);   // [T, H]
 * // weights beyond one binding: pass consecutive expert ranges
 * fusedExperts(hidden, [w13a, w13b], [w2a, w2b], topkWeights, topkIds);
 * ```
 */
function fusedExperts_(hiddenStates: Tensor2D | TensorLike, w13: Tensor3D | Tensor3D[], w2: Tensor3D | Tensor3D[],
    topkWeights: Tensor2D | TensorLike, topkIds: Tensor2D | TensorLike, o: FusedExpertsOptions = {}): Tensor2D {
  const opName = 'fusedExperts';
  const x = tensorArg<Tensor2D>(hiddenStates, 'hiddenStates', opName, ['T', 'H'], 'float32');
  const weights = expertWeightsArg(w13, w2, opName);
  checkDim(x, 1, weights.hiddenSize, 'hiddenStates', opName, ['T', 'H'], 'H of w13');
  const [T] = x.shape;
  const w = tensorArg<Tensor2D>(topkWeights, 'topkWeights', opName, ['T', 'k'], 'float32');
  const ids = tensorArg<Tensor2D>(topkIds, 'topkIds', opName, ['T', 'k'], 'int32');
  checkDim(w, 0, T, 'topkWeights', opName, ['T', 'k'], 'tokens in hiddenStates');
  checkDim(ids, 0, T, 'topkIds', opName, ['T', 'k'], 'tokens in hiddenStates');
  checkDim(ids, 1, w.shape[1], 'topkIds', opName, ['T', 'k'], 'k of topkWeights');
  const activation = oneOf(o.activation ?? 'silu', 'activation', opName, ACTIVATIONS);
  const applyRouterWeightOnInput = !!o.applyRouterWeightOnInput;
  if (applyRouterWeightOnInput && w.shape[1] !== 1) {
    throw new Error(`${opName}: 'applyRouterWeightOnInput' needs topK = 1 (as in vLLM) but 'topkIds' has k = ` +
        `${w.shape[1]}`);
  }

  const inputs: FusedExpertsInputs = {hiddenStates: x, topkWeights: w, topkIds: ids};
  let globalNumExperts = weights.numLocalExperts;
  if (o.expertMap != null) {
    const map = expertMapArg(o.expertMap, weights.numLocalExperts, opName);
    inputs.expertMap = map;
    globalNumExperts = map.shape[0];
  }
  if (o.globalNumExperts != null && o.globalNumExperts !== -1) {
    intArg(o.globalNumExperts, 'globalNumExperts', opName, 1, 2 ** 31 - 1);
    if (inputs.expertMap && o.globalNumExperts !== globalNumExperts) {
      throw new Error(`${opName}: 'globalNumExperts' = ${o.globalNumExperts} must equal the length of 'expertMap' ` +
          `(${globalNumExperts})`);
    }
    if (!inputs.expertMap && o.globalNumExperts !== weights.numLocalExperts) {
      throw new Error(`${opName}: 'globalNumExperts' = ${o.globalNumExperts} differs from the ` +
          `${weights.numLocalExperts} experts in 'w13'; pass an 'expertMap' for expert parallelism`);
    }
    globalNumExperts = o.globalNumExperts;
  }
  const rangeSource = o.globalNumExperts != null && o.globalNumExperts !== -1 ? `'globalNumExperts'` :
    inputs.expertMap ? `the length of 'expertMap'` : `the experts in 'w13'`;
  checkRangeOnce(ids, 'topkIds', opName, 0, globalNumExperts - 1, `expert ids in [0, ${globalNumExperts})`,
      `; ${globalNumExperts} is ${rangeSource}`);

  weights.w13.forEach((t, i) => { inputs[w13ShardName(i)] = t; });
  weights.w2.forEach((t, i) => { inputs[w2ShardName(i)] = t; });
  const attrs: FusedExpertsAttrs = {
    activation, applyRouterWeightOnInput, globalNumExperts, numWeightShards: weights.w13.length,
    weightFormat: formatKey(FLOAT32_FORMAT), hasBias: false, activationQuantGroup: 0,
  };
  return engine().runKernel(FusedExperts, inputs as {}, attrs as {}) as Tensor2D;
}

export const fusedExperts = op({fusedExperts_});

import {Tensor1D, Tensor2D, TensorLike, engine, op} from '@tensorflow/tfjs-core';
import {FusedTopK, FusedTopKAttrs, FusedTopKInputs, ScoringFunc} from '../kernel_names';
import {checkDim, finiteArg, intArg, markRange, oneOf, tensorArg} from './validate';

export interface RoutingResult {
  /** [T, k] float32, each row in descending weight. */
  topkWeights: Tensor2D;
  /** [T, k] int32 global expert ids. */
  topkIds: Tensor2D;
}

export interface FusedTopKOptions {
  /** 'softmax' (vLLM's fused_topk) or 'sigmoid' (beyond the seed layer, as newer models use). */
  scoringFunc?: ScoringFunc;
  /** [E] added to the scores for selection only; the weights stay unbiased. */
  eScoreCorrectionBias?: Tensor1D | TensorLike;
  routedScalingFactor?: number;
}

export const SCORING_FUNCS: readonly ScoringFunc[] = ['softmax', 'sigmoid'];

/** Checks the routing arguments shared by fusedTopK and groupedTopK and builds the kernel's inputs. */
export function routingArgs(opName: string, gatingOutput: Tensor2D | TensorLike, topK: number,
    renormalize: boolean, o: FusedTopKOptions): {inputs: FusedTopKInputs; attrs: FusedTopKAttrs; numExperts: number} {
  const logits = tensorArg<Tensor2D>(gatingOutput, 'gatingOutput', opName, ['T', 'E'], 'float32');
  const [, E] = logits.shape;
  if (E < 1) throw new Error(`${opName}: 'gatingOutput' must have E >= 1 experts but got shape [${logits.shape}]`);
  intArg(topK, 'topK', opName, 1, E);
  if (typeof renormalize !== 'boolean') {
    throw new Error(`${opName}: 'renormalize' must be a boolean but got ${String(renormalize)}`);
  }
  const scoringFunc = oneOf(o.scoringFunc ?? 'softmax', 'scoringFunc', opName, SCORING_FUNCS);
  const routedScalingFactor = finiteArg(o.routedScalingFactor ?? 1, 'routedScalingFactor', opName);
  const inputs: FusedTopKInputs = {gatingOutput: logits};
  if (o.eScoreCorrectionBias != null) {
    const bias = tensorArg<Tensor1D>(o.eScoreCorrectionBias, 'eScoreCorrectionBias', opName, ['E'], 'float32');
    checkDim(bias, 0, E, 'eScoreCorrectionBias', opName, ['E'], 'experts in gatingOutput');
    inputs.eScoreCorrectionBias = bias;
  }
  return {inputs, attrs: {topK, renormalize, scoringFunc, routedScalingFactor}, numExperts: E};
}

/** The kernel's outputs; the ids carry their range [0, E) from the logits' shape, so fusedExperts can trust them. */
export function routingResult(outputs: Tensor2D[], numExperts: number): RoutingResult {
  const [topkWeights, topkIds] = outputs;
  return {topkWeights, topkIds: markRange(topkIds, 0, numExperts - 1, `routing over ${numExperts} experts`)};
}

/**
 * Softmax top-k routing (vLLM `fused_topk`): softmax over all E experts in float32, the k largest
 * (ties to the lower id, rows in descending weight), renormalized to sum 1 if `renormalize`.
 *
 * ```js
 * const {topkWeights, topkIds} = fusedTopK(tf.tensor2d([[1, 3, 2, 0]]), 2, true);
 * // topkIds [[1, 2]], topkWeights [[0.731, 0.269]]
 * ```
 */
function fusedTopK_(gatingOutput: Tensor2D | TensorLike, topK: number, renormalize: boolean,
    options: FusedTopKOptions = {}): RoutingResult {
  const {inputs, attrs, numExperts} = routingArgs('fusedTopK', gatingOutput, topK, renormalize, options);
  return routingResult(engine().runKernel(FusedTopK, inputs as {}, attrs as {}) as unknown as Tensor2D[], numExperts);
}

export const fusedTopK = op({fusedTopK_});

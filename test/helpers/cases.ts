/** Random MoE problems and their reference answers, shared by the grid and parity suites. */
import * as tf from '@tensorflow/tfjs-core';
import {fusedExpertsImpl, routingImpl} from '../../src';
import type {Activation, ScoringFunc} from '../../src';
import {randn, rng} from './compare';

export interface ExpertsCase {
  T: number; E: number; k: number; H: number; I: number;
  hidden: Float32Array; w13: Float32Array; w2: Float32Array; logits: Float32Array;
}

export function expertsCase(seed: number, T: number, E: number, k: number, H: number, I: number): ExpertsCase {
  const r = rng(seed);
  return {T, E, k, H, I, hidden: randn(r, T * H), w13: randn(r, E * 2 * I * H, 0.2), w2: randn(r, E * H * I, 0.2),
    logits: randn(r, T * E, 2)};
}

/** Reference routing of a case's logits (softmax top-k unless told otherwise). */
export function referenceRouting(c: ExpertsCase, o: {scoringFunc?: ScoringFunc; renormalize?: boolean} = {}) {
  return routingImpl(c.logits, c.T, c.E, null, {topK: c.k, renormalize: o.renormalize ?? true,
    scoringFunc: o.scoringFunc ?? 'softmax', routedScalingFactor: 1, numExpertGroup: 1, topkGroup: 1});
}

/** Reference expert output for a case, for the given routing and options. */
export function referenceExperts(c: ExpertsCase, weights: ArrayLike<number>, ids: ArrayLike<number>,
    o: {activation?: Activation; applyRouterWeightOnInput?: boolean; expertMap?: Int32Array; numLocal?: number;
      w13?: Float32Array; w2?: Float32Array} = {}): Float32Array {
  const numLocal = o.numLocal ?? c.E;
  return fusedExpertsImpl({hidden: c.hidden, topkWeights: weights, topkIds: ids, expertMap: o.expertMap ?? null,
    shards: [{w13: o.w13 ?? c.w13, w2: o.w2 ?? c.w2, numExperts: numLocal}], numTokens: c.T, topK: c.k,
    hiddenSize: c.H, intermediateSize: c.I, globalNumExperts: c.E, activation: o.activation ?? 'silu',
    applyRouterWeightOnInput: !!o.applyRouterWeightOnInput});
}

export function caseTensors(c: ExpertsCase) {
  return {
    hidden: tf.tensor2d(c.hidden, [c.T, c.H]),
    logits: tf.tensor2d(c.logits, [c.T, c.E]),
    w13: tf.tensor3d(c.w13, [c.E, 2 * c.I, c.H]),
    w2: tf.tensor3d(c.w2, [c.E, c.H, c.I]),
  };
}

/**
 * Random (token, slot) pairs for the expert-kernel suites: k distinct ids per token among `globalE` experts
 * (E when absent), weights in [0.1, 1.1), and with `globalE` an expert map onto E local experts that marks
 * every third global expert -1.
 */
export function randomPairs(rand: () => number, T: number, k: number, E: number, globalE?: number):
    {ids: Int32Array; weights: Float32Array; expertMap: Int32Array | null; globalNumExperts: number} {
  const Eg = globalE ?? E;
  const expertMap = globalE ? Int32Array.from({length: Eg}, (_, e) => e % 3 === 1 ? -1 : e % E) : null;
  const ids = new Int32Array(T * k);
  const weights = new Float32Array(T * k);
  for (let t = 0; t < T; t++) {
    const order = Array.from({length: Eg}, (_, e) => e).sort(() => rand() - 0.5);
    for (let j = 0; j < k; j++) { ids[t * k + j] = order[j]; weights[t * k + j] = 0.1 + rand(); }
  }
  return {ids, weights, expertMap, globalNumExperts: Eg};
}

/**
 * The MoE layer as a tfjs user writes it today, from stock ops only (the benchmark's baseline):
 *
 *   [Router] softmax (or DeepSeek's sigmoid + bias + group mask) → tf.topk → weights, ids
 *   [Readback] await ids.data()                              ← a CPU round trip on every call
 *   [Experts] for each expert that got tokens:
 *       x_e = tf.gather(hidden, tokens_e);  h = x_e · w13_eᵀ;  a = silu(gate) · up;  y = a · w2_eᵀ · weight
 *   [Combine] tf.unsortedSegmentSum(all y, their tokens, T)
 *
 * Weights are per-expert 2-D tensors, the way checkpoints store them.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {KernelTimer} from './timing';
import type {Routing} from './shapes';

export interface NaiveExpertWeights {
  /** [2I, H] per expert: gate rows, then up rows. */
  w13: tf.Tensor2D[];
  /** [H, I] per expert. */
  w2: tf.Tensor2D[];
}

/** Per-expert tensors sliced out of expert-range shards (a copy: the layout users load). */
export function naiveExpertWeights(w13Shards: tf.Tensor3D[], w2Shards: tf.Tensor3D[]): NaiveExpertWeights {
  const perExpert = <R extends tf.Tensor2D>(shards: tf.Tensor3D[]) => shards.flatMap((shard) => {
    const [n, rows, cols] = shard.shape;
    return Array.from({length: n}, (_, e) => tf.tidy(() =>
      tf.reshape(tf.slice(shard, [e, 0, 0], [1, rows, cols]), [rows, cols]) as R));
  });
  return {w13: perExpert(w13Shards), w2: perExpert(w2Shards)};
}

export function disposeNaiveWeights(w: NaiveExpertWeights): void {
  tf.dispose([...w.w13, ...w.w2]);
}

/** Routing in stock tfjs ops; DeepSeek's grouped top-k follows vLLM's torch `grouped_topk`. */
export function naiveRouting(logits: tf.Tensor2D, bias: tf.Tensor1D | null, r: Routing, k: number):
    {weights: tf.Tensor2D; ids: tf.Tensor2D} {
  return tf.tidy(() => {
    const [T, E] = logits.shape;
    let scores: tf.Tensor2D;
    let ids: tf.Tensor2D;
    if (r.kind === 'topk') {
      scores = tf.softmax(logits);
      ids = tf.topk(scores, k).indices as tf.Tensor2D;
    } else {
      scores = tf.sigmoid(logits);
      const choice = bias ? tf.add(scores, bias) as tf.Tensor2D : scores;
      const G = r.numExpertGroup;
      const grouped = tf.reshape(choice, [T, G, E / G]);
      const groupScores = bias ? tf.sum(tf.topk(grouped, 2).values, -1) : tf.max(grouped, -1);
      // Groups at or above the topkGroup-th best group score. (Not tf.oneHot of the group ids: on
      // tfjs-backend-webgpu 4.22 with today's Dawn, oneHot and int32 reductions return wrong values.)
      const kthBest = tf.slice(tf.topk(groupScores, r.topkGroup).values, [0, r.topkGroup - 1], [T, 1]);
      const groupKept = tf.cast(tf.greaterEqual(groupScores, kthBest), 'float32');
      const expertKept = tf.reshape(tf.tile(tf.expandDims(groupKept, 2), [1, 1, E / G]), [T, E]);
      const masked = tf.where(tf.greater(expertKept, 0), choice, tf.fill([T, E], -Infinity));
      ids = tf.topk(masked, k).indices as tf.Tensor2D;
    }
    let weights = tf.gather(scores, ids, 1, 1) as tf.Tensor2D;
    if (r.renormalize) weights = tf.div(weights, tf.add(tf.sum(weights, -1, true), r.kind === 'topk' ? 0 : 1e-20));
    if (r.kind === 'grouped') weights = tf.mul(weights, r.routedScalingFactor);
    return {weights, ids};
  });
}

/**
 * One MoE forward pass, the naive way. `timer`, when given, profiles the two GPU phases (the
 * readback between them is not GPU time).
 */
export async function naiveMoE(hidden: tf.Tensor2D, logits: tf.Tensor2D, bias: tf.Tensor1D | null,
    w: NaiveExpertWeights, r: Routing, k: number, timer?: KernelTimer): Promise<tf.Tensor2D> {
  const step = <T>(f: () => T) => timer ? timer.time(f) : Promise.resolve(f());
  const T = hidden.shape[0];
  const {weights, ids} = await step(() => naiveRouting(logits, bias, r, k));
  const idsHost = await ids.data();
  ids.dispose();

  const pairsOf: number[][] = w.w13.map(() => []);
  idsHost.forEach((e, pair) => pairsOf[e].push(pair));
  const out = await step(() => tf.tidy(() => {
    const flatWeights = tf.reshape(weights, [T * k]);
    const ys: tf.Tensor2D[] = [];
    const segments: tf.Tensor1D[] = [];
    pairsOf.forEach((pairs, e) => {
      if (pairs.length === 0) return;
      const tokens = tf.tensor1d(pairs.map((p) => Math.floor(p / k)), 'int32');
      const h = tf.matMul(tf.gather(hidden, tokens), w.w13[e], false, true);
      const [gate, up] = tf.split(h, 2, 1);
      const a = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);
      const pairWeights = tf.gather(flatWeights, tf.tensor1d(pairs, 'int32'));
      ys.push(tf.mul(tf.matMul(a, w.w2[e], false, true), tf.expandDims(pairWeights, 1)));
      segments.push(tokens);
    });
    return tf.unsortedSegmentSum(tf.concat(ys), tf.concat(segments), T) as tf.Tensor2D;
  }));
  weights.dispose();
  return out;
}

/**
 * The expert-computation reference (vLLM `fused_experts`), float64 accumulation:
 *
 *   for token t, slot j:  e = ids[t, j];  local = expertMap ? expertMap[e] : e   (-1 → contributes 0)
 *     x = hidden[t] · (w[t, j] if applyRouterWeightOnInput else 1)
 *     h = w13[local] · x                       [2I]   rows [0, I) gate, [I, 2I) up
 *     a = act(h[0:I]) * h[I:2I]                 [I]
 *     out[t] += (w2[local] · a) · (1 if applyRouterWeightOnInput else w[t, j])
 *
 * Slots are summed in slot order j = 0..k-1, the order the GPU combine uses too.
 */
import {gelu, silu} from '../../math';
import type {Activation} from '../../kernel_names';

/** Consecutive experts of one weight tensor: w13 [experts, 2I, H], w2 [experts, H, I]. */
export interface ExpertShard {
  w13: ArrayLike<number>;
  w2: ArrayLike<number>;
  numExperts: number;
}

export interface FusedExpertsProblem {
  hidden: ArrayLike<number>;       // [T, H]
  topkWeights: ArrayLike<number>;  // [T, k]
  topkIds: ArrayLike<number>;      // [T, k]
  expertMap: ArrayLike<number> | null;  // [E] global → local, -1 = not on this rank
  shards: ExpertShard[];
  numTokens: number;
  topK: number;
  hiddenSize: number;
  intermediateSize: number;
  globalNumExperts: number;
  activation: Activation;
  applyRouterWeightOnInput: boolean;
}

export function fusedExpertsImpl(p: FusedExpertsProblem): Float32Array {
  const {numTokens: T, topK: k, hiddenSize: H, intermediateSize: I} = p;
  const act = p.activation === 'gelu' ? gelu : silu;
  const numLocal = p.shards.reduce((n, s) => n + s.numExperts, 0);
  const out = new Float32Array(T * H);
  const x = new Float64Array(H);
  const a = new Float64Array(I);
  const acc = new Float64Array(H);

  for (let t = 0; t < T; t++) {
    acc.fill(0);
    for (let j = 0; j < k; j++) {
      const e = p.topkIds[t * k + j];
      if (!(e >= 0 && e < p.globalNumExperts)) continue;
      const local = p.expertMap ? p.expertMap[e] : e;
      if (!(local >= 0 && local < numLocal)) continue;
      const {shard, index} = locateExpert(p.shards, local);
      const w = p.topkWeights[t * k + j];
      const inScale = p.applyRouterWeightOnInput ? w : 1;
      const outScale = p.applyRouterWeightOnInput ? 1 : w;
      for (let h = 0; h < H; h++) x[h] = Math.fround(p.hidden[t * H + h] * inScale);

      const w13 = shard.w13, w13Base = index * 2 * I * H;
      for (let i = 0; i < I; i++) {
        let gate = 0, up = 0;
        const gateRow = w13Base + i * H, upRow = w13Base + (I + i) * H;
        for (let h = 0; h < H; h++) {
          gate += w13[gateRow + h] * x[h];
          up += w13[upRow + h] * x[h];
        }
        a[i] = act(gate) * up;
      }
      const w2 = shard.w2, w2Base = index * H * I;
      for (let h = 0; h < H; h++) {
        let y = 0;
        for (let i = 0; i < I; i++) y += w2[w2Base + h * I + i] * a[i];
        acc[h] += y * outScale;
      }
    }
    for (let h = 0; h < H; h++) out[t * H + h] = acc[h];
  }
  return out;
}

/** Which shard holds local expert `local`, and its index inside that shard. */
export function locateExpert<S extends {numExperts: number}>(shards: S[], local: number): {shard: S; index: number} {
  let first = 0;
  for (const shard of shards) {
    if (local < first + shard.numExperts) return {shard, index: local - first};
    first += shard.numExperts;
  }
  throw new Error(`local expert ${local} is beyond the ${first} experts held`);
}

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
 *
 * With biases, h += b13[local] and w2 · a + b2[local] (before the routing weight). 'swigluoai' reads gate
 * and up interleaved (rows 2i, 2i + 1). With activationQuantGroup > 0 (vLLM's dynamic fp8 w8a8), x and a
 * are each replaced by their per-128-group e4m3 fake-quantized values before their GEMM.
 */
import {gelu, silu, swigluoai} from '../../math';
import {roundToE4m3} from '../../quant/format';
import type {Activation} from '../../kernel_names';

/** Consecutive experts of one weight tensor: w13 [experts, 2I, H], w2 [experts, H, I] (dequantized). */
export interface ExpertShard {
  w13: ArrayLike<number>;
  w2: ArrayLike<number>;
  numExperts: number;
  /** [experts, 2I] and [experts, H]. */
  w13Bias?: ArrayLike<number>;
  w2Bias?: ArrayLike<number>;
}

/** The routed tokens and the layer's sizes, whatever the shards' format (`S`: their layout). */
export interface ExpertsProblem<S> {
  hidden: ArrayLike<number>;       // [T, H]
  topkWeights: ArrayLike<number>;  // [T, k]
  topkIds: ArrayLike<number>;      // [T, k]
  expertMap: ArrayLike<number> | null;  // [E] global → local, -1 = not on this rank
  shards: S[];
  numTokens: number;
  topK: number;
  hiddenSize: number;
  intermediateSize: number;
  globalNumExperts: number;
  activation: Activation;
  applyRouterWeightOnInput: boolean;
}

export interface FusedExpertsProblem extends ExpertsProblem<ExpertShard> {
  /** 0, or the group size of dynamic per-token fp8 activation quantization. */
  activationQuantGroup?: number;
}

/**
 * vLLM's per-token-group fp8 quantization, in float32 math: s = max(max|v_g|, 1e-10) / 448, then
 * v ← e4m3(clamp(v / s, ±448)) · s, for each group of `group` consecutive values.
 */
export function fakeQuantizeFp8(v: Float64Array | Float32Array, group: number): void {
  for (let g0 = 0; g0 < v.length; g0 += group) {
    const g1 = Math.min(v.length, g0 + group);
    let amax = 0;
    for (let i = g0; i < g1; i++) amax = Math.max(amax, Math.abs(Math.fround(v[i])));
    const s = Math.fround(Math.max(amax, 1e-10) / 448);
    for (let i = g0; i < g1; i++) {
      const q = roundToE4m3(Math.max(-448, Math.min(448, Math.fround(Math.fround(v[i]) / s))));
      v[i] = q * s;
    }
  }
}

export function fusedExpertsImpl(p: FusedExpertsProblem): Float32Array {
  const {numTokens: T, topK: k, hiddenSize: H, intermediateSize: I} = p;
  const act = p.activation === 'gelu' ? gelu : silu;
  const interleaved = p.activation === 'swigluoai';
  const quantGroup = p.activationQuantGroup ?? 0;
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
      if (quantGroup > 0) fakeQuantizeFp8(x, quantGroup);

      const w13 = shard.w13, w13Base = index * 2 * I * H;
      for (let i = 0; i < I; i++) {
        let gate = 0, up = 0;
        const gateIndex = interleaved ? 2 * i : i, upIndex = interleaved ? 2 * i + 1 : I + i;
        const gateRow = w13Base + gateIndex * H, upRow = w13Base + upIndex * H;
        for (let h = 0; h < H; h++) {
          gate += w13[gateRow + h] * x[h];
          up += w13[upRow + h] * x[h];
        }
        if (shard.w13Bias) {
          gate += shard.w13Bias[index * 2 * I + gateIndex];
          up += shard.w13Bias[index * 2 * I + upIndex];
        }
        a[i] = interleaved ? swigluoai(gate, up) : act(gate) * up;
      }
      if (quantGroup > 0) fakeQuantizeFp8(a, quantGroup);
      const w2 = shard.w2, w2Base = index * H * I;
      for (let h = 0; h < H; h++) {
        let y = 0;
        for (let i = 0; i < I; i++) y += w2[w2Base + h * I + i] * a[i];
        if (shard.w2Bias) y += shard.w2Bias[index * H + h];
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

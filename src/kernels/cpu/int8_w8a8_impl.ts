/**
 * vLLM's `use_int8_w8a8` expert computation with per-channel weights (`per_channel_quant`), as exact integer
 * arithmetic plus a fixed float32 epilogue: the reference that every backend's int8 path reproduces bit for bit.
 *
 * Weights: format.ts 'uint8' codes with zero point 128 and one f32 scale per output row (groupSize -1), i.e.
 * the int8 value w = code − 128 (compressed-tensors int8 channel checkpoints load as exactly this).
 * Activations (each GEMM input row: a token's hidden state before w13, a pair's activation row before w2),
 * vLLM `per_token_quant_int8` (vllm/model_executor/layers/quantization/utils/int8_utils.py, called from
 * fused_moe/utils.py `_int8_quantize` when per_act_token_quant):
 *
 *   absmax = max(max|x|, 1e-10)      scale = absmax / 127      q = round(x · (127 / absmax))
 *
 * with Triton's `libdevice.round`, i.e. half away from zero. Here every step is float32 and correctly rounded
 * (the GPU forms an exact quotient: experts_int8_quant_webgpu.ts), and q is clamped to [-127, 127] (a no-op
 * unless x·(127/absmax) rounds above 127.5, which it cannot; kept so that no input can wrap an i8).
 * A row of zeros gets q = 0 and contributes exactly 0; a row holding NaN or ±Inf gets q = 0 and a NaN scale.
 *
 * Each projection (vLLM `invoke_fused_moe_kernel` with use_int8_w8a8: `accumulator.to(f32) · a_scale · b_scale`):
 *
 *   acc[n] = Σ_k q[k] · w[n, k]                          int32, exact (|acc| ≤ K·127·128 < 2^31 for K < 131072)
 *   v[n]   = f32(f32(f32(acc[n]) · xScale) · wScale[n])  then + bias[n] (f32), when the layer has biases
 *   w13:   a[i] = f32(act(gate_i) · up_i)    (act in float64 rounded to f32 once, as silu/gelu in float32 would be
 *              up to their ulp: the only step whose bits depend on the backend's exp/erf)
 *   w2:    y[h] = f32(v[h] · routingWeight)  (or x · weight before quantization with applyRouterWeightOnInput)
 *   out[t, h] = f32 sum of y over the token's slots in slot order, from 0 (the GPU combine's order)
 *
 * f32(acc) rounds to nearest even (exact below 2^24).
 */
import {gelu, silu, swigluoai} from '../../math';
import {ExpertsProblem, locateExpert} from './fused_experts_impl';

/** One weight tensor's experts in the int8 channel format: words of 4 codes (code − 128 = the int8 weight). */
export interface Int8ExpertShard {
  /** int32 [experts, 2I·H/4] and [experts, H·I/4]: format.ts 'uint8' words. */
  w13: ArrayLike<number>;
  w2: ArrayLike<number>;
  /** float32 [experts, 2I] and [experts, H]: one scale per output row. */
  w13Scales: ArrayLike<number>;
  w2Scales: ArrayLike<number>;
  numExperts: number;
  w13Bias?: ArrayLike<number>;
  w2Bias?: ArrayLike<number>;
}

export type Int8ExpertsProblem = ExpertsProblem<Int8ExpertShard>;

const f32 = Math.fround;

/** Half away from zero (CUDA roundf, Triton libdevice.round); exact for float32 inputs. */
export function roundHalfAway(v: number): number {
  const a = Math.abs(v);
  const t = Math.trunc(a);
  const r = a - t >= 0.5 ? t + 1 : t;
  return v < 0 ? -r : r;
}

/** vLLM per_token_quant_int8 of one row (float32 values): q in [-127, 127] and the row's scale. */
export function quantizeRowInt8(x: ArrayLike<number>, q: Int8Array | Int32Array = new Int8Array(x.length)):
    {q: Int8Array | Int32Array; scale: number} {
  let amax = 0;
  for (let i = 0; i < x.length; i++) amax = Math.max(amax, Math.abs(f32(x[i])));
  if (!(amax <= 3.4028234663852886e38)) {
    // NaN or Inf in the row: a NaN scale (every output of the row NaN), q = 0.
    q.fill(0, 0, x.length);
    return {q, scale: NaN};
  }
  amax = f32(Math.max(amax, 1e-10));
  const scale = f32(amax / 127);
  const inv = f32(127 / amax);
  for (let i = 0; i < x.length; i++) q[i] = Math.max(-127, Math.min(127, roundHalfAway(f32(f32(x[i]) * inv))));
  return {q, scale};
}

/** The int8 weight of field `i` of a stack of 'uint8' words. */
function weightAt(words: ArrayLike<number>, i: number): number {
  return ((words[i >> 2] >>> ((i & 3) * 8)) & 255) - 128;
}

/** acc = Σ_k q[k] · w[row, k] over the K fields of `row` (field base row·K in the expert's words). */
export function int8Dot(q: ArrayLike<number>, words: ArrayLike<number>, fieldBase: number, K: number): number {
  let acc = 0;
  for (let k = 0; k < K; k++) acc += q[k] * weightAt(words, fieldBase + k);
  return acc;
}

/** The epilogue of one output: f32(f32(f32(acc)·xScale)·wScale) (+ bias). */
export function int8Epilogue(acc: number, xScale: number, wScale: number, bias?: number): number {
  const v = f32(f32(f32(acc) * xScale) * wScale);
  return bias == null ? v : f32(v + bias);
}

export function fusedExpertsInt8Impl(p: Int8ExpertsProblem): Float32Array {
  const {numTokens: T, topK: k, hiddenSize: H, intermediateSize: I} = p;
  const act = p.activation === 'gelu' ? gelu : silu;
  const interleaved = p.activation === 'swigluoai';
  const numLocal = p.shards.reduce((n, s) => n + s.numExperts, 0);
  const out = new Float32Array(T * H);
  const x = new Float32Array(H);
  const a = new Float32Array(I);
  const qx = new Int32Array(H);
  const qa = new Int32Array(I);
  for (let t = 0; t < T; t++) {
    // The token's quantized row is the same for each of its pairs (unless the weight is applied on the input).
    let xScale = 0;
    if (!p.applyRouterWeightOnInput) xScale = quantizeRowInt8(p.hidden instanceof Float32Array ?
      p.hidden.subarray(t * H, (t + 1) * H) : Array.from({length: H}, (_, h) => p.hidden[t * H + h]), qx).scale;
    for (let j = 0; j < k; j++) {
      const e = p.topkIds[t * k + j];
      if (!(e >= 0 && e < p.globalNumExperts)) continue;
      const local = p.expertMap ? p.expertMap[e] : e;
      if (!(local >= 0 && local < numLocal)) continue;
      const {shard: s, index} = locateExpert(p.shards, local);
      const w = p.topkWeights[t * k + j];
      if (p.applyRouterWeightOnInput) {
        for (let h = 0; h < H; h++) x[h] = f32(p.hidden[t * H + h] * w);
        xScale = quantizeRowInt8(x, qx).scale;
      }
      for (let i = 0; i < I; i++) {
        const gi = interleaved ? 2 * i : i, ui = interleaved ? 2 * i + 1 : I + i;
        const row = (n: number) => int8Epilogue(int8Dot(qx, s.w13, (index * 2 * I + n) * H, H), xScale,
            s.w13Scales[index * 2 * I + n], s.w13Bias?.[index * 2 * I + n]);
        const gate = row(gi), up = row(ui);
        a[i] = interleaved ? f32(swigluoai(gate, up)) : f32(f32(act(gate)) * up);
      }
      const aScale = quantizeRowInt8(a, qa).scale;
      const outScale = p.applyRouterWeightOnInput ? 1 : w;
      for (let h = 0; h < H; h++) {
        const v = int8Epilogue(int8Dot(qa, s.w2, (index * H + h) * I, I), aScale, s.w2Scales[index * H + h],
            s.w2Bias?.[index * H + h]);
        out[t * H + h] = f32(out[t * H + h] + (p.applyRouterWeightOnInput ? v : f32(v * outScale)));
      }
    }
  }
  return out;
}

/**
 * The non-MoE blocks of the decoder-only LMs, as tf.layers.Layer classes registered for serialization,
 * so that the model is also a plain `tf.LayersModel` (save / `tf.loadLayersModel`). Weights keep
 * Hugging Face's layout ([out, in] projections) so checkpoint tensors are written as they are.
 *
 * Every layer lists its weights as (checkpoint suffix, variable) pairs: the checkpoint key is
 * `<layer name>.<suffix>`, with layer names the checkpoint's module paths (`model.layers.0.self_attn`).
 */
import {Tensor, Tensor2D, add, cast, concat, gather, matMul, mean, mul, neg, pad, reshape, rsqrt, serialization, sigmoid,
  slice, softmax, square, sub, tensor2d, tidy, transpose} from '@tensorflow/tfjs-core';
import {LayerVariable, Shape, initializers, layers} from '@tensorflow/tfjs-layers';

type LayerArgs = ConstructorParameters<typeof layers.Layer>[0];
type Kwargs = Parameters<layers.Layer['call']>[1];

/** A layer whose weights come from a Hugging Face checkpoint. */
export interface CheckpointWeights {
  /** (suffix after the layer name, e.g. 'q_proj.weight'; the variable it fills). */
  checkpointWeights(): Array<[string, LayerVariable]>;
}

const single = (inputs: Tensor | Tensor[]): Tensor => (Array.isArray(inputs) ? inputs[0] : inputs);
const lastDim = (shape: Shape | Shape[], layer: string): number => {
  const s = (Array.isArray(shape[0]) ? shape[0] : shape) as Shape;
  const d = s[s.length - 1];
  if (d == null) throw new Error(`${layer}: the last input dimension must be known but got shape ${JSON.stringify(s)}`);
  return d;
};

/** x [..., in] · wᵀ with w [out, in] (a torch nn.Linear without bias). */
export function linear(x: Tensor, w: Tensor): Tensor {
  const [out, inner] = w.shape;
  const lead = x.shape.slice(0, -1);
  return reshape(matMul(reshape(x, [-1, inner]) as Tensor2D, w as Tensor2D, false, true), [...lead, out]);
}

/** transformers' RMSNorm: x / sqrt(mean(x²) + eps) · weight, over the last axis, in float32. */
export function rmsNorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  return mul(mul(x, rsqrt(add(mean(square(x), -1, true), eps))), weight);
}

/** Token ids [B, T] int32 → embeddings [B, T, H] (`model.embed_tokens`). */
export class TokenEmbedding extends layers.Layer implements CheckpointWeights {
  static className = 'TokenEmbedding';
  readonly vocabSize: number;
  readonly hiddenSize: number;
  private weight: LayerVariable | null = null;

  constructor(args: LayerArgs & {vocabSize: number; hiddenSize: number}) {
    super(args);
    this.vocabSize = args.vocabSize;
    this.hiddenSize = args.hiddenSize;
  }

  override build(): void {
    this.weight = this.addWeight('weight', [this.vocabSize, this.hiddenSize], 'float32', initializers.zeros());
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return [...(inputShape as Shape), this.hiddenSize];
  }

  override call(inputs: Tensor | Tensor[], kwargs: Kwargs): Tensor {
    return tidy(() => {
      this.invokeCallHook(inputs, kwargs);
      const ids = single(inputs);
      // A deserialized model's input may arrive as float32; gather needs int32 ids.
      return gather(this.weight!.read(), ids.dtype === 'int32' ? ids : cast(ids, 'int32'));
    });
  }

  checkpointWeights(): Array<[string, LayerVariable]> {
    return [['weight', this.weight!]];
  }

  override getConfig(): serialization.ConfigDict {
    return {...super.getConfig(), vocabSize: this.vocabSize, hiddenSize: this.hiddenSize};
  }
}

/** transformers' RMSNorm over the last axis (`input_layernorm`, `post_attention_layernorm`, `model.norm`). */
export class RMSNorm extends layers.Layer implements CheckpointWeights {
  static className = 'RMSNorm';
  readonly eps: number;
  private weight: LayerVariable | null = null;

  constructor(args: LayerArgs & {eps: number}) {
    super(args);
    this.eps = args.eps;
  }

  override build(inputShape: Shape | Shape[]): void {
    this.weight = this.addWeight('weight', [lastDim(inputShape, this.name)], 'float32', initializers.ones());
    this.built = true;
  }

  override call(inputs: Tensor | Tensor[], kwargs: Kwargs): Tensor {
    return tidy(() => {
      this.invokeCallHook(inputs, kwargs);
      return rmsNorm(single(inputs), this.weight!.read(), this.eps);
    });
  }

  checkpointWeights(): Array<[string, LayerVariable]> {
    return [['weight', this.weight!]];
  }

  override getConfig(): serialization.ConfigDict {
    return {...super.getConfig(), eps: this.eps};
  }
}

/** torch nn.Linear without bias, weight [units, in] (the MoE router `gate` and `lm_head`). */
export class Linear extends layers.Layer implements CheckpointWeights {
  static className = 'Linear';
  readonly units: number;
  private weight: LayerVariable | null = null;

  constructor(args: LayerArgs & {units: number}) {
    super(args);
    this.units = args.units;
  }

  override build(inputShape: Shape | Shape[]): void {
    this.weight = this.addWeight('weight', [this.units, lastDim(inputShape, this.name)], 'float32', initializers.zeros());
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return [...(inputShape as Shape).slice(0, -1), this.units];
  }

  override call(inputs: Tensor | Tensor[], kwargs: Kwargs): Tensor {
    return tidy(() => {
      this.invokeCallHook(inputs, kwargs);
      return linear(single(inputs), this.weight!.read());
    });
  }

  checkpointWeights(): Array<[string, LayerVariable]> {
    return [['weight', this.weight!]];
  }

  override getConfig(): serialization.ConfigDict {
    return {...super.getConfig(), units: this.units};
  }
}

/** The dense SwiGLU MLP: down(silu(gate(x)) ⊙ up(x)) (Qwen3 `mlp_only_layers`). */
export class GatedMLP extends layers.Layer implements CheckpointWeights {
  static className = 'GatedMLP';
  readonly intermediateSize: number;
  private proj: {gate: LayerVariable; up: LayerVariable; down: LayerVariable} | null = null;

  constructor(args: LayerArgs & {intermediateSize: number}) {
    super(args);
    this.intermediateSize = args.intermediateSize;
  }

  override build(inputShape: Shape | Shape[]): void {
    const H = lastDim(inputShape, this.name), I = this.intermediateSize;
    this.proj = {
      gate: this.addWeight('gate_proj', [I, H], 'float32', initializers.zeros()),
      up: this.addWeight('up_proj', [I, H], 'float32', initializers.zeros()),
      down: this.addWeight('down_proj', [H, I], 'float32', initializers.zeros()),
    };
    this.built = true;
  }

  override call(inputs: Tensor | Tensor[], kwargs: Kwargs): Tensor {
    return tidy(() => {
      this.invokeCallHook(inputs, kwargs);
      const x = single(inputs);
      const gate = linear(x, this.proj!.gate.read());
      return linear(mul(mul(gate, sigmoid(gate)), linear(x, this.proj!.up.read())), this.proj!.down.read());
    });
  }

  checkpointWeights(): Array<[string, LayerVariable]> {
    const p = this.proj!;
    return [['gate_proj.weight', p.gate], ['up_proj.weight', p.up], ['down_proj.weight', p.down]];
  }

  override getConfig(): serialization.ConfigDict {
    return {...super.getConfig(), intermediateSize: this.intermediateSize};
  }
}

/** One layer's keys and values so far: [B, numKeyValueHeads, length, headDim] each. */
export interface LayerKV {
  key: Tensor;
  value: Tensor;
}

export interface AttentionSettings {
  numHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  ropeTheta: number;
  /** Qwen3: RMSNorm over each head of q and k (weights `q_norm`, `k_norm`) before RoPE. */
  qkNorm: boolean;
  rmsNormEps: number;
}

/** Added to the scores of future positions: exp() of it is 0 without the NaN that -Infinity can bring. */
const MASKED = -1e30;

/**
 * cos and sin [T, D] of positions [start, start + T) for transformers' default RoPE, rounded as its
 * float32 computation is: inv_freq = 1 / θ^(2i/D), angle = position · inv_freq, halves repeated.
 */
export function ropeTables(start: number, length: number, headDim: number, theta: number): {cos: Tensor2D; sin: Tensor2D} {
  const half = headDim / 2;
  const cos = new Float32Array(length * headDim);
  const sin = new Float32Array(length * headDim);
  for (let i = 0; i < half; i++) {
    const invFreq = Math.fround(1 / Math.fround(theta ** Math.fround((2 * i) / headDim)));
    for (let t = 0; t < length; t++) {
      const angle = Math.fround((start + t) * invFreq);
      const c = Math.cos(angle), s = Math.sin(angle);
      cos[t * headDim + i] = cos[t * headDim + i + half] = c;
      sin[t * headDim + i] = sin[t * headDim + i + half] = s;
    }
  }
  return {cos: tensor2d(cos, [length, headDim]), sin: tensor2d(sin, [length, headDim])};
}

/** x [B, heads, T, D] rotated: x·cos + rotate_half(x)·sin, rotate_half(x) = [-x₂, x₁]. */
function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const [B, heads, T, D] = x.shape;
  const x1 = slice(x, [0, 0, 0, 0], [B, heads, T, D / 2]);
  const x2 = slice(x, [0, 0, 0, D / 2], [B, heads, T, D / 2]);
  return add(mul(x, cos), mul(concat([neg(x2), x1], 3), sin));
}

/**
 * Causal grouped-query self-attention with RoPE (transformers' eager attention), q/k RMSNorm optional.
 * As a layer it attends over the full input sequence; `attend` also extends a KV cache.
 */
export class CausalSelfAttention extends layers.Layer implements CheckpointWeights {
  static className = 'CausalSelfAttention';
  readonly settings: AttentionSettings;
  private w: {q: LayerVariable; k: LayerVariable; v: LayerVariable; o: LayerVariable; qNorm: LayerVariable | null;
    kNorm: LayerVariable | null} | null = null;

  constructor(args: LayerArgs & AttentionSettings) {
    const {numHeads, numKeyValueHeads, headDim, ropeTheta, qkNorm, rmsNormEps, ...rest} = args;
    super(rest);
    this.settings = {numHeads, numKeyValueHeads, headDim, ropeTheta, qkNorm, rmsNormEps};
  }

  override build(inputShape: Shape | Shape[]): void {
    const H = lastDim(inputShape, this.name);
    const {numHeads, numKeyValueHeads: kv, headDim: D, qkNorm} = this.settings;
    const zeros = initializers.zeros();
    this.w = {
      q: this.addWeight('q_proj', [numHeads * D, H], 'float32', zeros),
      k: this.addWeight('k_proj', [kv * D, H], 'float32', zeros),
      v: this.addWeight('v_proj', [kv * D, H], 'float32', zeros),
      o: this.addWeight('o_proj', [H, numHeads * D], 'float32', zeros),
      qNorm: qkNorm ? this.addWeight('q_norm', [D], 'float32', initializers.ones()) : null,
      kNorm: qkNorm ? this.addWeight('k_norm', [D], 'float32', initializers.ones()) : null,
    };
    this.built = true;
  }

  override call(inputs: Tensor | Tensor[], kwargs: Kwargs): Tensor {
    return tidy(() => {
      this.invokeCallHook(inputs, kwargs);
      return this.attend(single(inputs), 0, null).out;
    });
  }

  /**
   * x [B, T, H] at positions [past, past + T) → out [B, T, H]. With a cache (the keys and values of
   * positions [0, past), in buffers of KV_BLOCK-rounded capacity), also returns the buffers with x's
   * keys and values written after them; without one, `key` and `value` are x's own. Not wrapped in
   * tidy: the caller keeps what it needs.
   */
  attend(x: Tensor, past: number, cache: LayerKV | null): {out: Tensor; key: Tensor; value: Tensor} {
    const {numHeads: nH, numKeyValueHeads: nKV, headDim: D, ropeTheta, rmsNormEps} = this.settings;
    const [B, T] = x.shape;
    const w = this.w!;
    const heads = (proj: LayerVariable, n: number, norm: LayerVariable | null) => {
      let h = reshape(linear(x, proj.read()), [B, T, n, D]);
      if (norm) h = rmsNorm(h, norm.read(), rmsNormEps);
      return transpose(h, [0, 2, 1, 3]);  // [B, n, T, D]
    };
    const {cos, sin} = ropeTables(past, T, D, ropeTheta);
    const q = applyRope(heads(w.q, nH, w.qNorm), cos, sin);
    let key = applyRope(heads(w.k, nKV, w.kNorm), cos, sin);
    let value = heads(w.v, nKV, null);
    let mask: Tensor2D | null = null;
    if (cache) {
      key = writeCache(cache.key, key, past);
      value = writeCache(cache.value, value, past);
      mask = causalMask(past, T, key.shape[2] as number);
    } else if (T > 1) {
      mask = causalMask(0, T, T);
    }
    const keys = key.shape[2] as number;
    // Grouped-query: head h reads kv head ⌊h / g⌋, so q [B, nH, T, D] is viewed as [B, nKV, g·T, D].
    const g = nH / nKV;
    let scores = mul(matMul(reshape(q, [B, nKV, g * T, D]), key, false, true), 1 / Math.sqrt(D));
    if (mask) scores = reshape(add(reshape(scores, [B, nKV, g, T, keys]), mask), [B, nKV, g * T, keys]);
    const context = reshape(matMul(softmax(scores), value), [B, nH, T, D]);
    const out = linear(reshape(transpose(context, [0, 2, 1, 3]), [B, T, nH * D]), w.o.read());
    return {out, key, value};
  }

  checkpointWeights(): Array<[string, LayerVariable]> {
    const w = this.w!;
    const list: Array<[string, LayerVariable]> = [['q_proj.weight', w.q], ['k_proj.weight', w.k], ['v_proj.weight', w.v],
      ['o_proj.weight', w.o]];
    if (w.qNorm && w.kNorm) list.push(['q_norm.weight', w.qNorm], ['k_norm.weight', w.kNorm]);
    return list;
  }

  override getConfig(): serialization.ConfigDict {
    return {...super.getConfig(), ...this.settings};
  }
}

/**
 * KV buffers grow in blocks of this many positions. WebGPU compiles a shader for every new tensor shape;
 * with buffers of fixed capacity (unused positions masked) a decode step has the same shapes as the last,
 * so decoding compiles once per block instead of once per token.
 */
export const KV_BLOCK = 64;

/**
 * `buffer` [B, n, capacity, D] holding positions [0, past), with `fresh` [B, n, T, D] written at
 * [past, past + T). One decode token that fits is written through 0/1 masks (the shapes stay the
 * same); otherwise the buffer is rebuilt with a capacity rounded up to KV_BLOCK.
 */
function writeCache(buffer: Tensor, fresh: Tensor, past: number): Tensor {
  const [B, n, capacity, D] = buffer.shape;
  const T = fresh.shape[2] as number;
  if (T === 1 && past < capacity) {
    const at = new Float32Array(capacity);
    at[past] = 1;
    const select = tensor2d(at, [capacity, 1]);
    // x·1 + 0 and 0 + y·1 are exact, so the buffer holds exactly the keys a concat would give.
    return add(mul(buffer, sub(1, select)), mul(fresh, select));
  }
  const kept = past > 0 ? concat([slice(buffer, [0, 0, 0, 0], [B, n, past, D]), fresh], 2) : fresh;
  const grown = Math.ceil((past + T) / KV_BLOCK) * KV_BLOCK;
  return pad(kept, [[0, 0], [0, 0], [0, grown - past - T], [0, 0]]);
}

/**
 * [T, keys]: 0 where query t (at position past + t) may see key j (j ≤ past + t), MASKED after it,
 * which also hides a KV buffer's unused positions.
 */
function causalMask(past: number, T: number, keys: number): Tensor2D {
  const mask = new Float32Array(T * keys);
  for (let t = 0; t < T; t++) mask.fill(MASKED, t * keys + past + t + 1, (t + 1) * keys);
  return tensor2d(mask, [T, keys]);
}

serialization.registerClass(TokenEmbedding);
serialization.registerClass(RMSNorm);
serialization.registerClass(Linear);
serialization.registerClass(GatedMLP);
serialization.registerClass(CausalSelfAttention);

/**
 * A decoder-only causal LM (Qwen3-MoE, Mixtral) built from its config:
 *
 *   ids [B, T] → embed_tokens → N × [ x += self_attn(input_layernorm(x));
 *                                     x += moe(post_attention_layernorm(x)) | mlp(…) ]
 *              → norm → lm_head → logits [B, T, V]
 *
 * where moe = router `gate` (Linear) then this package's `FusedMoE` layer. The layers are wired once
 * into a functional `tf.LayersModel` (full-sequence forward, savable); `forward` and `generate` run
 * the same layers eagerly, with a KV cache for incremental decoding.
 */
import {Tensor, Tensor2D, Tensor3D, add, argMax, keep, reshape, slice, tensor2d, tidy} from '@tensorflow/tfjs-core';
import {LayersModel, SymbolicTensor, input, layers, model} from '@tensorflow/tfjs-layers';
import {FusedMoE} from '../layers/fused_moe_layer';
import {CheckpointTensor, PackedTensor} from '../io/packed_tensor';
import {CausalLMConfig, MODEL_TYPES} from './config';
import {CausalSelfAttention, CheckpointWeights, GatedMLP, LayerKV, Linear, RMSNorm, TokenEmbedding} from './layers';
import {SamplingOptions, sampleToken, seededRandom} from './sampling';

const NAME = 'CausalLM';

interface DecoderLayer {
  inputNorm: RMSNorm;
  attn: CausalSelfAttention;
  postNorm: RMSNorm;
  /** MoE layers: the router and the experts. */
  router: Linear | null;
  moe: FusedMoE | null;
  /** Dense layers. */
  mlp: GatedMLP | null;
}

/** Keys and values of every decoder layer for the positions seen so far (one sequence batch). */
export class KVCache {
  /** Positions already in the cache. */
  length = 0;
  batchSize: number | null = null;
  layers: Array<LayerKV | null>;

  constructor(numLayers: number) {
    this.layers = new Array(numLayers).fill(null);
  }

  /** Takes ownership of the new keys and values and frees the old ones. */
  update(kv: LayerKV[], length: number, batchSize: number): void {
    this.freeTensors();
    this.layers = kv;
    this.length = length;
    this.batchSize = batchSize;
  }

  dispose(): void {
    this.freeTensors();
    this.layers = this.layers.map(() => null);
    this.length = 0;
    this.batchSize = null;
  }

  private freeTensors(): void {
    for (const l of this.layers) {
      l?.key.dispose();
      l?.value.dispose();
    }
  }
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Called with each new id as soon as it is chosen; `ms` is that step's wall time (prefill for index 0). */
  onToken?: (id: number, info: {index: number; ms: number}) => void;
  /** Generation stops after emitting one of these (e.g. the tokenizer's EOS id). */
  stopTokenIds?: number[];
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

export class CausalLM {
  readonly config: CausalLMConfig;
  /** The same layers as a functional model: ids [B, T] int32 → logits [B, T, V], no cache. */
  readonly layersModel: LayersModel;
  private readonly embed: TokenEmbedding;
  private readonly decoder: DecoderLayer[] = [];
  private readonly norm: RMSNorm;
  private readonly lmHead: Linear;
  private disposed = false;

  /** Builds the model with placeholder weights (zeros, norms ones); `loadWeights` fills them. */
  constructor(config: CausalLMConfig) {
    if (config == null || !MODEL_TYPES.includes(config.modelType) || !Array.isArray(config.feedForward)) {
      throw new Error(`${NAME}: 'config' must be what parseCausalLMConfig(config.json) returns but got ` +
          `${JSON.stringify(config)?.slice(0, 80)}`);
    }
    this.config = config;
    const c = config;
    const ids = input({shape: [null], dtype: 'int32', name: 'input_ids'});
    this.embed = new TokenEmbedding({name: 'model.embed_tokens', vocabSize: c.vocabSize, hiddenSize: c.hiddenSize});
    let x = this.embed.apply(ids) as SymbolicTensor;
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const p = `model.layers.${i}`;
      const l: DecoderLayer = {
        inputNorm: new RMSNorm({name: `${p}.input_layernorm`, eps: c.rmsNormEps}),
        attn: new CausalSelfAttention({name: `${p}.self_attn`, numHeads: c.numAttentionHeads,
          numKeyValueHeads: c.numKeyValueHeads, headDim: c.headDim, ropeTheta: c.ropeTheta, qkNorm: c.qkNorm,
          rmsNormEps: c.rmsNormEps}),
        postNorm: new RMSNorm({name: `${p}.post_attention_layernorm`, eps: c.rmsNormEps}),
        router: null, moe: null, mlp: null,
      };
      const attn = l.attn.apply(l.inputNorm.apply(x)) as SymbolicTensor;
      x = layers.add({name: `${p}.attn_residual`}).apply([x, attn]) as SymbolicTensor;
      const h = l.postNorm.apply(x) as SymbolicTensor;
      let ff: SymbolicTensor;
      if (c.feedForward[i] === 'moe') {
        const m = `${p}.${c.feedForwardModule}`;
        l.router = new Linear({name: `${m}.gate`, units: c.numExperts});
        l.moe = new FusedMoE({name: `${m}.experts`, numExperts: c.numExperts, topK: c.numExpertsPerTok,
          hiddenSize: c.hiddenSize, intermediateSize: c.moeIntermediateSize, renormalize: c.normTopkProb});
        ff = l.moe.apply([h, l.router.apply(h) as SymbolicTensor]) as SymbolicTensor;
      } else {
        l.mlp = new GatedMLP({name: `${p}.mlp`, intermediateSize: c.intermediateSize});
        ff = l.mlp.apply(h) as SymbolicTensor;
      }
      x = layers.add({name: `${p}.mlp_residual`}).apply([x, ff]) as SymbolicTensor;
      this.decoder.push(l);
    }
    this.norm = new RMSNorm({name: 'model.norm', eps: c.rmsNormEps});
    this.lmHead = new Linear({name: 'lm_head', units: c.vocabSize});
    const logits = this.lmHead.apply(this.norm.apply(x)) as SymbolicTensor;
    this.layersModel = model({inputs: ids, outputs: logits, name: c.modelType});
  }

  /**
   * Writes a Hugging Face checkpoint's tensors (name → tensor) into the model. Every non-expert key
   * is checked (present, shape) before anything is written; one Error lists all problems. The
   * checkpoint tensors stay the caller's. BF16/F16 tensors outside the experts are widened to float32 (the
   * attention and norms are tfjs float32 ops); the experts keep the checkpoint's format in FusedMoE.
   */
  loadWeights(checkpoint: Map<string, CheckpointTensor>): void {
    this.checkAlive();
    const c = this.config;
    const writes: Array<[string, Tensor, {write(t: Tensor): void; shape: number[]}]> = [];
    const problems: string[] = [];
    const widened: Tensor[] = [];
    const plan = (layer: CheckpointWeights & {name: string}, keyOf: (suffix: string) => string) => {
      for (const [suffix, variable] of layer.checkpointWeights()) {
        const key = keyOf(suffix);
        const stored = checkpoint.get(key);
        let t: Tensor | undefined;
        if (stored instanceof PackedTensor) {
          if (stored.dtype === 'bfloat16' || stored.dtype === 'float16') {
            t = stored.toFloat32();
            widened.push(t);
          } else {
            problems.push(`'${key}' is ${stored.dtype}; outside the experts only float checkpoints are supported`);
            continue;
          }
        } else {
          t = stored;
        }
        if (!t) {
          problems.push(`'${key}' is missing`);
        } else if (t.shape.join() !== variable.shape.join()) {
          problems.push(`'${key}' has shape [${t.shape.join(', ')}] but the config needs [${variable.shape.join(', ')}]`);
        } else {
          writes.push([key, t, variable as unknown as {write(t: Tensor): void; shape: number[]}]);
        }
      }
    };
    const byName = (layer: {name: string}) => (suffix: string) => `${layer.name}.${suffix}`;
    plan(this.embed, byName(this.embed));
    for (const l of this.decoder) {
      for (const layer of [l.inputNorm, l.attn, l.postNorm, l.router, l.mlp]) if (layer) plan(layer, byName(layer));
    }
    plan(this.norm, byName(this.norm));
    // Tied embeddings: the head is a copy of embed_tokens (checkpoints then have no lm_head.weight).
    plan(this.lmHead, c.tieWordEmbeddings ? () => 'model.embed_tokens.weight' : byName(this.lmHead));
    try {
      if (problems.length) {
        throw new Error(`${NAME}.loadWeights: the checkpoint does not fit the ${c.modelType} config: ${problems.join('; ')}`);
      }
      const names = c.expertProjNames;
      for (const [i, l] of this.decoder.entries()) {
        l.moe?.loadWeights(checkpoint, {prefix: `model.layers.${i}.${c.feedForwardModule}`,
          ckptGateProjName: names.gate, ckptUpProjName: names.up, ckptDownProjName: names.down, layout: 'per_expert'});
      }
      for (const [, t, variable] of writes) variable.write(t);
    } finally {
      widened.forEach((t) => t.dispose());
    }
  }

  /** An empty KV cache for `forward(ids, {cache})`; dispose it when done. */
  createCache(): KVCache {
    return new KVCache(this.config.numHiddenLayers);
  }

  /**
   * Logits [B, T, V] float32 of token ids [B, T] int32. With a cache, `ids` continue the cached
   * positions and the cache is extended by them; without one, `ids` are a whole sequence.
   */
  async forward(ids: Tensor, options: {cache?: KVCache} = {}): Promise<Tensor3D> {
    this.checkAlive();
    if (!(ids instanceof Tensor)) {
      throw new Error(`${NAME}.forward: 'ids' must be an int32 Tensor [B, T] but got ${String(ids)}`);
    }
    if (ids.rank !== 2 || ids.dtype !== 'int32' || ids.shape[1] === 0 || ids.shape[0] === 0) {
      throw new Error(`${NAME}.forward: 'ids' must be an int32 Tensor [B, T] with B, T >= 1 but got ${ids.dtype} ` +
          `shape [${ids.shape.join(', ')}]`);
    }
    const cache = options.cache ?? null;
    if (cache != null && !(cache instanceof KVCache)) {
      throw new Error(`${NAME}.forward: 'cache' must come from createCache() but got ${String(cache)}`);
    }
    if (cache?.batchSize != null && cache.length > 0 && cache.batchSize !== ids.shape[0]) {
      throw new Error(`${NAME}.forward: 'ids' has batch ${ids.shape[0]} but the cache holds batch ${cache.batchSize}`);
    }
    // Out-of-range ids would gather garbage (or zeros) silently on some backends: read them back once.
    const values = await ids.data();
    const V = this.config.vocabSize;
    const bad = (values as Int32Array).findIndex((v) => v < 0 || v >= V);
    if (bad >= 0) throw new Error(`${NAME}.forward: 'ids' must be in [0, ${V - 1}] (vocab_size) but got ${values[bad]}`);
    return this.run(ids as Tensor2D, cache, false);
  }

  /**
   * Generates up to `maxNewTokens` ids after `promptIds` (one sequence): the prompt is prefilled in
   * one call, then one token per step with a KV cache. Greedy without `temperature`; otherwise sampled
   * with topK / topP from a `seed`ed generator. Each id also goes to `onToken` as it is chosen.
   *
   * ```js
   * const ids = await lm.generate([151644, 872], {maxNewTokens: 32, onToken: (id) => out.push(id)});
   * ```
   */
  async generate(promptIds: number[], options: GenerateOptions): Promise<number[]> {
    this.checkAlive();
    const o = checkGenerateOptions(promptIds, options, this.config.vocabSize);
    const random = o.temperature ? seededRandom(o.seed ?? Math.floor(Math.random() * 2 ** 32)) : null;
    const cache = this.createCache();
    const out: number[] = [];
    let ids: Tensor2D | null = tensor2d([promptIds], [1, promptIds.length], 'int32');
    try {
      for (let index = 0; index < o.maxNewTokens; index++) {
        const start = now();
        const logits = this.run(ids, cache, true);
        ids.dispose();
        ids = null;
        let next: number;
        try {
          if (random) {
            next = sampleToken(await logits.data() as Float32Array, {temperature: o.temperature!, topK: o.topK,
              topP: o.topP}, random);
          } else {
            const best = tidy(() => argMax(reshape(logits, [-1])));
            next = (await best.data())[0];
            best.dispose();
          }
        } finally {
          logits.dispose();
        }
        out.push(next);
        o.onToken?.(next, {index, ms: now() - start});
        if (o.stopTokenIds?.includes(next)) break;
        ids = tensor2d([[next]], [1, 1], 'int32');
      }
    } finally {
      ids?.dispose();
      cache.dispose();
    }
    return out;
  }

  /** Frees every weight (and the layers model, which shares them). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.layersModel.dispose();
  }

  /** The decoder layers' MoE blocks (for inspection and benchmarks), null for dense layers. */
  get moeLayers(): Array<FusedMoE | null> {
    return this.decoder.map((l) => l.moe);
  }

  private checkAlive(): void {
    if (this.disposed) throw new Error(`${NAME}: the model was disposed`);
  }

  /** Ids known valid → logits of every position, or only the last (`lastOnly`, for decoding). */
  private run(ids: Tensor2D, cache: KVCache | null, lastOnly: boolean): Tensor3D {
    const [B, T] = ids.shape;
    const past = cache?.length ?? 0;
    let kv: LayerKV[] = [];
    const logits = tidy(() => {
      let x = this.embed.apply(ids) as Tensor;
      for (const [i, l] of this.decoder.entries()) {
        const attn = l.attn.attend(l.inputNorm.apply(x) as Tensor, past, cache?.layers[i] ?? null);
        x = add(x, attn.out);
        const h = l.postNorm.apply(x) as Tensor;
        x = add(x, l.moe ? l.moe.apply([h, l.router!.apply(h) as Tensor]) as Tensor : l.mlp!.apply(h) as Tensor);
        if (cache) kv = [...kv, {key: attn.key, value: attn.value}];
      }
      if (lastOnly) x = slice(x, [0, T - 1, 0], [B, 1, this.config.hiddenSize]);
      // The cache outlives this scope.
      for (const {key, value} of kv) {
        keep(key);
        keep(value);
      }
      return this.lmHead.apply(this.norm.apply(x)) as Tensor3D;
    });
    cache?.update(kv, past + T, B);
    return logits;
  }
}

function checkGenerateOptions(promptIds: number[], options: GenerateOptions, vocabSize: number): GenerateOptions {
  const G = `${NAME}.generate`;
  if (!Array.isArray(promptIds) || promptIds.length === 0) {
    throw new Error(`${G}: 'promptIds' must be a non-empty array of token ids but got ${JSON.stringify(promptIds)}`);
  }
  const badId = promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
  if (badId !== undefined) throw new Error(`${G}: 'promptIds' must hold integers in [0, ${vocabSize - 1}] but got ${badId}`);
  if (options == null || typeof options !== 'object') throw new Error(`${G}: options {maxNewTokens, ...} are required`);
  const o = options;
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) {
    throw new Error(`${G}: 'maxNewTokens' must be an integer >= 0 but got ${String(o.maxNewTokens)}`);
  }
  if (o.temperature != null && !(Number.isFinite(o.temperature) && o.temperature >= 0)) {
    throw new Error(`${G}: 'temperature' must be a number >= 0 (0 or absent: greedy) but got ${String(o.temperature)}`);
  }
  if (o.topK != null && !(Number.isInteger(o.topK) && o.topK >= 1)) {
    throw new Error(`${G}: 'topK' must be an integer >= 1 but got ${String(o.topK)}`);
  }
  if (o.topP != null && !(typeof o.topP === 'number' && o.topP > 0 && o.topP <= 1)) {
    throw new Error(`${G}: 'topP' must be in (0, 1] but got ${String(o.topP)}`);
  }
  if (o.seed != null && !Number.isInteger(o.seed)) {
    throw new Error(`${G}: 'seed' must be an integer but got ${String(o.seed)}`);
  }
  if ((o.topK != null || o.topP != null || o.seed != null) && !o.temperature) {
    throw new Error(`${G}: 'topK', 'topP' and 'seed' apply to sampling; set 'temperature' > 0 (without it ` +
        `decoding is greedy)`);
  }
  if (o.onToken != null && typeof o.onToken !== 'function') {
    throw new Error(`${G}: 'onToken' must be a function but got ${String(o.onToken)}`);
  }
  if (o.stopTokenIds != null && !(Array.isArray(o.stopTokenIds) && o.stopTokenIds.every(Number.isInteger))) {
    throw new Error(`${G}: 'stopTokenIds' must be an array of integers but got ${JSON.stringify(o.stopTokenIds)}`);
  }
  return o;
}

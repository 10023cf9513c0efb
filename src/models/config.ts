/**
 * Hugging Face config.json → the plain settings our causal LMs are built from. Reads the keys as
 * transformers 4.x writes them (`num_experts`, `rope_theta`, `rope_scaling`) and as 5.x does
 * (`num_local_experts`, `rope_parameters`). Anything the models here do not implement is an error
 * that names the key, never a silent approximation.
 */

export const MODEL_TYPES = ['qwen3_moe', 'mixtral'] as const;
export type ModelType = typeof MODEL_TYPES[number];

/** What one decoder layer's feed-forward block is. */
export type FeedForwardKind = 'moe' | 'dense';

export interface CausalLMConfig {
  modelType: ModelType;
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Qwen3: RMSNorm over each head of q and k before RoPE. */
  qkNorm: boolean;
  tieWordEmbeddings: boolean;
  /** Per decoder layer. */
  feedForward: FeedForwardKind[];
  numExperts: number;
  numExpertsPerTok: number;
  /** Renormalize the top-k routing weights (Qwen3 `norm_topk_prob`; always for Mixtral). */
  normTopkProb: boolean;
  /** Each expert's intermediate size. */
  moeIntermediateSize: number;
  /** The dense MLP's intermediate size (Qwen3 `mlp_only_layers`, or layers off `decoder_sparse_step`). */
  intermediateSize: number;
  /** Checkpoint module of the feed-forward block: 'mlp' (Qwen3) or 'block_sparse_moe' (Mixtral). */
  feedForwardModule: string;
  /** Checkpoint names of each expert's gate, up and down projections. */
  expertProjNames: {gate: string; up: string; down: string};
}

type Json = Record<string, unknown>;

const fail = (key: string, message: string): never => {
  throw new Error(`config.json: '${key}' ${message}`);
};

function int(c: Json, key: string, min = 1): number {
  const v = c[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    fail(key, `must be an integer >= ${min} but got ${JSON.stringify(v)}`);
  }
  return v as number;
}

function positive(c: Json, key: string, fallback?: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
    fail(key, `must be a positive number but got ${JSON.stringify(v)}`);
  }
  return v as number;
}

function bool(c: Json, key: string, fallback: boolean): boolean {
  const v = c[key] ?? fallback;
  if (typeof v !== 'boolean') fail(key, `must be true or false but got ${JSON.stringify(v)}`);
  return v as boolean;
}

/** The expert count under either name; both present and different is ambiguous. */
function numExperts(c: Json): number {
  const keys = ['num_local_experts', 'num_experts'].filter((k) => c[k] != null);
  if (keys.length === 0) fail('num_local_experts', 'is missing (transformers 4.x names it num_experts)');
  if (keys.length === 2 && c[keys[0]] !== c[keys[1]]) {
    fail(keys[0], `= ${JSON.stringify(c[keys[0]])} disagrees with 'num_experts' = ${JSON.stringify(c.num_experts)}`);
  }
  return int(c, keys[0]);
}

/** rope_theta from `rope_parameters` (5.x) or the top level (4.x); only the default (unscaled) RoPE. */
function ropeTheta(c: Json): number {
  for (const key of ['rope_parameters', 'rope_scaling']) {
    const p = c[key];
    if (p == null) continue;
    if (typeof p !== 'object') fail(key, `must be an object but got ${JSON.stringify(p)}`);
    const params = p as Json;
    const type = params.rope_type ?? params.type ?? 'default';
    if (type !== 'default') {
      fail(`${key}.rope_type`, `= ${JSON.stringify(type)} is not supported (only 'default' RoPE, without scaling)`);
    }
    if (params.partial_rotary_factor != null && params.partial_rotary_factor !== 1) {
      fail(`${key}.partial_rotary_factor`, `= ${JSON.stringify(params.partial_rotary_factor)} is not supported (only 1)`);
    }
    if (key === 'rope_parameters' && params.rope_theta != null) return positive(params, 'rope_theta');
  }
  return positive(c, 'rope_theta', 10000);
}

/** Sliding-window attention is not implemented: an error where a config turns it on for reachable lengths. */
function checkNoSlidingWindow(c: Json, modelType: ModelType): void {
  const window = c.sliding_window;
  if (window == null) return;
  // Qwen3-MoE applies the window only with use_sliding_window; Mixtral whenever it is set.
  if (modelType === 'qwen3_moe' && c.use_sliding_window !== true) return;
  const maxPositions = c.max_position_embeddings;
  if (typeof maxPositions === 'number' && typeof window === 'number' && window >= maxPositions) return;
  fail('sliding_window', `= ${JSON.stringify(window)} is set and active, and sliding-window attention is not supported`);
}

/**
 * Parses a config.json object (as `JSON.parse` gives it).
 *
 * ```js
 * const config = parseCausalLMConfig(JSON.parse(text));   // {modelType: 'qwen3_moe', numExperts: 128, ...}
 * ```
 */
export function parseCausalLMConfig(json: unknown): CausalLMConfig {
  if (json == null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`config.json must hold a JSON object but got ${JSON.stringify(json)}`);
  }
  const c = json as Json;
  const modelType = c.model_type as ModelType;
  if (!MODEL_TYPES.includes(modelType)) {
    fail('model_type', `= ${JSON.stringify(c.model_type)} is not supported; supported are ${MODEL_TYPES.join(', ')}`);
  }
  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu') fail('hidden_act', `= ${JSON.stringify(act)} is not supported (only 'silu')`);
  if (c.attention_bias === true) fail('attention_bias', 'is true; attention projections with bias are not supported');
  checkNoSlidingWindow(c, modelType);

  const hiddenSize = int(c, 'hidden_size');
  const numAttentionHeads = int(c, 'num_attention_heads');
  const numKeyValueHeads = c.num_key_value_heads == null ? numAttentionHeads : int(c, 'num_key_value_heads');
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    fail('num_key_value_heads', `= ${numKeyValueHeads} must divide 'num_attention_heads' = ${numAttentionHeads}`);
  }
  let headDim: number;
  if (c.head_dim != null) {
    headDim = int(c, 'head_dim');
  } else {
    if (hiddenSize % numAttentionHeads !== 0) {
      fail('head_dim', `is not set and 'hidden_size' = ${hiddenSize} is not a multiple of 'num_attention_heads'`);
    }
    headDim = hiddenSize / numAttentionHeads;
  }
  if (headDim % 2 !== 0) fail('head_dim', `= ${headDim} must be even for RoPE`);
  const numHiddenLayers = int(c, 'num_hidden_layers');
  const E = numExperts(c);
  const topK = int(c, 'num_experts_per_tok');
  if (topK > E) fail('num_experts_per_tok', `= ${topK} is more than the ${E} experts`);

  const feedForward: FeedForwardKind[] = [];
  let moeIntermediateSize: number;
  let normTopkProb: boolean;
  if (modelType === 'qwen3_moe') {
    moeIntermediateSize = int(c, 'moe_intermediate_size');
    normTopkProb = bool(c, 'norm_topk_prob', false);
    const step = c.decoder_sparse_step == null ? 1 : int(c, 'decoder_sparse_step');
    const mlpOnly = c.mlp_only_layers ?? [];
    if (!Array.isArray(mlpOnly) || !mlpOnly.every((i) => Number.isInteger(i))) {
      fail('mlp_only_layers', `must be a list of layer indices but got ${JSON.stringify(mlpOnly)}`);
    }
    // transformers Qwen3MoeDecoderLayer: sparse unless listed, and only every `decoder_sparse_step`-th layer.
    for (let i = 0; i < numHiddenLayers; i++) {
      feedForward.push(!(mlpOnly as number[]).includes(i) && (i + 1) % step === 0 ? 'moe' : 'dense');
    }
  } else {
    moeIntermediateSize = int(c, 'intermediate_size');
    normTopkProb = true;  // MixtralSparseMoeBlock always renormalizes the top-k weights
    for (let i = 0; i < numHiddenLayers; i++) feedForward.push('moe');
  }
  const intermediateSize = feedForward.includes('dense') ? int(c, 'intermediate_size') : 0;

  return {
    modelType, vocabSize: int(c, 'vocab_size'), hiddenSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads,
    headDim, rmsNormEps: positive(c, 'rms_norm_eps', 1e-6), ropeTheta: ropeTheta(c), qkNorm: modelType === 'qwen3_moe',
    tieWordEmbeddings: bool(c, 'tie_word_embeddings', false), feedForward, numExperts: E, numExpertsPerTok: topK,
    normTopkProb, moeIntermediateSize, intermediateSize,
    feedForwardModule: modelType === 'qwen3_moe' ? 'mlp' : 'block_sparse_moe',
    expertProjNames: modelType === 'qwen3_moe' ? {gate: 'gate_proj', up: 'up_proj', down: 'down_proj'} :
      {gate: 'w1', up: 'w3', down: 'w2'},
  };
}

/**
 * tfjs-fused-moe/models: decoder-only MoE causal LMs (Qwen3-MoE, Mixtral) whose MoE blocks are this
 * package's `FusedMoE` layer, loaded straight from a Hugging Face folder or URL. Its own entry point so
 * that the core package stays small; importing it registers the cpu kernels (through the core) and
 * the model's layer classes for `tf.loadLayersModel`.
 *
 * ```js
 * const lm = await loadCausalLM('models/qwen3moe-tiny', {onProgress: (p) => console.log(p)});
 * const logits = await lm.forward(tf.tensor2d([[1, 2, 3]], [1, 3], 'int32'));   // [1, 3, V]
 * const ids = await lm.generate([1, 2, 3], {maxNewTokens: 16, onToken: (id) => console.log(id)});
 * lm.dispose();
 * ```
 */
import './index';

export {loadCausalLM, LoadCausalLMOptions, LoadProgress} from './models/load';
export {CausalLM, KVCache, GenerateOptions} from './models/causal_lm';
export {parseCausalLMConfig, CausalLMConfig, FeedForwardKind, ModelType, MODEL_TYPES} from './models/config';
export {TokenEmbedding, RMSNorm, Linear, GatedMLP, CausalSelfAttention, AttentionSettings, LayerKV, CheckpointWeights,
  linear, rmsNorm, ropeTables} from './models/layers';
export {SamplingOptions, sampleToken, seededRandom} from './models/sampling';

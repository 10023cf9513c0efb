/**
 * One MoE layer from a safetensors checkpoint of the fixture kind (test/fixtures/): the weights under
 * their real Hugging Face names, the vLLM config in `__metadata__.config`, and the layer's input and
 * expected output under `input.*` / `expected.*`. Shared by the Node demo and the browser page.
 *
 *   checkpoint tensors ──▶ FusedMoE layer (w13, w2, bias) ──▶ layer([hiddenStates, routerLogits]) ──▶ out [T, H]
 *                                                  └──▶ selectExperts ──▶ tokens per expert (for display)
 */
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoE, FusedMoEOptions, selectExperts, CheckpointTensor} from '../../src';

/** The vLLM config stored in each fixture (snake_case, as vLLM names it). */
export interface CheckpointConfig {
  num_experts: number; top_k: number; hidden_size: number; intermediate_size: number; renormalize: boolean;
  use_grouped_topk: boolean; num_expert_group: number | null; topk_group: number | null;
  scoring_func: 'softmax' | 'sigmoid'; routed_scaling_factor: number; activation: 'silu' | 'gelu';
  apply_router_weight_on_input: boolean; custom_routing: 'llama4' | null; family: string;
  checkpoint_prefix: string; checkpoint_layout: 'per_expert' | 'fused_3d'; expert_names: [string, string, string];
}

/** The FusedMoE layer's config: vLLM's names in camelCase. */
export interface LayerConfig {
  numExperts: number; topK: number; hiddenSize: number; intermediateSize: number; renormalize: boolean;
  useGroupedTopk: boolean; numExpertGroup?: number; topkGroup?: number; scoringFunc: 'softmax' | 'sigmoid';
  routedScalingFactor: number; activation: 'silu' | 'gelu'; applyRouterWeightOnInput: boolean;
  customRoutingFunction?: 'llama4'; eScoreCorrectionBias: boolean;
}

export function layerConfig(c: CheckpointConfig, hasBias: boolean): LayerConfig {
  return {
    numExperts: c.num_experts, topK: c.top_k, hiddenSize: c.hidden_size, intermediateSize: c.intermediate_size,
    renormalize: c.renormalize, useGroupedTopk: c.use_grouped_topk, numExpertGroup: c.num_expert_group ?? undefined,
    topkGroup: c.topk_group ?? undefined, scoringFunc: c.scoring_func, routedScalingFactor: c.routed_scaling_factor,
    activation: c.activation, applyRouterWeightOnInput: c.apply_router_weight_on_input,
    customRoutingFunction: c.custom_routing ?? undefined, eScoreCorrectionBias: hasBias,
  };
}

const FAMILY_NAMES: Record<string, string> = {
  mixtral: 'Mixtral-style', deepseekv3: 'DeepSeek-V3-style', qwen3moe: 'Qwen3-MoE-style',
  qwen2moe: 'Qwen2-MoE-style', llama4: 'Llama-4-style',
};

export class CheckpointLayer {
  readonly tokens: number;

  private constructor(readonly name: string, readonly checkpoint: CheckpointConfig, readonly config: LayerConfig,
      readonly layer: FusedMoE, readonly hiddenStates: tf.Tensor2D, readonly routerLogits: tf.Tensor2D,
      readonly expected: Float32Array, private readonly bias: tf.Tensor1D | undefined) {
    this.tokens = hiddenStates.shape[0];
  }

  /**
   * Builds the FusedMoE layer and loads it from a checkpoint's tensors (as `readSafetensors` /
   * `loadSafetensors` return them), through the layer's own `loadWeights`. The caller keeps (and
   * disposes) `tensors`; the layer holds copies.
   */
  static async fromTensors(name: string, checkpoint: CheckpointConfig, tensors: Map<string, CheckpointTensor>):
      Promise<CheckpointLayer> {
    const get = (key: string): tf.Tensor => {
      const t = tensors.get(key);
      if (t == null) throw new Error(`checkpoint '${name}' has no tensor '${key}'`);
      if (!(t instanceof tf.Tensor)) throw new Error(`checkpoint '${name}': '${key}' is ${t.dtype}, expected float32`);
      return t;
    };
    const prefix = checkpoint.checkpoint_prefix;
    const biasKey = `${prefix}.gate.e_score_correction_bias`;
    const config = layerConfig(checkpoint, tensors.has(biasKey));
    const layer = new FusedMoE(config);
    const [gate, up, down] = checkpoint.expert_names;
    layer.loadWeights(tensors, {prefix, ckptGateProjName: gate, ckptUpProjName: up, ckptDownProjName: down});
    // Kept only to show the routing (selectExperts) beside the layer's output.
    const bias = config.eScoreCorrectionBias ? tf.clone(get(biasKey)) as tf.Tensor1D : undefined;
    const expected = await get('expected.output').data() as Float32Array;
    return new CheckpointLayer(name, checkpoint, config, layer, tf.clone(get('input.hidden_states')) as tf.Tensor2D,
        tf.clone(get('input.router_logits')) as tf.Tensor2D, expected, bias);
  }

  /** One line: family, experts, routing, sizes. */
  describe(): string {
    const c = this.config;
    const routing = [
      c.useGroupedTopk ? `grouped top-${c.topK} (${c.numExpertGroup} groups, keep ${c.topkGroup})` : `top-${c.topK}`,
      c.customRoutingFunction ?? c.scoringFunc,
      c.eScoreCorrectionBias ? '+ e_score_correction_bias' : '',
      c.renormalize ? 'renormalized' : '',
      c.routedScalingFactor !== 1 ? `× ${c.routedScalingFactor}` : '',
    ].filter(Boolean).join(' ');
    return `${FAMILY_NAMES[this.checkpoint.family] ?? this.checkpoint.family}, ${c.numExperts} experts, ${routing}, ` +
        `${c.activation}, H=${c.hiddenSize} I=${c.intermediateSize}, ${this.tokens} tokens`;
  }

  /** The layer's forward pass on the stored input: out [T, H]. */
  forward(): tf.Tensor2D {
    return this.layer.apply([this.hiddenStates, this.routerLogits]) as tf.Tensor2D;
  }

  /** How many of the T·k (token, slot) assignments went to each expert. */
  async tokensPerExpert(): Promise<number[]> {
    const c = this.config;
    const routingOptions: FusedMoEOptions = {
      topK: c.topK, renormalize: c.renormalize, useGroupedTopk: c.useGroupedTopk, numExpertGroup: c.numExpertGroup,
      topkGroup: c.topkGroup, scoringFunc: c.scoringFunc, routedScalingFactor: c.routedScalingFactor,
      customRoutingFunction: c.customRoutingFunction, eScoreCorrectionBias: this.bias,
    };
    const {topkWeights, topkIds} = selectExperts(this.hiddenStates, this.routerLogits, routingOptions);
    const ids = await topkIds.data();
    tf.dispose([topkWeights, topkIds]);
    const counts = new Array<number>(c.numExperts).fill(0);
    for (const id of ids) counts[id]++;
    return counts;
  }

  dispose(): void {
    this.layer.dispose();
    tf.dispose([this.hiddenStates, this.routerLogits]);
    if (this.bias) this.bias.dispose();
  }
}

export interface LayerRun {
  name: string;
  layer: CheckpointLayer;
  tokens: number;
  tokensPerExpert: number[];
  firstCallMs: number;
  latenciesMs: number[];
  output: Float32Array;
  maxError: number;
  tolerance: number;
  ok: boolean;
}

/** Runs the layer once (setup, shader compiles), then `timedCalls` times, and checks the last output. */
export async function runCheckpointLayer(layer: CheckpointLayer, timedCalls: number): Promise<LayerRun> {
  const call = async (): Promise<{ms: number; output: Float32Array}> => {
    const start = performance.now();
    const out = layer.forward();
    // Reading the result back waits for the device: this is the latency a caller sees.
    const output = await out.data() as Float32Array;
    const ms = performance.now() - start;
    out.dispose();
    return {ms, output};
  };
  const first = await call();
  const latenciesMs: number[] = [];
  let output = first.output;
  for (let i = 0; i < timedCalls; i++) {
    const r = await call();
    latenciesMs.push(r.ms);
    output = r.output;
  }
  const {maxError, tolerance} = compareToExpected(output, layer.expected);
  return {name: layer.name, layer, tokens: layer.tokens, tokensPerExpert: await layer.tokensPerExpert(),
    firstCallMs: first.ms, latenciesMs, output, maxError, tolerance, ok: maxError <= tolerance};
}

/** The fixtures' tolerance: |out - expected| ≤ 1e-4·max|expected| + 1e-5 everywhere (NaN fails). */
export function compareToExpected(output: ArrayLike<number>, expected: ArrayLike<number>):
    {maxError: number; tolerance: number} {
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) maxAbs = Math.max(maxAbs, Math.abs(expected[i]));
  let maxError = output.length === expected.length ? 0 : Infinity;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(output[i] - expected[i]);
    maxError = Number.isNaN(err) ? Infinity : Math.max(maxError, err);
  }
  return {maxError, tolerance: 1e-4 * maxAbs + 1e-5};
}

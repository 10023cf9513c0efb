/**
 * The golden Hugging Face fixtures (test/fixtures/*.safetensors, copied from the shared set):
 * real checkpoint names, inputs and expected outputs. Read with the package's own safetensors parser.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {FusedMoEOptions} from '../../src';
import {SafetensorsEntry, parseSafetensors, readSafetensors} from '../../src/io/safetensors';
import {disposeCheckpointTensors} from '../../src/io/packed_tensor';

export const FIXTURES = ['mixtral-t1', 'mixtral-t37', 'qwen3moe-t19', 'qwen2moe-t9', 'deepseekv3-t3',
  'deepseekv3-t41', 'llama4-t13'];

export interface FixtureConfig {
  num_experts: number; top_k: number; hidden_size: number; intermediate_size: number; renormalize: boolean;
  use_grouped_topk: boolean; num_expert_group: number | null; topk_group: number | null;
  scoring_func: 'softmax' | 'sigmoid'; routed_scaling_factor: number; activation: 'silu' | 'gelu';
  apply_router_weight_on_input: boolean; custom_routing: 'llama4' | null; family: string;
  checkpoint_prefix: string; checkpoint_layout: 'per_expert' | 'fused_3d'; expert_names: [string, string, string];
  router_weight: string; tokens: number;
}

export interface Fixture {
  name: string;
  config: FixtureConfig;
  entries: Map<string, SafetensorsEntry>;
  bytes: Uint8Array;
}

declare const __karma__: unknown;

export async function fixtureBytes(name: string): Promise<Uint8Array> {
  if (typeof __karma__ !== 'undefined') {
    const res = await fetch(`/base/test/fixtures/${name}.safetensors`);
    if (!res.ok) throw new Error(`fixture ${name}: HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  }
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const fs = require('fs') as typeof import('fs');
  const path = require('path') as typeof import('path');
  return new Uint8Array(fs.readFileSync(path.join(__dirname, '..', 'fixtures', `${name}.safetensors`)));
}

export async function loadFixture(name: string): Promise<Fixture> {
  const bytes = await fixtureBytes(name);
  const {metadata, entries} = parseSafetensors(bytes);
  return {name, config: JSON.parse(metadata.config), entries, bytes};
}

export function entry(fx: Fixture, key: string): SafetensorsEntry {
  const e = fx.entries.get(key);
  if (!e) throw new Error(`fixture ${fx.name} has no tensor '${key}'`);
  return e;
}

/** The op options a fixture's vLLM config means. */
export function fixtureOptions(c: FixtureConfig): FusedMoEOptions {
  return {
    topK: c.top_k, renormalize: c.renormalize, useGroupedTopk: c.use_grouped_topk,
    numExpertGroup: c.num_expert_group ?? undefined, topkGroup: c.topk_group ?? undefined,
    scoringFunc: c.scoring_func, routedScalingFactor: c.routed_scaling_factor,
    customRoutingFunction: c.custom_routing ?? undefined, activation: c.activation,
    applyRouterWeightOnInput: c.apply_router_weight_on_input,
  };
}

/**
 * w13 [E, 2I, H] (gate rows, then up rows) and w2 [E, H, I] built straight from the checkpoint
 * tensors, independently of the layer's loader, for the op-level tests.
 */
export function fixtureExpertWeights(fx: Fixture): {w13: Float32Array; w2: Float32Array} {
  const {num_experts: E, hidden_size: H, intermediate_size: I, checkpoint_prefix: prefix} = fx.config;
  const w13 = new Float32Array(E * 2 * I * H);
  const w2 = new Float32Array(E * H * I);
  if (fx.config.checkpoint_layout === 'fused_3d') {
    const gateUp = entry(fx, `${prefix}.experts.gate_up_proj`).values;  // [E, H, 2I]
    const down = entry(fx, `${prefix}.experts.down_proj`).values;       // [E, I, H]
    for (let e = 0; e < E; e++) {
      for (let r = 0; r < 2 * I; r++) for (let h = 0; h < H; h++) w13[(e * 2 * I + r) * H + h] = gateUp[(e * H + h) * 2 * I + r];
      for (let h = 0; h < H; h++) for (let i = 0; i < I; i++) w2[(e * H + h) * I + i] = down[(e * I + i) * H + h];
    }
  } else {
    const [gate, up, down] = fx.config.expert_names;
    for (let e = 0; e < E; e++) {
      w13.set(entry(fx, `${prefix}.experts.${e}.${gate}.weight`).values, e * 2 * I * H);
      w13.set(entry(fx, `${prefix}.experts.${e}.${up}.weight`).values, (e * 2 + 1) * I * H);
      w2.set(entry(fx, `${prefix}.experts.${e}.${down}.weight`).values, e * H * I);
    }
  }
  return {w13, w2};
}

/** A float32 fixture file as tensors (these fixtures hold only F32 and I32, so no PackedTensor appears). */
export function readFloatCheckpoint(bytes: Uint8Array): Map<string, tf.Tensor> {
  const m = readSafetensors(bytes);
  const out = new Map<string, tf.Tensor>();
  for (const [k, t] of m) {
    if (!(t instanceof tf.Tensor)) {
      disposeCheckpointTensors(m.values());
      throw new Error(`fixture tensor '${k}' is ${t.dtype}, not float32/int32`);
    }
    out.set(k, t);
  }
  return out;
}

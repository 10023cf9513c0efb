/** Layer configs and load options that a golden fixture's vLLM config means (shared by the layer tests). */
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoE, FusedMoELayerArgs, LoadWeightsOptions} from '../src';
import {Fixture, FixtureConfig, entry} from './helpers/fixtures';

export function layerConfig(c: FixtureConfig, extra: Partial<FusedMoELayerArgs> = {}): FusedMoELayerArgs {
  const bias = c.family === 'deepseekv3';
  return {
    numExperts: c.num_experts, topK: c.top_k, hiddenSize: c.hidden_size, intermediateSize: c.intermediate_size,
    renormalize: c.renormalize, useGroupedTopk: c.use_grouped_topk, numExpertGroup: c.num_expert_group,
    topkGroup: c.topk_group, scoringFunc: c.scoring_func, routedScalingFactor: c.routed_scaling_factor,
    activation: c.activation, applyRouterWeightOnInput: c.apply_router_weight_on_input,
    customRoutingFunction: c.custom_routing, eScoreCorrectionBias: bias, ...extra,
  };
}

export function loadOptions(c: FixtureConfig): LoadWeightsOptions {
  const [gate, up, down] = c.expert_names;
  return {prefix: c.checkpoint_prefix, ckptGateProjName: gate, ckptUpProjName: up, ckptDownProjName: down};
}

export function fixtureInputs(fx: Fixture): {hidden: tf.Tensor2D; logits: tf.Tensor2D} {
  const c = fx.config;
  return {
    hidden: tf.tensor2d(entry(fx, 'input.hidden_states').values, [c.tokens, c.hidden_size]),
    logits: tf.tensor2d(entry(fx, 'input.router_logits').values, [c.tokens, c.num_experts]),
  };
}

/** The sharding cases of the issue: every rank of tp × ep, whose partial outputs sum to the layer's output. */
export const SHARDINGS: Array<{tp: number; ep: number}> =
  [{tp: 1, ep: 1}, {tp: 2, ep: 1}, {tp: 1, ep: 2}, {tp: 1, ep: 3}, {tp: 2, ep: 2}];

export function ranks(tp: number, ep: number): Array<{tpSize: number; tpRank: number; epSize: number; epRank: number}> {
  const out = [];
  for (let e = 0; e < ep; e++) for (let t = 0; t < tp; t++) out.push({tpSize: tp, tpRank: t, epSize: ep, epRank: e});
  return out;
}

/** Builds each rank's layer, loads it from the checkpoint, runs it and returns the sum of the partials. */
export async function shardedOutput(fx: Fixture, checkpoint: Map<string, tf.Tensor>, tp: number, ep: number,
    extra: Partial<FusedMoELayerArgs> = {}): Promise<Float32Array> {
  const {hidden, logits} = fixtureInputs(fx);
  const sum = new Float32Array(fx.config.tokens * fx.config.hidden_size);
  for (const rank of ranks(tp, ep)) {
    const layer = new FusedMoE(layerConfig(fx.config, {...rank, ...extra}));
    layer.loadWeights(checkpoint, loadOptions(fx.config));
    const out = layer.apply([hidden, logits]) as tf.Tensor;
    const values = await out.data();
    for (let i = 0; i < sum.length; i++) sum[i] += values[i];
    out.dispose();
    layer.dispose();
  }
  tf.dispose([hidden, logits]);
  return sum;
}

/** tfjs-converter graph models whose nodes are FusedMoE / MoeFusedTopK / MoeGroupedTopK / MoeFusedExperts. */
import * as tfconverter from '@tensorflow/tfjs-converter';
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {registerGraphModelOps} from '../src';
import {expectClose} from './helpers/compare';
import {describeBackends, expectNoLeaks} from './helpers/env';
import {Fixture, entry, fixtureExpertWeights, loadFixture} from './helpers/fixtures';

type Attr = {i: string} | {f: number} | {b: boolean} | {s: string};
const int = (v: number): Attr => ({i: String(v)});
// btoa, not Buffer: this suite also runs in the browser. The strings here are ASCII.
const str = (v: string): Attr => ({s: btoa(v)});
const dims = (shape: number[]) => ({dim: shape.map((d) => ({size: String(d)}))});

function placeholder(name: string, shape: number[], dtype = 'DT_FLOAT') {
  return {name, op: 'Placeholder', attr: {dtype: {type: dtype}, shape: {shape: dims(shape)}}};
}

function constant(name: string, shape: number[], dtype = 'DT_FLOAT') {
  return {name, op: 'Const', attr: {dtype: {type: dtype}, value: {tensor: {dtype, tensorShape: dims(shape)}}}};
}

/** A graph model in memory: placeholders hidden/logits, the fixture's w13/w2 (and bias) as weights, then `nodes`. */
async function graphModel(fx: Fixture, nodes: object[]): Promise<tfconverter.GraphModel> {
  const c = fx.config;
  const E = c.num_experts, H = c.hidden_size, I = c.intermediate_size;
  const {w13, w2} = fixtureExpertWeights(fx);
  const weights: tf.NamedTensorMap = {w13: tf.tensor3d(w13, [E, 2 * I, H]), w2: tf.tensor3d(w2, [E, H, I])};
  const bias = fx.entries.get(`${c.checkpoint_prefix}.gate.e_score_correction_bias`);
  if (bias) weights.bias = tf.tensor1d(bias.values);
  const {data, specs} = await tf.io.encodeWeights(weights);
  tf.dispose(Object.values(weights));
  const modelTopology = {
    node: [placeholder('hidden', [-1, H]), placeholder('logits', [-1, E]), constant('w13', [E, 2 * I, H]),
      constant('w2', [E, H, I]), ...(bias ? [constant('bias', [E])] : []), ...nodes],
    library: {}, versions: {producer: 1},
  };
  return tfconverter.loadGraphModel(tf.io.fromMemory({modelTopology, weightSpecs: specs, weightData: data}));
}

function routingAttrs(fx: Fixture): Record<string, Attr> {
  const c = fx.config;
  const attrs: Record<string, Attr> = {topK: int(c.top_k), renormalize: {b: c.renormalize},
    scoringFunc: str(c.scoring_func), routedScalingFactor: {f: c.routed_scaling_factor}};
  if (c.use_grouped_topk) Object.assign(attrs, {numExpertGroup: int(c.num_expert_group!), topkGroup: int(c.topk_group!)});
  return attrs;
}

async function runGraph(model: tfconverter.GraphModel, fx: Fixture, output: string): Promise<Float32Array> {
  const c = fx.config;
  const hidden = tf.tensor2d(entry(fx, 'input.hidden_states').values, [c.tokens, c.hidden_size]);
  const logits = tf.tensor2d(entry(fx, 'input.router_logits').values, [c.tokens, c.num_experts]);
  const out = model.execute({hidden, logits}, output) as tf.Tensor;
  const values = await out.data() as Float32Array;
  tf.dispose([hidden, logits, out]);
  return values;
}

describeBackends('graph models with MoE nodes', () => {
  before(() => {
    expect(registerGraphModelOps(tfconverter)).to.deep.equal(['FusedMoE', 'MoeFusedTopK', 'MoeGroupedTopK',
      'MoeFusedExperts']);
  });

  for (const name of ['mixtral-t37', 'deepseekv3-t41', 'llama4-t13']) {
    it(`${name}: one FusedMoE node reproduces the expected output`, async () => {
      const fx = await loadFixture(name);
      const c = fx.config;
      const attrs: Record<string, Attr> = {...routingAttrs(fx), useGroupedTopk: {b: c.use_grouped_topk},
        activation: str(c.activation), applyRouterWeightOnInput: {b: c.apply_router_weight_on_input}};
      if (c.custom_routing) attrs.customRoutingFunction = str(c.custom_routing);
      const hasBias = c.family === 'deepseekv3';
      const model = await graphModel(fx, [{name: 'moe', op: 'FusedMoE',
        input: ['hidden', 'logits', 'w13', 'w2', ...(hasBias ? ['bias'] : [])], attr: attrs}]);
      await expectNoLeaks(async () => {
        expectClose(await runGraph(model, fx, 'moe'), entry(fx, 'expected.output').values, `${name} graph`);
      });
      model.dispose();
    });
  }

  for (const name of ['qwen3moe-t19', 'deepseekv3-t3']) {
    it(`${name}: router and experts as separate nodes (two outputs wired by index)`, async () => {
      const fx = await loadFixture(name);
      const c = fx.config;
      const hasBias = c.family === 'deepseekv3';
      const model = await graphModel(fx, [
        {name: 'topk', op: c.use_grouped_topk ? 'MoeGroupedTopK' : 'MoeFusedTopK',
          input: ['logits', ...(hasBias ? ['bias'] : [])], attr: routingAttrs(fx)},
        {name: 'experts', op: 'MoeFusedExperts', input: ['hidden', 'w13', 'w2', 'topk:0', 'topk:1'],
          attr: {activation: str(c.activation), globalNumExperts: int(c.num_experts)}},
      ]);
      await expectNoLeaks(async () => {
        expectClose(await runGraph(model, fx, 'experts'), entry(fx, 'expected.output').values, `${name} graph`);
      });
      model.dispose();
    });
  }

  it('a node without a required attribute fails naming it', async () => {
    const fx = await loadFixture('mixtral-t1');
    const model = await graphModel(fx, [{name: 'moe', op: 'FusedMoE', input: ['hidden', 'logits', 'w13', 'w2'],
      attr: {renormalize: {b: true}}}]);
    await runGraph(model, fx, 'moe').then(() => expect.fail('no error'), (e: Error) =>
      expect(e.message).to.match(/graph op 'FusedMoE': attribute 'topK' \(number\) is required/));
    model.dispose();
  });
});

/** The FusedMoE layer as a tfjs-layers citizen: construction checks, symbolic apply, save/load, config, repr. */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {expect} from 'chai';
import {FusedMoE, FusedMoEConfig, readSafetensors, disposeCheckpointTensors} from '../src';
import {expectClose} from './helpers/compare';
import {describeBackends, expectNoLeaks, saveArtifacts} from './helpers/env';
import {Fixture, entry, loadFixture} from './helpers/fixtures';
import {fixtureInputs, layerConfig, loadOptions} from './layer_helpers';

const MIXTRAL: FusedMoEConfig = {numExperts: 8, topK: 2, hiddenSize: 64, intermediateSize: 96};

describe('FusedMoE construction checks', () => {
  const bad: Array<[string, Partial<FusedMoEConfig>, RegExp]> = [
    ['topK > numExperts', {topK: 9}, /FusedMoE: 'topK' must be an integer in \[1, 8\] but got 9/],
    ['non-integer hiddenSize', {hiddenSize: 6.5}, /'hiddenSize' must be an integer/],
    ['intermediateSize not divisible by tpSize', {tpSize: 5}, /'intermediateSize' = 96 must be divisible by 'tpSize' = 5/],
    ['tpRank out of range', {tpSize: 2, tpRank: 2}, /'tpRank' must be an integer in \[0, 1\] but got 2/],
    ['epSize above the experts', {epSize: 9}, /'epSize' must be an integer in \[1, 8\]/],
    ['epRank out of range', {epSize: 2, epRank: -1}, /'epRank' must be an integer in \[0, 1\]/],
    ['grouping that does not divide the experts', {useGroupedTopk: true, numExpertGroup: 3, topkGroup: 1},
      /'numExperts' = 8 must divide evenly into 'numExpertGroup' = 3 groups/],
    ['grouped top-k without its groups', {useGroupedTopk: true}, /'useGroupedTopk' needs 'numExpertGroup' and 'topkGroup'/],
    ['topkGroup > numExpertGroup', {useGroupedTopk: true, numExpertGroup: 4, topkGroup: 5}, /'topkGroup' must be an integer in \[1, 4\]/],
    ['too few experts in the kept groups', {topK: 3, useGroupedTopk: true, numExpertGroup: 4, topkGroup: 1},
      /'topK' = 3 is more than the 2 experts/],
    ['unknown scoring', {scoringFunc: 'tanh' as never}, /'scoringFunc' must be one of 'softmax', 'sigmoid' but got "tanh"/],
    ['unknown activation', {activation: 'relu' as never}, /'activation' must be one of 'silu', 'gelu'/],
    ['router weight on the input with topK 2', {applyRouterWeightOnInput: true}, /'applyRouterWeightOnInput' needs 'topK' = 1/],
    ['unknown built-in routing', {customRoutingFunction: 'mixtral' as never}, /'customRoutingFunction' must be one of 'llama4'/],
    ['redundant experts without EPLB', {numRedundantExperts: 2}, /'numRedundantExperts' = 2 needs 'enableEplb: true'/],
    ['EPLB with uneven physical experts', {enableEplb: true, numRedundantExperts: 1, epSize: 2},
      /with EPLB the 9 physical experts .* must divide evenly over 'epSize' = 2/],
    ['renormalize not a boolean', {renormalize: 1 as never}, /'renormalize' must be a boolean but got 1/],
    ['maxWeightBytes of 0', {maxWeightBytes: 0}, /'maxWeightBytes' must be an integer in \[1,/],
  ];
  for (const [what, change, message] of bad) {
    it(what, () => expect(() => new FusedMoE({...MIXTRAL, ...change})).to.throw(message));
  }

  it('a weight limit below one expert says why at build', () => {
    const layer = new FusedMoE({...MIXTRAL, maxWeightBytes: 1000});
    expect(() => layer.apply([tfl.input({shape: [64]}), tfl.input({shape: [8]})])).to.throw(
        /one expert's w13 takes 49152 bytes, more than 'maxWeightBytes' = 1000/);
  });
});

describe('FusedMoE toString (vLLM extra_repr)', () => {
  it('gives the facts of vLLM, grouped fields only when grouped', () => {
    expect(new FusedMoE({...MIXTRAL, tpSize: 2, epSize: 3, epRank: 2, reduceResults: true}).toString()).to.equal(
        'FusedMoE(\n' +
        '  global_num_experts=8, local_num_experts=4, top_k=2, intermediate_size_per_partition=48, tp_size=2,\n' +
        '  ep_size=3, reduce_results=True, renormalize=True, use_grouped_topk=False, scoring_func=\'softmax\', ' +
        'activation=\'silu\'\n)');
    expect(new FusedMoE({numExperts: 256, topK: 8, hiddenSize: 7168, intermediateSize: 2048, useGroupedTopk: true,
      numExpertGroup: 8, topkGroup: 4, scoringFunc: 'sigmoid', enableEplb: true, numRedundantExperts: 32})
        .extraRepr()).to.equal(
        'global_num_experts=288, local_num_experts=288, top_k=8, intermediate_size_per_partition=2048, tp_size=1,\n' +
        'ep_size=1, reduce_results=False, renormalize=True, use_grouped_topk=True, num_expert_group=8, topk_group=4, ' +
        'scoring_func=\'sigmoid\', activation=\'silu\'');
  });
});

describeBackends('FusedMoE in tfjs models', () => {
  const names = ['mixtral-t37', 'deepseekv3-t41', 'llama4-t13'];
  const fixtures: Record<string, Fixture> = {};
  before(async () => {
    for (const n of names) fixtures[n] = await loadFixture(n);
  });

  it('apply on symbolic inputs gives the output shape; computeOutputShape agrees', () => {
    const layer = new FusedMoE(MIXTRAL);
    const out = layer.apply([tfl.input({shape: [64]}), tfl.input({shape: [8]})]) as tfl.SymbolicTensor;
    expect(out.shape).to.deep.equal([null, 64]);
    expect(layer.computeOutputShape([[null, 5, 64], [null, 5, 8]])).to.deep.equal([null, 5, 64]);
    expect(() => layer.computeOutputShape([[null, 63], [null, 8]])).to.throw(/'hiddenStates' must have shape \[T, 64\] \(hiddenSize\) but got \[null, 63\]/);
    expect(() => layer.computeOutputShape([[null, 64], [null, 7]])).to.throw(/'routerLogits' must have shape \[T, 8\]/);
    expect(layer.weights.map((w) => [w.name, w.shape])).to.deep.equal([
      [`${layer.name}/w13`, [8, 192, 64]], [`${layer.name}/w2`, [8, 64, 96]]]);
  });

  for (const [name, extra] of [['mixtral-t37', {}], ['deepseekv3-t41', {}], ['llama4-t13', {}],
    ['mixtral-t37', {enableEplb: true, numRedundantExperts: 3}], ['deepseekv3-t41', {maxWeightBytes: 5 * 2 * 32 * 64 * 4}],
  ] as Array<[string, Partial<FusedMoEConfig>]>) {
    it(`${name} ${JSON.stringify(extra)}: model.save / loadLayersModel (memory) gives identical outputs`, async () => {
      const fx = fixtures[name];
      const c = fx.config;
      const ckpt = readSafetensors(fx.bytes);
      const hiddenIn = tfl.input({shape: [c.hidden_size], name: 'hidden'});
      const logitsIn = tfl.input({shape: [c.num_experts], name: 'logits'});
      const layer = new FusedMoE(layerConfig(c, extra));
      const model = tfl.model({inputs: [hiddenIn, logitsIn], outputs: layer.apply([hiddenIn, logitsIn]) as tfl.SymbolicTensor});
      layer.loadWeights(ckpt, loadOptions(c));
      disposeCheckpointTensors(ckpt.values());
      const {hidden, logits} = fixtureInputs(fx);
      const y = model.predict([hidden, logits], {batchSize: 1024}) as tf.Tensor;
      expectClose(await y.data(), entry(fx, 'expected.output').values, `${name} in a model`);

      const artifacts = await saveArtifacts(model);
      const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
      const reloaded = loaded.layers.find((l) => l instanceof FusedMoE) as FusedMoE;
      expect(reloaded.getConfig()).to.deep.equal(layer.getConfig());
      expect(reloaded.weights.map((w) => w.shape)).to.deep.equal(layer.weights.map((w) => w.shape));
      const y2 = loaded.predict([hidden, logits], {batchSize: 1024}) as tf.Tensor;
      expect(Array.from(await y2.data())).to.deep.equal(Array.from(await y.data()));
      tf.dispose([hidden, logits, y, y2]);
      model.layers.forEach((l) => l.dispose());
      loaded.dispose();
    });
  }

  it('config round-trip: fromConfig(getConfig()) builds the same layer, which reproduces the output', async () => {
    const fx = fixtures['deepseekv3-t41'];
    const layer = new FusedMoE(layerConfig(fx.config, {tpSize: 2, tpRank: 1, epSize: 2, epRank: 0, reduceResults: true}));
    const config = layer.getConfig();
    const json = JSON.parse(JSON.stringify(config));
    const copy = tf.serialization.SerializationMap.getMap().classNameMap.FusedMoE[1](FusedMoE, json) as FusedMoE;
    expect(copy).to.be.instanceOf(FusedMoE);
    expect(copy.getConfig()).to.deep.equal(config);
    expect(copy.toString()).to.equal(layer.toString());
    const ckpt = readSafetensors(fx.bytes);
    await expectNoLeaks(async () => {
      const outs: Float32Array[] = [];
      for (const l of [layer, copy]) {
        l.loadWeights(ckpt, loadOptions(fx.config));
        const {hidden, logits} = fixtureInputs(fx);
        const y = l.apply([hidden, logits]) as tf.Tensor;
        outs.push(await y.data() as Float32Array);
        tf.dispose([hidden, logits, y]);
      }
      expect(Array.from(outs[1])).to.deep.equal(Array.from(outs[0]));
      layer.dispose();
      copy.dispose();
    });
    disposeCheckpointTensors(ckpt.values());
  });

  it('a routing function works but does not serialize, and says so', async () => {
    const layer = new FusedMoE({...MIXTRAL, customRoutingFunction: ({gatingOutput, topK}) => {
      const {values, indices} = tf.topk(gatingOutput, topK);
      return {topkWeights: tf.sigmoid(values) as tf.Tensor2D, topkIds: indices as tf.Tensor2D};
    }});
    expect(() => layer.getConfig()).to.throw(/a 'customRoutingFunction' given as a function cannot be serialized; use a built-in name \('llama4'\)/);
  });

  it('takes [batch, seq, H] inputs and keeps their leading dims', async () => {
    const fx = fixtures['mixtral-t37'];
    const ckpt = readSafetensors(fx.bytes);
    const layer = new FusedMoE(layerConfig(fx.config));
    layer.loadWeights(ckpt, loadOptions(fx.config));
    disposeCheckpointTensors(ckpt.values());
    await expectNoLeaks(async () => {
      const {hidden, logits} = fixtureInputs(fx);
      const h3 = tf.tidy(() => tf.reshape(tf.slice(hidden, [0, 0], [36, 64]), [4, 9, 64]));
      const l3 = tf.tidy(() => tf.reshape(tf.slice(logits, [0, 0], [36, 8]), [4, 9, 8]));
      const y = layer.apply([h3, l3]) as tf.Tensor;
      expect(y.shape).to.deep.equal([4, 9, 64]);
      expectClose(await y.data(), entry(fx, 'expected.output').values.slice(0, 36 * 64), 'rank-3 input');
      expect(() => layer.apply([h3, logits])).to.throw(/'routerLogits' must have shape \[T, 8\] \(numExperts; same rank as hiddenStates\)/);
      tf.dispose([hidden, logits, h3, l3, y]);
    });
    layer.dispose();
  });
});

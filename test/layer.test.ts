/** The FusedMoE layer on every golden fixture: loading from safetensors, and tp/ep sharding. */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as tfl from '@tensorflow/tfjs-layers';
import {FusedMoE, deviceMaxWeightBytes, readSafetensors, disposeCheckpointTensors} from '../src';
import {expectClose} from './helpers/compare';
import {describeBackends, expectNoLeaks} from './helpers/env';
import {FIXTURES, Fixture, entry, loadFixture, readFloatCheckpoint} from './helpers/fixtures';
import {SHARDINGS, fixtureInputs, layerConfig, loadOptions, shardedOutput} from './layer_helpers';

describeBackends('FusedMoE layer: fixtures through loadWeights', () => {
  for (const name of FIXTURES) {
    describe(name, () => {
      let fx: Fixture;
      let checkpoint: Map<string, tf.Tensor>;
      before(async () => {
        fx = await loadFixture(name);
        checkpoint = readFloatCheckpoint(fx.bytes);
      });
      after(() => disposeCheckpointTensors(checkpoint.values()));

      for (const {tp, ep} of SHARDINGS) {
        it(`tp=${tp} × ep=${ep}: the ranks' partial outputs sum to the expected output`, async () => {
          await expectNoLeaks(async () => {
            const sum = await shardedOutput(fx, checkpoint, tp, ep);
            expectClose(sum, entry(fx, 'expected.output').values, `${name} tp=${tp} ep=${ep}`);
          });
        });
      }

      it('splits w13/w2 by expert range under maxWeightBytes and still matches', async () => {
        const c = fx.config;
        const perExpert = 2 * c.intermediate_size * c.hidden_size * 4;
        await expectNoLeaks(async () => {
          const layer = new FusedMoE(layerConfig(c, {maxWeightBytes: 3 * perExpert}));
          layer.loadWeights(checkpoint, loadOptions(c));
          const shards = Math.ceil(c.num_experts / 3);
          expect(layer.expertLayout!.shards.length).to.equal(shards);
          expect(layer.trainableWeights.map((w) => w.shape[0])).to.deep.equal(
              Array.from({length: 2 * shards}, (_, i) => Math.min(3, c.num_experts - 3 * Math.floor(i / 2))));
          const {hidden, logits} = fixtureInputs(fx);
          const out = layer.apply([hidden, logits]) as tf.Tensor;
          expectClose(await out.data(), entry(fx, 'expected.output').values, `${name} split weights`);
          tf.dispose([hidden, logits, out]);
          layer.dispose();
        });
      });
    });
  }
});

describe('FusedMoE.makeExpertParamsMapping', () => {
  it('is vLLM\'s table: physical ids, the logical expert\'s checkpoint fragment, w1/w2/w3', () => {
    // vLLM: FusedMoE.make_expert_params_mapping('w1', 'w2', 'w3', num_experts=2, num_redundant_experts=1)
    expect(FusedMoE.makeExpertParamsMapping('w1', 'w2', 'w3', 2, 1)).to.deep.equal([
      ['experts.w13_', 'experts.0.w1.', 0, 'w1'], ['experts.w2_', 'experts.0.w2.', 0, 'w2'],
      ['experts.w13_', 'experts.0.w3.', 0, 'w3'],
      ['experts.w13_', 'experts.1.w1.', 1, 'w1'], ['experts.w2_', 'experts.1.w2.', 1, 'w2'],
      ['experts.w13_', 'experts.1.w3.', 1, 'w3'],
      ['experts.w13_', 'experts.0.w1.', 2, 'w1'], ['experts.w2_', 'experts.0.w2.', 2, 'w2'],
      ['experts.w13_', 'experts.0.w3.', 2, 'w3'],
    ]);
    expect(FusedMoE.makeExpertParamsMapping('gate_proj', 'down_proj', 'up_proj', 128).length).to.equal(128 * 3);
  });
});

describeBackends('FusedMoE weight binding limit', (backend) => {
  it('reads the device limit on webgpu, else 1 GiB; the layer records what it split by', () => {
    const {bytes, source} = deviceMaxWeightBytes();
    if (backend === 'webgpu') {
      expect(source).to.equal('the device maxStorageBufferBindingSize');
    } else {
      expect([bytes, source]).to.deep.equal([2 ** 30, 'the 1 GiB default']);
    }
    const layer = new FusedMoE({numExperts: 4, topK: 1, hiddenSize: 8, intermediateSize: 4});
    expect(layer.getConfig().maxWeightBytes).to.equal(null);
    layer.apply([tfl.input({shape: [8]}), tfl.input({shape: [4]})]);
    expect(layer.getConfig().maxWeightBytes).to.equal(bytes);
    layer.dispose();
  });

  it('loadWeights takes a Map, [name, tensor] pairs or a NamedTensorMap, and rejects anything else', async () => {
    const fx = await loadFixture('mixtral-t1');
    const ckpt = readSafetensors(fx.bytes);
    const expected = entry(fx, 'expected.output').values;
    for (const form of [ckpt, ckpt.entries(), Object.fromEntries(ckpt)]) {
      const layer = new FusedMoE(layerConfig(fx.config));
      layer.loadWeights(form, loadOptions(fx.config));
      const {hidden, logits} = fixtureInputs(fx);
      const out = layer.apply([hidden, logits]) as tf.Tensor;
      expectClose(await out.data(), expected, 'input form');
      tf.dispose([hidden, logits, out]);
      layer.dispose();
    }
    const layer = new FusedMoE(layerConfig(fx.config));
    expect(() => layer.loadWeights([['a', 3]] as never)).to.throw(/every entry of 'weights' must be \[name: string, Tensor\] but got \['a', 3\]/);
    expect(() => layer.loadWeights(null as never)).to.throw(/'weights' must be a Map/);
    layer.dispose();
    disposeCheckpointTensors(ckpt.values());
  });
});

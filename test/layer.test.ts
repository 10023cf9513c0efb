/** The FusedMoE layer on every golden fixture: loading from safetensors, and tp/ep sharding. */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {FusedMoE, readSafetensors} from '../src';
import {expectClose} from './helpers/compare';
import {describeBackends, expectNoLeaks} from './helpers/env';
import {FIXTURES, Fixture, entry, loadFixture} from './helpers/fixtures';
import {SHARDINGS, fixtureInputs, layerConfig, loadOptions, shardedOutput} from './layer_helpers';

describeBackends('FusedMoE layer: fixtures through loadWeights', () => {
  for (const name of FIXTURES) {
    describe(name, () => {
      let fx: Fixture;
      let checkpoint: Map<string, tf.Tensor>;
      before(async () => {
        fx = await loadFixture(name);
        checkpoint = readSafetensors(fx.bytes);
      });
      after(() => tf.dispose([...checkpoint.values()]));

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

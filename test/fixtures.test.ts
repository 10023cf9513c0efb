/** Every golden Hugging Face fixture through selectExperts, fusedExperts and fusedMoE, on every backend. */
import * as tf from '@tensorflow/tfjs-core';
import {fusedExperts, fusedMoE, selectExperts} from '../src';
import {expectClose, expectWeightsById} from './helpers/compare';
import {describeBackends} from './helpers/env';
import {FIXTURES, Fixture, entry, fixtureExpertWeights, fixtureOptions, loadFixture} from './helpers/fixtures';

describeBackends('HF fixtures', () => {
  for (const name of FIXTURES) {
    describe(name, () => {
      let fx: Fixture;
      let t: Record<string, tf.Tensor>;
      before(async () => {
        fx = await loadFixture(name);
        const c = fx.config;
        const {w13, w2} = fixtureExpertWeights(fx);
        const bias = fx.entries.get(`${c.checkpoint_prefix}.gate.e_score_correction_bias`);
        t = {
          hidden: tf.tensor2d(entry(fx, 'input.hidden_states').values, [c.tokens, c.hidden_size]),
          logits: tf.tensor2d(entry(fx, 'input.router_logits').values, [c.tokens, c.num_experts]),
          w13: tf.tensor3d(w13, [c.num_experts, 2 * c.intermediate_size, c.hidden_size]),
          w2: tf.tensor3d(w2, [c.num_experts, c.hidden_size, c.intermediate_size]),
          expectedWeights: tf.tensor2d(entry(fx, 'expected.topk_weights').values, [c.tokens, c.top_k]),
          expectedIds: tf.tensor2d(entry(fx, 'expected.topk_ids').values, [c.tokens, c.top_k], 'int32'),
          ...(bias ? {bias: tf.tensor1d(bias.values)} : {}),
        };
      });
      after(() => tf.dispose(Object.values(t)));

      const options = () => ({...fixtureOptions(fx.config), eScoreCorrectionBias: t.bias as tf.Tensor1D | undefined});

      it('selectExperts gives the expected experts and weights', async () => {
        const {topkWeights, topkIds} = selectExperts(t.hidden as tf.Tensor2D, t.logits as tf.Tensor2D, options());
        expect2D(topkWeights, [fx.config.tokens, fx.config.top_k]);
        expectWeightsById(await topkWeights.data(), await topkIds.data(), entry(fx, 'expected.topk_weights').values,
            entry(fx, 'expected.topk_ids').values, fx.config.top_k, name);
        tf.dispose([topkWeights, topkIds]);
      });

      it('fusedExperts on the expected routing gives the expected output', async () => {
        const out = fusedExperts(t.hidden as tf.Tensor2D, t.w13 as tf.Tensor3D, t.w2 as tf.Tensor3D,
            t.expectedWeights as tf.Tensor2D, t.expectedIds as tf.Tensor2D, options());
        expectClose(await out.data(), entry(fx, 'expected.output').values, `${name} fusedExperts`);
        out.dispose();
      });

      it('fusedMoE gives the expected output, and the transformers block agrees', async () => {
        const out = fusedMoE(t.hidden as tf.Tensor2D, t.logits as tf.Tensor2D, t.w13 as tf.Tensor3D,
            t.w2 as tf.Tensor3D, options());
        const values = await out.data();
        expectClose(values, entry(fx, 'expected.output').values, `${name} fusedMoE`);
        expectClose(values, entry(fx, 'expected.hf_output').values, `${name} fusedMoE vs transformers`,
            {atol: 1e-4, rtolOfMax: 1e-3});
        out.dispose();
      });
    });
  }
});

function expect2D(x: tf.Tensor, shape: number[]): void {
  if (x.shape.join() !== shape.join()) throw new Error(`shape [${x.shape}] != [${shape}]`);
}

/**
 * EPLB in the layer: redundant replicas of the first experts (vLLM's initial placement), chosen per
 * token as (token mod replicas). Outputs must equal the plain layer's; loads must add up to T·k.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {FusedMoE, readSafetensors, disposeCheckpointTensors} from '../src';
import {expectClose} from './helpers/compare';
import {describeBackends, expectNoLeaks} from './helpers/env';
import {Fixture, entry, loadFixture} from './helpers/fixtures';
import {fixtureInputs, layerConfig, loadOptions, ranks} from './layer_helpers';

/**
 * The physical load, computed here from the expected routing: with R < E redundant experts, logical
 * e < R has replicas [e, E + e], so token t sends it to e when t is even and to E + e when t is odd.
 */
function expectedPhysicalLoad(fx: Fixture, R: number): number[] {
  const {num_experts: E, top_k: k, tokens: T} = fx.config;
  const ids = entry(fx, 'expected.topk_ids').values;
  const load = new Array(E + R).fill(0);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const e = ids[t * k + j];
      load[e < R && t % 2 === 1 ? E + e : e]++;
    }
  }
  return load;
}

describeBackends('FusedMoE with EPLB', () => {
  for (const [name, R, tp, ep] of [['mixtral-t37', 3, 1, 1], ['mixtral-t37', 4, 2, 2], ['deepseekv3-t41', 4, 1, 2],
    ['llama4-t13', 2, 1, 2], ['qwen3moe-t19', 1, 1, 3]] as Array<[string, number, number, number]>) {
    it(`${name}, ${R} redundant experts, tp=${tp} × ep=${ep}: outputs equal the plain layer's, loads add up to T·k`,
        async () => {
          const fx = await loadFixture(name);
          const c = fx.config;
          const ckpt = readSafetensors(fx.bytes);
          await expectNoLeaks(async () => {
            const {hidden, logits} = fixtureInputs(fx);
            const plain = new FusedMoE(layerConfig(c));
            plain.loadWeights(ckpt, loadOptions(c));
            const plainOut = plain.apply([hidden, logits]) as tf.Tensor;
            const sum = new Float32Array(c.tokens * c.hidden_size);
            const load = new Array(c.num_experts + R).fill(0);
            for (const rank of ranks(tp, ep)) {
              const layer = new FusedMoE(layerConfig(c, {...rank, enableEplb: true, numRedundantExperts: R}));
              layer.loadWeights(ckpt, loadOptions(c));
              expect(layer.globalNumExperts).to.equal(c.num_experts + R);
              const out = layer.apply([hidden, logits]) as tf.Tensor;
              (await out.data()).forEach((v, i) => { sum[i] += v; });
              const rankLoad = Array.from(await layer.expertLoad!.data());
              // A rank counts only the physical experts it holds.
              const local = new Set(layer.expertLayout!.localPhysicalExperts);
              rankLoad.forEach((n, p) => {
                if (!local.has(p)) expect(n, `rank ${JSON.stringify(rank)} counts remote expert ${p}`).to.equal(0);
                if (rank.tpRank === 0) load[p] += n;
              });
              tf.dispose(out);
              layer.dispose();
            }
            expectClose(sum, await plainOut.data(), `${name} EPLB vs plain`, {atol: 1e-6, rtolOfMax: 1e-6});
            expectClose(sum, entry(fx, 'expected.output').values, `${name} EPLB vs expected`);
            expect(load).to.deep.equal(expectedPhysicalLoad(fx, R));
            expect(load.reduce((a, b) => a + b, 0)).to.equal(c.tokens * c.top_k);
            tf.dispose([hidden, logits, plainOut]);
            plain.dispose();
          });
          disposeCheckpointTensors(ckpt.values());
        });
  }

  it('the replica table and the load counter: layout, accumulation across calls, int32 weight', async () => {
    const fx = await loadFixture('mixtral-t37');
    const ckpt = readSafetensors(fx.bytes);
    const layer = new FusedMoE(layerConfig(fx.config, {enableEplb: true, numRedundantExperts: 3}));
    layer.loadWeights(ckpt, loadOptions(fx.config));
    disposeCheckpointTensors(ckpt.values());
    const {logicalToPhysicalMap, logicalReplicaCount} = layer.eplbState!;
    expect(await logicalToPhysicalMap.array()).to.deep.equal(
        [[0, 8], [1, 9], [2, 10], [3, -1], [4, -1], [5, -1], [6, -1], [7, -1]]);
    expect(Array.from(await logicalReplicaCount.data())).to.deep.equal([2, 2, 2, 1, 1, 1, 1, 1]);
    const loadWeight = layer.nonTrainableWeights.find((w) => w.name.endsWith('expert_load'))!;
    expect(loadWeight.dtype).to.equal('int32');
    expect(loadWeight.shape).to.deep.equal([11]);
    await expectNoLeaks(async () => {
      const {hidden, logits} = fixtureInputs(fx);
      for (let call = 1; call <= 2; call++) {
        tf.dispose(layer.apply([hidden, logits]) as tf.Tensor);
        const load = Array.from(await layer.expertLoad!.data());
        expect(load).to.deep.equal(expectedPhysicalLoad(fx, 3).map((n) => n * call));
      }
      layer.resetExpertLoad();
      expect(Array.from(await layer.expertLoad!.data())).to.deep.equal(new Array(11).fill(0));
      tf.dispose([hidden, logits]);
    });
    layer.dispose();
  });
});

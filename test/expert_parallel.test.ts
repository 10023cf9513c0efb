/** Expert parallelism: with random expert maps, the ranks' partial outputs sum to the full output. */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {determineExpertMap, fusedExperts, fusedMoE} from '../src';
import {expectClose, rng} from './helpers/compare';
import {caseTensors, expertsCase, referenceExperts, referenceRouting} from './helpers/cases';
import {describeBackends} from './helpers/env';

/** Rank r's slice of w13/w2 for the experts `owner` assigns to it, in global-id order. */
function rankWeights(src: Float32Array, E: number, perExpert: number, experts: number[]): Float32Array {
  const out = new Float32Array(experts.length * perExpert);
  experts.forEach((e, i) => out.set(src.subarray(e * perExpert, (e + 1) * perExpert), i * perExpert));
  return out;
}

describeBackends('expert parallelism', () => {
  for (const [E, epSize, seed] of [[8, 2, 1], [8, 3, 2], [16, 4, 3], [6, 6, 4]]) {
    it(`random expert maps: E=${E} over ${epSize} ranks sum to the full output`, async () => {
      const c = expertsCase(seed, 19, E, 3, 16, 12);
      const ref = referenceRouting(c);
      const full = referenceExperts(c, ref.weights, ref.ids);
      const r = rng(seed * 77);
      const owner = Array.from({length: E}, (_, e) => e % epSize).sort(() => r() - 0.5);
      const t = caseTensors(c);
      const sum = new Float32Array(full.length);
      for (let rank = 0; rank < epSize; rank++) {
        const experts = owner.map((o, e) => o === rank ? e : -1).filter((e) => e >= 0);
        const map = new Int32Array(E).fill(-1);
        experts.forEach((e, i) => { map[e] = i; });
        const w13 = tf.tensor3d(rankWeights(c.w13, E, 2 * c.I * c.H, experts), [experts.length, 2 * c.I, c.H]);
        const w2 = tf.tensor3d(rankWeights(c.w2, E, c.H * c.I, experts), [experts.length, c.H, c.I]);
        const expertMap = tf.tensor1d(map, 'int32');
        const out = fusedMoE(t.hidden, t.logits, w13, w2, {topK: 3, renormalize: true, expertMap});
        const part = await out.data();
        // Each partial is exactly the reference restricted to this rank's experts.
        expectClose(part, referenceExperts(c, ref.weights, ref.ids, {expertMap: map, numLocal: experts.length,
          w13: rankWeights(c.w13, E, 2 * c.I * c.H, experts), w2: rankWeights(c.w2, E, c.H * c.I, experts)}),
        `rank ${rank} partial`);
        part.forEach((v, i) => { sum[i] += v; });
        tf.dispose([w13, w2, expertMap, out]);
      }
      expectClose(sum, full, 'sum of ranks');
      tf.dispose(Object.values(t));
    });
  }

  it('determineExpertMap places experts as the seed does, the last rank taking the remainder', async () => {
    const counts = [0, 1, 2].map((rank) => determineExpertMap(3, rank, 8).numLocalExperts);
    expect(counts).to.deep.equal([2, 2, 4]);
    const {expertMap} = determineExpertMap(3, 1, 8);
    expect(Array.from(await expertMap!.data())).to.deep.equal([-1, -1, 0, 1, -1, -1, -1, -1]);
    expect(determineExpertMap(1, 0, 8)).to.deep.equal({numLocalExperts: 8, expertMap: null});
    expertMap!.dispose();
  });

  it('a pair whose expert maps to -1 contributes exactly zero', async () => {
    const c = expertsCase(9, 5, 4, 2, 8, 8);
    const ref = referenceRouting(c);
    const t = caseTensors(c);
    const w = tf.tensor2d(ref.weights, [5, 2]);
    const ids = tf.tensor2d(ref.ids, [5, 2], 'int32');
    const noExperts = tf.tensor1d([-1, -1, -1, -1], 'int32');
    const out = fusedExperts(t.hidden, t.w13, t.w2, w, ids, {expertMap: noExperts});
    expect(Array.from(await out.data()).every((v) => v === 0)).to.equal(true);
    tf.dispose([out, w, ids, noExperts, ...Object.values(t)]);
  });
});

/**
 * vLLM's test grids (tests/kernels/moe/test_moe.py): tokens {1, 33, 64, 222}, E {8, 64}, k {2, 6},
 * softmax and sigmoid; grouped top-k with E 16, 8 groups, topk_group 2. Every backend against the
 * reference in src/kernels/cpu, plus properties the reference itself must satisfy.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {fusedExperts, fusedMoE, fusedTopK, groupedTopK, routingImpl} from '../src';
import {expectClose, expectWeightsById, randn, rng} from './helpers/compare';
import {caseTensors, expertsCase, referenceExperts, referenceRouting} from './helpers/cases';
import {describeAgainstReference} from './helpers/env';

const TOKENS = [1, 33, 64, 222];

/** Properties of any valid routing row: distinct in-range ids, finite weights, descending order. */
function expectValidRouting(w: ArrayLike<number>, ids: ArrayLike<number>, T: number, k: number, E: number): void {
  for (let t = 0; t < T; t++) {
    const row = Array.from(ids).slice(t * k, t * k + k);
    expect(new Set(row).size, `row ${t} ids ${row} distinct`).to.equal(k);
    for (const e of row) expect(e, `row ${t} id`).to.be.within(0, E - 1);
    for (let j = 0; j < k; j++) {
      expect(Number.isFinite(w[t * k + j]), `row ${t} weight ${j} = ${w[t * k + j]}`).to.equal(true);
      if (j > 0) expect(w[t * k + j], `row ${t} descending`).to.be.at.most(w[t * k + j - 1]);
    }
  }
}

describeAgainstReference('vLLM grids', () => {
  describe('fusedTopK', () => {
    for (const T of TOKENS) for (const E of [8, 64]) for (const k of [2, 6]) {
      for (const scoringFunc of ['softmax', 'sigmoid'] as const) {
        const renormalize = (T + k) % 2 === 1 || scoringFunc === 'softmax';
        it(`T=${T} E=${E} k=${k} ${scoringFunc} renormalize=${renormalize}`, async () => {
          const logits = randn(rng(T * 1000 + E * 10 + k), T * E, 3);
          const ref = routingImpl(logits, T, E, null,
              {topK: k, renormalize, scoringFunc, routedScalingFactor: 1, numExpertGroup: 1, topkGroup: 1});
          const x = tf.tensor2d(logits, [T, E]);
          const {topkWeights, topkIds} = fusedTopK(x, k, renormalize, {scoringFunc});
          const [w, ids] = [await topkWeights.data(), await topkIds.data()];
          expectValidRouting(w, ids, T, k, E);
          expectWeightsById(w, ids, ref.weights, ref.ids, k, 'fusedTopK');
          if (renormalize) {
            for (let t = 0; t < T; t++) {
              expect(ref.weights.slice(t * k, t * k + k).reduce((a, b) => a + b), 'reference row sum').to.be.closeTo(1, 1e-5);
            }
          }
          tf.dispose([x, topkWeights, topkIds]);
        });
      }
    }
  });

  describe('groupedTopK (E 16, 8 groups, topk_group 2)', () => {
    for (const T of TOKENS) for (const withBias of [false, true]) for (const scale of [1.0, 2.5]) {
      for (const scoringFunc of ['softmax', 'sigmoid'] as const) {
        it(`T=${T} ${scoringFunc} bias=${withBias} scale=${scale}`, async () => {
          const E = 16, k = 4, G = 8, topkGroup = 2;
          const r = rng(T * 7 + (withBias ? 1 : 0) + scale * 10);
          const logits = randn(r, T * E, 2);
          const bias = withBias ? randn(r, E, 0.3) : null;
          const ref = routingImpl(logits, T, E, bias, {topK: k, renormalize: true, scoringFunc,
            routedScalingFactor: scale, numExpertGroup: G, topkGroup});
          // The reference keeps every id inside the topkGroup best groups.
          for (let t = 0; t < T; t++) {
            const groups = new Set(Array.from(ref.ids.slice(t * k, t * k + k)).map((e) => Math.floor(e / (E / G))));
            expect(groups.size, 'groups used').to.be.at.most(topkGroup);
          }
          const x = tf.tensor2d(logits, [T, E]);
          const b = bias ? tf.tensor1d(bias) : undefined;
          const {topkWeights, topkIds} = groupedTopK(x, {topK: k, renormalize: true, numExpertGroup: G, topkGroup,
            scoringFunc, eScoreCorrectionBias: b, routedScalingFactor: scale});
          const [w, ids] = [await topkWeights.data(), await topkIds.data()];
          expectValidRouting(w, ids, T, k, E);
          expectWeightsById(w, ids, ref.weights, ref.ids, k, 'groupedTopK');
          tf.dispose([x, topkWeights, topkIds, ...(b ? [b] : [])]);
        });
      }
    }
  });

  describe('fusedExperts', () => {
    for (const T of TOKENS) for (const E of [8, 64]) for (const k of [2, 6]) {
      it(`T=${T} E=${E} k=${k}`, async () => {
        const c = expertsCase(T * 31 + E + k, T, E, k, 24, 20);
        const ref = referenceRouting(c);
        const t = caseTensors(c);
        const w = tf.tensor2d(ref.weights, [T, k]);
        const ids = tf.tensor2d(ref.ids, [T, k], 'int32');
        const out = fusedExperts(t.hidden, t.w13, t.w2, w, ids);
        expectClose(await out.data(), referenceExperts(c, ref.weights, ref.ids), 'fusedExperts');
        tf.dispose([out, w, ids, ...Object.values(t)]);
      });
    }
  });

  describe('variants', () => {
    it('applyRouterWeightOnInput with k = 1 (Llama 4)', async () => {
      const c = expertsCase(5, 33, 8, 1, 24, 20);
      const ref = routingImpl(c.logits, c.T, c.E, null, {topK: 1, renormalize: false, scoringFunc: 'sigmoid',
        routedScalingFactor: 1, numExpertGroup: 1, topkGroup: 1});
      const t = caseTensors(c);
      const out = fusedMoE(t.hidden, t.logits, t.w13, t.w2,
          {topK: 1, renormalize: false, customRoutingFunction: 'llama4', applyRouterWeightOnInput: true});
      const expected = referenceExperts(c, ref.weights, ref.ids, {applyRouterWeightOnInput: true});
      expectClose(await out.data(), expected, 'llama4 on input');
      // Scaling the input is not the same as scaling the output: silu is not linear.
      const onOutput = referenceExperts(c, ref.weights, ref.ids);
      expect(Math.max(...expected.map((v, i) => Math.abs(v - onOutput[i])))).to.be.greaterThan(1e-3);
      tf.dispose([out, ...Object.values(t)]);
    });

    it('gelu', async () => {
      const c = expertsCase(6, 33, 8, 2, 24, 20);
      const ref = referenceRouting(c);
      const t = caseTensors(c);
      const out = fusedMoE(t.hidden, t.logits, t.w13, t.w2, {topK: 2, renormalize: true, activation: 'gelu'});
      expectClose(await out.data(), referenceExperts(c, ref.weights, ref.ids, {activation: 'gelu'}), 'gelu');
      tf.dispose([out, ...Object.values(t)]);
    });

    it('NaN and ±Inf logits keep ids distinct and in range, and no NaN reaches a weight', async () => {
      const T = 6, E = 8, k = 3;
      const rows = [
        [NaN, 1, 2, 3, 4, 5, 6, 7],
        [Infinity, Infinity, 0, 0, 0, 0, 0, 0],
        [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity],
        [NaN, NaN, NaN, NaN, NaN, NaN, NaN, NaN],
        [Infinity, -Infinity, NaN, 1, Infinity, -1, NaN, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
      ];
      const logits = tf.tensor2d(rows.flat(), [T, E]);
      for (const scoringFunc of ['softmax', 'sigmoid'] as const) {
        for (const grouped of [false, true]) {
          const {topkWeights, topkIds} = grouped ?
            groupedTopK(logits, {topK: k, renormalize: true, numExpertGroup: 4, topkGroup: 2, scoringFunc}) :
            fusedTopK(logits, k, true, {scoringFunc});
          const [w, ids] = [await topkWeights.data(), await topkIds.data()];
          expectValidRouting(w, ids, T, k, E);
          const ref = routingImpl(rows.flat(), T, E, null, {topK: k, renormalize: true, scoringFunc,
            routedScalingFactor: 1, numExpertGroup: grouped ? 4 : 1, topkGroup: grouped ? 2 : 1});
          expectWeightsById(w, ids, ref.weights, ref.ids, k, `${scoringFunc} grouped=${grouped}`);
          tf.dispose([topkWeights, topkIds]);
        }
      }
      // Ties go to the lower id: an all-equal row picks experts 0, 1, 2.
      const {topkIds} = fusedTopK(tf.tensor2d([rows[5]]), k, true);
      expect(Array.from(await topkIds.data())).to.deep.equal([0, 1, 2]);
      logits.dispose();
    });
  });
});

/** Each op leaves tf.memory().numTensors unchanged once its results are disposed. */
import * as tf from '@tensorflow/tfjs-core';
import {fusedExperts, fusedMoE, fusedTopK, groupedTopK, selectExperts} from '../src';
import {caseTensors, expertsCase} from './helpers/cases';
import {describeBackends, expectNoLeaks} from './helpers/env';

describeBackends('no leaks', () => {
  const c = expertsCase(11, 7, 8, 2, 12, 8);
  let t: ReturnType<typeof caseTensors>;
  before(() => { t = caseTensors(c); });
  after(() => tf.dispose(Object.values(t)));

  const run = (fn: () => tf.Tensor | {topkWeights: tf.Tensor; topkIds: tf.Tensor}) => expectNoLeaks(async () => {
    const out = fn();
    const tensors = out instanceof tf.Tensor ? [out] : [out.topkWeights, out.topkIds];
    await Promise.all(tensors.map((x) => x.data()));
    tf.dispose(tensors);
  });

  it('fusedTopK', () => run(() => fusedTopK(t.logits, 2, true)));
  it('groupedTopK with bias', () => {
    const bias = tf.zeros([8]) as tf.Tensor1D;
    return run(() => groupedTopK(t.logits, {topK: 2, renormalize: true, numExpertGroup: 4, topkGroup: 2,
      scoringFunc: 'sigmoid', eScoreCorrectionBias: bias})).finally(() => bias.dispose());
  });
  it('selectExperts with llama4 routing', () => run(() => selectExperts(t.hidden, t.logits,
      {topK: 1, renormalize: false, customRoutingFunction: 'llama4'})));
  it('selectExperts with EPLB and a load counter', async () => {
    const load = tf.variable(tf.zeros([10], 'int32'));
    const map = tf.tensor2d([[0, 8], [1, 9], [2, -1], [3, -1], [4, -1], [5, -1], [6, -1], [7, -1]], [8, 2], 'int32');
    const count = tf.tensor1d([2, 2, 1, 1, 1, 1, 1, 1], 'int32');
    await run(() => selectExperts(t.hidden, t.logits, {topK: 2, renormalize: true,
      eplb: {logicalToPhysicalMap: map, logicalReplicaCount: count, expertLoad: load}}));
    const total = Array.from(await load.data()).reduce((a, b) => a + b, 0);
    if (total !== c.T * 2) throw new Error(`expert load sums to ${total}, expected T·k = ${c.T * 2}`);
    tf.dispose([load, map, count]);
  });
  it('fusedExperts', () => {
    const w = tf.fill([7, 2], 0.5) as tf.Tensor2D;
    const ids = tf.tensor2d([0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 1, 3, 5, 4], [7, 2], 'int32');
    return run(() => fusedExperts(t.hidden, t.w13, t.w2, w, ids)).finally(() => tf.dispose([w, ids]));
  });
  it('fusedMoE with split weights', () => {
    const w13 = tf.split(t.w13, [3, 5], 0) as tf.Tensor3D[];
    const w2 = tf.split(t.w2, [3, 5], 0) as tf.Tensor3D[];
    return run(() => fusedMoE(t.hidden, t.logits, w13, w2, {topK: 2, renormalize: true}))
        .finally(() => tf.dispose([...w13, ...w2]));
  });
});

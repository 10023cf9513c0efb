/** Every misuse throws an Error that names the argument and what was expected. */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {fusedExperts, fusedMoE, fusedTopK, groupedTopK, selectExperts} from '../src';
import {describeBackends} from './helpers/env';

describeBackends('bad input', () => {
  const T = 3, E = 8, H = 4, I = 2, k = 2;
  let t: Record<string, tf.Tensor>;
  before(() => {
    t = {
      hidden: tf.ones([T, H]), logits: tf.randomNormal([T, E], 0, 1, 'float32', 1),
      w13: tf.ones([E, 2 * I, H]), w2: tf.ones([E, H, I]),
      weights: tf.fill([T, k], 0.5), ids: tf.tensor2d([[0, 1], [2, 3], [4, 5]], [T, k], 'int32'),
    };
  });
  after(() => tf.dispose(Object.values(t)));
  const x = () => t.hidden as tf.Tensor2D, logits = () => t.logits as tf.Tensor2D;
  const w13 = () => t.w13 as tf.Tensor3D, w2 = () => t.w2 as tf.Tensor3D;
  const weights = () => t.weights as tf.Tensor2D, ids = () => t.ids as tf.Tensor2D;

  const cases: Array<[string, () => unknown, RegExp]> = [
    ['gatingOutput of rank 1', () => fusedTopK(tf.ones([E]) as unknown as tf.Tensor2D, 2, true),
      /fusedTopK: 'gatingOutput' must be a 2-D tensor of shape \[T, E\] but got shape \[8\]/],
    ['topK < 1', () => fusedTopK(logits(), 0, true), /fusedTopK: 'topK' must be an integer in \[1, 8\] but got 0/],
    ['topK > E', () => fusedTopK(logits(), 9, true), /'topK' must be an integer in \[1, 8\] but got 9/],
    ['non-integer topK', () => fusedTopK(logits(), 1.5, true), /'topK' must be an integer/],
    ['unknown scoringFunc', () => fusedTopK(logits(), 2, true, {scoringFunc: 'relu' as 'softmax'}),
      /'scoringFunc' must be one of 'softmax', 'sigmoid' but got "relu"/],
    ['int32 logits', () => fusedTopK(tf.zeros([T, E], 'int32') as tf.Tensor2D, 2, true),
      /'gatingOutput' must have dtype float32 but got int32/],
    ['E not divisible by numExpertGroup', () => groupedTopK(logits(), {topK: 2, renormalize: true,
      numExpertGroup: 3, topkGroup: 1}), /experts of 'gatingOutput' must divide evenly into 'numExpertGroup' = 3/],
    ['topkGroup > numExpertGroup', () => groupedTopK(logits(), {topK: 2, renormalize: true, numExpertGroup: 4,
      topkGroup: 5}), /'topkGroup' must be an integer in \[1, 4\] but got 5/],
    ['too few experts in the kept groups', () => groupedTopK(logits(), {topK: 3, renormalize: true,
      numExpertGroup: 8, topkGroup: 2}), /'topK' = 3 is more than the 2 experts in the 'topkGroup' = 2 kept groups/],
    ['bias of the wrong length', () => groupedTopK(logits(), {topK: 2, renormalize: true, numExpertGroup: 4,
      topkGroup: 2, eScoreCorrectionBias: tf.zeros([7]) as tf.Tensor1D}),
    /'eScoreCorrectionBias' must have shape \[E\] with E = 8 \(experts in gatingOutput\) but got shape \[7\]/],
    ['logits with another T than hiddenStates', () => selectExperts(x(), tf.zeros([T + 1, E]) as tf.Tensor2D,
      {topK: 2, renormalize: true}), /selectExperts: 'routerLogits' must have shape \[T, E\] with T = 3/],
    ['unknown built-in routing', () => selectExperts(x(), logits(), {topK: 2, renormalize: true,
      customRoutingFunction: 'llama5' as 'llama4'}), /'customRoutingFunction' must be one of 'llama4'/],
    ['custom routing returning the wrong k', () => selectExperts(x(), logits(), {topK: 2, renormalize: true,
      customRoutingFunction: ({gatingOutput}) => { const r = tf.topk(gatingOutput, 3);
        return {topkWeights: r.values as tf.Tensor2D, topkIds: r.indices as tf.Tensor2D}; }}),
    /'topkWeights' returned by customRoutingFunction must have shape \[3, 2\] but got \[3, 3\]/],
    ['hiddenStates with another H than w13', () => fusedExperts(tf.ones([T, H + 1]) as tf.Tensor2D, w13(), w2(),
      weights(), ids()), /fusedExperts: 'hiddenStates' must have shape \[T, H\] with H = 4 \(H of w13\)/],
    ['w13 of rank 2', () => fusedExperts(x(), tf.ones([2 * I, H]) as unknown as tf.Tensor3D, w2(), weights(), ids()),
      /'w13' must be a 3-D tensor of shape \[E_local, 2I, H\]/],
    ['odd 2I', () => fusedExperts(x(), tf.ones([E, 3, H]) as tf.Tensor3D, w2(), weights(), ids()),
      /'w13' must have an even, non-zero 2I/],
    ['w2 with another I', () => fusedExperts(x(), w13(), tf.ones([E, H, I + 1]) as tf.Tensor3D, weights(), ids()),
      /'w2' must have shape \[E_local, H, I\] with I = 2 \(half of 2I in w13\)/],
    ['w2 with another E', () => fusedExperts(x(), w13(), tf.ones([E - 1, H, I]) as tf.Tensor3D, weights(), ids()),
      /'w2' must have shape \[E_local, H, I\] with E_local = 8 \(experts in w13\)/],
    ['w13 shards with another H', () => fusedExperts(x(), [w13(), tf.ones([1, 2 * I, H + 1]) as tf.Tensor3D],
      [w2(), tf.ones([1, H, I]) as tf.Tensor3D], weights(), ids()), /'w13\[1\]' must have shape .* with H = 4/],
    ['unequal shard lists', () => fusedExperts(x(), [w13()], [w2(), w2()], weights(), ids()),
      /'w13' and 'w2' must be tensors or equally long non-empty arrays/],
    ['out-of-range ids', () => fusedExperts(x(), w13(), w2(), weights(), tf.tensor2d([[0, 1], [2, 8], [4, 5]],
      [T, k], 'int32')), /'topkIds' must hold expert ids in \[0, 8\) but element 3 is 8/],
    ['negative ids', () => fusedExperts(x(), w13(), w2(), weights(), tf.tensor2d([[0, -1], [2, 3], [4, 5]],
      [T, k], 'int32')), /'topkIds' must hold expert ids in \[0, 8\) but element 1 is -1/],
    ['float ids', () => fusedExperts(x(), w13(), w2(), weights(), tf.zeros([T, k]) as tf.Tensor2D),
      /'topkIds' must have dtype int32 but got float32/],
    ['ids and weights with other k', () => fusedExperts(x(), w13(), w2(), weights(), tf.zeros([T, 1], 'int32') as
      tf.Tensor2D), /'topkIds' must have shape \[T, k\] with k = 2/],
    ['expertMap pointing past the local experts', () => fusedExperts(x(), w13(), w2(), weights(), ids(),
      {expertMap: tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 8, -1, -1], 'int32')}),
    /'expertMap' must hold -1 or a local expert id in \[0, 8\) but element 7 is 8/],
    ['globalNumExperts against the expertMap', () => fusedExperts(x(), w13(), w2(), weights(), ids(),
      {expertMap: tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7, -1, -1], 'int32'), globalNumExperts: 12}),
    /'globalNumExperts' = 12 must equal the length of 'expertMap' \(10\)/],
    ['applyRouterWeightOnInput with k = 2', () => fusedExperts(x(), w13(), w2(), weights(), ids(),
      {applyRouterWeightOnInput: true}), /'applyRouterWeightOnInput' needs topK = 1/],
    ['unknown activation', () => fusedMoE(x(), logits(), w13(), w2(), {topK: 2, renormalize: true,
      activation: 'relu' as 'silu'}), /'activation' must be one of 'silu', 'gelu', 'swigluoai' but got "relu"/],
    ['missing options', () => fusedMoE(x(), logits(), w13(), w2(), undefined as never),
      /selectExperts: options \{topK, renormalize, \.\.\.\} are required/],
  ];
  for (const [what, fn, message] of cases) {
    it(what, () => {
      const before = tf.memory().numTensors;
      expect(() => tf.tidy(() => { fn(); })).to.throw(Error, message);
      expect(tf.memory().numTensors, 'no tensors left behind').to.equal(before);
    });
  }
});

/**
 * fusedMoE keeps what it checked for a set of weights and options (src/ops/fused_moe.ts, OneKernelMemo) and
 * the webgpu kernel keeps its plan keys (dispatch_plan.ts, KeyMemo): decode calls after the first skip
 * those checks (issue 13). These cases change one thing after warm calls and check that the next call sees
 * it: the result of the cpu reference for what changed, or the error the first call would have given.
 * Every backend runs them (on cpu and tensorflow the op's memo is the same; only webgpu has plans).
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {FusedMoEOptions, fusedExpertsImpl, fusedMoE, routingImpl} from '../src';
import {expectClose, randn, rng} from './helpers/compare';
import {describeAgainstReference, expectNoLeaks} from './helpers/env';

const E = 8, H = 24, I = 20;

interface Routing {
  topK: number;
  renormalize: boolean;
  numExpertGroup?: number;
  topkGroup?: number;
  scoringFunc?: 'softmax' | 'sigmoid';
  routedScalingFactor?: number;
  bias?: Float32Array;
}

function layerValues(seed: number) {
  const rand = rng(seed);
  return {w13: randn(rand, E * 2 * I * H, 0.3), w2: randn(rand, E * H * I, 0.3)};
}

/** The cpu reference of fusedMoE for one token; `shards` splits the experts as the weights passed are. */
function reference(layer: {w13: Float32Array; w2: Float32Array}, x: Float32Array, logits: Float32Array,
    r: Routing, activation: 'silu' | 'gelu' = 'silu'): Float32Array {
  const {weights, ids} = routingImpl(logits, 1, E, r.bias ?? null, {topK: r.topK, renormalize: r.renormalize,
    scoringFunc: r.scoringFunc ?? 'softmax', routedScalingFactor: r.routedScalingFactor ?? 1,
    numExpertGroup: r.numExpertGroup ?? 1, topkGroup: r.topkGroup ?? 1});
  return fusedExpertsImpl({hidden: x, topkWeights: weights, topkIds: ids, expertMap: null,
    shards: [{...layer, numExperts: E}], numTokens: 1, topK: r.topK, hiddenSize: H, intermediateSize: I,
    globalNumExperts: E, activation, applyRouterWeightOnInput: false});
}

describeAgainstReference('fusedMoE decode calls: what is kept between calls follows every change', () => {
  const layer = layerValues(1);
  const rand = rng(2);
  const x = randn(rand, H);
  const logits = randn(rand, E, 2);
  const biasValues = randn(rand, E, 0.5);
  let w13: tf.Tensor3D, w2: tf.Tensor3D, xt: tf.Tensor2D, lt: tf.Tensor2D;
  beforeEach(() => {
    w13 = tf.tensor3d(layer.w13, [E, 2 * I, H]);
    w2 = tf.tensor3d(layer.w2, [E, H, I]);
    xt = tf.tensor2d(x, [1, H]);
    lt = tf.tensor2d(logits, [1, E]);
  });
  afterEach(() => tf.dispose([w13, w2, xt, lt]));

  async function expectCall(w13Arg: tf.Tensor3D | tf.Tensor3D[], w2Arg: tf.Tensor3D | tf.Tensor3D[],
      o: FusedMoEOptions, expected: Float32Array, what: string) {
    const y = fusedMoE(xt, lt, w13Arg, w2Arg, o);
    expectClose(await y.data(), expected, what);
    y.dispose();
  }

  it('follows an options object changed in place, and a new literal with other values', async () => {
    const o: FusedMoEOptions = {topK: 4, renormalize: true};
    for (let i = 0; i < 2; i++) await expectCall(w13, w2, o, reference(layer, x, logits, o), `topK 4, call ${i}`);
    o.topK = 2;
    await expectCall(w13, w2, o, reference(layer, x, logits, o), 'topK changed to 2');
    o.renormalize = false;
    await expectCall(w13, w2, o, reference(layer, x, logits, o), 'renormalize changed to false');
    o.activation = 'gelu';
    await expectCall(w13, w2, o, reference(layer, x, logits, {topK: 2, renormalize: false}, 'gelu'), 'gelu');
    const grouped = {topK: 2, renormalize: true, useGroupedTopk: true, numExpertGroup: 4, topkGroup: 2,
      scoringFunc: 'sigmoid' as const, routedScalingFactor: 2.5};
    await expectCall(w13, w2, {...grouped}, reference(layer, x, logits, grouped), 'grouped');
    await expectCall(w13, w2, {...grouped, topkGroup: 1}, reference(layer, x, logits, {...grouped, topkGroup: 1}),
        'grouped, topkGroup 1');
  });

  it('gives the first call\'s error for an option made invalid after warm calls', async () => {
    const o: FusedMoEOptions = {topK: 4, renormalize: true};
    for (let i = 0; i < 2; i++) fusedMoE(xt, lt, w13, w2, o).dispose();
    o.topK = E + 1;
    expect(() => fusedMoE(xt, lt, w13, w2, o)).to.throw(/'topK' must be an integer in \[1, 8\] but got 9/);
    o.topK = 4;
    (o as {scoringFunc?: string}).scoringFunc = 'tanh';
    expect(() => fusedMoE(xt, lt, w13, w2, o)).to.throw(/'scoringFunc' must be one of 'softmax', 'sigmoid'/);
    (o as {scoringFunc?: string}).scoringFunc = undefined;
    (o as {activation?: string}).activation = 'relu';
    expect(() => fusedMoE(xt, lt, w13, w2, o)).to.throw(/fusedExperts: 'activation' must be one of/);
    (o as {activation?: string}).activation = undefined;
    o.globalNumExperts = 4;
    expect(() => fusedMoE(xt, lt, w13, w2, o)).to.throw(/'globalNumExperts' = 4 differs from the 8 experts in 'w13'/);
    o.globalNumExperts = undefined;
    await expectCall(w13, w2, o, reference(layer, x, logits, {topK: 4, renormalize: true}), 'valid again');
  });

  it('gives the first call\'s error for a disposed weight, and new weights\' result after', async () => {
    const o = {topK: 4, renormalize: true};
    for (let i = 0; i < 2; i++) fusedMoE(xt, lt, w13, w2, o).dispose();
    w2.dispose();
    expect(() => fusedMoE(xt, lt, w13, w2, o)).to.throw(/fusedExperts: 'w2' is a disposed tensor \(shape \[8, 24, 20\]\)/);
    const other = layerValues(3);
    w2 = tf.tensor3d(other.w2, [E, H, I]);
    await expectCall(w13, w2, o, reference({w13: layer.w13, w2: other.w2}, x, logits, o), 'new w2');
    w13.dispose();
    expect(() => fusedMoE(xt, lt, w13, w2, o)).to.throw(/fusedExperts: 'w13' is a disposed tensor/);
  });

  it('follows a shard list changed in place, and a Variable\'s new values', async () => {
    const o = {topK: 4, renormalize: true};
    const half = (t: tf.Tensor3D, i: number) => tf.slice(t, [4 * i, 0, 0], [4, -1, -1]) as tf.Tensor3D;
    const w13s = [half(w13, 0), half(w13, 1)];
    const w2s = [half(w2, 0), half(w2, 1)];
    const made = [...w13s, ...w2s];
    for (let i = 0; i < 2; i++) await expectCall(w13s, w2s, o, reference(layer, x, logits, o), `shards, call ${i}`);
    const other = layerValues(4);
    const o13 = tf.tensor3d(other.w13, [E, 2 * I, H]), o2 = tf.tensor3d(other.w2, [E, H, I]);
    const [n13, n2] = [half(o13, 1), half(o2, 1)];
    w13s[1] = n13;
    w2s[1] = n2;
    const mixed = {w13: new Float32Array(layer.w13), w2: new Float32Array(layer.w2)};
    mixed.w13.set(other.w13.subarray(4 * 2 * I * H), 4 * 2 * I * H);
    mixed.w2.set(other.w2.subarray(4 * H * I), 4 * H * I);
    await expectCall(w13s, w2s, o, reference(mixed, x, logits, o), 'second shards replaced in the arrays');
    tf.dispose([...made, n13, n2, o13, o2]);

    const v13 = tf.variable(w13), v2 = tf.variable(w2);
    for (let i = 0; i < 2; i++) await expectCall(v13, v2, o, reference(layer, x, logits, o), `variables, call ${i}`);
    v2.assign(tf.tensor3d(other.w2, [E, H, I]));
    await expectCall(v13, v2, o, reference({w13: layer.w13, w2: other.w2}, x, logits, o), 'w2 variable assigned');
    tf.dispose([v13, v2]);
  });

  it('follows the correction bias: another tensor, or disposed (the first call\'s error)', async () => {
    const r = {topK: 2, renormalize: true, numExpertGroup: 4, topkGroup: 2, scoringFunc: 'sigmoid' as const,
      routedScalingFactor: 2.5};
    const bias = tf.tensor1d(biasValues);
    const o = {...r, useGroupedTopk: true, eScoreCorrectionBias: bias};
    for (let i = 0; i < 2; i++) await expectCall(w13, w2, o, reference(layer, x, logits, {...r, bias: biasValues}), 'bias');
    const flipped = biasValues.map((v) => -v);
    const bias2 = tf.tensor1d(flipped);
    await expectCall(w13, w2, {...o, eScoreCorrectionBias: bias2}, reference(layer, x, logits, {...r, bias: flipped}),
        'another bias');
    bias.dispose();
    expect(() => fusedMoE(xt, lt, w13, w2, o)).to.throw(/groupedTopK: 'eScoreCorrectionBias' is a disposed tensor/);
    // A bias given as host values is a new tensor every call (not kept), disposed with the call.
    await expectNoLeaks(async () => {
      for (let i = 0; i < 2; i++) {
        await expectCall(w13, w2, {...o, eScoreCorrectionBias: Array.from(flipped)},
            reference(layer, x, logits, {...r, bias: flipped}), `bias as an array, call ${i}`);
      }
    });
    bias2.dispose();
  });

  it('checks every call\'s own tensors: H and T of hiddenStates, E of routerLogits', async () => {
    const o = {topK: 4, renormalize: true};
    for (let i = 0; i < 2; i++) fusedMoE(xt, lt, w13, w2, o).dispose();
    const wide = tf.zeros([1, H + 1]) as tf.Tensor2D;
    expect(() => fusedMoE(wide, lt, w13, w2, o)).to.throw(/fusedExperts: 'hiddenStates' must have shape \[T, H\] with H = 24/);
    const two = tf.zeros([2, H]) as tf.Tensor2D;
    expect(() => fusedMoE(two, lt, w13, w2, o)).to.throw(/'routerLogits' must have shape \[T, E\] with T = 2/);
    const e16 = tf.zeros([1, 16]) as tf.Tensor2D;
    expect(() => fusedMoE(xt, e16, w13, w2, o)).to.throw(/'topkIds' must hold expert ids in \[0, 8\) but comes from routing over 16/);
    tf.dispose([wide, two, e16]);
    await expectCall(w13, w2, o, reference(layer, x, logits, o), 'valid again');
  });
});

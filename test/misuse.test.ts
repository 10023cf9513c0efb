/**
 * Misuse that used to give zeros, NaN, truncated values or a raw TypeError: a layer applied before its weights
 * are loaded, disposed tensors, a non-Variable EPLB load, ragged or fractional nested-array inputs. Each is an
 * Error naming the argument; what is allowed gives the reference's numbers.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {expect} from 'chai';
import {FusedMoE, disposeCheckpointTensors, fusedExperts, fusedMoE, fusedTopK, readSafetensors, selectExperts} from '../src';
import {expectClose} from './helpers/compare';
import {describeBackends, expectNoLeaks, saveArtifacts} from './helpers/env';
import {Fixture, entry, loadFixture} from './helpers/fixtures';
import {fixtureInputs, layerConfig, loadOptions} from './layer_helpers';

describeBackends('misuse', () => {
  describe('a FusedMoE layer applied before its weights are loaded', () => {
    let fx: Fixture;
    before(async () => { fx = await loadFixture('mixtral-t37'); });

    const notLoaded = (layer: FusedMoE, names: string) => new RegExp(`^FusedMoE '${layer.name}': its weights are not ` +
      `loaded \\(${names} still hold their initial zeros\\); call loadWeights\\(checkpoint, options\\), setWeights, ` +
      `or load a saved model before applying it$`);

    it('throws naming loadWeights (apply, predict, forwardAsync); after loadWeights it gives the expected output',
        async () => {
          const layer = new FusedMoE(layerConfig(fx.config));
          const hIn = tfl.input({shape: [fx.config.hidden_size]}), lIn = tfl.input({shape: [fx.config.num_experts]});
          const model = tfl.model({inputs: [hIn, lIn], outputs: layer.apply([hIn, lIn]) as tfl.SymbolicTensor});
          const {hidden, logits} = fixtureInputs(fx);
          await expectNoLeaks(async () => {
            expect(() => layer.apply([hidden, logits])).to.throw(Error,
                notLoaded(layer, `${layer.name}/w13, ${layer.name}/w2`));
            await layer.forwardAsync(hidden, logits).then(() => expect.fail('no error'),
                (e: Error) => expect(e.message).to.match(notLoaded(layer, `${layer.name}/w13, ${layer.name}/w2`)));
          });
          expect(() => model.predict([hidden, logits])).to.throw(Error, /its weights are not loaded/);
          const ckpt = readSafetensors(fx.bytes);
          layer.loadWeights(ckpt, loadOptions(fx.config));
          disposeCheckpointTensors(ckpt.values());
          const out = layer.apply([hidden, logits]) as tf.Tensor;
          expectClose(await out.data(), entry(fx, 'expected.output').values, 'after loadWeights');
          tf.dispose([hidden, logits, out]);
          layer.dispose();
        });

    it('counts weights set through setWeights, and names those still unset when split by expert range', async () => {
      const c = fx.config;
      const source = new FusedMoE(layerConfig(c));
      const ckpt = readSafetensors(fx.bytes);
      source.loadWeights(ckpt, loadOptions(c));
      disposeCheckpointTensors(ckpt.values());
      const {hidden, logits} = fixtureInputs(fx);

      const copy = new FusedMoE(layerConfig(c));
      copy.apply([tfl.input({shape: [c.hidden_size]}), tfl.input({shape: [c.num_experts]})]);
      expect(() => copy.apply([hidden, logits])).to.throw(Error, /its weights are not loaded/);
      copy.setWeights(source.getWeights());
      const out = copy.apply([hidden, logits]) as tf.Tensor;
      expectClose(await out.data(), entry(fx, 'expected.output').values, 'after setWeights');

      // Weights split in two expert ranges: writing some of them is not enough.
      const split = new FusedMoE(layerConfig(c, {maxWeightBytes: 4 * 2 * c.intermediate_size * c.hidden_size * 4}));
      split.apply([tfl.input({shape: [c.hidden_size]}), tfl.input({shape: [c.num_experts]})]);
      expect(split.weights.length).to.equal(4);
      for (const v of split.weights.slice(0, 2)) tf.tidy(() => { v.write(tf.zeros(v.shape as number[])); });
      const unset = split.weights.slice(2).map((w) => w.name).join(', ');
      expect(() => split.apply([hidden, logits])).to.throw(Error, notLoaded(split, unset));
      tf.dispose([hidden, logits, out]);
      for (const l of [source, copy, split]) l.dispose();
    });

    it('counts weights restored by tf.loadLayersModel', async () => {
      const c = fx.config;
      const hIn = tfl.input({shape: [c.hidden_size]}), lIn = tfl.input({shape: [c.num_experts]});
      const layer = new FusedMoE(layerConfig(c));
      const model = tfl.model({inputs: [hIn, lIn], outputs: layer.apply([hIn, lIn]) as tfl.SymbolicTensor});
      const ckpt = readSafetensors(fx.bytes);
      layer.loadWeights(ckpt, loadOptions(c));
      disposeCheckpointTensors(ckpt.values());
      const artifacts = await saveArtifacts(model);
      const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
      const {hidden, logits} = fixtureInputs(fx);
      const y = loaded.predict([hidden, logits]) as tf.Tensor;
      expectClose(await y.data(), entry(fx, 'expected.output').values, 'after loadLayersModel');
      // The same topology without its weights is not loaded.
      const bare = await tfl.loadLayersModel(tf.io.fromMemory({modelTopology: artifacts.modelTopology}));
      expect(() => bare.predict([hidden, logits])).to.throw(Error, /its weights are not loaded/);
      tf.dispose([hidden, logits, y]);
      layer.dispose();
      loaded.dispose();
      bare.dispose();
    });

    it('a disposed input is named', async () => {
      const layer = new FusedMoE({numExperts: 4, topK: 2, hiddenSize: 8, intermediateSize: 4});
      layer.apply([tfl.input({shape: [8]}), tfl.input({shape: [4]})]);
      layer.setWeights(layer.getWeights());
      const hidden = tf.ones([2, 8]), logits = tf.ones([2, 4]);
      logits.dispose();
      expect(() => layer.apply([hidden, logits])).to.throw(Error,
          /^FusedMoE: 'routerLogits' must be a live Tensor but is a disposed tensor$/);
      hidden.dispose();
      layer.dispose();
    });
  });

  describe('the ops', () => {
    const T = 2, E = 4, H = 8, I = 4;
    let t: Record<string, tf.Tensor>;
    before(() => {
      t = {x: tf.ones([T, H]), logits: tf.tensor2d([[1, 2, 3, 4], [4, 3, 2, 1]]), w13: tf.ones([E, 2 * I, H]),
        w2: tf.ones([E, H, I]), w: tf.fill([T, 2], 0.5), ids: tf.tensor2d([[0, 1], [2, 3]], [T, 2], 'int32')};
    });
    after(() => tf.dispose(Object.values(t)));
    const x = () => t.x as tf.Tensor2D, logits = () => t.logits as tf.Tensor2D;
    const w13 = () => t.w13 as tf.Tensor3D, w2 = () => t.w2 as tf.Tensor3D;
    const w = () => t.w as tf.Tensor2D, ids = () => t.ids as tf.Tensor2D;
    const disposed = <R extends tf.Tensor>(make: () => R) => { const d = make(); d.dispose(); return d; };

    const cases: Array<[string, () => unknown, RegExp]> = [
      ['a disposed hiddenStates (fusedExperts)', () => fusedExperts(disposed(() => tf.ones([T, H]) as tf.Tensor2D), w13(),
        w2(), w(), ids()), /^fusedExperts: 'hiddenStates' is a disposed tensor \(shape \[2, 8\]\)$/],
      ['a disposed w13', () => fusedExperts(x(), disposed(() => tf.ones([E, 2 * I, H]) as tf.Tensor3D), w2(), w(), ids()),
        /^fusedExperts: 'w13' is a disposed tensor/],
      ['disposed topkIds', () => fusedExperts(x(), w13(), w2(), w(), disposed(() => tf.zeros([T, 2], 'int32') as tf.Tensor2D)),
        /^fusedExperts: 'topkIds' is a disposed tensor/],
      ['a disposed gatingOutput', () => fusedTopK(disposed(() => tf.ones([T, E]) as tf.Tensor2D), 2, true),
        /^fusedTopK: 'gatingOutput' is a disposed tensor/],
      ['a disposed hiddenStates (fusedMoE)', () => fusedMoE(disposed(() => tf.ones([T, H]) as tf.Tensor2D), logits(), w13(),
        w2(), {topK: 2, renormalize: true}), /^selectExperts: 'hiddenStates' is a disposed tensor/],
      ['an expertLoad that is a Tensor, not a Variable', () => selectExperts(x(), logits(), {topK: 2, renormalize: true,
        eplb: {logicalToPhysicalMap: [[0], [1], [2], [3]], logicalReplicaCount: [1, 1, 1, 1],
          expertLoad: tf.zeros([E], 'int32') as unknown as tf.Variable}}),
      /^selectExperts: 'eplb\.expertLoad' must be a tf\.Variable \(it is incremented in place\) but got a Tensor$/],
      ['an expertLoad that is an array', () => selectExperts(x(), logits(), {topK: 2, renormalize: true,
        eplb: {logicalToPhysicalMap: [[0], [1], [2], [3]], logicalReplicaCount: [1, 1, 1, 1],
          expertLoad: [0, 0, 0, 0] as unknown as tf.Variable}}),
      /^selectExperts: 'eplb\.expertLoad' must be a tf\.Variable \(it is incremented in place\) but got 0,0,0,0$/],
      ['ragged gatingOutput', () => fusedTopK([[1, 2, 3, 4], [1, 2]], 2, true),
        /^fusedTopK: 'gatingOutput' must be a Tensor or nested arrays of numbers: it is ragged: element \[1\] has shape \[2\] but \[0\] has \[4\]$/],
      ['ragged hiddenStates, deeper', () => fusedExperts([[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, [8]]] as never,
        w13(), w2(), w(), ids()), /'hiddenStates' must be a Tensor or nested arrays of numbers: it is ragged: element \[1\]\[7\] has shape \[1\] but \[1\]\[0\] has \[\]/],
      ['fractional topkIds', () => fusedExperts(x(), w13(), w2(), w(), [[0, 1.5], [2, 3]]),
        /^fusedExperts: 'topkIds' must be a Tensor or nested arrays of numbers: int32 needs integers but element \[0\]\[1\] is 1\.5$/],
      ['a fractional expertMap', () => fusedExperts(x(), w13(), w2(), w(), ids(), {expertMap: [0, 1, 2, 3.25]}),
        /'expertMap' must be a Tensor or nested arrays of numbers: int32 needs integers but element \[3\] is 3\.25/],
      ['a fractional replica count', () => selectExperts(x(), logits(), {topK: 2, renormalize: true,
        eplb: {logicalToPhysicalMap: [[0], [1], [2], [3]], logicalReplicaCount: [1, 1, 0.5, 1]}}),
      /'eplb\.logicalReplicaCount' must be a Tensor or nested arrays of numbers: int32 needs integers but element \[2\] is 0\.5/],
      ['a string among the logits', () => fusedTopK([[1, '2', 3, 4]] as never, 2, true),
        /'gatingOutput' must be a Tensor or nested arrays of numbers: element \[0\]\[1\] is string/],
    ];
    for (const [what, fn, message] of cases) {
      it(what, () => {
        const before = tf.memory().numTensors;
        expect(() => tf.tidy(() => { fn(); })).to.throw(Error, message);
        expect(tf.memory().numTensors, 'no tensors left behind').to.equal(before);
      });
    }

    it('nested arrays that are well formed give the same output as tensors', async () => {
      const hidden = [[0.5, -1, 2, 0, 1, -0.5, 0.25, 1], [1, 1, -1, 0.5, 0, 2, -2, 0.125]];
      const fromArrays = fusedExperts(hidden, w13(), w2(), [[0.75, 0.25], [0.5, 0.5]], [[0, 3], [1, 2]]);
      const fromTensors = tf.tidy(() => fusedExperts(tf.tensor2d(hidden), w13(), w2(), tf.tensor2d([[0.75, 0.25], [0.5, 0.5]]),
          tf.tensor2d([[0, 3], [1, 2]], undefined, 'int32')));
      // All-ones weights: every expert gives w2·(silu(s)·s) with s = Σx, per token, times the slot weights' sum 1.
      const s = hidden.map((r) => r.reduce((a, b) => a + b));
      const expected = s.flatMap((v) => new Array(H).fill(I * v * v / (1 + Math.exp(-v))));
      expectClose(await fromArrays.data(), expected, 'nested arrays');
      expectClose(await fromTensors.data(), expected, 'tensors');
      tf.dispose([fromArrays, fromTensors]);
    });
  });
});

/**
 * Ids and expert maps are checked once and then trusted: the range they were found in (or, for routing and
 * EPLB outputs, the range their shapes give) is remembered, so a tensor checked against 8 experts is not
 * trusted against 4. Each refusal names the argument; each accepted call gives the reference's numbers.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {determineExpertMap, fusedExperts, fusedExpertsImpl, fusedTopK, groupedTopK, selectExperts} from '../src';
import {expectClose, randn, rng} from './helpers/compare';
import {describeBackends} from './helpers/env';

const T = 2, H = 8, I = 4;

/** Expert weights for `E` experts and the cpu reference's output for given ids (weights 0.75 and 0.25). */
function problem(E: number, seed: number) {
  const hidden = randn(rng(0), T * H);   // the same tokens for every problem
  const r = rng(seed);
  const w13 = randn(r, E * 2 * I * H, 0.5), w2 = randn(r, E * H * I, 0.5);
  const reference = (ids: number[], k: number, expertMap: Int32Array | null = null, globalE = E) =>
    fusedExpertsImpl({hidden, topkWeights: Array.from({length: T * k}, (_, i) => (i % k === 0 ? 0.75 : 0.25)),
      topkIds: ids, expertMap, shards: [{w13, w2, numExperts: E}], numTokens: T, topK: k, hiddenSize: H,
      intermediateSize: I, globalNumExperts: globalE, activation: 'silu', applyRouterWeightOnInput: false});
  const tensors = () => ({x: tf.tensor2d(hidden, [T, H]), w13: tf.tensor3d(w13, [E, 2 * I, H]),
    w2: tf.tensor3d(w2, [E, H, I])});
  return {reference, tensors};
}

/** Counts synchronous read-backs (every check that reads goes through dataSync). */
function countReads<R>(fn: () => R): {result: R; reads: number} {
  const proto = tf.Tensor.prototype as unknown as {dataSync: (...a: unknown[]) => unknown};
  const original = proto.dataSync;
  let reads = 0;
  proto.dataSync = function(...a: unknown[]) { reads++; return original.apply(this, a); };
  try {
    return {result: fn(), reads};
  } finally {
    proto.dataSync = original;
  }
}

describeBackends('ids and expert maps trusted only within the range they were checked for', () => {
  const four = problem(4, 1), three = problem(3, 2), two = problem(2, 3);
  let w: Record<string, tf.Tensor>;
  before(() => {
    const [a, b, c] = [four.tensors(), three.tensors(), two.tensors()];
    w = {x: a.x, w13x4: a.w13, w2x4: a.w2, w13x3: b.w13, w2x3: b.w2, w13x2: c.w13, w2x2: c.w2};
  });
  after(() => tf.dispose(Object.values(w)));
  const x = () => w.x as tf.Tensor2D;
  const weights = (k: number) => tf.tensor2d(Array.from({length: T * k}, (_, i) => (i % k === 0 ? 0.75 : 0.25)), [T, k]);

  describe('routing outputs carry the E of their logits', () => {
    const logits8 = [[0, 0, 0, 0, 0, 0, 9, 8], [0, 0, 0, 0, 0, 7, 0, 9]];
    const routings: Array<[string, (l: tf.Tensor2D) => {topkWeights: tf.Tensor2D; topkIds: tf.Tensor2D}]> = [
      ['fusedTopK', (l) => fusedTopK(l, 2, true)],
      ['groupedTopK', (l) => groupedTopK(l, {topK: 2, renormalize: true, numExpertGroup: 2, topkGroup: 1})],
      ['selectExperts (llama4)', (l) => selectExperts(x(), l, {topK: 2, renormalize: false,
        customRoutingFunction: 'llama4'})],
    ];
    for (const [name, route] of routings) {
      it(`${name} over 8 experts is refused by weights for 4, without a read-back`, () => {
        const logits = tf.tensor2d(logits8);
        const r = route(logits);
        const before = tf.memory().numTensors;
        const {reads} = countReads(() => {
          expect(() => fusedExperts(x(), w.w13x4 as tf.Tensor3D, w.w2x4 as tf.Tensor3D, r.topkWeights, r.topkIds))
              .to.throw(Error, new RegExp(`fusedExperts: 'topkIds' must hold expert ids in \\[0, 4\\) but comes from ` +
                `routing over 8 experts \\(values in \\[0, 7\\]\\); 4 is the experts in 'w13'`));
        });
        expect(reads, 'read-backs').to.equal(0);
        expect(tf.memory().numTensors, 'no tensors left behind').to.equal(before);
        tf.dispose([logits, r.topkWeights, r.topkIds]);
      });
    }

    it('fusedTopK over 4 experts is trusted by weights for 4 (no read-back) and gives the reference output', async () => {
      const logits = tf.tensor2d([[0, 1, 9, 8], [7, 0, 9, 0]]);
      const r = fusedTopK(logits, 2, false);
      const ids = Array.from(await r.topkIds.data());
      expect(ids).to.deep.equal([2, 3, 2, 0]);
      const rw = Array.from(await r.topkWeights.data());
      const {result: out, reads} = countReads(() =>
        fusedExperts(x(), w.w13x4 as tf.Tensor3D, w.w2x4 as tf.Tensor3D, r.topkWeights, r.topkIds));
      expect(reads, 'read-backs').to.equal(0);
      const expected = fusedExpertsImpl({hidden: await x().data(), topkWeights: rw, topkIds: ids, expertMap: null,
        shards: [{w13: await w.w13x4.data() as Float32Array, w2: await w.w2x4.data() as Float32Array, numExperts: 4}],
        numTokens: T, topK: 2, hiddenSize: H, intermediateSize: I, globalNumExperts: 4, activation: 'silu',
        applyRouterWeightOnInput: false});
      expectClose(await out.data(), expected, 'routed over 4');
      expect(Math.max(...Array.from(await out.data()).map(Math.abs)), 'not all zero').to.be.greaterThan(0.01);
      tf.dispose([logits, r.topkWeights, r.topkIds, out]);
    });
  });

  describe("the caller's ids: checked against the range asked for each time it is narrower", () => {
    it('ids checked against 4 experts are refused by weights for 3', async () => {
      const ids = tf.tensor2d([[0, 3], [1, 2]], [T, 2], 'int32');
      const ww = weights(2);
      const out = fusedExperts(x(), w.w13x4 as tf.Tensor3D, w.w2x4 as tf.Tensor3D, ww, ids);
      expectClose(await out.data(), four.reference([0, 3, 1, 2], 2), 'ids against 4 experts');
      await ids.data();   // a GPU tensor is read for a check only after an await (webgpu has no synchronous read)
      expect(() => fusedExperts(x(), w.w13x3 as tf.Tensor3D, w.w2x3 as tf.Tensor3D, ww, ids))
          .to.throw(Error, /fusedExperts: 'topkIds' must hold expert ids in \[0, 3\) but element 1 is 3/);
      tf.dispose([ids, ww, out]);
    });

    it('ids checked against 4 experts that fit 2 are accepted by weights for 2, read once', async () => {
      const ids = tf.tensor2d([[0, 1], [1, 0]], [T, 2], 'int32');
      const ww = weights(2);
      const first = countReads(() => fusedExperts(x(), w.w13x4 as tf.Tensor3D, w.w2x4 as tf.Tensor3D, ww, ids));
      expect(first.reads, 'first call reads the ids').to.equal(1);
      const second = countReads(() => fusedExperts(x(), w.w13x2 as tf.Tensor3D, w.w2x2 as tf.Tensor3D, ww, ids));
      expect(second.reads, 'second call trusts the remembered range [0, 1]').to.equal(0);
      expectClose(await second.result.data(), two.reference([0, 1, 1, 0], 2), 'ids against 2 experts');
      tf.dispose([ids, ww, first.result, second.result]);
    });
  });

  describe('expert maps', () => {
    it('a map checked for 4 local experts is refused with 2', async () => {
      const map = tf.tensor1d([0, 1, 2, 3, -1, -1], 'int32');
      const ids = tf.tensor2d([[0, 4], [5, 1]], [T, 2], 'int32');
      const ww = weights(2);
      const out = fusedExperts(x(), w.w13x4 as tf.Tensor3D, w.w2x4 as tf.Tensor3D, ww, ids, {expertMap: map});
      const hostMap = Int32Array.from([0, 1, 2, 3, -1, -1]);
      expectClose(await out.data(), four.reference([0, 4, 5, 1], 2, hostMap, 6), 'map for 4');
      await map.data();
      expect(() => fusedExperts(x(), w.w13x2 as tf.Tensor3D, w.w2x2 as tf.Tensor3D, ww, ids, {expertMap: map}))
          .to.throw(Error, /fusedExperts: 'expertMap' must hold -1 or a local expert id in \[0, 2\) but element 2 is 2/);
      tf.dispose([map, ids, ww, out]);
    });

    it("determineExpertMap's map (4 local experts) is refused with 2, without a read-back", () => {
      const {expertMap} = determineExpertMap(2, 1, 8);
      const ids = tf.tensor2d([[4, 7], [5, 1]], [T, 2], 'int32');
      const ww = weights(2);
      const {reads} = countReads(() => {
        expect(() => fusedExperts(x(), w.w13x2 as tf.Tensor3D, w.w2x2 as tf.Tensor3D, ww, ids, {expertMap: expertMap!}))
            .to.throw(Error, /'expertMap' must hold -1 or a local expert id in \[0, 2\) but comes from determineExpertMap for 4 local experts \(values in \[-1, 3\]\)/);
      });
      expect(reads, 'read-backs').to.equal(0);
      tf.dispose([expertMap!, ids, ww]);
    });
  });

  describe('EPLB', () => {
    const logits = () => tf.tensor2d([[0, 9, 0, 8], [9, 0, 8, 0]]);
    const count = () => tf.tensor1d([2, 2, 1, 1], 'int32');

    for (const withLoad of [false, true]) {
      it(`a -1 among a row's first replicaCount entries is refused${withLoad ? ' (with expertLoad)' : ''}`, () => {
        const l = logits(), c = count();
        const map = tf.tensor2d([[0, 4], [1, -1], [2, -1], [3, -1]], [4, 2], 'int32');
        const load = withLoad ? tf.variable(tf.zeros([5], 'int32')) : undefined;
        expect(() => selectExperts(x(), l, {topK: 2, renormalize: true,
          eplb: {logicalToPhysicalMap: map, logicalReplicaCount: c, expertLoad: load}}))
            .to.throw(Error, new RegExp(`selectExperts: 'eplb.logicalToPhysicalMap' row 1 must hold physical expert ids ` +
              `${withLoad ? 'in \\[0, 5\\)' : '>= 0'} in its first 2 entries \\(logicalReplicaCount\\[1\\]\\) but entry 1 is -1`));
        tf.dispose([l, c, map, ...(load ? [load] : [])]);
      });
    }

    it('physical ids carry the largest id the map uses: refused by weights for fewer experts', async () => {
      const l = logits(), c = count();
      const map = tf.tensor2d([[0, 4], [1, 5], [2, -1], [3, -1]], [4, 2], 'int32');
      const r = selectExperts(x(), l, {topK: 2, renormalize: true, eplb: {logicalToPhysicalMap: map, logicalReplicaCount: c}});
      // Token 0 routes logical 1, 3 → replica 0 (token mod count): 1, 3; token 1 routes 0, 2 → replica 1 of 0: 4, and 2.
      expect(Array.from(await r.topkIds.data())).to.deep.equal([1, 3, 4, 2]);
      expect(() => fusedExperts(x(), w.w13x4 as tf.Tensor3D, w.w2x4 as tf.Tensor3D, r.topkWeights, r.topkIds))
          .to.throw(Error, /'topkIds' must hold expert ids in \[0, 4\) but comes from EPLB's logicalToPhysicalMap \(physical ids up to 5\)/);
      tf.dispose([l, c, map, r.topkWeights, r.topkIds]);
    });

    it("a custom routing function's ids outside the logical experts are refused before the map is read", () => {
      const l = logits(), c = count();
      const map = tf.tensor2d([[0, 4], [1, 5], [2, -1], [3, -1]], [4, 2], 'int32');
      expect(() => tf.tidy(() => { selectExperts(x(), l, {topK: 2, renormalize: true,
        customRoutingFunction: () => ({topkWeights: tf.ones([T, 2]) as tf.Tensor2D,
          topkIds: tf.tensor2d([[0, 1], [2, 9]], [T, 2], 'int32')}),
        eplb: {logicalToPhysicalMap: map, logicalReplicaCount: c}}); }))
          .to.throw(Error, /selectExperts: 'topkIds' must hold logical expert ids in \[0, 4\) but element 3 is 9/);
      tf.dispose([l, c, map]);
    });
  });
});

/**
 * fusedExperts on every backend against the cpu reference (fusedExpertsImpl) on random shapes that are
 * no tile's multiple, with the webgpu kernel's decode (GEMV) and prefill (align + grouped GEMM) paths
 * each forced: T = 1, prime T, E = 1, k = E, expertMap with -1s, router weight on the input, gelu, and
 * weights split into 2-3 tensors. On webgpu it also checks that a forward pass reads nothing back.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {Activation, fusedExperts, fusedExpertsImpl} from '../src';
import {ExpertsPath, setFusedExpertsBlockRows, setFusedExpertsPath, setFusedExpertsShardBinding, setFusedExpertsSplitK,
  setFusedExpertsTileK} from '../src/kernels/webgpu/FusedExperts';
import {randomPairs} from './helpers/cases';
import {expectClose, randn, rng} from './helpers/compare';
import {countReadBacks, describeAgainstReference, expectNoLeaks} from './helpers/env';

interface ExpertsParityCase {
  T: number; E: number; k: number; H: number; I: number;
  /** Experts per weight tensor, summing to E. */
  shards: number[];
  /** Global experts when an expertMap is used (every 3rd id maps to -1). */
  globalE?: number;
  activation?: Activation;
  onInput?: boolean;
}

function makeCase(seed: number, c: ExpertsParityCase) {
  const rand = rng(seed);
  const {T, k, H, I} = c;
  const {ids, weights, expertMap, globalNumExperts: Eg} = randomPairs(rand, T, k, c.E, c.globalE);
  const hidden = randn(rand, T * H);
  const shards = c.shards.map((n) => ({w13: randn(rand, n * 2 * I * H, 0.3), w2: randn(rand, n * H * I, 0.3), numExperts: n}));
  const expected = fusedExpertsImpl({hidden, topkWeights: weights, topkIds: ids, expertMap, shards, numTokens: T,
    topK: k, hiddenSize: H, intermediateSize: I, globalNumExperts: Eg, activation: c.activation ?? 'silu',
    applyRouterWeightOnInput: !!c.onInput});
  const tensors = () => ({
    hidden: tf.tensor2d(hidden, [T, H]),
    w13: shards.map((s) => tf.tensor3d(s.w13, [s.numExperts, 2 * I, H])),
    w2: shards.map((s) => tf.tensor3d(s.w2, [s.numExperts, H, I])),
    weights: tf.tensor2d(weights, [T, k]),
    ids: tf.tensor2d(ids, [T, k], 'int32'),
    map: expertMap ? tf.tensor1d(expertMap, 'int32') : undefined,
  });
  return {expected, tensors};
}

const CASES: {[name: string]: ExpertsParityCase} = {
  'T=1, H=37, I=29': {T: 1, E: 4, k: 2, H: 37, I: 29, shards: [4]},
  'T=13, H=37, I=29, 2 weight tensors': {T: 13, E: 4, k: 2, H: 37, I: 29, shards: [1, 3]},
  'T=97, 3 weight tensors, expertMap with -1s': {T: 97, E: 5, k: 3, H: 20, I: 12, shards: [2, 1, 2], globalE: 8},
  'E=1, k=1': {T: 13, E: 1, k: 1, H: 24, I: 17, shards: [1]},
  'k=E': {T: 7, E: 4, k: 4, H: 36, I: 20, shards: [2, 2]},
  'gelu, router weight on the input (k=1)': {T: 11, E: 3, k: 1, H: 28, I: 13, shards: [3], activation: 'gelu',
    onInput: true},
  'gelu, H and I multiples of 4 (vector loads)': {T: 5, E: 6, k: 2, H: 64, I: 32, shards: [3, 3], activation: 'gelu'},
  // T = 1 with 4 ≤ k ≤ 8 and one weight tensor: the decode path fuses w2 with the combine.
  'T=1, k=6, expertMap with -1s, one weight tensor': {T: 1, E: 5, k: 6, H: 20, I: 13, shards: [5], globalE: 8},
  'T=1, k=8, H and I multiples of 4, one weight tensor': {T: 1, E: 8, k: 8, H: 64, I: 32, shards: [8]},
  // T = 1 with weights split: the decode GEMVs (and the fused w2 + combine for k ≥ 4) bind every tensor.
  'T=1, k=2, 2 weight tensors': {T: 1, E: 4, k: 2, H: 37, I: 29, shards: [1, 3]},
  'T=1, k=6, expertMap with -1s, 3 weight tensors': {T: 1, E: 5, k: 6, H: 20, I: 13, shards: [2, 1, 2], globalE: 8},
  'T=1, k=8, H and I multiples of 4, 2 weight tensors': {T: 1, E: 8, k: 8, H: 64, I: 32, shards: [3, 5]},
  'T=1, k=4, gelu, 2 weight tensors': {T: 1, E: 6, k: 4, H: 24, I: 16, shards: [4, 2], activation: 'gelu'},
  'T=1, k=1, gelu, router weight on the input, 2 weight tensors': {T: 1, E: 3, k: 1, H: 28, I: 13, shards: [1, 2],
    activation: 'gelu', onInput: true},
};

describeAgainstReference('fusedExperts parity with the cpu reference', (backend) => {
  const paths: ExpertsPath[] = backend === 'webgpu' ? ['decode', 'decode-grouped', 'prefill'] : ['decode'];
  afterEach(() => {
    setFusedExpertsPath(null); setFusedExpertsTileK(null); setFusedExpertsSplitK(null); setFusedExpertsBlockRows(null);
    setFusedExpertsShardBinding(null);
  });

  let seed = 100;
  for (const [name, c] of Object.entries(CASES)) {
    const caseSeed = seed++;
    for (const path of paths) {
      it(`${name}${backend === 'webgpu' ? ` (${path} path)` : ''}`, async () => {
        const {expected, tensors} = makeCase(caseSeed, c);
        const t = tensors();
        setFusedExpertsPath(path);
        await expectNoLeaks(async () => {
          const out = fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids,
              {expertMap: t.map, activation: c.activation, applyRouterWeightOnInput: c.onInput});
          expect(out.shape).to.deep.equal([c.T, c.H]);
          expectClose(await out.data(), expected, `${name} ${path}`);
          out.dispose();
        });
        tf.dispose([t.hidden, ...t.w13, ...t.w2, t.weights, t.ids, ...(t.map ? [t.map] : [])]);
      });
    }
  }

  if (backend === 'webgpu') {
    for (const tileK of [16, 32]) {
      for (const name of ['T=97, 3 weight tensors, expertMap with -1s', 'gelu, H and I multiples of 4 (vector loads)']) {
        it(`${name} (prefill path, ${tileK}-k GEMM tiles)`, async () => {
          const {expected, tensors} = makeCase(300 + tileK, CASES[name]);
          const t = tensors();
          setFusedExpertsPath('prefill');
          setFusedExpertsTileK(tileK);
          const c = CASES[name];
          const out = fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids,
              {expertMap: t.map, activation: c.activation, applyRouterWeightOnInput: c.onInput});
          expectClose(await out.data(), expected, `${name} tileK ${tileK}`);
          tf.dispose([out, t.hidden, ...t.w13, ...t.w2, t.weights, t.ids, ...(t.map ? [t.map] : [])]);
        });
      }
    }

    // Split-K w2 GEMM (K parts summed by the combine) and short row tiles; I = 29 and 12 are no tile's multiple,
    // and 3 K parts of I = 29 (2 k tiles) leave a part with no k tile at all.
    for (const [splitK, blockRows] of [[2, 16], [3, 32], [4, 128]]) {
      for (const name of ['T=97, 3 weight tensors, expertMap with -1s', 'gelu, router weight on the input (k=1)',
        'T=13, H=37, I=29, 2 weight tensors', 'gelu, H and I multiples of 4 (vector loads)']) {
        it(`${name} (prefill path, w2 split in ${splitK} K parts, ${blockRows}-row tiles)`, async () => {
          const {expected, tensors} = makeCase(400 + splitK, CASES[name]);
          const t = tensors();
          setFusedExpertsPath('prefill');
          setFusedExpertsSplitK(splitK);
          setFusedExpertsBlockRows(blockRows);
          const c = CASES[name];
          const out = fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids,
              {expertMap: t.map, activation: c.activation, applyRouterWeightOnInput: c.onInput});
          expectClose(await out.data(), expected, `${name} splitK ${splitK}`);
          tf.dispose([out, t.hidden, ...t.w13, ...t.w2, t.weights, t.ids, ...(t.map ? [t.map] : [])]);
        });
      }
    }

    // The decode GEMVs one dispatch per weight tensor (the layout used when the tensors exceed the bindings).
    for (const name of ['T=13, H=37, I=29, 2 weight tensors', 'T=1, k=6, expertMap with -1s, 3 weight tensors']) {
      it(`${name} (decode path, one dispatch per weight tensor)`, async () => {
        const {expected, tensors} = makeCase(500, CASES[name]);
        const t = tensors();
        setFusedExpertsPath('decode');
        setFusedExpertsShardBinding('per-shard');
        const c = CASES[name];
        const out = fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids,
            {expertMap: t.map, activation: c.activation, applyRouterWeightOnInput: c.onInput});
        expectClose(await out.data(), expected, `${name} per shard`);
        tf.dispose([out, t.hidden, ...t.w13, ...t.w2, t.weights, t.ids, ...(t.map ? [t.map] : [])]);
      });
    }

    /** Two calls on the same inputs must agree bit for bit: every path sums in a fixed order, no float atomics. */
    const repeatable = (what: string, seed: number, caseName: keyof typeof CASES, path: ExpertsPath, splitK?: number) =>
      it(`gives bit-identical results on repeated ${what}`, async () => {
        const t = makeCase(seed, CASES[caseName]).tensors();
        setFusedExpertsPath(path);
        if (splitK != null) setFusedExpertsSplitK(splitK);
        const run = async () => {
          const out = fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids, {expertMap: t.map});
          const v = await out.data();
          out.dispose();
          return v;
        };
        expect(Array.from(await run())).to.deep.equal(Array.from(await run()));
        tf.dispose([t.hidden, ...t.w13, ...t.w2, t.weights, t.ids, ...(t.map ? [t.map] : [])]);
      });
    repeatable('decode calls over 3 weight tensors (fused w2 + combine)', 10,
        'T=1, k=6, expertMap with -1s, 3 weight tensors', 'decode');
    repeatable('split-K prefill calls', 9, 'T=97, 3 weight tensors, expertMap with -1s', 'prefill', 4);
    repeatable('prefill calls (no float atomics)', 7, 'T=97, 3 weight tensors, expertMap with -1s', 'prefill');

    // How "no read-back" is checked: during the forward pass (inputs already uploaded by a first call),
    // count backend.read/readSync calls and GPUBuffer.mapAsync calls (every GPU→CPU copy in tfjs's webgpu
    // backend maps a staging buffer). Both must stay 0 until the caller asks for the output.
    for (const path of ['decode', 'decode-grouped', 'prefill'] as ExpertsPath[]) {
      it(`reads nothing back to the CPU during a forward pass (${path} path)`, async () => {
        const {tensors} = makeCase(8, CASES['T=13, H=37, I=29, 2 weight tensors']);
        const t = tensors();
        setFusedExpertsPath(path);
        const call = () => fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids);
        const warm = call();
        await warm.data();
        warm.dispose();

        const {out, reads, maps} = await countReadBacks(call);
        expect({reads, maps}).to.deep.equal({reads: 0, maps: 0});
        out.dispose();
        tf.dispose([t.hidden, ...t.w13, ...t.w2, t.weights, t.ids]);
      });
    }
  }
});

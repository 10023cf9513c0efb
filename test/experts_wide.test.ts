/**
 * fusedExperts at shapes wider than two tiles in every direction of each webgpu expert program, against the
 * cpu reference (fusedExpertsImpl): the other suites stay within one GEMM tile (H <= 64, I <= 96), so tiles
 * with workgroupId.y > 0, GEMV rows longer than two unrolled steps, split-K over several k tiles per part and
 * a combine over several workgroups only ran on real GPUs. Sizes (webgpu programs, src/kernels/webgpu):
 *   decode GEMV (experts_gemv, w2_combine_gemv): 1 row per workgroup here (small grids), 256 lanes × 4 unrolled
 *     steps = 1024 vector units of K per iteration; K = 2213 units is two iterations and a tail;
 *   grouped GEMV (experts_grouped_gemv): 8 rows per workgroup, 32 lanes over K, 4 pairs per pass;
 *   GEMM (experts_gemm): blockRows sorted rows × 64 (w13) or 128 (w2) outputs per tile, 16-k tiles;
 *   combine (experts_combine): 256 outputs (or vec4s) of H per workgroup.
 * On cpu there is nothing to compare (the reference is the cpu kernel), so the suite runs on the other backends.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {Activation, fusedExperts, fusedExpertsImpl} from '../src';
import {ExpertsPath, setFusedExpertsBlockRows, setFusedExpertsPath, setFusedExpertsSplitK, setFusedExpertsTileK}
  from '../src/kernels/webgpu/FusedExperts';
import {randomPairs} from './helpers/cases';
import {expectClose, randn, rng} from './helpers/compare';
import {describeBackends, expectNoLeaks} from './helpers/env';

interface WideCase {
  T: number; E: number; k: number; H: number; I: number;
  /** Experts per weight tensor (default: one tensor). */
  shards?: number[];
  /** Global experts with an expertMap (every 3rd maps to -1). */
  globalE?: number;
  activation?: Activation;
  /** webgpu: the path and GEMM settings forced for this case. */
  path: ExpertsPath; blockRows?: number; splitK?: number; tileK?: number;
  why: string;
}

const CASES: WideCase[] = [
  {T: 1, E: 4, k: 2, H: 8852, I: 40, path: 'decode',
    why: 'w13 GEMV over K = 2213 vec4 (2 unrolled iterations + tail), w2 GEMV over 8852 rows'},
  {T: 1, E: 6, k: 4, H: 40, I: 2213, path: 'decode', activation: 'gelu',
    why: 'w13 GEMV over 2213 rows, fused w2 + combine over K = 2213 scalars'},
  {T: 1, E: 5, k: 2, H: 36, I: 2213, shards: [2, 3], path: 'decode',
    why: 'w2 GEMV over K = 2213 scalars, 2 weight tensors'},
  {T: 40, E: 4, k: 2, H: 300, I: 150, path: 'decode-grouped',
    why: '~20 pairs per expert (5 passes), 19 × 8 w13 rows over K = 75 vec4, 38 × 8 w2 rows over K = 150'},
  {T: 64, E: 3, k: 2, H: 300, I: 150, path: 'prefill', blockRows: 16,
    why: '~43 rows per expert (3 row tiles), 3 w13 and 3 w2 column tiles, 19 and 10 k tiles'},
  {T: 64, E: 4, k: 2, H: 300, I: 150, shards: [1, 3], globalE: 6, path: 'prefill', blockRows: 32, tileK: 32,
    why: '32-row, 32-k tiles, 2 weight tensors, expertMap with -1s'},
  {T: 64, E: 3, k: 2, H: 300, I: 150, path: 'prefill', blockRows: 16, splitK: 3, activation: 'gelu',
    why: 'w2 split in 3 K parts of 4, 4, 2 k tiles'},
  {T: 50, E: 3, k: 3, H: 260, I: 150, path: 'prefill', blockRows: 32, splitK: 4,
    why: 'w2 split in 4 K parts of 3, 3, 3, 1 k tiles'},
  {T: 40, E: 2, k: 2, H: 2100, I: 24, path: 'prefill', blockRows: 16,
    why: 'combine over 9 workgroups of H (scalar), w13 over 132 k tiles, w2 over 17 column tiles'},
];

function makeCase(seed: number, c: WideCase) {
  const rand = rng(seed);
  const {T, k, H, I} = c;
  const shards = c.shards ?? [c.E];
  const {ids, weights, expertMap, globalNumExperts: Eg} = randomPairs(rand, T, k, c.E, c.globalE);
  // Weight scale 1/√K keeps every dot product O(1), so the tolerance means the same at every width.
  const hidden = randn(rand, T * H);
  const w = shards.map((n) => ({w13: randn(rand, n * 2 * I * H, 1 / Math.sqrt(H)), w2: randn(rand, n * H * I, 1 / Math.sqrt(I)),
    numExperts: n}));
  const expected = fusedExpertsImpl({hidden, topkWeights: weights, topkIds: ids, expertMap, shards: w, numTokens: T,
    topK: k, hiddenSize: H, intermediateSize: I, globalNumExperts: Eg, activation: c.activation ?? 'silu',
    applyRouterWeightOnInput: false});
  return {expected, hidden, ids, weights, expertMap, w};
}

describeBackends('fusedExperts wider than two tiles in every direction, against the cpu reference', (backend) => {
  if (backend === 'cpu') return;   // the reference itself: nothing to compare
  afterEach(() => {
    setFusedExpertsPath(null); setFusedExpertsBlockRows(null); setFusedExpertsSplitK(null); setFusedExpertsTileK(null);
  });
  CASES.forEach((c, i) => {
    const settings = backend === 'webgpu' ? ` (${c.path}${c.blockRows ? `, ${c.blockRows}-row tiles` : ''}` +
      `${c.tileK ? `, ${c.tileK}-k tiles` : ''}${c.splitK ? `, split-K ${c.splitK}` : ''})` : '';
    it(`T=${c.T} E=${c.E} k=${c.k} H=${c.H} I=${c.I}: ${c.why}${settings}`, async () => {
      const p = makeCase(700 + i, c);
      if (backend === 'webgpu') {
        setFusedExpertsPath(c.path);
        if (c.blockRows) setFusedExpertsBlockRows(c.blockRows);
        if (c.splitK) setFusedExpertsSplitK(c.splitK);
        if (c.tileK) setFusedExpertsTileK(c.tileK);
      }
      const t = {
        hidden: tf.tensor2d(p.hidden, [c.T, c.H]),
        w13: p.w.map((s) => tf.tensor3d(s.w13, [s.numExperts, 2 * c.I, c.H])),
        w2: p.w.map((s) => tf.tensor3d(s.w2, [s.numExperts, c.H, c.I])),
        weights: tf.tensor2d(p.weights, [c.T, c.k]),
        ids: tf.tensor2d(p.ids, [c.T, c.k], 'int32'),
        map: p.expertMap ? tf.tensor1d(p.expertMap, 'int32') : undefined,
      };
      await expectNoLeaks(async () => {
        const out = fusedExperts(t.hidden, t.w13, t.w2, t.weights, t.ids, {expertMap: t.map, activation: c.activation});
        expect(out.shape).to.deep.equal([c.T, c.H]);
        expectClose(await out.data(), p.expected, `case ${i}`, {atol: 2e-5, rtolOfMax: 2e-5});
        out.dispose();
      });
      tf.dispose([t.hidden, ...t.w13, ...t.w2, t.weights, t.ids, ...(t.map ? [t.map] : [])]);
    });
  });
});

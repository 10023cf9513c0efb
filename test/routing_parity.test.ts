/**
 * Routing and EPLB on every backend against the reference (src/kernels/cpu/*_impl.ts), over random
 * shapes: T ∈ {1, 7, 33, 222}, E ∈ {1, 8, 64, 256}, k ∈ {1, 2, 6, E}, softmax and sigmoid, a
 * correction bias, grouped top-k (16/8/2 and DeepSeek-V3's 256/8/4/8), scaling 1 and 2.5, and rows
 * of NaN and ±Inf. On webgpu every case runs twice: with subgroups (where the device has them) and
 * with the flag that forces the workgroup-memory path.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {EplbMapIds, ExpertLoad, RoutingConfig, eplbMapIdsImpl, expertLoadImpl, fusedTopK, groupedTopK, routingImpl,
  selectExperts} from '../src';
import {expectWeightsById, randn, rng} from './helpers/compare';
import {describeAgainstReference, expectNoLeaks} from './helpers/env';

const TOKENS = [1, 7, 33, 222];
// The flag is registered by tfjs-fused-moe/webgpu (src/kernels/webgpu/capabilities.ts).
const SUBGROUPS_FLAG = 'MOE_WEBGPU_SUBGROUPS';

/** Which reduction paths a backend has: webgpu's subgroup and workgroup-memory forms, else one. */
function paths(backend: string): Array<{name: string; subgroups: boolean}> {
  return backend === 'webgpu' ?
    [{name: 'subgroups if present', subgroups: true}, {name: 'workgroup memory', subgroups: false}] :
    [{name: 'reference', subgroups: true}];
}

/** Each row: k distinct ids in [0, E), finite weights, ordered by weight desc then id asc. */
function expectValidRows(w: ArrayLike<number>, ids: ArrayLike<number>, T: number, k: number, E: number,
    what: string): void {
  const allIds = Array.from(ids);
  for (let t = 0; t < T; t++) {
    const row = allIds.slice(t * k, t * k + k);
    expect(new Set(row).size, `${what}: row ${t} ids [${row}] distinct`).to.equal(k);
    for (let j = 0; j < k; j++) {
      const e = ids[t * k + j], x = w[t * k + j];
      if (!(e >= 0 && e < E)) expect.fail(`${what}: row ${t} id ${e} outside [0, ${E})`);
      if (!Number.isFinite(x)) expect.fail(`${what}: row ${t} weight ${j} is ${x}`);
      if (j > 0) {
        const prev = w[t * k + j - 1];
        if (x > prev || (x === prev && e < ids[t * k + j - 1])) {
          expect.fail(`${what}: row ${t} slot ${j} (${e}: ${x}) is out of order after (${ids[t * k + j - 1]}: ${prev})`);
        }
      }
    }
  }
}

interface RoutingCase {
  T: number;
  E: number;
  cfg: RoutingConfig;
  logits: Float32Array;
  bias: Float32Array | null;
}

/** Runs the op for a case (grouped when numExpertGroup > 1) and checks it against routingImpl. */
async function checkRouting(c: RoutingCase, what: string): Promise<void> {
  const {T, E, cfg} = c;
  const ref = routingImpl(c.logits, T, E, c.bias, cfg);
  await expectNoLeaks(async () => {
    const x = tf.tensor2d(c.logits, [T, E]);
    const bias = c.bias ? tf.tensor1d(c.bias) : undefined;
    const opts = {scoringFunc: cfg.scoringFunc, eScoreCorrectionBias: bias, routedScalingFactor: cfg.routedScalingFactor};
    const {topkWeights, topkIds} = cfg.numExpertGroup > 1 ?
      groupedTopK(x, {...opts, topK: cfg.topK, renormalize: cfg.renormalize, numExpertGroup: cfg.numExpertGroup,
        topkGroup: cfg.topkGroup}) :
      fusedTopK(x, cfg.topK, cfg.renormalize, opts);
    expect(topkWeights.dtype).to.equal('float32');
    expect(topkIds.dtype).to.equal('int32');
    expect(topkIds.shape).to.deep.equal([T, cfg.topK]);
    const [w, ids] = [await topkWeights.data(), await topkIds.data()];
    expectValidRows(w, ids, T, cfg.topK, E, what);
    expectWeightsById(w, ids, ref.weights, ref.ids, cfg.topK, what);
    tf.dispose([x, topkWeights, topkIds, ...(bias ? [bias] : [])]);
  });
}

function config(o: Partial<RoutingConfig> & {topK: number}): RoutingConfig {
  return {renormalize: false, scoringFunc: 'softmax', routedScalingFactor: 1, numExpertGroup: 1, topkGroup: 1, ...o};
}

describeAgainstReference('routing parity', (backend) => {
  for (const path of paths(backend)) {
    describe(path.name, () => {
      before(() => { if (backend === 'webgpu') tf.env().set(SUBGROUPS_FLAG, path.subgroups); });
      after(() => { if (backend === 'webgpu') tf.env().set(SUBGROUPS_FLAG, true); });

      for (const E of [1, 8, 64, 256]) {
        for (const k of [...new Set([1, 2, 6, E])].filter((k) => k <= E)) {
          // k = E checks O(k²) per row in the helpers: fewer rows there.
          const tokens = k === E && E >= 64 ? TOKENS.slice(0, 3) : TOKENS;
          it(`fusedTopK E=${E} k=${k}: softmax, then sigmoid + bias with scale 2.5; T ${tokens}`, async () => {
            for (const T of tokens) {
              const rand = rng(T * 7919 + E * 31 + k);
              const logits = randn(rand, T * E, 2);
              const renormalize = (T + k) % 2 === 0;
              await checkRouting({T, E, logits, bias: null, cfg: config({topK: k, renormalize})},
                  `T=${T} E=${E} k=${k} softmax renormalize=${renormalize}`);
              await checkRouting({T, E, logits, bias: randn(rand, E, 0.5),
                cfg: config({topK: k, renormalize: !renormalize, scoringFunc: 'sigmoid', routedScalingFactor: 2.5})},
              `T=${T} E=${E} k=${k} sigmoid+bias renormalize=${!renormalize}`);
            }
          });
        }
      }

      for (const scoringFunc of ['softmax', 'sigmoid'] as const) {
        for (const withBias of [false, true]) {
          for (const scale of [1, 2.5]) {
            it(`groupedTopK E=16 groups=8 topkGroup=2 k=2,4 ${scoringFunc} bias=${withBias} scale=${scale}`,
                async () => {
                  for (const T of TOKENS) {
                    for (const k of [2, 4]) {
                      const rand = rng(T * 104729 + k * 13 + (withBias ? 1 : 0) + scale * 100);
                      await checkRouting({T, E: 16, logits: randn(rand, T * 16, 2),
                        bias: withBias ? randn(rand, 16, 0.5) : null, cfg: config({topK: k, renormalize: k === 4,
                          scoringFunc, routedScalingFactor: scale, numExpertGroup: 8, topkGroup: 2})},
                      `T=${T} k=${k}`);
                    }
                  }
                });
          }
        }
      }

      it('groupedTopK DeepSeek-V3: E=256, 8 groups, topkGroup 4, k=8, sigmoid + bias, scale 2.5', async () => {
        for (const T of TOKENS) {
          const rand = rng(T + 256);
          await checkRouting({T, E: 256, logits: randn(rand, T * 256, 2), bias: randn(rand, 256, 0.1),
            cfg: config({topK: 8, renormalize: true, scoringFunc: 'sigmoid', routedScalingFactor: 2.5,
              numExpertGroup: 8, topkGroup: 4})}, `T=${T}`);
        }
      });

      it('groupedTopK without a bias ranks groups by their best raw logit (E=256, 8/4, k=8, softmax)', async () => {
        const rand = rng(99);
        await checkRouting({T: 33, E: 256, logits: randn(rand, 33 * 256, 2), bias: null,
          cfg: config({topK: 8, renormalize: false, numExpertGroup: 8, topkGroup: 4})}, 'T=33');
      });

      it('NaN and ±Inf logits give distinct in-range ids and the reference weights', async () => {
        const E = 8, k = 3;
        const rows = [
          [NaN, 1, 2, NaN, 0, -1, 3, NaN],
          [Infinity, 0, Infinity, 1, -Infinity, 2, NaN, 0],
          [NaN, NaN, NaN, NaN, NaN, NaN, NaN, NaN],
          [Infinity, Infinity, Infinity, Infinity, Infinity, Infinity, Infinity, Infinity],
          [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity],
          [-Infinity, NaN, -Infinity, 5, NaN, -Infinity, 4, NaN],
          [1, 1, 1, 1, 1, 1, 1, 1],
          [0, -0, 0, -0, 2, 2, -0, 0],
        ];
        const logits = new Float32Array(rows.flat());
        const T = rows.length;
        for (const scoringFunc of ['softmax', 'sigmoid'] as const) {
          await checkRouting({T, E, logits, bias: null, cfg: config({topK: k, renormalize: true, scoringFunc})},
              `${scoringFunc}`);
          await checkRouting({T, E, logits, bias: new Float32Array([0, 0.5, NaN, 0, Infinity, 0, -Infinity, 0.25]),
            cfg: config({topK: k, renormalize: false, scoringFunc})}, `${scoringFunc} + bias`);
          await checkRouting({T, E, logits, bias: new Float32Array(E).fill(0.125),
            cfg: config({topK: k, renormalize: true, scoringFunc, numExpertGroup: 4, topkGroup: 2})},
          `${scoringFunc} grouped`);
        }
      });

      // The row → workgroup mapping is the same on both paths; SwiftShader runs the barrier-heavy one slowly.
      if (path.subgroups) it('more rows than one dispatch dimension holds (T = 70000 > 65535)', async () => {
        const T = 70000, E = 8, k = 2;
        const logits = randn(rng(70000), T * E, 2);
        const ref = routingImpl(logits, T, E, null, config({topK: k, renormalize: true}));
        const x = tf.tensor2d(logits, [T, E]);
        const {topkWeights, topkIds} = fusedTopK(x, k, true);
        const [w, ids] = [await topkWeights.data(), await topkIds.data()];
        tf.dispose([x, topkWeights, topkIds]);
        // Linear checks (the helpers' per-row copies are quadratic in T): k = 2 rows as unordered pairs.
        for (let t = 0; t < T; t++) {
          const [a0, a1, e0, e1] = [ids[2 * t], ids[2 * t + 1], ref.ids[2 * t], ref.ids[2 * t + 1]];
          const same = a0 === e0 && a1 === e1 ? [0, 1] : a0 === e1 && a1 === e0 ? [1, 0] : null;
          if (!same) expect.fail(`row ${t}: ids [${a0}, ${a1}], expected [${e0}, ${e1}]`);
          for (let j = 0; j < 2; j++) {
            if (!(Math.abs(w[2 * t + same[j]] - ref.weights[2 * t + j]) <= 1e-5)) {
              expect.fail(`row ${t}: weight ${w[2 * t + same[j]]}, expected ${ref.weights[2 * t + j]}`);
            }
          }
        }
      });

      it('ties go to the lower expert id, in exactly the reference order', async () => {
        const T = 3, E = 64, k = 6;
        const logits = new Float32Array(T * E);
        for (let e = 0; e < E; e++) {
          logits[e] = e % 4;             // row 0: sixteen experts tie at 3
          logits[E + e] = 1;             // row 1: all tie
          logits[2 * E + e] = -(e % 8);  // row 2: eight tie at 0
        }
        const ref = routingImpl(logits, T, E, null, config({topK: k, renormalize: true}));
        const x = tf.tensor2d(logits, [T, E]);
        const {topkWeights, topkIds} = fusedTopK(x, k, true);
        expect(Array.from(await topkIds.data())).to.deep.equal(Array.from(ref.ids));
        tf.dispose([x, topkWeights, topkIds]);
      });

      if (backend === 'webgpu') {
        it('routing and the EPLB kernels read nothing back to the CPU', async () => {
          // Count the backend's reads while the kernels run; the instance's own methods are removed after.
          const b = tf.backend() as tf.KernelBackend;
          const reads: string[] = [];
          const {read, readSync} = b;
          b.read = (dataId: object) => { reads.push('read'); return read.call(b, dataId); };
          b.readSync = (dataId: object) => { reads.push('readSync'); return readSync.call(b, dataId); };
          const made: tf.Tensor[] = [];
          try {
            const T = 33, E = 64, k = 6;
            const x = tf.tensor2d(randn(rng(5), T * E, 2), [T, E]);
            const bias = tf.tensor1d(randn(rng(6), E, 0.1));
            made.push(x, bias);
            const a = fusedTopK(x, k, true);
            const g = groupedTopK(x, {topK: k, renormalize: true, numExpertGroup: 8, topkGroup: 4,
              scoringFunc: 'sigmoid', eScoreCorrectionBias: bias, routedScalingFactor: 2.5});
            const map = tf.tensor2d(Int32Array.from({length: E * 2}, (_, i) => i % E), [E, 2], 'int32');
            const count = tf.ones([E], 'int32');
            const physical = tf.engine().runKernel(EplbMapIds,
                {topkIds: g.topkIds, logicalToPhysicalMap: map, logicalReplicaCount: count}) as tf.Tensor;
            const load = tf.engine().runKernel(ExpertLoad, {topkIds: physical}, {numExperts: E}) as tf.Tensor;
            made.push(a.topkWeights, a.topkIds, g.topkWeights, g.topkIds, map, count, physical, load);
          } finally {
            delete (b as Partial<tf.KernelBackend>).read;
            delete (b as Partial<tf.KernelBackend>).readSync;
          }
          expect(reads, 'reads during the forward pass').to.deep.equal([]);
          const load = await made[made.length - 1].data();
          expect(Array.from(load).reduce((s, v) => s + v, 0), 'every (token, slot) counted').to.equal(33 * 6);
          tf.dispose(made);
        });
      }

      it('EPLB maps ids to replicas and counts the load, with and without an expert map', async () => {
        const T = 33, E = 16, k = 4, maxReplicas = 3, P = 24;
        const rand = rng(4242);
        const replicaCount = Int32Array.from({length: E}, () => 1 + Math.floor(rand() * maxReplicas));
        const map = new Int32Array(E * maxReplicas).fill(-1);
        for (let e = 0; e < E; e++) {
          for (let r = 0; r < replicaCount[e]; r++) map[e * maxReplicas + r] = Math.floor(rand() * P);
        }
        const expertMap = Int32Array.from({length: P}, (_, p) => (p % 3 === 0 ? -1 : p));
        const logits = randn(rand, T * E, 2);
        const routed = routingImpl(logits, T, E, null, config({topK: k, renormalize: true}));
        const physical = eplbMapIdsImpl(routed.ids, T, k, map, maxReplicas, replicaCount);
        for (const useMap of [false, true]) {
          await expectNoLeaks(async () => {
            const zeros = tf.zeros([P], 'int32');
            const load = tf.variable(zeros);
            zeros.dispose();
            const x = tf.zeros([T, 8]) as tf.Tensor2D;
            const eplb = {logicalToPhysicalMap: tf.tensor2d(map, [E, maxReplicas], 'int32'),
              logicalReplicaCount: tf.tensor1d(replicaCount, 'int32'), expertLoad: load};
            const em = useMap ? tf.tensor1d(expertMap, 'int32') : undefined;
            const logitsT = tf.tensor2d(logits, [T, E]);
            const {topkWeights, topkIds} = selectExperts(x, logitsT, {topK: k, renormalize: true, eplb, expertMap: em});
            expect(Array.from(await topkIds.data()), 'physical ids').to.deep.equal(Array.from(physical));
            expect(Array.from(await load.data()), `load (expert map: ${useMap})`)
                .to.deep.equal(Array.from(expertLoadImpl(physical, P, useMap ? expertMap : null)));
            tf.dispose([x, logitsT, topkWeights, topkIds, eplb.logicalToPhysicalMap, eplb.logicalReplicaCount, load,
              ...(em ? [em] : [])]);
          });
        }
      });
    });
  }
});

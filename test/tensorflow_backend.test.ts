/**
 * The 'tensorflow' kernels (tfjs-node on a real libtensorflow) against the reference in
 * src/kernels/cpu: both FusedExperts compositions (decode, prefill) on random shapes with expert
 * maps, split weights, chunked weight gathers and both activations; routing with ties, -0 and
 * NaN/±Inf compared slot by slot; no read-back in a forward pass; no leaked TensorFlow handles.
 * Runs when MOE_BACKENDS names 'tensorflow'.
 */
import {execFileSync} from 'child_process';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {FusedExperts, eplbMapIdsImpl, expertLoadImpl, fusedExperts, fusedExpertsImpl, fusedMoE, fusedTopK,
  groupedTopK, routingImpl, selectExperts} from '../src';
import type {Activation, ExpertShard} from '../src';
import {FLOAT32_FORMAT, formatKey} from '../src/quant/format';
import {MAX_GATHERED_BYTES_FLAG, chooseExpertsComposition} from '../src/node';
import {checkIndexRange} from '../src/kernels/tensorflow/Eplb';
import {fusedExpertsConfig} from '../src/kernels/tensorflow/FusedExperts';
import {expectClose, randn, rng} from './helpers/compare';
import {backendsUnderTest, expectNoLeaks} from './helpers/env';

interface ExpertsProblem {
  T: number; E: number; k: number; H: number; I: number;
  hidden: Float32Array; w13: Float32Array; w2: Float32Array;
  weights: Float32Array; ids: Int32Array;
  /** Global → local, -1 off this rank; null: all E experts are local. */
  expertMap: Int32Array | null;
  numLocal: number;
  /** Local experts per weight shard. */
  split: number[];
  activation: Activation;
  onInput: boolean;
}

/** A random problem: distinct ids per row, optionally expert-parallel and split into shards. */
function randomProblem(seed: number, T: number, E: number, k: number, o: {ep?: boolean; shards?: number;
    activation?: Activation; onInput?: boolean} = {}): ExpertsProblem {
  const r = rng(seed);
  const H = 8 + Math.floor(r() * 12), I = 4 + Math.floor(r() * 10);
  let expertMap: Int32Array | null = null, numLocal = E;
  if (o.ep) {
    // A random subset of the experts is local, in a random order.
    expertMap = new Int32Array(E).fill(-1);
    const local = Array.from({length: E}, (_, e) => e).filter(() => r() < 0.6);
    if (local.length === 0) local.push(0);
    local.sort(() => r() - 0.5).forEach((e, i) => { expertMap![e] = i; });
    numLocal = local.length;
  }
  const numShards = Math.min(o.shards ?? 1, numLocal);
  const split: number[] = [];
  for (let s = 0, left = numLocal; s < numShards; s++) {
    const n = s === numShards - 1 ? left : 1 + Math.floor(r() * (left - (numShards - s)));
    split.push(n);
    left -= n;
  }
  const ids = new Int32Array(T * k);
  for (let t = 0; t < T; t++) {
    const row = Array.from({length: E}, (_, e) => e).sort(() => r() - 0.5).slice(0, k);
    ids.set(row, t * k);
  }
  return {T, E, k, H, I, hidden: randn(r, T * H), w13: randn(r, numLocal * 2 * I * H, 0.3),
    w2: randn(r, numLocal * H * I, 0.3), weights: Float32Array.from(randn(r, T * k), Math.abs), ids, expertMap,
    numLocal, split, activation: o.activation ?? 'silu', onInput: !!o.onInput};
}

function reference(p: ExpertsProblem): Float32Array {
  const shards: ExpertShard[] = [];
  let first = 0;
  for (const n of p.split) {
    shards.push({w13: p.w13.subarray(first * 2 * p.I * p.H, (first + n) * 2 * p.I * p.H),
      w2: p.w2.subarray(first * p.H * p.I, (first + n) * p.H * p.I), numExperts: n});
    first += n;
  }
  return fusedExpertsImpl({hidden: p.hidden, topkWeights: p.weights, topkIds: p.ids, expertMap: p.expertMap,
    shards, numTokens: p.T, topK: p.k, hiddenSize: p.H, intermediateSize: p.I, globalNumExperts: p.E,
    activation: p.activation, applyRouterWeightOnInput: p.onInput});
}

/** Runs fusedExperts on the current backend, checking leaks of tfjs tensors and of TensorFlow handles. */
async function run(p: ExpertsProblem): Promise<Float32Array> {
  let values!: Float32Array;
  const handlesBefore = tfHandles();
  await expectNoLeaks(async () => {
    const w13All = tf.tensor3d(p.w13, [p.numLocal, 2 * p.I, p.H]);
    const w2All = tf.tensor3d(p.w2, [p.numLocal, p.H, p.I]);
    const w13 = tf.split(w13All, p.split, 0) as tf.Tensor3D[];
    const w2 = tf.split(w2All, p.split, 0) as tf.Tensor3D[];
    const hidden = tf.tensor2d(p.hidden, [p.T, p.H]);
    const weights = tf.tensor2d(p.weights, [p.T, p.k]);
    const ids = tf.tensor2d(p.ids, [p.T, p.k], 'int32');
    const expertMap = p.expertMap ? tf.tensor1d(p.expertMap, 'int32') : undefined;
    const out = fusedExperts(hidden, w13.length > 1 ? w13 : w13[0], w2.length > 1 ? w2 : w2[0], weights, ids,
        {expertMap, globalNumExperts: p.E, activation: p.activation, applyRouterWeightOnInput: p.onInput});
    values = await out.data() as Float32Array;
    tf.dispose([out, w13All, w2All, ...w13, ...w2, hidden, weights, ids, ...(expertMap ? [expertMap] : [])]);
  });
  expect(tfHandles(), 'TensorFlow tensor handles').to.equal(handlesBefore);
  return values;
}

/** Live TensorFlow tensor handles held by tfjs-node's binding. */
function tfHandles(): number {
  return (tf.backend() as unknown as {getNumOfTFTensors(): number}).getNumOfTFTensors();
}

function compositionOf(p: ExpertsProblem) {
  return chooseExpertsComposition(p.T * p.k, p.split, 3 * p.I * p.H * 4);
}

/** Counts reads of tensor values back to JavaScript while `fn` runs. */
async function countReads(fn: () => Promise<void>): Promise<number> {
  const backend = tf.backend() as unknown as {readSync: Function; read: Function};
  const {readSync, read} = backend;
  let reads = 0;
  backend.readSync = function(this: unknown, ...args: unknown[]) { reads++; return readSync.apply(this, args); };
  backend.read = function(this: unknown, ...args: unknown[]) { reads++; return read.apply(this, args); };
  try {
    await fn();
  } finally {
    backend.readSync = readSync;
    backend.read = read;
  }
  return reads;
}

if (backendsUnderTest().includes('tensorflow')) {
  describe('tensorflow backend (tfjs-node, real libtensorflow)', function() {
    this.timeout(120000);
    before(async () => {
      if (!(await tf.setBackend('tensorflow'))) throw new Error(`backend 'tensorflow' could not be initialized`);
    });

    it('runs this package\'s kernels, composed of raw TensorFlow ops', () => {
      expect(tf.getKernel(FusedExperts, 'tensorflow')).to.equal(fusedExpertsConfig);
      const binding = (tf.backend() as unknown as {binding: {TF_Version: string}}).binding;
      expect(binding.TF_Version).to.match(/^2\.\d+/);
    });

    it('says what is wrong when the backend is not tfjs-node\'s, or a problem exceeds float32 index math', () => {
      const inputs = {hiddenStates: tf.zeros([1, 4]), topkWeights: tf.ones([1, 1]), topkIds: tf.zeros([1, 1], 'int32'),
        w13_0: tf.zeros([1, 4, 4]), w2_0: tf.zeros([1, 4, 2])};
      const attrs = {activation: 'silu', applyRouterWeightOnInput: false, globalNumExperts: 1, numWeightShards: 1,
        weightFormat: formatKey(FLOAT32_FORMAT), intermediateSize: 2, hasBias: false, activationQuantGroup: 0};
      expect(() => fusedExpertsConfig.kernelFunc({inputs, attrs, backend: tf.findBackend('cpu')!}))
          .to.throw(/MoeFusedExperts: the 'tensorflow' backend is not tfjs-node's NodeJSKernelBackend/);
      tf.dispose(Object.values(inputs));
      expect(() => checkIndexRange('MoeFusedExperts', 'rows', 2 ** 24 + 1)).to.throw(/rows = 16777217 exceeds 2\^24/);
      expect(() => checkIndexRange('MoeFusedExperts', 'rows', 2 ** 24)).not.to.throw();
    });

    describe('composition choice', () => {
      it('decode while T·k pairs gather no more weight sets than sorted blocks would', () => {
        const c = chooseExpertsComposition(8, [128], 3 * 768 * 2048 * 4);  // Qwen3 decode, T = 1
        expect(c.kind).to.equal('decode');
        expect(c.blocksPerShard).to.deep.equal([8]);
        expect(c.reason).to.match(/^decode: 8 \(token, slot\) pairs gather 8 expert weight sets/);
      });
      it('prefill (sorted blocks) once they gather fewer, with the static block bound', () => {
        const c = chooseExpertsComposition(74, [8], 3 * 16 * 32 * 4);  // Mixtral, T = 37
        expect(c.kind).to.equal('prefill');
        expect(c.blockRows).to.equal(8);
        expect(c.blocksPerShard).to.deep.equal([Math.floor(74 / 8) + 8]);
        expect(c.reason).to.match(/^prefill: 74 .* 17 blocks of 8 rows gather 17 expert weight sets instead of 74/);
      });
      it('chunks the gathered weights by the flag', () => {
        const bytes = 3 * 768 * 2048 * 4;
        expect(chooseExpertsComposition(4096, [128], bytes).blocksPerChunk).to.equal(Math.floor(256 * 2 ** 20 / bytes));
        tf.env().set(MAX_GATHERED_BYTES_FLAG, 1);
        try {
          expect(chooseExpertsComposition(4096, [128], bytes).blocksPerChunk).to.equal(1);
        } finally {
          tf.env().set(MAX_GATHERED_BYTES_FLAG, 256 * 2 ** 20);
        }
      });
    });

    describe('fusedExperts vs the reference, random shapes', () => {
      const kinds = new Set<string>();
      after(() => expect([...kinds].sort(), 'compositions exercised').to.deep.equal(['decode', 'prefill']));
      for (let seed = 1; seed <= 24; seed++) {
        const r = rng(seed * 7919);
        const decode = seed % 2 === 1;
        const E = 4 + Math.floor(r() * 29);
        const k = 1 + Math.floor(r() * Math.min(6, E));
        // decode: T·k below the experts; prefill: several pairs per expert.
        const T = decode ? Math.max(1, Math.floor(E / k / 2)) : Math.ceil((E * (4 + r() * 12)) / k);
        const o = {ep: seed % 3 === 0, shards: 1 + (seed % 4 === 0 ? 2 : 0) + (seed % 5 === 0 ? 1 : 0),
          activation: (seed % 6 === 5 ? 'gelu' : 'silu') as Activation, onInput: k === 1 && seed % 4 === 1};
        const p = randomProblem(seed, T, E, k, o);
        const c = compositionOf(p);
        it(`${c.kind} T=${T} E=${E} k=${k} local=${p.numLocal} shards=[${p.split}] ${p.activation}` +
            `${p.onInput ? ' on input' : ''}`, async () => {
          kinds.add(c.kind);
          expectClose(await run(p), reference(p), c.reason);
        });
      }

      it('prefill and decode with weights gathered one expert at a time', async () => {
        tf.env().set(MAX_GATHERED_BYTES_FLAG, 1);
        try {
          for (const [seed, T] of [[101, 50], [102, 1]]) {
            const p = randomProblem(seed, T, 8, 2, {ep: true, shards: 2});
            expect(compositionOf(p).blocksPerChunk).to.equal(1);
            kinds.add(compositionOf(p).kind);
            expectClose(await run(p), reference(p), `${compositionOf(p).kind}, 1 block per chunk`);
          }
        } finally {
          tf.env().set(MAX_GATHERED_BYTES_FLAG, 256 * 2 ** 20);
        }
      });

      it('pairs of experts off this rank contribute exactly 0, even with Inf and NaN weights', async () => {
        for (const T of [1, 40]) {
          const p = randomProblem(200 + T, T, 8, 2, {ep: true});
          // Off-rank pairs get non-finite routing weights: the reference skips them, so must the kernel.
          for (let i = 0; i < p.ids.length; i++) if (p.expertMap![p.ids[i]] < 0) p.weights[i] = i % 2 ? Infinity : NaN;
          const expected = reference(p);
          expect(expected.every(Number.isFinite)).to.equal(true);
          expectClose(await run(p), expected, `${compositionOf(p).kind} with non-finite off-rank weights`);
        }
      });
    });

    describe('routing, slot by slot', () => {
      // Integer logits make many exact ties: rows must order equal weights by id, like the reference.
      for (const [name, grouped, withBias, scoringFunc] of [
        ['fusedTopK softmax', false, false, 'softmax'], ['fusedTopK sigmoid + bias', false, true, 'sigmoid'],
        ['groupedTopK softmax', true, false, 'softmax'], ['groupedTopK sigmoid + bias', true, true, 'sigmoid'],
      ] as const) {
        it(`${name} with ties, -0, NaN and ±Inf`, async () => {
          const T = 40, E = 16, k = 4, r = rng(name.length * 31);
          const logits = Float32Array.from({length: T * E}, () => Math.floor(r() * 4) - 2);
          logits.set([-0, 0, -0, 0, -0, 0, -0, 0, -0, 0, -0, 0, -0, 0, -0, 0], 0);
          logits.set([NaN, Infinity, -Infinity, Infinity, NaN], E + 3);
          const bias = withBias ? Float32Array.from({length: E}, (_, e) => (e % 4) * 0.25) : null;
          const cfg = {topK: k, renormalize: true, scoringFunc, routedScalingFactor: 2.5,
            numExpertGroup: grouped ? 4 : 1, topkGroup: grouped ? 2 : 1};
          const ref = routingImpl(logits, T, E, bias, cfg);
          await expectNoLeaks(async () => {
            const x = tf.tensor2d(logits, [T, E]);
            const b = bias ? tf.tensor1d(bias) : undefined;
            const {topkWeights, topkIds} = grouped ?
              groupedTopK(x, {topK: k, renormalize: true, numExpertGroup: 4, topkGroup: 2, scoringFunc,
                eScoreCorrectionBias: b, routedScalingFactor: 2.5}) :
              fusedTopK(x, k, true, {scoringFunc, eScoreCorrectionBias: b, routedScalingFactor: 2.5});
            expect(Array.from(await topkIds.data()), 'ids, slot by slot').to.deep.equal(Array.from(ref.ids));
            expectClose(await topkWeights.data(), ref.weights, 'weights', {atol: 2e-6, rtolOfMax: 0});
            tf.dispose([x, topkWeights, topkIds, ...(b ? [b] : [])]);
          });
        });
      }

      it('EPLB replicas and load match the reference', async () => {
        const T = 29, E = 6, k = 2, R = 3, P = 11;
        const r = rng(5);
        const logits = randn(r, T * E, 2);
        const map = new Int32Array([0, 6, 7, 1, -1, -1, 2, 8, -1, 3, 9, 10, 4, -1, -1, 5, -1, -1]);
        const count = new Int32Array([3, 1, 2, 3, 1, 1]);
        const expertMap = Int32Array.from({length: P}, (_, e) => (e % 3 === 2 ? -1 : e));
        const routed = routingImpl(logits, T, E, null, {topK: k, renormalize: true, scoringFunc: 'softmax',
          routedScalingFactor: 1, numExpertGroup: 1, topkGroup: 1});
        const physical = eplbMapIdsImpl(routed.ids, T, k, map, R, count);
        const load = tf.variable(tf.zeros([P], 'int32'));
        const t = {x: tf.zeros([T, 4]) as tf.Tensor2D, logits: tf.tensor2d(logits, [T, E]),
          map: tf.tensor2d(map, [E, R], 'int32'), count: tf.tensor1d(count, 'int32'),
          expertMap: tf.tensor1d(expertMap, 'int32')};
        const {topkWeights, topkIds} = selectExperts(t.x, t.logits, {topK: k, renormalize: true,
          eplb: {logicalToPhysicalMap: t.map, logicalReplicaCount: t.count, expertLoad: load}, expertMap: t.expertMap});
        expect(Array.from(await topkIds.data())).to.deep.equal(Array.from(physical));
        expect(Array.from(await load.data())).to.deep.equal(Array.from(expertLoadImpl(physical, P, expertMap)));
        tf.dispose([topkWeights, topkIds, load, ...Object.values(t)]);
      });
    });

    it('reads nothing back to JavaScript in a forward pass (routing, decode and prefill experts)', async () => {
      const probe = tf.tensor1d([1, 2]);
      expect(await countReads(async () => { await probe.data(); }), 'the counter sees a read').to.be.at.least(1);
      probe.dispose();
      for (const T of [1, 64]) {
        const p = randomProblem(300 + T, T, 8, 2);
        const t = {hidden: tf.tensor2d(p.hidden, [T, p.H]), logits: tf.tensor2d(randn(rng(T), T * 8), [T, 8]),
          w13: tf.tensor3d(p.w13, [8, 2 * p.I, p.H]), w2: tf.tensor3d(p.w2, [8, p.H, p.I])};
        const reads = await countReads(async () => {
          tf.tidy(() => { fusedMoE(t.hidden, t.logits, t.w13, t.w2, {topK: 2, renormalize: true}); });
        });
        expect(reads, `${compositionOf(p).kind}: reads during fusedMoE`).to.equal(0);
        tf.dispose(Object.values(t));
      }
    });

    it('tfjs-fused-moe/node loads without loading tfjs-node (an optional peer)', () => {
      const root = path.join(__dirname, '..');
      const loaded = execFileSync(process.execPath, ['-r', 'tsx/cjs', '-e',
        `require('./src/node'); console.log(Object.keys(require.cache).filter((f) => /tfjs-node/.test(f)).length)`],
      {cwd: root, encoding: 'utf8'}).trim();
      expect(loaded).to.equal('0');
    });
  });
}

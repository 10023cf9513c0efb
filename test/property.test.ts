/**
 * Property-based parity: random problems (E, k, H, I, T, routing mode, expert parallelism with a random expert
 * map, weights split into 1-3 expert ranges, activation, and on webgpu a random path and GEMM tiling) drawn
 * from a seeded generator; on each draw the backend's routing must match the cpu reference (routingImpl) up to
 * near-ties, and its fusedExperts on those ids must match the reference (fusedExpertsImpl). Bounded by a number
 * of draws and a time budget; the seed is in the suite's title and in every failure
 * (MOE_PROPERTY_SEED=<seed> repeats a run; MOE_PROPERTY_DRAWS and MOE_PROPERTY_BUDGET_MS change the bounds).
 * Not run on cpu: there the backend is the reference.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {Activation, RoutingConfig, SelectExpertsOptions, fusedExperts, fusedExpertsImpl, routingImpl,
  selectExperts} from '../src';
import {ExpertsPath, setFusedExpertsBlockRows, setFusedExpertsPath, setFusedExpertsSplitK, setFusedExpertsTileK}
  from '../src/kernels/webgpu/FusedExperts';
import {expectClose, randn, rng} from './helpers/compare';
import {describeBackends, expectNoLeaks} from './helpers/env';

const env = (typeof process !== 'undefined' && process.env) || {} as Record<string, string | undefined>;
const SEED = env.MOE_PROPERTY_SEED ? Number(env.MOE_PROPERTY_SEED) : Math.floor(Math.random() * 2 ** 31);
const DRAWS = Number(env.MOE_PROPERTY_DRAWS ?? 24);
const BUDGET_MS = Number(env.MOE_PROPERTY_BUDGET_MS ?? 40000);

type Mode = 'softmax' | 'sigmoid+bias' | 'grouped' | 'llama4';

interface Draw {
  T: number; E: number; k: number; H: number; I: number; mode: Mode; renormalize: boolean; scale: number;
  groups: number; topkGroup: number; activation: Activation;
  /** Global ids this rank holds (all when not expert-parallel), in local order. */
  local: number[]; expertParallel: boolean; shards: number[];
  path?: ExpertsPath; blockRows?: number; splitK?: number; tileK?: number;
}

/** One random problem; every choice comes from `r`, so a seed repeats it. */
function drawProblem(r: () => number, backend: string): Draw {
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const E = int(1, 40);
  const mode = pick<Mode>(['softmax', 'sigmoid+bias', 'grouped', 'llama4']);
  const divisors = Array.from({length: Math.min(E, 8)}, (_, i) => i + 1).filter((g) => E % g === 0);
  const groups = mode === 'grouped' ? pick(divisors) : 1;
  const topkGroup = mode === 'grouped' ? int(1, groups) : 1;
  const k = mode === 'llama4' ? 1 : int(1, Math.min(8, topkGroup * (E / groups)));
  const T = pick([1, 1, 2, int(3, 20), int(21, 90)]);
  const expertParallel = E > 1 && r() < 0.4;
  const ids = Array.from({length: E}, (_, e) => e).sort(() => r() - 0.5);
  const local = expertParallel ? ids.slice(0, int(1, E - 1)) : Array.from({length: E}, (_, e) => e);
  const parts = Math.min(local.length, int(1, 3));
  const cuts = Array.from({length: parts - 1}, () => int(1, local.length - 1)).sort((a, b) => a - b);
  const shards = [...cuts, local.length].map((c, i, a) => c - (i > 0 ? a[i - 1] : 0)).filter((n) => n > 0);
  const d: Draw = {T, E, k, H: int(1, 160), I: int(1, 130), mode, renormalize: mode !== 'llama4' && r() < 0.7,
    scale: mode === 'grouped' || mode === 'sigmoid+bias' ? pick([1, 2.5]) : 1, groups, topkGroup,
    activation: pick<Activation>(['silu', 'gelu']), local, expertParallel, shards};
  if (backend === 'webgpu') {
    d.path = pick<ExpertsPath | undefined>([undefined, 'decode', 'decode-grouped', 'prefill']);
    if (d.path === 'prefill' || (d.path === undefined && T > 1)) {
      d.blockRows = pick([undefined, 16, 32, 64, 128]);
      d.splitK = pick([undefined, 1, 2, 3, 4]);
      // 32-k tiles of 128 rows exceed the 32 KiB of workgroup memory SwiftShader (and many GPUs) offer, and the
      // automatic row tile may be 128: 32-k tiles only with a forced row tile of at most 64.
      d.tileK = pick(d.blockRows != null && d.blockRows <= 64 ? [undefined, 16, 32] : [undefined, 16]);
    }
  }
  return d;
}

function routingConfig(d: Draw): RoutingConfig {
  return {topK: d.k, renormalize: d.renormalize, scoringFunc: d.mode === 'softmax' ? 'softmax' : 'sigmoid',
    routedScalingFactor: d.scale, numExpertGroup: d.groups, topkGroup: d.topkGroup};
}

function selectOptions(d: Draw, bias: tf.Tensor1D | undefined): SelectExpertsOptions {
  const o: SelectExpertsOptions = {topK: d.k, renormalize: d.renormalize, routedScalingFactor: d.scale};
  if (d.mode === 'llama4') return {topK: 1, renormalize: false, customRoutingFunction: 'llama4'};
  if (d.mode === 'grouped') {
    return {...o, useGroupedTopk: true, numExpertGroup: d.groups, topkGroup: d.topkGroup, scoringFunc: 'sigmoid',
      eScoreCorrectionBias: bias};
  }
  return d.mode === 'sigmoid+bias' ? {...o, scoringFunc: 'sigmoid', eScoreCorrectionBias: bias} : o;
}

/**
 * Routing rows must hold the reference's ids (as sets) and weights, except where the reference itself is within
 * `tol` of a tie: an expert in one set only must score (or, grouped, its group must) within `tol` of the last
 * one chosen. Scores are recomputed here in float64 from the reference formulas.
 */
function expectRoutingMatches(d: Draw, logits: Float32Array, bias: Float32Array | null, ids: ArrayLike<number>,
    weights: ArrayLike<number>, ref: {ids: ArrayLike<number>; weights: ArrayLike<number>}): void {
  const {T, E, k} = d;
  const tol = 1e-5;
  for (let t = 0; t < T; t++) {
    const row = Array.from(logits.subarray(t * E, (t + 1) * E));
    const max = Math.max(...row);
    const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
    const score = row.map((v) => d.mode === 'softmax' ? Math.exp(v - max) / sum : 1 / (1 + Math.exp(-v)));
    const choice = score.map((s, e) => s + (bias ? bias[e] : 0));
    const size = E / d.groups;
    const groupScore = Array.from({length: d.groups}, (_, g) => {
      const c = choice.slice(g * size, (g + 1) * size).sort((a, b) => b - a);
      return bias ? c[0] + (c[1] ?? 0) : c[0];
    });
    const keptGroupScore = [...groupScore].sort((a, b) => b - a)[d.topkGroup - 1];
    const a = new Set(Array.from(ids).slice(t * k, (t + 1) * k));
    const b = new Set(Array.from(ref.ids).slice(t * k, (t + 1) * k));
    const last = Math.min(...[...b].map((e) => choice[e]));
    for (const e of [...a, ...b]) {
      if (a.has(e) && b.has(e)) continue;
      const nearTie = Math.abs(choice[e] - last) < tol ||
        (d.groups > 1 && Math.abs(groupScore[Math.floor(e / size)] - keptGroupScore) < tol);
      if (!nearTie) {
        expect.fail(`routing row ${t}: ids ${[...a]} but the reference chose ${[...b]} (expert ${e} scores ` +
            `${choice[e]}, the last chosen ${last})`);
      }
    }
    for (let j = 0; j < k; j++) {
      const e = ids[t * k + j];
      const jr = Array.from(ref.ids).slice(t * k, (t + 1) * k).indexOf(e);
      if (jr < 0) continue;
      const want = ref.weights[t * k + jr], got = weights[t * k + j];
      if (!(Math.abs(got - want) <= tol * Math.max(1, d.scale))) {
        expect.fail(`routing row ${t} expert ${e}: weight ${got}, reference ${want}`);
      }
    }
  }
}

async function runDraw(d: Draw, r: () => number): Promise<void> {
  const {T, E, k, H, I} = d;
  const hidden = randn(r, T * H);
  const logits = randn(r, T * E, 2);
  const bias = d.mode === 'sigmoid+bias' || d.mode === 'grouped' ? randn(r, E, 0.2) : null;
  const shards = d.shards.map((n) => ({w13: randn(r, n * 2 * I * H, 1 / Math.sqrt(H)),
    w2: randn(r, n * H * I, 1 / Math.sqrt(I)), numExperts: n}));
  const map = d.expertParallel ? new Int32Array(E).fill(-1) : null;
  d.local.forEach((g, l) => { if (map) map[g] = l; });

  const ref = routingImpl(logits, T, E, bias, routingConfig(d));
  const t = {
    hidden: tf.tensor2d(hidden, [T, H]), logits: tf.tensor2d(logits, [T, E]),
    bias: bias ? tf.tensor1d(bias) : undefined, map: map ? tf.tensor1d(map, 'int32') : undefined,
    w13: shards.map((s) => tf.tensor3d(s.w13, [s.numExperts, 2 * I, H])),
    w2: shards.map((s) => tf.tensor3d(s.w2, [s.numExperts, H, I])),
  };
  try {
    await expectNoLeaks(async () => {
      const routed = selectExperts(t.hidden, t.logits, selectOptions(d, t.bias));
      const [ids, weights] = [await routed.topkIds.data(), await routed.topkWeights.data()];
      expectRoutingMatches(d, logits, bias, ids, weights, ref);
      const out = fusedExperts(t.hidden, t.w13, t.w2, routed.topkWeights, routed.topkIds, {expertMap: t.map,
        activation: d.activation, applyRouterWeightOnInput: d.mode === 'llama4'});
      const expected = fusedExpertsImpl({hidden, topkWeights: weights, topkIds: ids, expertMap: map, shards,
        numTokens: T, topK: k, hiddenSize: H, intermediateSize: I, globalNumExperts: E, activation: d.activation,
        applyRouterWeightOnInput: d.mode === 'llama4'});
      expectClose(await out.data(), expected, 'fusedExperts', {atol: 3e-5, rtolOfMax: 3e-5});
      tf.dispose([routed.topkIds, routed.topkWeights, out]);
    });
  } finally {
    tf.dispose([t.hidden, t.logits, ...t.w13, ...t.w2, ...(t.bias ? [t.bias] : []), ...(t.map ? [t.map] : [])]);
  }
}

describeBackends(`property-based parity with the cpu reference (seed ${SEED}, up to ${DRAWS} draws or ` +
    `${BUDGET_MS / 1000} s)`, (backend) => {
  if (backend === 'cpu') return;   // the reference itself: nothing to compare
  afterEach(() => {
    setFusedExpertsPath(null); setFusedExpertsBlockRows(null); setFusedExpertsSplitK(null); setFusedExpertsTileK(null);
  });

  it('random E, k, H, I, T, routing modes, expert maps and weight splits match the reference', async function() {
    this.timeout(BUDGET_MS + 120000);
    const start = Date.now();
    let draws = 0;
    for (let i = 0; i < DRAWS && (i === 0 || Date.now() - start < BUDGET_MS); i++) {
      const r = rng(SEED + i);
      const d = drawProblem(r, backend);
      setFusedExpertsPath(d.path ?? null);
      setFusedExpertsBlockRows(d.blockRows ?? null);
      setFusedExpertsSplitK(d.splitK ?? null);
      setFusedExpertsTileK(d.tileK ?? null);
      try {
        await runDraw(d, r);
      } catch (e) {
        const {local, ...shown} = d;
        throw new Error(`draw ${i} of seed ${SEED} (MOE_PROPERTY_SEED=${SEED} repeats it): ${JSON.stringify(
            {...shown, localExperts: local.length})}: ${(e as Error).message}`);
      }
      draws++;
    }
    expect(draws, 'draws run').to.be.at.least(1);
    this.test!.title += ` (${draws} draws in ${((Date.now() - start) / 1000).toFixed(1)} s)`;
  });
});

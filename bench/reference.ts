/**
 * The float64 check at every benchmarked shape and M: a few output rows (sampled tokens) of an impl
 * against a host reference in float64, computed from the same inputs. Nothing is read back but those
 * rows: the weights, hidden states and logits are the hash of bench/fill_uniform_webgpu.ts, so the host
 * regenerates exactly the values the device filled, for just the experts the sampled tokens selected,
 * one row at a time (no expert matrix is held). Routing is the host reference routing (routingImpl):
 * where the device's routing picked different experts for a sampled token, its row differs and the check
 * fails, as it should.
 */
import * as tf from '@tensorflow/tfjs-core';
import {uniformHostValue} from './fill_uniform_webgpu';
import {SEEDS, uniformHostValues, w13Scale, w2Scale} from './problem';
import type {MoEShape} from './shapes';

export interface Sample {
  /** The sampled token indices, ascending. */
  tokens: number[];
  /** Reference output rows [tokens.length, H], float64. */
  expected: Float64Array;
}

/** Host multiply-adds a sample may cost (about a second of V8): Mixtral gets 2 tokens, Qwen3 and DeepSeek-V3 8. */
const MAC_BUDGET = 1e9;
const MAX_TOKENS = 8;

/** First, last, and hash-picked tokens in between, as many as the budget allows (at least one). */
export function sampleTokens(s: MoEShape, M: number): number[] {
  const perToken = s.k * 3 * s.I * s.H;
  const n = Math.min(M, MAX_TOKENS, Math.max(1, Math.floor(MAC_BUDGET / perToken)));
  const picked = new Set<number>([0]);
  if (n > 1) picked.add(M - 1);
  for (let i = 0; picked.size < n; i++) {
    picked.add(Math.floor((uniformHostValue(i, 7000 + M, 1) + 1) / 2 * M) % M);
  }
  return [...picked].sort((a, b) => a - b);
}

/**
 * out[t] = Σ_j w_tj · W2[e_tj] · (silu(gate) ⊙ up)(W13[e_tj] · x_t) in float64 for each sampled t, with
 * the routing weights and ids of `routed` (the host reference's, float32 as every impl gets them).
 */
export function referenceRows(s: MoEShape, M: number, routed: {weights: Float32Array; ids: Int32Array},
    tokens: number[]): Sample {
  const {H, I, k} = s;
  const xs = tokens.map((t) => Float64Array.from(uniformHostValues(H, SEEDS.hidden + M, 1, t * H)));
  const expected = new Float64Array(tokens.length * H);
  // (sample row, routing weight) pairs per expert, so that each expert's rows are generated once.
  const byExpert = new Map<number, {row: number; weight: number}[]>();
  tokens.forEach((t, row) => {
    for (let j = 0; j < k; j++) {
      const e = routed.ids[t * k + j];
      if (!byExpert.has(e)) byExpert.set(e, []);
      byExpert.get(e)!.push({row, weight: routed.weights[t * k + j]});
    }
  });
  const wrow = new Float64Array(Math.max(H, I));
  const fill = (n: number, start: number, seed: number, scale: number) => {
    for (let i = 0; i < n; i++) wrow[i] = uniformHostValue(start + i, seed, scale);
  };
  for (const [e, pairs] of byExpert) {
    // h = W13[e] · x for every pair: 2I rows of H.
    const h = pairs.map(() => new Float64Array(2 * I));
    for (let n = 0; n < 2 * I; n++) {
      fill(H, (e * 2 * I + n) * H, SEEDS.w13, w13Scale(s));
      pairs.forEach((p, pi) => {
        const x = xs[p.row];
        let acc = 0;
        for (let c = 0; c < H; c++) acc += wrow[c] * x[c];
        h[pi][n] = acc;
      });
    }
    const a = h.map((v) => {
      const out = new Float64Array(I);
      for (let i = 0; i < I; i++) out[i] = v[i] / (1 + Math.exp(-v[i])) * v[I + i];
      return out;
    });
    // out += weight · W2[e] · a: H rows of I.
    for (let c = 0; c < H; c++) {
      fill(I, (e * H + c) * I, SEEDS.w2, w2Scale(s));
      pairs.forEach((p, pi) => {
        const av = a[pi];
        let acc = 0;
        for (let i = 0; i < I; i++) acc += wrow[i] * av[i];
        expected[p.row * H + c] += p.weight * acc;
      });
    }
  }
  return {tokens, expected};
}

export interface RefCheck {
  ref_rows: number;
  ref_max_abs_err: number;
  ref_tol: number;
  ref_ok: boolean;
}

/** Reads back only the sampled rows of `out` [M, H] and compares them at the fixtures' tolerance. */
export async function checkRows(out: tf.Tensor, sample: Sample): Promise<RefCheck> {
  const idx = tf.tensor1d(sample.tokens, 'int32');
  const rows = tf.gather(out, idx);
  const got = await rows.data();
  tf.dispose([idx, rows]);
  let maxAbs = 0, maxErr = 0;
  for (let i = 0; i < sample.expected.length; i++) maxAbs = Math.max(maxAbs, Math.abs(sample.expected[i]));
  for (let i = 0; i < sample.expected.length; i++) {
    const d = Math.abs(got[i] - sample.expected[i]);
    maxErr = Number.isNaN(d) ? Infinity : Math.max(maxErr, d);
  }
  const tol = 1e-5 + 1e-4 * maxAbs;
  return {ref_rows: sample.tokens.length, ref_max_abs_err: maxErr, ref_tol: tol, ref_ok: maxErr <= tol};
}

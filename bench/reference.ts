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
import {lowbias32, uniformHostValue} from './fill_uniform_webgpu';
import {SEEDS, uniformHostValues, w13Scale, w2Scale} from './problem';
import type {MoEShape} from './shapes';

export interface Sample {
  /** The sampled token indices, ascending. */
  tokens: number[];
  /** Reference output rows [tokens.length, H], float64. */
  expected: Float64Array;
}

/**
 * Host multiply-adds a sample may cost (about half a second of V8): Qwen3 and DeepSeek-V3 get 8 tokens,
 * Mixtral the minimum of 2 (the first and the last, where a partial tile would show).
 */
const MAC_BUDGET = 5e8;
const MAX_TOKENS = 8;

/** First, last, and hash-picked tokens in between, as many as the budget allows (at least two). */
export function sampleTokens(s: MoEShape, M: number): number[] {
  const perToken = s.k * 3 * s.I * s.H;
  const n = Math.min(M, MAX_TOKENS, Math.max(2, Math.floor(MAC_BUDGET / perToken)));
  const picked = new Set<number>([0]);
  if (n > 1) picked.add(M - 1);
  for (let i = 0; picked.size < n; i++) {
    picked.add(Math.floor((uniformHostValue(i, 7000 + M, 1) + 1) / 2 * M) % M);
  }
  return [...picked].sort((a, b) => a - b);
}

export interface SampleRequest {
  M: number;
  routed: {weights: Float32Array; ids: Int32Array};
  tokens: number[];
}

/**
 * out[t] = Σ_j w_tj · W2[e_tj] · (silu(gate) ⊙ up)(W13[e_tj] · x_t) in float64 for each sampled t, with
 * the routing weights and ids of `routed` (the host reference's, float32 as every impl gets them).
 * Several token counts at once: each expert's rows are generated once for all of them.
 */
export function referenceRows(s: MoEShape, requests: SampleRequest[]): Sample[] {
  const {H, I, k} = s;
  const samples = requests.map((q) => ({tokens: q.tokens, expected: new Float64Array(q.tokens.length * H)}));
  // Every sampled (request, token) is one output row with its own x; pairs grouped by expert.
  const rows: {x: Float64Array; out: Float64Array; at: number}[] = [];
  const byExpert = new Map<number, {row: number; weight: number}[]>();
  requests.forEach((q, qi) => q.tokens.forEach((t, ti) => {
    const row = rows.length;
    rows.push({x: Float64Array.from(uniformHostValues(H, SEEDS.hidden + q.M, 1, t * H)), out: samples[qi].expected,
      at: ti * H});
    for (let j = 0; j < k; j++) {
      const e = q.routed.ids[t * k + j];
      if (!byExpert.has(e)) byExpert.set(e, []);
      byExpert.get(e)!.push({row, weight: q.routed.weights[t * k + j]});
    }
  }));
  const wrow = new Float64Array(Math.max(H, I));
  // uniformHostValue inlined (the same arithmetic): this loop regenerates hundreds of millions of values.
  const fill = (n: number, start: number, seed: number, scale: number) => {
    const sh = lowbias32(seed), sc = Math.fround(scale);
    for (let i = 0; i < n; i++) {
      let h = (start + i) ^ sh;
      h ^= h >>> 16;
      h = Math.imul(h, 0x7feb352d);
      h ^= h >>> 15;
      h = Math.imul(h, 0x846ca68b);
      h ^= h >>> 16;
      wrow[i] = Math.fround((2 * ((h >>> 8) / 16777216) - 1) * sc);
    }
  };
  for (const [e, pairs] of byExpert) {
    // h = W13[e] · x for every pair: 2I rows of H.
    const h = pairs.map(() => new Float64Array(2 * I));
    for (let n = 0; n < 2 * I; n++) {
      fill(H, (e * 2 * I + n) * H, SEEDS.w13, w13Scale(s));
      for (let pi = 0; pi < pairs.length; pi++) {
        const x = rows[pairs[pi].row].x;
        let acc = 0;
        for (let c = 0; c < H; c++) acc += wrow[c] * x[c];
        h[pi][n] = acc;
      }
    }
    const a = h.map((v) => {
      const out = new Float64Array(I);
      for (let i = 0; i < I; i++) out[i] = v[i] / (1 + Math.exp(-v[i])) * v[I + i];
      return out;
    });
    // out += weight · W2[e] · a: H rows of I.
    for (let c = 0; c < H; c++) {
      fill(I, (e * H + c) * I, SEEDS.w2, w2Scale(s));
      for (let pi = 0; pi < pairs.length; pi++) {
        const av = a[pi];
        let acc = 0;
        for (let i = 0; i < I; i++) acc += wrow[i] * av[i];
        const r = rows[pairs[pi].row];
        r.out[r.at + c] += pairs[pi].weight * acc;
      }
    }
  }
  return samples;
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

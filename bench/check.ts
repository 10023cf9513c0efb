/**
 * Before timing anything on a backend, check that what is timed computes the right thing: ours and
 * the naive tfjs way, at the tiny shapes (with split weights) and a few token counts, against the
 * cpu reference (`routingImpl` + `fusedExpertsImpl`, float64 accumulation). tfjs-backend-webgpu
 * 4.22 returns silently wrong results for some of its kernels on today's Dawn; a failing impl is
 * reported and not timed.
 */
import * as tf from '@tensorflow/tfjs-core';
import {fusedExpertsImpl, fusedMoE, routingImpl} from '../src';
import {disposeNaiveWeights, naiveExpertWeights, naiveMoE} from './naive_tfjs';
import {disposeInputs, makeExpertWeights, makeTokenInputs, routingConfig, moeOptions, uniformHostValues,
  uniformTensor} from './problem';
import {MoEShape, SHAPES} from './shapes';

export interface CheckLine {
  impl: string;
  backend: string;
  check: string;
  shape?: string;
  M?: number;
  ok: boolean;
  max_abs_err?: number;
  tol?: number;
  error?: string;
}

const CHECK_SHAPES = ['tiny-mixtral', 'tiny-qwen3', 'tiny-dsv3'];
const CHECK_TOKENS = [1, 13];

/** Fixture tolerance (shared/fixtures/README.md): 1e-4 · max|expected| + 1e-5. */
function compare(actual: ArrayLike<number>, expected: ArrayLike<number>): {maxAbsErr: number; tol: number; ok: boolean} {
  let maxAbs = 0, maxErr = 0;
  for (let i = 0; i < expected.length; i++) maxAbs = Math.max(maxAbs, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    maxErr = Number.isNaN(err) ? NaN : Math.max(maxErr, err);
  }
  const tol = 1e-5 + 1e-4 * maxAbs;
  return {maxAbsErr: maxErr, tol, ok: actual.length === expected.length && maxErr <= tol};
}

/** The GPU fill and its host twin agree (the cpu backend's weights are the host ones). */
async function checkFill(backend: string): Promise<CheckLine> {
  const t = uniformTensor([3, 37, 11], 77, 0.5);
  const got = await t.data();
  t.dispose();
  const {maxAbsErr, tol, ok} = compare(got, uniformHostValues(3 * 37 * 11, 77, 0.5));
  return {impl: 'fill', backend, check: 'fill-uniform', ok, max_abs_err: maxAbsErr, tol};
}

export async function parityChecks(backend: string, withOurs: boolean): Promise<CheckLine[]> {
  const lines: CheckLine[] = [await checkFill(backend)];
  for (const name of CHECK_SHAPES) {
    const s = SHAPES[name] as MoEShape;
    const weights = makeExpertWeights(s);
    const naiveWeights = naiveExpertWeights(weights.w13, weights.w2);
    const shards = await Promise.all(weights.w13.map(async (w13, i) =>
      ({w13: await w13.data(), w2: await weights.w2[i].data(), numExperts: w13.shape[0]})));
    for (const M of CHECK_TOKENS) {
      const x = makeTokenInputs(s, M);
      const routed = routingImpl(x.logitsHost, M, s.E, x.biasHost, routingConfig(s.routing, s.k));
      const expected = fusedExpertsImpl({
        hidden: await x.hidden!.data(), topkWeights: routed.weights, topkIds: routed.ids, expertMap: null, shards,
        numTokens: M, topK: s.k, hiddenSize: s.H, intermediateSize: s.I, globalNumExperts: s.E, activation: 'silu',
        applyRouterWeightOnInput: false,
      });
      const runs: [string, () => Promise<tf.Tensor>][] = [
        ['naive-tfjs', () => naiveMoE(x.hidden!, x.logits, x.bias, naiveWeights, s.routing, s.k)],
      ];
      if (withOurs) {
        runs.unshift(['ours', async () => fusedMoE(x.hidden!, x.logits, weights.w13, weights.w2, moeOptions(s, x.bias))]);
      }
      for (const [impl, run] of runs) {
        const line: CheckLine = {impl, backend, check: 'parity-vs-cpu-reference', shape: name, M, ok: false};
        try {
          const out = await run();
          const got = await out.data();
          out.dispose();
          const {maxAbsErr, tol, ok} = compare(got, expected);
          Object.assign(line, {ok, max_abs_err: maxAbsErr, tol});
        } catch (e) {
          line.error = (e as Error).message.split('\n')[0];
        }
        lines.push(line);
      }
      disposeInputs(x);
    }
    disposeNaiveWeights(naiveWeights);
    tf.dispose([...weights.w13, ...weights.w2]);
  }
  return lines;
}

/**
 * reduceResults across threads: each worker_thread holds one rank of a tp × ep layer and awaits the
 * all-reduce hook; the parent sums the partials it receives and answers every rank with the sum.
 * Every rank must end with the full expected output.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {expect} from 'chai';
import * as path from 'path';
import {Worker} from 'worker_threads';
import {FusedMoE} from '../src';
import {expectClose} from './helpers/compare';
import {describeBackends} from './helpers/env';
import {entry, loadFixture} from './helpers/fixtures';
import {ranks} from './layer_helpers';
import type {RankMessage, RankTask} from './workers/moe_rank_worker';

/** Runs every rank in a worker; returns each rank's final output. */
async function runRanks(fixture: string, backend: string, tp: number, ep: number): Promise<RankMessage[]> {
  const tasks: RankTask[] = ranks(tp, ep).map((r) => ({fixture, backend, ...r}));
  const workers = tasks.map((task, rank) => new Worker(path.join(__dirname, 'workers', 'moe_rank_worker.ts'), {
    workerData: {...task, rank}, execArgv: ['--require', require.resolve('tsx/cjs')],
  }));
  const partials = new Map<number, Float32Array>();
  const done: RankMessage[] = new Array(tasks.length);
  try {
    await new Promise<void>((resolve, reject) => {
      let finished = 0;
      workers.forEach((w) => {
        w.on('error', reject);
        w.on('message', (m: RankMessage) => {
          if (m.type === 'error') {
            reject(new Error(`rank ${m.rank}: ${m.message}`));
          } else if (m.type === 'partial') {
            partials.set(m.rank, m.values);
            if (partials.size === tasks.length) {
              // The all-reduce: a sum in rank order, sent back to every rank.
              const sum = new Float32Array(m.values.length);
              for (let r = 0; r < tasks.length; r++) partials.get(r)!.forEach((v, i) => { sum[i] += v; });
              workers.forEach((other) => other.postMessage({type: 'reduced', values: sum}));
            }
          } else {
            done[m.rank] = m;
            if (++finished === workers.length) resolve();
          }
        });
      });
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return done;
}

describeBackends('FusedMoE reduceResults through an all-reduce hook', (backend) => {
  for (const [fixture, tp, ep] of [['mixtral-t37', 2, 2], ['deepseekv3-t41', 1, 3], ['llama4-t13', 2, 1]] as
      Array<[string, number, number]>) {
    it(`${fixture}: ${tp * ep} worker ranks (tp=${tp} × ep=${ep}) each end with the full output`, async function() {
      this.timeout(300000);
      const fx = await loadFixture(fixture);
      const results = await runRanks(fixture, backend, tp, ep);
      for (const r of results) {
        if (r.type !== 'done') throw new Error('unexpected message');
        expect(r.shape).to.deep.equal([fx.config.tokens, fx.config.hidden_size]);
        expect(r.leaked, `rank ${r.rank} leaked tensors`).to.equal(0);
        expectClose(r.values, entry(fx, 'expected.output').values, `${fixture} rank ${r.rank} after all-reduce`);
      }
    });
  }

  it('forwardAsync without a hook refuses to return a partial sum; a single rank needs no hook', async () => {
    const hidden = tf.zeros([2, 64]);
    const logits = tf.zeros([2, 8]);
    const sharded = new FusedMoE({numExperts: 8, topK: 2, hiddenSize: 64, intermediateSize: 96, tpSize: 2,
      reduceResults: true});
    await sharded.forwardAsync(hidden, logits).then(() => expect.fail('no error'), (e: Error) =>
      expect(e.message).to.match(/reduceResults is set with tpSize 2 and epSize 1, but no 'allReduce' hook was given/));
    let called = false;
    const single = new FusedMoE({numExperts: 8, topK: 2, hiddenSize: 64, intermediateSize: 96, reduceResults: true,
      allReduce: async (p) => { called = true; return p; }});
    // Zero weights, set on purpose: this test is about the hook, not the numbers.
    for (const layer of [sharded, single]) {
      layer.apply([tfl.input({shape: [64]}), tfl.input({shape: [8]})]);
      layer.setWeights(layer.getWeights());
    }
    const out = await single.forwardAsync(hidden, logits);
    expect(called).to.equal(false);
    expect(out.shape).to.deep.equal([2, 64]);
    // call() stays synchronous and returns this rank's partial, hook or not.
    const partial = sharded.apply([hidden, logits]) as tf.Tensor;
    expect(partial.shape).to.deep.equal([2, 64]);
    tf.dispose([hidden, logits, out, partial]);
    single.dispose();
    sharded.dispose();
  });
});

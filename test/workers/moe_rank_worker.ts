/**
 * One tensor/expert-parallel rank in its own thread: loads its shard of a fixture layer and runs
 * `forwardAsync`, whose all-reduce hook sends the partial output to the parent (the "communicator")
 * and waits for the sum of all ranks.
 */
import * as tf from '@tensorflow/tfjs-core';
import {parentPort, workerData} from 'worker_threads';
import '../setup_node';
import {FusedMoE, readSafetensors, disposeCheckpointTensors} from '../../src';
import {entry, loadFixture} from '../helpers/fixtures';
import {layerConfig, loadOptions} from '../layer_helpers';

export interface RankTask {
  fixture: string;
  backend: string;
  tpSize: number; tpRank: number; epSize: number; epRank: number;
}

export type RankMessage =
  | {type: 'partial'; rank: number; values: Float32Array; shape: number[]}
  | {type: 'done'; rank: number; values: Float32Array; shape: number[]; leaked: number}
  | {type: 'error'; rank: number; message: string};

async function main(task: RankTask & {rank: number}): Promise<void> {
  if (!(await tf.setBackend(task.backend))) throw new Error(`backend '${task.backend}' could not start in a worker`);
  const fx = await loadFixture(task.fixture);
  const c = fx.config;
  const checkpoint = readSafetensors(fx.bytes);
  const layer = new FusedMoE(layerConfig(c, {
    tpSize: task.tpSize, tpRank: task.tpRank, epSize: task.epSize, epRank: task.epRank, reduceResults: true,
    allReduce: async (partial) => {
      const reduced = new Promise<Float32Array>((resolve) => {
        parentPort!.once('message', (m: {type: 'reduced'; values: Float32Array}) => resolve(m.values));
      });
      parentPort!.postMessage({type: 'partial', rank: task.rank, values: await partial.data(), shape: partial.shape});
      return tf.tensor(await reduced, partial.shape);
    },
  }));
  layer.loadWeights(checkpoint, loadOptions(c));
  disposeCheckpointTensors(checkpoint.values());
  const hidden = tf.tensor2d(entry(fx, 'input.hidden_states').values, [c.tokens, c.hidden_size]);
  const logits = tf.tensor2d(entry(fx, 'input.router_logits').values, [c.tokens, c.num_experts]);
  const before = tf.memory().numTensors;
  const out = await layer.forwardAsync(hidden, logits);
  const values = await out.data() as Float32Array;
  out.dispose();
  const leaked = tf.memory().numTensors - before;
  parentPort!.postMessage({type: 'done', rank: task.rank, values, shape: out.shape, leaked});
}

const task = workerData as RankTask & {rank: number};
main(task).catch((e: Error) => parentPort!.postMessage({type: 'error', rank: task.rank, message: e.stack ?? e.message}));

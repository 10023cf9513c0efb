/**
 * tfjs-fused-moe on the 'tensorflow' backend: tfjs-node-gpu (libtensorflow with CUDA) or tfjs-node
 * (libtensorflow on the CPU). Both register a backend named 'tensorflow'; `tfjs-fused-moe/node`
 * registers this package's kernels for it, built from TensorFlow's own ops.
 *
 *   npm install @tensorflow/tfjs-node-gpu@4.22.0     # NVIDIA GPU, CUDA 11.x + cuDNN 8 (as tfjs-node-gpu needs)
 *   npm install @tensorflow/tfjs-node@4.22.0         # or the CPU build
 *   npx tsx examples/node/tfjs_node_gpu.ts [--fixtures DIR] [name]
 *
 * In your own code the order of the first two lines does not matter:
 *
 *   require('@tensorflow/tfjs-node-gpu');           // starts the 'tensorflow' backend
 *   require('tfjs-fused-moe/node');                  // our kernels for it
 *   const {FusedMoE, loadSafetensors} = require('tfjs-fused-moe');
 *
 * In this repository `npm run setup:libtensorflow` installs tfjs-node without its download step.
 * Exit status: 0 when the layer matches the checkpoint's expected output, 1 when not, 2 when neither
 * package is installed.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import {loadSafetensors, disposeCheckpointTensors} from '../../src';
import {CheckpointConfig, CheckpointLayer, runCheckpointLayer} from '../common/checkpoint_layer';
import {loadTensorflowBackend} from './tensorflow_backend';

async function main(): Promise<number> {
  const loaded = await loadTensorflowBackend();
  if (loaded.name == null) {
    console.error(loaded.reason);
    return 2;
  }
  if (!(await tf.setBackend('tensorflow'))) throw new Error(`${loaded.name} loaded, but its backend did not start`);

  const args = process.argv.slice(2);
  const dirFlag = args.indexOf('--fixtures');
  const dir = dirFlag >= 0 ? args.splice(dirFlag, 2)[1] :
    process.env.MOE_FIXTURES ?? path.join(__dirname, '..', '..', 'test', 'fixtures');
  const name = args[0] ?? 'mixtral-t37';
  const file = path.join(dir, `${name}.safetensors`);

  // The vLLM config: a JSON file beside the checkpoint (as a model's config.json), which the fixtures
  // also carry in the safetensors' __metadata__.
  const config = JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8')) as CheckpointConfig;
  const tensors = await loadSafetensors(file);
  const layer = await CheckpointLayer.fromTensors(name, config, tensors);
  disposeCheckpointTensors(tensors.values());

  const run = await runCheckpointLayer(layer, 5);
  const sorted = [...run.latenciesMs].sort((a, b) => a - b);
  console.log(`backend: tensorflow (${loaded.name}${loaded.name.endsWith('-gpu') ? ', CUDA' : ', CPU'})`);
  console.log(`${name}: ${layer.describe()}`);
  console.log(`tokens per expert: ${run.tokensPerExpert.join(' ')}`);
  console.log(`latency: first call ${run.firstCallMs.toFixed(1)} ms, then median ${sorted[sorted.length >> 1].toFixed(2)} ms`);
  console.log(`max |out - expected.output| = ${run.maxError.toExponential(2)} (tolerance ` +
      `${run.tolerance.toExponential(2)}) → ${run.ok ? 'OK' : 'FAILED'}`);
  layer.dispose();
  return run.ok ? 0 : 1;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exit(1);
});

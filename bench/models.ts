/**
 * Whole-model benchmark of tfjs-fused-moe/models: prefill and decode tokens/s, and each step's share
 * spent in the MoE blocks (FusedMoE layers alone, at the same token count) versus the rest.
 *
 *   npm run bench:models                                      cpu, the tiny fixture models (a functional run)
 *   npm run bench:models -- --backend webgpu --models real    two-layer Qwen3-30B-A3B and Mixtral-8x7B slices
 *   bash .gpu/run.sh .gpu/models.mjs --backend webgpu --models real --json     (the GPU machine, packed)
 *
 * Models: `tiny` = the fixture folders (test/fixtures/models, or --fixtures DIR), loaded as a user would;
 * `real` = bench/model_shapes.json (real configs cut to 2 layers), built without a checkpoint, weights
 * N(0, 0.02) (norms 1). bench/models_torch.py times transformers' eager model at the same shapes.
 *
 * Prefill: the wall time of `generate(prompt, {maxNewTokens: 1})` (forward over the prompt, argmax of
 * the last row, read back). Decode: the median step of `generate` after the first token (one token
 * with the KV cache, argmax, read back). MoE share: every FusedMoE layer applied to random hidden
 * states and router logits of the step's token count, read back once at the end, over the step time.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
// A named import: bundlers drop a bare import of tfjs-backend-cpu (see bench/run.ts).
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import {CausalLM, loadCausalLM, parseCausalLMConfig} from '../src/models';
import {median, round} from './timing';

interface Args {
  backend: string; models: string[]; fixtures: string; prompt: number; decode: number; reps: number; json: boolean;
}

const USAGE = 'usage: npm run bench:models -- [--backend cpu|webgpu|tensorflow] [--models tiny|real|NAME,...] ' +
  '[--fixtures DIR] [--prompt 128] [--decode 32] [--reps 5] [--json]';
const TINY = ['qwen3moe-tiny', 'mixtral-tiny-sharded'];

function parseArgs(argv: string[]): Args {
  // Relative to the working directory (the repository root), so that the packed bundle finds it too.
  const a: Args = {backend: 'cpu', models: TINY, fixtures: path.join('test', 'fixtures', 'models'),
    prompt: 128, decode: 32, reps: 5, json: false};
  const int = (v: string, name: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be an integer >= 1 but got '${v}'\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--backend': a.backend = v; i++; break;
      case '--models': a.models = v === 'tiny' ? TINY : v === 'real' ? Object.keys(realShapes()) :
        v === 'all' ? [...TINY, ...Object.keys(realShapes())] : v.split(','); i++; break;
      case '--fixtures': a.fixtures = v; i++; break;
      case '--prompt': a.prompt = int(v, '--prompt'); i++; break;
      case '--decode': a.decode = int(v, '--decode'); i++; break;
      case '--reps': a.reps = int(v, '--reps'); i++; break;
      case '--json': a.json = true; break;
      default: throw new Error(`unknown argument '${argv[i]}'\n${USAGE}`);
    }
  }
  if (!['cpu', 'webgpu', 'tensorflow'].includes(a.backend)) throw new Error(`--backend '${a.backend}'?\n${USAGE}`);
  return a;
}

/** Bundled with the script (esbuild inlines required JSON), so the packed form needs no extra file. */
function realShapes(): Record<string, Record<string, unknown>> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('./model_shapes.json');
}

async function startBackend(name: string): Promise<string> {
  if (name === 'webgpu') {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const {setupWebGPUNode} = require('./webgpu_node') as typeof import('./webgpu_node');
    const setup = setupWebGPUNode();
    if (setup.oursMissing) throw new Error(setup.oursMissing);
    if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend did not start (no adapter?)');
    return `webgpu on ${setup.vulkan}`;
  }
  if (name === 'tensorflow') {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const {loadTensorflowBackend} = require('../examples/node/tensorflow_backend') as
      typeof import('../examples/node/tensorflow_backend');
    const r = await loadTensorflowBackend();
    if (r.name == null) throw new Error(`the tensorflow backend is not available: ${r.reason}`);
    return `tensorflow (${r.name})`;
  }
  await tf.setBackend('cpu');
  return `cpu (tfjs-backend-cpu ${version_cpu})`;
}

/** Values from N(0, 0.02): drawn directly up to 4M, beyond that a 1M draw repeated on the device (tfjs draws on the host). */
function randomWeight(shape: number[], seed: number): tf.Tensor {
  const size = shape.reduce((x, y) => x * y, 1);
  const BLOCK = 1 << 20;
  if (size <= 4 * BLOCK) return tf.randomNormal(shape, 0, 0.02, 'float32', seed);
  return tf.tidy(() => tf.reshape(tf.slice(tf.tile(tf.randomNormal([BLOCK], 0, 0.02, 'float32', seed),
      [Math.ceil(size / BLOCK)]), 0, size), shape));
}

/** A real-shaped model without a checkpoint: every weight random except norms, which stay 1. */
function randomModel(config: Record<string, unknown>): CausalLM {
  const lm = new CausalLM(parseCausalLMConfig(config));
  lm.layersModel.weights.forEach((w, i) => {
    if (/norm/.test(w.originalName)) return;
    const t = randomWeight(w.shape as number[], i + 1);
    w.write(t);
    t.dispose();
  });
  return lm;
}

/** Wall time of all MoE layers at `tokens` tokens, read back once (median of reps). */
async function moeMs(lm: CausalLM, tokens: number, reps: number): Promise<number> {
  const c = lm.config;
  const layers = lm.moeLayers.filter((l) => l != null);
  const hidden = tf.randomNormal([tokens, c.hiddenSize]);
  const logits = tf.randomNormal([tokens, c.numExperts]);
  const times: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const start = performance.now();
    const outs = layers.map((l) => l!.apply([hidden, logits]) as tf.Tensor);
    await Promise.all(outs.map((o) => o.data()));
    if (r > 0) times.push(performance.now() - start);  // the first run compiles
    tf.dispose(outs);
  }
  tf.dispose([hidden, logits]);
  return median(times);
}

interface Row {
  model: string; backend: string; layers: number; moe_layers: number; prompt: number; prefill_ms: number;
  prefill_tok_s: number; prefill_moe_share: number; decode_ms: number; decode_tok_s: number; decode_moe_share: number;
}

async function benchModel(name: string, a: Args, backend: string): Promise<Row> {
  const shapes = realShapes();
  const lm = shapes[name] ? randomModel(shapes[name]) : await loadCausalLM(path.join(a.fixtures, name));
  try {
    const c = lm.config;
    const rand = (n: number) => Array.from({length: n}, (_, i) => (i * 7919 + 13) % c.vocabSize);
    const prompt = rand(a.prompt);
    // Warm-up: compiles the prefill and decode programs (WebGPU) at these shapes.
    await lm.generate(prompt, {maxNewTokens: 3});
    const prefill: number[] = [];
    for (let r = 0; r < a.reps; r++) {
      const start = performance.now();
      await lm.generate(prompt, {maxNewTokens: 1});
      prefill.push(performance.now() - start);
    }
    const steps: number[] = [];
    await lm.generate(prompt, {maxNewTokens: a.decode + 1, onToken: (id, {index, ms}) => {
      if (index > 0) steps.push(ms);
    }});
    const prefillMs = median(prefill), decodeMs = median(steps);
    const moePrefill = await moeMs(lm, a.prompt, a.reps), moeDecode = await moeMs(lm, 1, a.reps);
    return {model: name, backend, layers: c.numHiddenLayers, moe_layers: c.feedForward.filter((f) => f === 'moe').length,
      prompt: a.prompt, prefill_ms: round(prefillMs), prefill_tok_s: round(a.prompt * 1000 / prefillMs),
      prefill_moe_share: round(moePrefill / prefillMs), decode_ms: round(decodeMs), decode_tok_s: round(1000 / decodeMs),
      decode_moe_share: round(moeDecode / decodeMs)};
  } finally {
    lm.dispose();
  }
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const backend = await startBackend(a.backend);
  if (!a.json) {
    console.log(`backend: ${backend}; prompt ${a.prompt} tokens, ${a.decode} decode steps, median of ${a.reps}`);
    console.log('| model | layers (MoE) | prefill tok/s | prefill ms | MoE share | decode tok/s | decode ms | MoE share |');
    console.log('|---|---|---|---|---|---|---|---|');
  }
  for (const name of a.models) {
    const r = await benchModel(name, a, a.backend);
    if (a.json) {
      console.log(JSON.stringify({...r, backend_detail: backend, date: new Date().toISOString()}));
    } else {
      const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
      console.log(`| ${r.model} | ${r.layers} (${r.moe_layers}) | ${r.prefill_tok_s.toFixed(1)} | ${r.prefill_ms.toFixed(1)} | ` +
        `${pct(r.prefill_moe_share)} | ${r.decode_tok_s.toFixed(1)} | ${r.decode_ms.toFixed(2)} | ${pct(r.decode_moe_share)} |`);
    }
  }
  if (a.backend === 'webgpu') {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    (require('./webgpu_node') as typeof import('./webgpu_node')).releaseWebGPU();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

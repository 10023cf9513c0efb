/**
 * `npm start`: runs two real-layout MoE checkpoints (a Mixtral-style and a DeepSeek-V3-style layer,
 * shipped in test/fixtures/) through tfjs-fused-moe on the best backend present, and checks the
 * result against the reference output stored in each file.
 *
 *   npm start                                   # webgpu if Dawn finds an adapter, else cpu
 *   npm start -- --backend cpu                  # force a backend
 *   npm start -- --fixtures DIR name1 name2     # other fixture files (DIR/<name>.safetensors)
 *   MOE_FIXTURES=DIR node .gpu/demo.mjs         # the bundled form (../shared/gpu/pack.sh)
 *
 * Exit status: 0 when every layer matches its expected output, 1 otherwise.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
// A named import, not a bare one: bundlers (esbuild --platform=node) drop `import '@tensorflow/tfjs-backend-cpu'`,
// because tfjs-backend-cpu's package.json does not list its Node build among its side effects.
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import {parseSafetensors} from '../../src';
import {CheckpointLayer, LayerRun, runCheckpointLayer} from '../common/checkpoint_layer';
import {installDawnWebGPU} from './dawn';
import {loadTensorflowBackend} from './tensorflow_backend';

const DEFAULT_FIXTURES = ['mixtral-t37', 'deepseekv3-t41'];
const TIMED_CALLS = 5;

interface Args { backend?: string; fixturesDir: string; names: string[] }

function parseArgs(argv: string[]): Args {
  let backend: string | undefined;
  let dir = process.env.MOE_FIXTURES;
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--backend') backend = argv[++i];
    else if (a === '--fixtures') dir = argv[++i];
    else if (a === '--help' || a === '-h') {
      console.log('usage: demo [--backend webgpu|cpu|tensorflow] [--fixtures DIR] [fixture names...]');
      process.exit(0);
    } else names.push(a);
  }
  return {backend, fixturesDir: dir ?? findFixturesDir(), names: names.length ? names : DEFAULT_FIXTURES};
}

/** The fixtures beside a bundled script (.gpu/fixtures), or the repo's test/fixtures. */
function findFixturesDir(): string {
  const script = path.dirname(path.resolve(process.argv[1] ?? '.'));
  const candidates = [path.join(script, 'fixtures'), path.join(script, '..', '..', 'test', 'fixtures'),
    path.join(process.cwd(), 'test', 'fixtures')];
  const found = candidates.find((d) => fs.existsSync(path.join(d, `${DEFAULT_FIXTURES[0]}.safetensors`)));
  if (!found) {
    throw new Error(`no fixtures found in ${candidates.join(', ')}: pass --fixtures DIR or set MOE_FIXTURES`);
  }
  return found;
}

/** webgpu when Dawn has an adapter, else cpu; says which and why. */
async function pickBackend(requested: string | undefined): Promise<{backend: string; note: string}> {
  if (requested === 'cpu') return {backend: 'cpu', note: 'cpu (asked for)'};
  if (requested === 'tensorflow') {
    const loaded = await loadTensorflowBackend();
    if (loaded.name == null) throw new Error(`--backend tensorflow: ${loaded.reason}`);
    return {backend: 'tensorflow', note: `tensorflow via ${loaded.name} (asked for)`};
  }
  if (requested != null && requested !== 'webgpu') {
    throw new Error(`--backend must be webgpu, cpu or tensorflow, but got '${requested}'`);
  }
  const dawn = await installDawnWebGPU();
  if (dawn.adapter == null) {
    if (requested === 'webgpu') throw new Error(`--backend webgpu: ${dawn.reason}`);
    return {backend: 'cpu', note: `cpu (no WebGPU: ${dawn.reason})`};
  }
  // Only now that navigator.gpu exists may the webgpu backend and our kernels for it load.
  await import('@tensorflow/tfjs-backend-webgpu');
  await import('../../src/webgpu');
  const kind = dawn.adapter.software ? 'software adapter: correct but slow, no hardware GPU found' : 'hardware';
  return {backend: 'webgpu', note: `webgpu via Dawn, adapter ${dawn.adapter.description} [${kind}]`};
}

function formatRouting(tokensPerExpert: number[]): string {
  const max = Math.max(...tokensPerExpert, 1);
  const bars = ' ▁▂▃▄▅▆▇█';
  const spark = tokensPerExpert.map((n) => bars[Math.round((n / max) * (bars.length - 1))]).join('');
  const rows: string[] = [];
  for (let e = 0; e < tokensPerExpert.length; e += 8) {
    rows.push(tokensPerExpert.slice(e, e + 8).map((n, j) => `e${e + j}:${n}`.padEnd(7)).join(' ').trimEnd());
  }
  return `    load  |${spark}|\n` + rows.map((r) => `      ${r}`).join('\n');
}

function report(r: LayerRun, backend: string): void {
  const c = r.layer.config;
  console.log(`\n${r.name}: ${r.layer.describe()}`);
  console.log(`  ${r.layer.layer.toString().split('\n').join('\n  ')}`);
  console.log(`  tokens per expert (${r.tokens} tokens × top-${c.topK} = ${r.tokens * c.topK} assignments):`);
  console.log(formatRouting(r.tokensPerExpert));
  const sorted = [...r.latenciesMs].sort((a, b) => a - b);
  const setup = backend === 'webgpu' ? 'shader compiles, buffer uploads' : 'first-use setup';
  console.log(`  latency: first call ${r.firstCallMs.toFixed(1)} ms (${setup}), then median ` +
      `${sorted[sorted.length >> 1].toFixed(2)} ms over ${sorted.length} calls (min ${sorted[0].toFixed(2)} ms)`);
  console.log(`  check: max |out - expected.output| = ${r.maxError.toExponential(2)}, tolerance ` +
      `${r.tolerance.toExponential(2)} (1e-4·max|expected| + 1e-5) → ${r.ok ? 'OK' : 'FAILED'}`);
}

/** The checkpoint's tensors, under their checkpoint names, and its vLLM config from `__metadata__`. */
async function loadCheckpoint(name: string, bytes: Uint8Array): Promise<CheckpointLayer> {
  const {metadata, entries} = parseSafetensors(bytes);
  if (metadata.config == null) throw new Error(`${name}.safetensors has no __metadata__.config`);
  const tensors = new Map<string, tf.Tensor>();
  for (const [key, e] of entries) {
    tensors.set(key, tf.tensor(e.values, e.shape, e.values instanceof Int32Array ? 'int32' : 'float32'));
  }
  try {
    return await CheckpointLayer.fromTensors(name, JSON.parse(metadata.config), tensors);
  } finally {
    tf.dispose([...tensors.values()]);
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const {backend, note} = await pickBackend(args.backend);
  if (!(await tf.setBackend(backend))) throw new Error(`tfjs could not initialize the '${backend}' backend`);
  await tf.ready();
  console.log(`tfjs-fused-moe demo · tfjs-core ${tf.version_core} (cpu backend ${version_cpu}) · backend: ${note}`);
  if (backend === 'webgpu') {
    const {webgpuCapabilities} = await import('../../src/webgpu');
    const caps = webgpuCapabilities(tf.backend() as WebGPUBackend);
    console.log(`webgpu device: subgroups ${caps.subgroups ? `on (size ${caps.subgroupSize || 'varies'})` :
      `off (${caps.reason})`}, maxStorageBufferBindingSize ${(caps.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB`);
  }
  console.log(`fixtures: ${args.fixturesDir}`);

  let failures = 0;
  for (const name of args.names) {
    const file = path.join(args.fixturesDir, `${name}.safetensors`);
    if (!fs.existsSync(file)) throw new Error(`no checkpoint ${file}: pass --fixtures DIR (or MOE_FIXTURES) and names`);
    const bytes = new Uint8Array(fs.readFileSync(file));
    const before = tf.memory().numTensors;
    const layer = await loadCheckpoint(name, bytes);
    const run = await runCheckpointLayer(layer, TIMED_CALLS);
    report(run, backend);
    layer.dispose();
    const leaked = tf.memory().numTensors - before;
    if (leaked !== 0) console.log(`  leak check: ${leaked} tensor(s) left behind → FAILED`);
    if (!run.ok || leaked !== 0) failures++;
  }
  console.log(failures === 0 ? `\nall ${args.names.length} layers match their expected output on ${backend}` :
      `\n${failures} of ${args.names.length} layers FAILED on ${backend}`);
  return failures === 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exit(1);
});

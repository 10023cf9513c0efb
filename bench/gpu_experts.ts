/**
 * The device entry for the webgpu FusedExperts kernel (packed with ../shared/gpu/pack.sh, run with
 * `bash .gpu/run.sh .gpu/gpu_experts.mjs [--fixtures DIR] [--shapes mixtral,qwen3,dsv3tp8] [--tokens 1,16]
 * [--no-naive] [--all-paths] [--tile-k] [--variants] [--json FILE]`):
 *  1. the golden fixtures through fusedExperts on webgpu, decode and prefill paths forced, one and two
 *     weight shards, and through fusedMoE (routing kernels too): max |error| and pass/fail;
 *  2. timings of fusedExperts (auto path; --all-paths: each path forced at M = 16 and 256; --tile-k: 16- and
 *     32-k GEMM tiles; --variants: at M ≥ 256 the w2 GEMM split in 1-8 K parts and 32-, 64-, 128-row tiles,
 *     at M = 1 the decode GEMVs with every weight tensor bound against one dispatch per tensor), fusedMoE, and the naive
 *     tfjs way (bench/naive_tfjs.ts), with the per-kernel GPU profile from timestamp queries.
 */
import {webgpuSetup} from './gpu_setup';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {fusedExperts, fusedMoE, parseSafetensors} from '../src';
import {chooseExpertsPath, ExpertsPath, setFusedExpertsBlockRows, setFusedExpertsPath, setFusedExpertsShardBinding,
  setFusedExpertsSplitK, setFusedExpertsTileK} from '../src/kernels/webgpu/FusedExperts';
import {routingImpl} from '../src/kernels/cpu/routing_impl';
import {Fixture, fixtureExpertWeights, fixtureOptions, FIXTURES} from '../test/helpers/fixtures';
import {disposeNaiveWeights, naiveExpertWeights, naiveMoE} from './naive_tfjs';
import {disposeInputs, makeExpertWeights, makeTokenInputs, moeOptions, routingConfig} from './problem';
import {MoEShape, moeFlops, SHAPES} from './shapes';
import {measure, round} from './timing';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const jsonLines: string[] = [];
const emit = (row: object) => {
  const line = JSON.stringify(row);
  jsonLines.push(line);
  console.log(line);
};

async function checkFixtures(dir: string): Promise<boolean> {
  let allOk = true;
  for (const name of FIXTURES) {
    const file = path.join(dir, `${name}.safetensors`);
    if (!fs.existsSync(file)) { console.log(`fixture ${name}: missing (${file})`); allOk = false; continue; }
    const bytes = new Uint8Array(fs.readFileSync(file));
    const {metadata, entries} = parseSafetensors(bytes);
    const fx: Fixture = {name, config: JSON.parse(metadata.config), entries, bytes};
    const c = fx.config;
    const {w13, w2} = fixtureExpertWeights(fx);
    const get = (k: string) => entry(fx, k);
    const expected = get('expected.output');
    const E = c.num_experts, I = c.intermediate_size, H = c.hidden_size, T = c.tokens;
    const hidden = tf.tensor2d(get('input.hidden_states'), [T, H]);
    const logits = tf.tensor2d(get('input.router_logits'), [T, E]);
    const w13t = tf.tensor3d(w13, [E, 2 * I, H]);
    const w2t = tf.tensor3d(w2, [E, H, I]);
    const half = Math.max(1, E >> 1);
    const w13s = [tf.tensor3d(w13.subarray(0, half * 2 * I * H), [half, 2 * I, H]),
      tf.tensor3d(w13.subarray(half * 2 * I * H), [E - half, 2 * I, H])];
    const w2s = [tf.tensor3d(w2.subarray(0, half * H * I), [half, H, I]),
      tf.tensor3d(w2.subarray(half * H * I), [E - half, H, I])];
    const weights = tf.tensor2d(get('expected.topk_weights'), [T, c.top_k]);
    const ids = tf.tensor2d(get('expected.topk_ids'), [T, c.top_k], 'int32');
    const biasEntry = entries.get(`${c.checkpoint_prefix}.gate.e_score_correction_bias`);
    const bias = biasEntry ? tf.tensor1d(biasEntry.values) : undefined;
    const opts = {...fixtureOptions(c), eScoreCorrectionBias: bias};
    const tol = 1e-4 * maxAbs(expected) + 1e-5;
    const report = async (what: string, out: tf.Tensor) => {
      const err = maxErr(await out.data(), expected);
      out.dispose();
      const ok = err <= tol;
      allOk = allOk && ok;
      console.log(`fixture ${name.padEnd(15)} ${what.padEnd(26)} max|err| ${err.toExponential(2)} ` +
          `(tol ${tol.toExponential(2)}) ${ok ? 'PASS' : 'FAIL'}`);
    };
    for (const p of ['decode', 'decode-grouped', 'prefill'] as ExpertsPath[]) {
      setFusedExpertsPath(p);
      await report(`fusedExperts ${p}`, fusedExperts(hidden, w13t, w2t, weights, ids, opts));
      if (E > 1) await report(`fusedExperts ${p} 2 shards`, fusedExperts(hidden, w13s, w2s, weights, ids, opts));
    }
    setFusedExpertsPath(null);
    try {
      await report('fusedMoE (routing+experts)', fusedMoE(hidden, logits, w13t, w2t, opts));
    } catch (e) {
      allOk = false;
      console.log(`fixture ${name}: fusedMoE threw ${(e as Error).message.split('\n')[0]}`);
    }
    tf.dispose([hidden, logits, w13t, w2t, ...w13s, ...w2s, weights, ids, ...(bias ? [bias] : [])]);
  }
  return allOk;
}

function entry(fx: Fixture, key: string): Float32Array | Int32Array {
  const e = fx.entries.get(key);
  if (!e) throw new Error(`fixture ${fx.name} has no tensor '${key}'`);
  return e.values as Float32Array | Int32Array;
}
const maxAbs = (x: ArrayLike<number>) => { let m = 0; for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i])); return m; };
function maxErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

async function timeShape(s: MoEShape, tokens: number[], naive: boolean): Promise<void> {
  const w = makeExpertWeights(s);
  const nw = naive ? naiveExpertWeights(w.w13, w.w2) : null;
  const opt = {warmup: 4, reps: 15, maxRowSeconds: 4};
  for (const M of tokens) {
    const x = makeTokenInputs(s, M);
    const routed = routingImpl(x.logitsHost, M, s.E, x.biasHost, routingConfig(s.routing, s.k));
    const topkW = tf.tensor2d(routed.weights, [M, s.k]);
    const topkIds = tf.tensor2d(routed.ids, [M, s.k], 'int32');
    const flops = moeFlops(s, M);
    const bytes = x.distinctExperts * 3 * s.I * s.H * 4;
    const row = (impl: string, m: Awaited<ReturnType<typeof measure>>, extra: object = {}) => {
      const us = m.gpuUs ?? m.wallUs;
      emit({impl, backend: 'webgpu', shape: s.name, E: s.E, k: s.k, H: s.H, I: s.I, M, dtype: 'float32',
        us: round(us), wallUs: round(m.wallUs), tflops: round(flops / us / 1e6), gbps: round(bytes / us / 1e3),
        distinctExperts: x.distinctExperts, kernels: m.kernels, ...extra});
    };
    const auto = chooseExpertsPath(M * s.k, s.E, M);
    const paths: (ExpertsPath | null)[] = [null];
    if (args.includes('--all-paths') && (M === 16 || M === 256)) {
      paths.push(...(['decode', 'decode-grouped', 'prefill'] as ExpertsPath[]));
    }
    for (const p of paths) {
      setFusedExpertsPath(p);
      const m = await measure(async (timer) => {
        const f = () => fusedExperts(x.hidden!, w.w13, w.w2, topkW, topkIds);
        return timer ? timer.time(f) : f();
      }, opt);
      row(p == null ? 'ours-experts' : `ours-experts-${p}`, m, {path: p ?? auto.path});
    }
    if (args.includes('--tile-k') && M >= 256) {
      // The GEMM's k per shared-memory tile, 16 (default) against 32.
      for (const tileK of [16, 32]) {
        setFusedExpertsPath('prefill');
        setFusedExpertsTileK(tileK);
        const m = await measure(async (timer) => {
          const f = () => fusedExperts(x.hidden!, w.w13, w.w2, topkW, topkIds);
          return timer ? timer.time(f) : f();
        }, opt);
        row(`ours-experts-prefill-k${tileK}`, m, {path: 'prefill', tileK});
      }
      setFusedExpertsTileK(null);
    }
    if (args.includes('--variants')) {
      const timeVariant = async (impl: string, extra: object, set: () => void) => {
        set();
        try {
          const m = await measure(async (timer) => {
            const f = () => fusedExperts(x.hidden!, w.w13, w.w2, topkW, topkIds);
            return timer ? timer.time(f) : f();
          }, opt);
          row(impl, m, extra);
        } catch (e) {
          console.log(`${s.name} M=${M} ${impl}: threw ${(e as Error).message.split('\n')[0]}`);
        } finally {
          setFusedExpertsPath(null); setFusedExpertsSplitK(null); setFusedExpertsBlockRows(null);
          setFusedExpertsShardBinding(null);
        }
      };
      if (M >= 256) {
        for (const splitK of M >= 4096 ? [1, 2] : [1, 2, 4, 8]) {
          await timeVariant(`ours-experts-prefill-split${splitK}`, {path: 'prefill', splitK},
              () => { setFusedExpertsPath('prefill'); setFusedExpertsSplitK(splitK); });
        }
        for (const blockRows of M >= 4096 ? [64, 128] : [32, 64, 128]) {
          await timeVariant(`ours-experts-prefill-rows${blockRows}`, {path: 'prefill', blockRows},
              () => { setFusedExpertsPath('prefill'); setFusedExpertsBlockRows(blockRows); });
        }
      }
      if (M === 1) {
        for (const mode of ['per-shard', 'all'] as const) {
          await timeVariant(`ours-experts-decode-${mode}`, {path: 'decode', shardBinding: mode},
              () => setFusedExpertsShardBinding(mode));
        }
      }
    }
    setFusedExpertsPath(null);
    try {
      const m = await measure(async (timer) => {
        const f = () => fusedMoE(x.hidden!, x.logits, w.w13, w.w2, moeOptions(s, x.bias));
        return timer ? timer.time(f) : f();
      }, opt);
      row('ours', m, {path: auto.path});
    } catch (e) {
      console.log(`${s.name} M=${M}: fusedMoE threw ${(e as Error).message.split('\n')[0]}`);
    }
    if (nw) {
      const m = await measure((timer) => naiveMoE(x.hidden!, x.logits, x.bias, nw, s.routing, s.k, timer),
          {warmup: 1, reps: 5, maxRowSeconds: 4});
      row('naive-tfjs', m);
    }
    tf.dispose([topkW, topkIds]);
    disposeInputs(x);
  }
  if (nw) disposeNaiveWeights(nw);
  tf.dispose([...w.w13, ...w.w2]);
}

async function main() {
  if (webgpuSetup.oursMissing) throw new Error(webgpuSetup.oursMissing);
  if (!(await tf.setBackend('webgpu'))) throw new Error('webgpu backend did not start');
  const b = tf.backend() as WebGPUBackend;
  const info = b.device.adapterInfo ?? {};
  console.log(`webgpu on ${webgpuSetup.vulkan}: ${JSON.stringify(info)}; features ${[...b.device.features].join(',')}; ` +
      `maxStorageBufferBindingSize ${b.device.limits.maxStorageBufferBindingSize}`);
  const fixturesDir = arg('fixtures', path.join(path.dirname(process.argv[1]), 'fixtures'));
  if (fs.existsSync(fixturesDir)) {
    const ok = await checkFixtures(fixturesDir);
    console.log(`FIXTURES ${ok ? 'ALL PASS' : 'SOME FAILED'}`);
  }
  const shapes = arg('shapes', 'mixtral,qwen3,dsv3tp8').split(',').filter(Boolean);
  const tokens = arg('tokens', '1,16,256,4096').split(',').map(Number);
  for (const name of shapes) await timeShape(SHAPES[name] as MoEShape, tokens, !args.includes('--no-naive'));
  const json = arg('json', '');
  if (json) fs.writeFileSync(json, jsonLines.join('\n') + '\n');
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });

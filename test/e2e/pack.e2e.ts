/**
 * Installs the package as a user would and uses it (`npm run test:pack`):
 *
 *   npm run build → npm pack → fresh temp project → npm install <tarball> + tfjs peers (from the npm cache)
 *     → node consumer.mjs (import)  → fusedMoE on cpu = the cpu reference (routingImpl + fusedExpertsImpl)
 *     → node consumer.cjs (require) → the same
 *     → tsc --noEmit on a TypeScript consumer, once with Node's ESM resolution and once with classic `node`
 *
 * The consumer sees only the tarball: no path into this repo, nothing from tfjs internals.
 */
import {execFileSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {expect} from 'chai';
import {expectClose} from '../helpers/compare';
import {expertsCase, referenceExperts, referenceRouting} from '../helpers/cases';

const ROOT = path.join(__dirname, '..', '..');
const TFJS_VERSION = require('@tensorflow/tfjs-core/package.json').version as string;
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

function run(cmd: string, args: string[], cwd: string): string {
  try {
    return execFileSync(cmd, args, {cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
      env: {...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false'}});
  } catch (e) {
    const err = e as {stdout?: string; stderr?: string; message: string};
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
}

/** The program both consumers run: the tiny case from case.json through fusedMoE on cpu. */
const consumerBody = `
const c = JSON.parse(fs.readFileSync('case.json', 'utf8'));
await tf.setBackend('cpu');
const before = tf.memory().numTensors;
const hidden = tf.tensor2d(c.hidden, [c.T, c.H]);
const logits = tf.tensor2d(c.logits, [c.T, c.E]);
const w13 = tf.tensor3d(c.w13, [c.E, 2 * c.I, c.H]);
const w2 = tf.tensor3d(c.w2, [c.E, c.H, c.I]);
const out = moe.fusedMoE(hidden, logits, w13, w2, {topK: c.k, renormalize: true});
const result = {shape: out.shape, output: Array.from(await out.data()), exports: {'tfjs-fused-moe': Object.keys(moe).sort()}};
tf.dispose([hidden, logits, w13, w2, out]);
result.leaked = tf.memory().numTensors - before;
// The webgpu entry registers its kernels even where WebGPU is absent (it runs nothing until setBackend).
result.exports['tfjs-fused-moe/webgpu'] = Object.keys(moeWebGPU).sort();
// So does the tensorflow entry, without tfjs-node installed (both tfjs-node packages are optional peers).
result.exports['tfjs-fused-moe/node'] = Object.keys(moeNode).sort();
// The models entry shares the core's kernel registry (its FusedMoE is the core's class).
result.exports['tfjs-fused-moe/models'] = Object.keys(moeModels).sort();
result.modelsShareCore = typeof moeModels.loadCausalLM === 'function' &&
  tf.serialization.SerializationMap.getMap().classNameMap.FusedMoE[0] === moe.FusedMoE;
console.log(JSON.stringify(result));
`;

const ESM_CONSUMER = `import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as moe from 'tfjs-fused-moe';
import * as moeWebGPU from 'tfjs-fused-moe/webgpu';
import * as moeNode from 'tfjs-fused-moe/node';
import * as moeModels from 'tfjs-fused-moe/models';
import * as fs from 'node:fs';
${consumerBody}`;

const CJS_CONSUMER = `const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const moe = require('tfjs-fused-moe');
const moeWebGPU = require('tfjs-fused-moe/webgpu');
const moeNode = require('tfjs-fused-moe/node');
const moeModels = require('tfjs-fused-moe/models');
const fs = require('fs');
(async () => {${consumerBody}})().catch((e) => { console.error(e); process.exit(1); });
`;

/** What a TypeScript user writes; it must compile against the shipped declarations alone. */
const TS_CONSUMER = `import * as tf from '@tensorflow/tfjs-core';
import {fusedMoE, fusedTopK, groupedTopK, selectExperts, fusedExperts, FusedMoEOptions, RoutingResult}
  from 'tfjs-fused-moe';
import {webgpuCapabilities, WebGPUCapabilities} from 'tfjs-fused-moe/webgpu';
import {chooseExpertsComposition} from 'tfjs-fused-moe/node';
import {CausalLM, GenerateOptions, loadCausalLM} from 'tfjs-fused-moe/models';

const options: FusedMoEOptions = {topK: 2, renormalize: true, activation: 'silu'};
const hidden: tf.Tensor2D = tf.zeros([3, 8]);
const logits: tf.Tensor2D = tf.zeros([3, 4]);
const w13: tf.Tensor3D = tf.zeros([4, 12, 8]);
const w2: tf.Tensor3D = tf.zeros([4, 8, 6]);
const out: tf.Tensor2D = fusedMoE(hidden, logits, w13, w2, options);
const routed: RoutingResult = fusedTopK(logits, 2, true);
const grouped = groupedTopK(logits, {topK: 2, renormalize: true, numExpertGroup: 2, topkGroup: 1});
const selected = selectExperts(hidden, logits, {topK: 2, renormalize: false, scoringFunc: 'sigmoid'});
const experts: tf.Tensor2D = fusedExperts(hidden, w13, w2, selected.topkWeights, selected.topkIds);
// @ts-expect-error: the options are typed, so a misspelt field is caught at compile time.
fusedMoE(hidden, logits, w13, w2, {topK: 2, renormalise: true});
export const shapes = [out.shape, routed.topkIds.shape, grouped.topkWeights.shape, experts.shape];
export const capabilities: typeof webgpuCapabilities = webgpuCapabilities;
export type Capabilities = WebGPUCapabilities;
export const composition: typeof chooseExpertsComposition = chooseExpertsComposition;
export async function greedy(folder: string, prompt: number[]): Promise<number[]> {
  const lm: CausalLM = await loadCausalLM(folder, {onProgress: (p) => console.log(p.file, p.loadedBytes)});
  const options: GenerateOptions = {maxNewTokens: 4, onToken: (id, {ms}) => console.log(id, ms)};
  const logits: tf.Tensor3D = await lm.forward(tf.tensor2d([prompt], [1, prompt.length], 'int32'));
  logits.dispose();
  try {
    return await lm.generate(prompt, options);
  } finally {
    lm.dispose();
  }
}
`;

describe('npm pack → install → use, as a user', function() {
  this.timeout(300000);
  let work: string;
  let consumer: string;
  let tarball: string;
  const c = expertsCase(7, 5, 4, 2, 8, 6);
  const routing = referenceRouting(c);
  const reference = referenceExperts(c, routing.weights, routing.ids);

  before(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-pack-'));
    run('npm', ['run', 'build'], ROOT);
    const packed = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], ROOT));
    tarball = path.join(work, packed[0].filename);
    consumer = path.join(work, 'consumer');
    fs.mkdirSync(consumer);
    fs.writeFileSync(path.join(consumer, 'package.json'),
        JSON.stringify({name: 'moe-consumer', version: '1.0.0', private: true}, null, 2));
    // The peers come from the npm cache that `npm ci` filled (the registry only if the cache lacks them).
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball,
      `@tensorflow/tfjs-core@${TFJS_VERSION}`, `@tensorflow/tfjs-layers@${TFJS_VERSION}`,
      `@tensorflow/tfjs-backend-cpu@${TFJS_VERSION}`, `@tensorflow/tfjs-backend-webgpu@${TFJS_VERSION}`], consumer);
    fs.writeFileSync(path.join(consumer, 'case.json'), JSON.stringify({
      T: c.T, E: c.E, k: c.k, H: c.H, I: c.I, hidden: Array.from(c.hidden), logits: Array.from(c.logits),
      w13: Array.from(c.w13), w2: Array.from(c.w2)}));
  });

  after(() => {
    if (work && !process.env.MOE_KEEP_PACK) fs.rmSync(work, {recursive: true, force: true});
  });

  it('ships the build and its types, and no sources or tests', () => {
    const files: string[] = JSON.parse(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], ROOT))[0].files
        .map((f: {path: string}) => f.path);
    for (const entry of ['index', 'webgpu', 'node', 'models']) {
      for (const f of [`dist/${entry}.js`, `dist/${entry}.mjs`, `dist/${entry}.d.ts`, `dist/${entry}.d.mts`]) {
        expect(files, f).to.include(f);
      }
    }
    expect(files.filter((f) => /^(src|test|examples|bench)\//.test(f)), 'sources in the tarball').to.deep.equal([]);
  });

  let esmExports: Record<string, string[]>;
  for (const [kind, file, source] of [['ESM import', 'consumer.mjs', ESM_CONSUMER],
    ['CommonJS require', 'consumer.cjs', CJS_CONSUMER]] as const) {
    it(`${kind}: fusedMoE on cpu equals the cpu reference, with no leaks`, () => {
      fs.writeFileSync(path.join(consumer, file), source);
      const result = JSON.parse(run(process.execPath, [file], consumer));
      expect(result.shape).to.deep.equal([c.T, c.H]);
      expectClose(result.output, reference, `${kind} fusedMoE`);
      expect(result.leaked, 'tensors left').to.equal(0);
      expect(result.modelsShareCore, 'tfjs-fused-moe/models uses the core\'s FusedMoE').to.equal(true);
      if (kind === 'ESM import') {
        esmExports = result.exports;
      } else {
        // One CommonJS build behind both faces: import must see every name require sees.
        for (const [entry, names] of Object.entries(result.exports)) {
          expect(esmExports[entry].filter((n) => n !== 'default' && n !== '__esModule'), `ESM exports of ${entry}`)
              .to.deep.equal(names);
        }
      }
    });
  }

  for (const [resolution, module] of [['node16', 'node16'], ['node', 'commonjs']] as const) {
    it(`types resolve for a TypeScript consumer (moduleResolution ${resolution})`, () => {
      const dir = path.join(consumer, `ts-${resolution}`);
      fs.mkdirSync(dir, {recursive: true});
      fs.writeFileSync(path.join(dir, 'use.ts'), TS_CONSUMER);
      fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({compilerOptions: {
        target: 'ES2020', module, moduleResolution: resolution, strict: true, noEmit: true, types: [],
        lib: ['ES2020', 'DOM'], skipLibCheck: true}, files: ['use.ts']}));
      run(process.execPath, [TSC, '-p', dir], consumer);
    });
  }
});

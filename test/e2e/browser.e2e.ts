/**
 * The browser example in real headless Chromium (Debian's /usr/bin/chromium, driven by
 * playwright-core), served from localhost (`npm run test:e2e`):
 *   - with WebGPU (SwiftShader here; a real GPU where there is one): the page runs the layer on
 *     webgpu, and its output, expert-load chart, progress and latency table agree with the checkpoint's
 *     `expected.output` and the cpu reference routing;
 *   - a person picks another checkpoint and clicks "Load and run";
 *   - without WebGPU (no flags, or ?webgpu=off) the page says so and runs on cpu, with the same results.
 * Screenshots go to MOE_SCREENSHOTS (default: the OS temp dir) for a person to look at.
 */
import {execFileSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {expect} from 'chai';
import {Browser, Page, chromium} from 'playwright-core';
import {ExampleServer, startServer} from '../../examples/browser/server';
import {parseSafetensors, routingImpl} from '../../src';
import {expectClose} from '../helpers/compare';

const ROOT = path.join(__dirname, '..', '..');
const CHROMIUM = process.env.MOE_CHROMIUM ?? '/usr/bin/chromium';
const SCREENSHOTS = process.env.MOE_SCREENSHOTS ?? os.tmpdir();
const COMMON_FLAGS = ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--no-first-run'];
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--enable-features=Vulkan'];
const TIMED_CALLS = 3;  // as examples/browser/main.ts

interface RunResult {
  name: string; backend: string; tokensPerExpert: number[]; firstCallMs: number; latenciesMs: number[];
  maxError: number; tolerance: number; ok: boolean; output: number[]; leakedTensors: number;
}
interface GenerationState {
  model: string; backend: string; status: string; ids: number[]; msPerToken: number[]; leakedTensors: number | null;
  error: string | null;
}
interface DemoState {
  generation: GenerationState | null;
  status: string; backend: string; adapter: string | null; fallbackReason: string | null;
  progress: Array<[number, number | null]>; runs: Record<string, RunResult>; error: string | null;
}

/** The checkpoint as the test reads it itself: expected output, and the reference routing's expert load. */
function reference(name: string): {expected: Float32Array; tokensPerExpert: number[]; bytes: number} {
  const bytes = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', `${name}.safetensors`));
  const {metadata, entries} = parseSafetensors(new Uint8Array(bytes));
  const c = JSON.parse(metadata.config);
  const get = (key: string) => entries.get(key)!.values;
  const bias = entries.get(`${c.checkpoint_prefix}.gate.e_score_correction_bias`)?.values ?? null;
  const llama4 = c.custom_routing === 'llama4';  // sigmoid of the top-k logits, not renormalized
  const {ids} = routingImpl(get('input.router_logits'), c.tokens, c.num_experts, bias, {
    topK: c.top_k, renormalize: llama4 ? false : c.renormalize, scoringFunc: llama4 ? 'sigmoid' : c.scoring_func,
    routedScalingFactor: c.routed_scaling_factor, numExpertGroup: c.use_grouped_topk ? c.num_expert_group : 1,
    topkGroup: c.use_grouped_topk ? c.topk_group : 1});
  const tokensPerExpert = new Array<number>(c.num_experts).fill(0);
  for (const id of ids) tokensPerExpert[id]++;
  return {expected: get('expected.output') as Float32Array, tokensPerExpert, bytes: bytes.byteLength};
}

async function demoState(page: Page): Promise<DemoState> {
  return page.evaluate(() => (window as unknown as {moeDemo: DemoState}).moeDemo);
}

async function waitForRun(page: Page, name: string): Promise<DemoState> {
  await page.waitForFunction((n) => {
    const s = (window as unknown as {moeDemo?: DemoState}).moeDemo;
    return s != null && (s.status === 'error' || (s.status === 'done' && s.runs[n] != null));
  }, name, {timeout: 300000});
  const state = await demoState(page);
  expect(state.error, 'page error').to.equal(null);
  return state;
}

/** Everything a run shows must agree with the checkpoint and the reference. */
async function checkRun(page: Page, state: DemoState, name: string, backend: string): Promise<void> {
  const ref = reference(name);
  const run = state.runs[name];
  expect(run.backend).to.equal(backend);
  expectClose(run.output, ref.expected, `${name} on ${backend}: page output vs expected.output`);
  expect(run.ok, 'the page\'s own check').to.equal(true);
  expect(run.tokensPerExpert, 'tokens per expert').to.deep.equal(ref.tokensPerExpert);
  expect(run.leakedTensors, 'tensors left after the run').to.equal(0);

  // The chart: one bar per expert, titled with the count the reference gives.
  const bars = await page.$$eval('#expert-load rect.bar', (rects) => rects.map((r) => r.querySelector('title')!.textContent));
  expect(bars).to.deep.equal(ref.tokensPerExpert.map((n, e) => `expert ${e}: ${n}`));

  // Progress: from 0 to the file's size, never backwards, with the size known up front.
  const sizes = state.progress.map(([loaded]) => loaded);
  expect(sizes[0]).to.equal(0);
  expect(sizes[sizes.length - 1]).to.equal(ref.bytes);
  expect(state.progress.every(([, total]) => total === ref.bytes), 'total bytes reported').to.equal(true);
  expect(sizes.every((n, i) => i === 0 || n >= sizes[i - 1]), 'monotonic progress').to.equal(true);
  expect(await page.$eval('#progress-text', (e) => e.textContent))
      .to.equal(`${ref.bytes.toLocaleString('en-US')} / ${ref.bytes.toLocaleString('en-US')} bytes`);

  // Latency: the first call and TIMED_CALLS more, all real durations, shown in the table.
  expect(run.latenciesMs).to.have.length(TIMED_CALLS);
  for (const ms of [run.firstCallMs, ...run.latenciesMs]) expect(ms).to.be.greaterThan(0).and.lessThan(120000);
  expect(await page.$$eval('#latency-table tr', (rows) => rows.length)).to.equal(TIMED_CALLS + 2);
  expect(await page.textContent('#check')).to.match(/OK$/);
}

async function launch(webgpu: boolean): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium, or set MOE_CHROMIUM to a Chrome binary`);
  }
  return chromium.launch({executablePath: CHROMIUM, headless: true,
    args: webgpu ? [...COMMON_FLAGS, ...WEBGPU_FLAGS] : COMMON_FLAGS});
}

async function open(browser: Browser, url: string, errors: string[]): Promise<Page> {
  const page = await browser.newPage({viewport: {width: 960, height: 1000}});
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  return page;
}

describe('browser example in headless Chromium', function() {
  this.timeout(600000);
  let server: ExampleServer;

  before(async () => {
    execFileSync('npm', ['run', 'build:browser'], {cwd: ROOT, stdio: 'inherit'});
    server = await startServer(0);
  });
  after(async () => { await server?.close(); });

  describe('with WebGPU', () => {
    let browser: Browser;
    before(async () => { browser = await launch(true); });
    after(async () => { await browser?.close(); });

    for (const name of ['mixtral-t37', 'deepseekv3-t41']) {
      it(`${name}: runs on webgpu and shows the expected output, expert load and latency`, async () => {
        const errors: string[] = [];
        const page = await open(browser, `${server.url}?ckpt=${name}`, errors);
        const state = await waitForRun(page, name);
        expect(state.backend, `backend (fallback: ${state.fallbackReason})`).to.equal('webgpu');
        expect(state.adapter).to.be.a('string');
        expect(await page.isVisible('#fallback'), 'fallback notice').to.equal(false);
        expect(await page.textContent('#backend')).to.match(/^webgpu · adapter: /);
        await checkRun(page, state, name, 'webgpu');
        const shot = path.join(SCREENSHOTS, `moe-browser-webgpu-${name}.png`);
        await page.screenshot({path: shot, fullPage: true});
        console.log(`      screenshot: ${shot}`);
        expect(errors, 'uncaught page errors').to.deep.equal([]);
        await page.close();
      });
    }

    it('a person picks the Llama-4-style checkpoint and clicks "Load and run"', async () => {
      const errors: string[] = [];
      const page = await open(browser, server.url, errors);
      await waitForRun(page, 'mixtral-t37');
      await page.selectOption('#checkpoint', 'llama4-t13');
      await page.click('#run');
      const state = await waitForRun(page, 'llama4-t13');
      await checkRun(page, state, 'llama4-t13', 'webgpu');
      expect(await page.textContent('#layer')).to.contain('llama4-t13: Llama-4-style');
      expect(errors, 'uncaught page errors').to.deep.equal([]);
      await page.close();
    });

    it('?webgpu=off: a visible notice, and the same results on cpu', async () => {
      const page = await open(browser, `${server.url}?webgpu=off`, []);
      const state = await waitForRun(page, 'mixtral-t37');
      expect(state.backend).to.equal('cpu');
      expect(await page.isVisible('#fallback')).to.equal(true);
      expect(await page.textContent('#fallback')).to.contain('WebGPU was turned off with ?webgpu=off');
      await checkRun(page, state, 'mixtral-t37', 'cpu');
      await page.close();
    });
  });

  describe('without WebGPU (Chromium started without its WebGPU flags)', () => {
    let browser: Browser;
    before(async () => { browser = await launch(false); });
    after(async () => { await browser?.close(); });

    it('says WebGPU is not available, runs on cpu with the expected output, and generates ids', async () => {
      const errors: string[] = [];
      const page = await open(browser, server.url, errors);
      const state = await waitForRun(page, 'mixtral-t37');
      expect(state.backend).to.equal('cpu');
      expect(state.fallbackReason).to.be.a('string');
      expect(await page.isVisible('#fallback'), 'fallback notice').to.equal(true);
      expect(await page.textContent('#fallback')).to.match(/^WebGPU is not available: .+ Running on the cpu backend/);
      expect(await page.textContent('#backend')).to.equal('cpu');
      await checkRun(page, state, 'mixtral-t37', 'cpu');

      // The whole-model section: the sharded Mixtral streams transformers' greedy ids, one row each.
      const expected = JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'models', 'mixtral-tiny-sharded',
          'expected.json'), 'utf8')) as {prompt_ids: number[]; new_tokens: number[]};
      await page.selectOption('#lm-model', 'mixtral-tiny-sharded');
      await page.fill('#lm-prompt', expected.prompt_ids.join(','));
      await page.fill('#lm-tokens', '8');
      await page.click('#lm-run');
      await page.waitForFunction(() => {
        const g = (window as unknown as {moeDemo: DemoState}).moeDemo.generation;
        return g != null && (g.status === 'done' || g.status === 'error');
      }, undefined, {timeout: 120000});
      const g = (await demoState(page)).generation!;
      expect(g.error).to.equal(null);
      expect(g.ids).to.deep.equal(expected.new_tokens.slice(0, 8));
      expect(g.msPerToken.every((ms) => ms > 0)).to.equal(true);
      expect(g.leakedTensors, 'tensors left after generating').to.equal(0);
      expect(await page.$$eval('#lm-table tr.token', (rows) => rows.length)).to.equal(8);
      const shot = path.join(SCREENSHOTS, 'moe-browser-cpu-fallback.png');
      await page.screenshot({path: shot, fullPage: true});
      console.log(`      screenshot: ${shot}`);
      expect(errors, 'uncaught page errors').to.deep.equal([]);
      await page.close();
    });
  });
});

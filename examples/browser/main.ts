/**
 * The browser example: load a MoE checkpoint with `loadSafetensors(url, {onProgress})`, build the
 * FusedMoE layer from it, run it on WebGPU (cpu, with a visible notice, where WebGPU is missing),
 * and show the expert load and the per-call latency. Bundled by `npm run build:browser`.
 *
 * A second section loads a whole tiny causal LM (`tfjs-fused-moe/models`) from its Hugging Face folder
 * and streams generated ids with the time of each step.
 *
 * URL parameters: `?ckpt=<name>` picks the checkpoint run on load; `?webgpu=off` runs as a browser
 * without WebGPU would. Results are also published on `window.moeDemo` (read by test/e2e).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import {disposeCheckpointTensors, loadSafetensors} from '../../src';
import {loadCausalLM} from '../../src/models';
import {CheckpointConfig, CheckpointLayer, runCheckpointLayer} from '../common/checkpoint_layer';

const TIMED_CALLS = 3;

interface RunResult {
  name: string; backend: string; tokensPerExpert: number[]; firstCallMs: number; latenciesMs: number[];
  maxError: number; tolerance: number; ok: boolean; output: number[]; leakedTensors: number;
}

/** One "Generate" click: the new ids as they stream, each step's wall time (the first includes prefill). */
interface GenerationState {
  model: string; backend: string; status: 'loading' | 'generating' | 'done' | 'error'; ids: number[];
  msPerToken: number[]; leakedTensors: number | null; error: string | null;
}

/** What the page computed, for people (the DOM) and for the end-to-end test (this object). */
interface DemoState {
  generation: GenerationState | null;
  status: 'starting' | 'loading' | 'running' | 'done' | 'error';
  backend: string;
  adapter: string | null;
  fallbackReason: string | null;
  subgroups: string | null;
  progress: Array<[number, number | null]>;
  runs: Record<string, RunResult>;
  error: string | null;
}

const state: DemoState = {generation: null, status: 'starting', backend: '', adapter: null, fallbackReason: null, subgroups: null,
  progress: [], runs: {}, error: null};
(window as unknown as {moeDemo: DemoState}).moeDemo = state;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);

/** webgpu when the browser has an adapter and tfjs starts on it; else cpu, saying why. */
async function startBackend(): Promise<void> {
  let reason: string;
  if (params.get('webgpu') === 'off') {
    reason = 'WebGPU was turned off with ?webgpu=off';
  } else if (!('gpu' in navigator) || navigator.gpu == null) {
    reason = 'this browser has no WebGPU (navigator.gpu is undefined)';
  } else {
    const adapter = await navigator.gpu.requestAdapter({powerPreference: 'high-performance'});
    if (adapter == null) {
      reason = 'navigator.gpu.requestAdapter() found no adapter (WebGPU is disabled, or the GPU is blocklisted)';
    } else {
      // Loaded only now: tfjs-backend-webgpu registers itself only when navigator.gpu exists.
      await import('@tensorflow/tfjs-backend-webgpu');
      const moeWebGPU = await import('../../src/webgpu');
      if (await tf.setBackend('webgpu')) {
        const info = (adapter as GPUAdapter & {info?: GPUAdapterInfo}).info;
        state.adapter = info ? [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') : 'unknown';
        const caps = moeWebGPU.webgpuCapabilities(tf.backend() as Parameters<typeof moeWebGPU.webgpuCapabilities>[0]);
        state.subgroups = caps.subgroups ? `on (size ${caps.subgroupSize || 'varies'})` : `off: ${caps.reason}`;
        state.backend = 'webgpu';
        return;
      }
      reason = 'tfjs could not start its webgpu backend on this adapter';
    }
  }
  if (!(await tf.setBackend('cpu'))) throw new Error('tfjs could not start the cpu backend either');
  state.backend = 'cpu';
  state.fallbackReason = reason;
}

function showBackend(): void {
  $('backend').textContent = state.backend === 'webgpu' ?
    `webgpu · adapter: ${state.adapter} · subgroups ${state.subgroups}` : 'cpu';
  if (state.fallbackReason) {
    const notice = $('fallback');
    notice.textContent = `WebGPU is not available: ${state.fallbackReason}. Running on the cpu backend instead ` +
        '(the same results, more slowly).';
    notice.classList.add('shown');
  }
}

function showProgress(loaded: number, total: number | null): void {
  state.progress.push([loaded, total]);
  const bar = $<HTMLProgressElement>('progress');
  bar.max = total ?? Math.max(loaded, 1);
  bar.value = loaded;
  $('progress-text').textContent = total != null ?
    `${loaded.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} bytes` :
    `${loaded.toLocaleString('en-US')} bytes`;
}

/** A bar chart of tokens per expert, as inline SVG; grouped routing shades each expert group. */
function expertLoadChart(counts: number[], numGroups: number): string {
  const W = 860, H = 230, left = 36, bottom = 28, top = 18;
  const max = Math.max(...counts, 1);
  const slot = (W - left) / counts.length;
  const barW = Math.max(2, slot * 0.72);
  const y = (v: number) => top + (H - top - bottom) * (1 - v / max);
  const labelEvery = counts.length <= 16 ? 1 : counts.length <= 64 ? 4 : 16;
  const parts: string[] = [];
  const perGroup = counts.length / numGroups;
  for (let g = 0; numGroups > 1 && g < numGroups; g++) {
    parts.push(`<rect class="group" x="${(left + g * perGroup * slot).toFixed(1)}" y="0" ` +
        `width="${(perGroup * slot).toFixed(1)}" height="${H - bottom}" fill="${g % 2 ? '#ffffff' : '#eef2fb'}"/>`,
        `<text x="${(left + (g + 0.5) * perGroup * slot).toFixed(1)}" y="11" text-anchor="middle" font-size="11" ` +
        `fill="#5b6475">group ${g}</text>`);
  }
  for (const v of [0, Math.round(max / 2), max]) {
    parts.push(`<line x1="${left}" x2="${W}" y1="${y(v)}" y2="${y(v)}" stroke="#e4e7ee"/>`,
        `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" font-size="11" fill="#5b6475">${v}</text>`);
  }
  counts.forEach((n, e) => {
    const x = left + e * slot + (slot - barW) / 2;
    parts.push(`<rect class="bar" x="${x.toFixed(1)}" y="${y(n).toFixed(1)}" width="${barW.toFixed(1)}" ` +
        `height="${(y(0) - y(n)).toFixed(1)}" fill="#3b6fd8"><title>expert ${e}: ${n}</title></rect>`);
    if (counts.length <= 16) {
      parts.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${(y(n) - 4).toFixed(1)}" text-anchor="middle" ` +
          `font-size="11">${n}</text>`);
    }
    if (e % labelEvery === 0) {
      parts.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${H - bottom + 15}" text-anchor="middle" font-size="11" ` +
          `fill="#5b6475">${e}</text>`);
    }
  });
  parts.push(`<text x="${W}" y="${H - 2}" text-anchor="end" font-size="11" fill="#5b6475">expert id</text>`);
  return `<svg id="expert-load" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" ` +
      `aria-label="tokens per expert">${parts.join('')}</svg>`;
}

function latencyTable(r: RunResult): string {
  const sorted = [...r.latenciesMs].sort((a, b) => a - b);
  const rows = [`<tr><td>1 (${r.backend === 'webgpu' ? 'setup + shader compiles' : 'setup'})</td><td>${r.firstCallMs.toFixed(1)} ms</td></tr>`,
    ...r.latenciesMs.map((ms, i) => `<tr><td>${i + 2}</td><td>${ms.toFixed(2)} ms</td></tr>`)];
  return `<table id="latency-table"><tr><th>call</th><th>latency (forward + read back)</th></tr>${rows.join('')}` +
      `</table><p>median after the first call: <b id="latency-median">${sorted[sorted.length >> 1].toFixed(2)} ms` +
      `</b> on ${r.backend}</p>`;
}

async function run(name: string): Promise<void> {
  const button = $<HTMLButtonElement>('run');
  button.disabled = true;
  state.status = 'loading';
  state.progress = [];
  $('error').textContent = '';
  try {
    const configResponse = await fetch(`checkpoints/${name}.json`);
    if (!configResponse.ok) throw new Error(`checkpoints/${name}.json: HTTP ${configResponse.status}`);
    const config = await configResponse.json() as CheckpointConfig;
    const before = tf.memory().numTensors;
    const tensors = await loadSafetensors(`checkpoints/${name}.safetensors`, {onProgress: showProgress});
    let layer: CheckpointLayer;
    try {
      layer = await CheckpointLayer.fromTensors(name, config, tensors);
    } finally {
      disposeCheckpointTensors(tensors.values());
    }
    $('layer').textContent = `${name}: ${layer.describe()}\n${layer.layer.toString()}`;
    state.status = 'running';
    const r = await runCheckpointLayer(layer, TIMED_CALLS);
    layer.dispose();
    const result: RunResult = {name, backend: state.backend, tokensPerExpert: r.tokensPerExpert,
      firstCallMs: r.firstCallMs, latenciesMs: r.latenciesMs, maxError: r.maxError, tolerance: r.tolerance,
      ok: r.ok, output: Array.from(r.output), leakedTensors: tf.memory().numTensors - before};
    state.runs[name] = result;
    $('chart').innerHTML = expertLoadChart(r.tokensPerExpert,
        layer.config.useGroupedTopk ? layer.config.numExpertGroup ?? 1 : 1);
    $('latency').innerHTML = latencyTable(result);
    const check = $('check');
    check.innerHTML = `Check against <code>expected.output</code>: max |difference| = ${r.maxError.toExponential(2)} ` +
        `(tolerance ${r.tolerance.toExponential(2)}) <span class="${r.ok ? 'ok' : 'bad'}">${r.ok ? 'OK' : 'FAILED'}</span>`;
    state.status = 'done';
  } catch (e) {
    state.status = 'error';
    state.error = (e as Error).message;
    $('error').textContent = `Error: ${(e as Error).message}`;
    throw e;
  } finally {
    button.disabled = false;
  }
}

async function generate(model: string, promptIds: number[], maxNewTokens: number): Promise<void> {
  const button = $<HTMLButtonElement>('lm-run');
  button.disabled = true;
  const g: GenerationState = {model, backend: state.backend, status: 'loading', ids: [], msPerToken: [],
    leakedTensors: null, error: null};
  state.generation = g;
  const table = $<HTMLTableElement>('lm-table');
  table.querySelectorAll('tr.token').forEach((r) => r.remove());
  $('lm-summary').textContent = '';
  $('lm-error').textContent = '';
  const before = tf.memory().numTensors;
  try {
    const bar = $<HTMLProgressElement>('lm-progress');
    const lm = await loadCausalLM(`models/${model}`, {onProgress: (p) => {
      bar.max = p.fileCount;
      bar.value = p.fileIndex - 1 + (p.totalBytes ? p.loadedBytes / p.totalBytes : 0);
      $('lm-progress-text').textContent = `${p.file} (${p.fileIndex} of ${p.fileCount}): ` +
        `${p.loadedBytes.toLocaleString('en-US')} bytes`;
    }});
    g.status = 'generating';
    try {
      await lm.generate(promptIds, {maxNewTokens, onToken: (id, {index, ms}) => {
        g.ids.push(id);
        g.msPerToken.push(ms);
        const row = table.insertRow();
        row.className = 'token';
        row.innerHTML = `<td>${index + 1}${index === 0 ? ' (prefill)' : ''}</td><td>${id}</td><td>${ms.toFixed(1)} ms</td>`;
      }});
    } finally {
      lm.dispose();
    }
    g.leakedTensors = tf.memory().numTensors - before;
    const decode = g.msPerToken.slice(1).sort((a, b) => a - b);
    $('lm-summary').textContent = `${g.ids.length} tokens on ${g.backend}` + (decode.length ?
      `; median decode step ${decode[decode.length >> 1].toFixed(1)} ms ` +
      `(${(1000 / decode[decode.length >> 1]).toFixed(1)} tokens/s)` : '');
    g.status = 'done';
  } catch (e) {
    g.status = 'error';
    g.error = (e as Error).message;
    $('lm-error').textContent = `Error: ${(e as Error).message}`;
  } finally {
    button.disabled = false;
  }
}

async function main(): Promise<void> {
  try {
    await startBackend();
  } catch (e) {
    state.status = 'error';
    state.error = (e as Error).message;
    $('error').textContent = `Error: ${(e as Error).message}`;
    return;
  }
  showBackend();
  const select = $<HTMLSelectElement>('checkpoint');
  const first = params.get('ckpt') ?? select.value;
  if (!Array.from(select.options).some((o) => o.value === first)) select.add(new Option(first, first));
  select.value = first;
  $('run').addEventListener('click', () => { run(select.value).catch(console.error); });
  $('lm-run').addEventListener('click', () => {
    // The default prompt is the fixtures' (test/fixtures/models/*/expected.json), whose greedy ids are known.
    const prompt = $<HTMLInputElement>('lm-prompt').value.split(',').map((s) => Number(s.trim()));
    generate($<HTMLSelectElement>('lm-model').value, prompt, Number($<HTMLInputElement>('lm-tokens').value))
        .catch(console.error);
  });
  await run(first).catch(console.error);
}

main();

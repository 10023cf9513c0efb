/**
 * Timing: warm-up, then the median of repeated calls, measured two ways.
 *  - wall: from the call until the GPU has finished its work (queue.onSubmittedWorkDone) or, on cpu,
 *    until the output's data is there. This is what a caller waits.
 *  - gpu: the sum of the per-kernel durations from `timestamp-query`, through tfjs-backend-webgpu's
 *    own profiling path (`tf.time`, which puts each program in its own timed compute pass). Only on
 *    webgpu with an adapter that has the feature; the per-kernel list is the breakdown.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';

export interface KernelTime {
  name: string;
  ms: number;
}

/** Runs sync steps of a call under tf.time and keeps every kernel's GPU time. */
export class KernelTimer {
  readonly kernels: KernelTime[] = [];

  async time<T>(f: () => T): Promise<T> {
    let out: T | undefined;
    const info = await tf.time(() => { out = f(); });
    this.kernels.push(...parseProfile(info.getExtraProfileInfo?.() ?? ''));
    return out as T;
  }
}

/** tfjs-backend-webgpu's profile string: "ProgramName: ms, ProgramName: ms". */
function parseProfile(s: string): KernelTime[] {
  return s.split(', ').filter(Boolean).map((item) => {
    const at = item.lastIndexOf(': ');
    return {name: item.slice(0, at), ms: Number(item.slice(at + 2))};
  });
}

/**
 * `f` under tf.time `reps` times after one warm-up: the median summed GPU time, ms, and that same call's
 * per-program times (so the breakdown adds up to the total it is printed beside).
 */
export async function medianKernelTime(f: () => tf.Tensor, reps: number): Promise<{ms: number; kernels: string}> {
  const runs: Array<{ms: number; kernels: string}> = [];
  for (let r = 0; r < reps + 1; r++) {
    const timer = new KernelTimer();
    (await timer.time(f)).dispose();
    if (r === 0) continue;
    runs.push({ms: timer.kernels.reduce((s, k) => s + k.ms, 0),
      kernels: timer.kernels.map((k) => `${k.name} ${k.ms.toFixed(3)}`).join(', ')});
  }
  runs.sort((a, b) => a.ms - b.ms);
  return runs[Math.floor(runs.length / 2)];
}

/**
 * Keeps the GPU busy with `f` for `ms` before a timing: the H200 runs at low clocks for about its first second
 * of work after an idle spell (bench/tc_probe.ts round 4: the same kernel 3-5× slower when timed cold).
 */
export async function warmUp(f: () => tf.Tensor, ms = 500): Promise<void> {
  const w0 = performance.now();
  do {
    for (let i = 0; i < 3; i++) f().dispose();
    const last = f();
    await settle(last);
    last.dispose();
  } while (performance.now() - w0 < ms);
}

export function hasGpuTimestamps(): boolean {
  return tf.getBackend() === 'webgpu' && (tf.backend() as WebGPUBackend).device.features.has('timestamp-query');
}

/** Waits until the work that produced `t` is done, without reading it back where that can be avoided. */
export async function settle(t: tf.Tensor): Promise<void> {
  if (tf.getBackend() === 'webgpu') {
    const b = tf.backend() as WebGPUBackend;
    b.ensureCommandEncoderReady();
    b.endComputePassEncoder();
    b.submitQueue();
    await b.queue.onSubmittedWorkDone();
  } else {
    await t.data();
  }
}

export interface Measured {
  /** Median wall time of a call, µs. */
  wallUs: number;
  /** Median summed GPU kernel time, µs (null without timestamps). */
  gpuUs: number | null;
  /** Median GPU time per program name over the profiled calls, µs, in first-seen order. */
  kernels: {[program: string]: number} | null;
  /** Dispatches per profiled call. */
  dispatches: number | null;
  reps: number;
}

export interface TimeOptions {
  warmup: number;
  reps: number;
  /** Stop repeating once this much wall time was spent on one row (at least 3 reps are taken). */
  maxRowSeconds: number;
}

/**
 * `call` runs the operation once and resolves to its output (or outputs); `timer`, when given,
 * must be used by `call` for its synchronous steps so that their kernels are profiled.
 */
export async function measure(call: (timer?: KernelTimer) => Promise<tf.Tensor | tf.Tensor[]>,
    o: TimeOptions): Promise<Measured> {
  const once = async (timer?: KernelTimer) => {
    const out = await call(timer);
    const list = Array.isArray(out) ? out : [out];
    await settle(list[0]);
    list.forEach((t) => t.dispose());
  };
  for (let i = 0; i < o.warmup; i++) await once();

  const started = performance.now();
  const within = (n: number) => n < 3 || (n < o.reps && performance.now() - started < o.maxRowSeconds * 1000);
  const wall: number[] = [];
  while (within(wall.length)) {
    const t0 = performance.now();
    await once();
    wall.push((performance.now() - t0) * 1000);
  }
  if (!hasGpuTimestamps()) return {wallUs: median(wall), gpuUs: null, kernels: null, dispatches: null, reps: wall.length};

  const profiles: KernelTime[][] = [];
  const profStarted = performance.now();
  while (profiles.length < 3 ||
      (profiles.length < wall.length && performance.now() - profStarted < o.maxRowSeconds * 1000)) {
    const timer = new KernelTimer();
    await once(timer);
    profiles.push(timer.kernels);
  }
  const byName = new Map<string, number[]>();
  for (const p of profiles) {
    const sums = new Map<string, number>();
    for (const k of p) sums.set(k.name, (sums.get(k.name) ?? 0) + k.ms * 1000);
    for (const [name, us] of sums) {
      if (!byName.has(name)) byName.set(name, []);
      byName.get(name)!.push(us);
    }
  }
  const kernels: {[program: string]: number} = {};
  for (const [name, us] of byName) kernels[name] = round(median(us));
  return {
    wallUs: median(wall),
    gpuUs: median(profiles.map((p) => p.reduce((s, k) => s + k.ms * 1000, 0))),
    kernels,
    dispatches: median(profiles.map((p) => p.length)),
    reps: wall.length,
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Three significant digits are all a timing has. */
export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x) || x === 0) return x;
  return Number(x.toPrecision(digits));
}

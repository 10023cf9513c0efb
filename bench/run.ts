/**
 * The benchmark (issue 6): fusedMoE and routing alone ("ours") beside the naive tfjs way and the
 * device's copy bandwidth, per backend, shape and token count M.
 *
 *   npm run bench                          cpu + webgpu (SwiftShader here), tiny shapes, a table
 *   npm run bench -- --json --out F.jsonl  JSON lines, also appended to F as they come
 *   npm run bench -- --backend webgpu --shapes real --tokens 1,16,256,4096     (the GPU machine)
 *
 * Per backend it first checks ours and naive against the cpu reference at the tiny shapes (a wrong
 * impl is reported, not timed), then measures the copy bandwidth (webgpu), then every shape × M:
 * warm-up, median wall time (call → GPU done) and median summed kernel time from timestamp-query
 * with the per-program breakdown. `us` is the GPU time where timestamps exist, else the wall time.
 * Decode rows report GB/s over the selected experts' weight bytes and its fraction of the copy
 * bandwidth; prefill rows report TFLOP/s and the fraction of an assumed float32 peak.
 */
import * as os from 'os';
import * as fs from 'fs';
import {execSync} from 'child_process';
import * as tf from '@tensorflow/tfjs-core';
// A named import: bundlers drop a bare `import '@tensorflow/tfjs-backend-cpu'` (its package.json does not list
// its Node build among its side effects), and the packed device entry needs the cpu backend registered too.
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {FusedExperts, FusedTopK, GroupedTopK, fusedMoE, fusedTopK, groupedTopK, selectExperts} from '../src';
import {webgpuCapabilities} from '../src/kernels/webgpu/capabilities';
import {CheckLine, parityChecks} from './check';
import {copyBandwidth} from './copy_webgpu';
import {NaiveExpertWeights, disposeNaiveWeights, naiveExpertWeights, naiveMoE, naiveRouting} from './naive_tfjs';
import {TokenInputs, disposeInputs, hostRouting, idsChecksum, makeExpertWeights, makeTokenInputs, moeOptions} from './problem';
import {Sample, checkRows, referenceRows, sampleTokens} from './reference';
import {BenchShape, DEFAULT_TOKENS, MoEShape, RoutingShape, SHAPES, expertBytes, moeFlops, parseShapes} from './shapes';
import {KernelTimer, Measured, TimeOptions, measure, median, round} from './timing';
import {WebGPUSetup, releaseWebGPU, setupWebGPUNode, withGpuErrors} from './webgpu_node';

const IMPLS = ['ours', 'naive-tfjs', 'copy'];

interface Args {
  backends: string[];
  shapes: string;
  tokens: number[] | null;
  impls: string[];
  json: boolean;
  out: string | null;
  time: TimeOptions;
  copyMiB: number;
  f32PeakTflops: number;
  maxSeconds: number;
  check: boolean;
}

const USAGE = `usage: npm run bench -- [--backend cpu,webgpu] [--shapes tiny|real|mixtral,qwen3,dsv3tp8,topk-e256,grouped-dsv3]
  [--tokens 1,16,256,4096] [--impls ours,naive-tfjs,copy] [--reps 20] [--warmup 3] [--max-row-s 2]
  [--copy-mib 1024] [--f32-peak-tflops 67] [--max-seconds N] [--no-check] [--json] [--out FILE]`;

function parseArgs(argv: string[]): Args {
  const a: Args = {
    backends: ['cpu', 'webgpu'], shapes: 'tiny', tokens: null, impls: IMPLS, json: false, out: null,
    time: {warmup: 3, reps: 20, maxRowSeconds: 2}, copyMiB: 1024, f32PeakTflops: 67, maxSeconds: Infinity,
    check: true,
  };
  const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
  const num = (flag: string, v: string | undefined) => {
    const n = Number(v);
    if (v == null || !Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number but got ${v}\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => argv[++i];
    switch (flag) {
      case '--backend': case '--backends': a.backends = list(value() ?? ''); break;
      case '--shapes': a.shapes = value() ?? ''; break;
      case '--tokens': a.tokens = list(value() ?? '').map((t) => num('--tokens', t)); break;
      case '--impls': a.impls = list(value() ?? ''); break;
      case '--reps': a.time.reps = num(flag, value()); break;
      case '--warmup': a.time.warmup = Number(value()); break;
      case '--max-row-s': a.time.maxRowSeconds = num(flag, value()); break;
      case '--copy-mib': a.copyMiB = num(flag, value()); break;
      case '--f32-peak-tflops': a.f32PeakTflops = num(flag, value()); break;
      case '--max-seconds': a.maxSeconds = num(flag, value()); break;
      case '--no-check': a.check = false; break;
      case '--json': a.json = true; break;
      case '--out': a.out = value() ?? null; break;
      case '-h': case '--help': console.log(USAGE); process.exit(0); break;
      default: throw new Error(`unknown argument '${flag}'\n${USAGE}`);
    }
  }
  for (const b of a.backends) {
    if (b !== 'cpu' && b !== 'webgpu') throw new Error(`--backend: '${b}' is not one of cpu, webgpu`);
  }
  for (const impl of a.impls) {
    if (!IMPLS.includes(impl)) throw new Error(`--impls: '${impl}' is not one of ${IMPLS.join(', ')}`);
  }
  return a;
}

type Line = {[field: string]: unknown};

class Output {
  readonly lines: Line[] = [];

  constructor(private readonly json: boolean, private readonly file: string | null) {
    if (file) fs.writeFileSync(file, '');
  }

  emit(line: Line): void {
    this.lines.push(line);
    const text = JSON.stringify(line);
    if (this.json) process.stdout.write(text + '\n');
    // Appended line by line, so that a run cut short by a time limit keeps what it measured.
    if (this.file) fs.appendFileSync(this.file, text + '\n');
  }
}

/** The checkout's commit ('-dirty' with local changes), or null where there is no git (the GPU machine). */
function gitCommit(): string | null {
  try {
    return execSync('git describe --always --dirty', {stdio: ['ignore', 'pipe', 'ignore']}).toString().trim();
  } catch {
    return null;
  }
}

function log(msg: string): void {
  process.stderr.write(msg + '\n');
}

/** What a row needs from the backend's kernel registry for `ours`, and why it cannot run. */
function oursMissing(backend: string, s: BenchShape): string {
  const needed = s.kind === 'routing' ?
    [s.routing.kind === 'grouped' ? GroupedTopK : FusedTopK] :
    [s.routing.kind === 'grouped' ? GroupedTopK : FusedTopK, FusedExperts];
  const missing = needed.filter((k) => tf.getKernel(k, backend) == null);
  if (missing.length === 0) return '';
  return `no '${backend}' kernel registered for ${missing.join(', ')}`;
}

/** One shape per routing kind: ours is checked only when it has kernels for both. */
const SHAPE_ROUTINGS = [SHAPES['tiny-mixtral'], SHAPES['tiny-dsv3']];

function describeCheck(l: CheckLine): string {
  return `${l.impl} ${l.check} ${l.shape ?? ''} M=${l.M ?? '-'}: ` +
      (l.error ?? `max |err| ${l.max_abs_err} > tol ${l.tol}`);
}

/**
 * Median time from submitting an empty command buffer to its onSubmittedWorkDone: the floor under
 * every wall time here (a call's wall time at M = 1 must stay within 2x its GPU time).
 */
async function syncLatencyUs(device: GPUDevice): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 21; i++) {
    const t0 = performance.now();
    device.queue.submit([device.createCommandEncoder().finish()]);
    await device.queue.onSubmittedWorkDone();
    times.push((performance.now() - t0) * 1000);
  }
  return round(median(times));
}

async function deviceMeta(backend: string, setup: WebGPUSetup | null): Promise<Line> {
  if (backend === 'cpu') return {device: `${os.cpus()[0]?.model ?? 'cpu'} (${os.cpus().length} cores)`};
  const b = tf.backend() as WebGPUBackend;
  const adapter = await navigator.gpu.requestAdapter({powerPreference: 'high-performance'});
  const info = adapter?.info;
  const caps = webgpuCapabilities(b);
  return {
    device: [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ') ||
      'unknown adapter',
    vulkan: setup?.vulkan,
    timestamp_query: b.device.features.has('timestamp-query'),
    dawn_flags: setup?.dawnFlags,
    subgroups: caps.subgroups,
    subgroups_reason: caps.reason || undefined,
    sync_latency_us: await syncLatencyUs(b.device),
    max_storage_binding_bytes: b.device.limits.maxStorageBufferBindingSize,
    max_buffer_bytes: b.device.limits.maxBufferSize,
  };
}

interface RowContext {
  backend: string;
  out: Output;
  args: Args;
  copyGbps: number | null;
  deadline: number;
  /** 'passed', 'failed: ...' or 'unchecked': ours' parity check on this backend. */
  oursParity: string;
}

function timedRow(ctx: RowContext, impl: string, base: Line, m: Measured, flops: number | null,
    bytes: number | null, extra: Line = {}): Line {
  const us = m.gpuUs ?? m.wallUs;
  const tflops = flops != null ? flops / us / 1e6 : null;
  const gbps = bytes != null ? bytes / us / 1e3 : null;
  return {
    impl, ...base, us: round(us), us_from: m.gpuUs != null ? 'gpu-timestamps' : 'wall',
    gpu_us: m.gpuUs != null ? round(m.gpuUs) : null, wall_us: round(m.wallUs),
    tflops: tflops != null ? round(tflops) : null, gbps: gbps != null ? round(gbps) : null,
    frac_copy_bw: gbps != null && ctx.copyGbps ? round(gbps / ctx.copyGbps) : null,
    frac_f32_peak: tflops != null ? round(tflops / ctx.args.f32PeakTflops) : null,
    reps: m.reps, dispatches: m.dispatches, kernels: m.kernels, ...extra,
  };
}

async function runRow(ctx: RowContext, impl: string, base: Line, body: () => Promise<Line>): Promise<void> {
  if (performance.now() > ctx.deadline) {
    ctx.out.emit({impl, ...base, error: `skipped: the run's --max-seconds budget of ${ctx.args.maxSeconds} s is spent`});
    return;
  }
  try {
    const line = ctx.backend === 'webgpu' ?
      await withGpuErrors((tf.backend() as WebGPUBackend).device, body) : await body();
    ctx.out.emit(line);
    const us = line.us as number;
    log(`[${ctx.backend}] ${base.shape} M=${base.M} ${impl}: ${us} µs (${line.us_from}), wall ${line.wall_us} µs` +
        (line.tflops != null ? `, ${line.tflops} TFLOP/s` : '') + (line.gbps != null ? `, ${line.gbps} GB/s` : ''));
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    ctx.out.emit({impl, ...base, error: msg});
    log(`[${ctx.backend}] ${base.shape} M=${base.M} ${impl}: ERROR ${msg}`);
  }
}

/**
 * Ours' routing on the device (selectExperts) for these inputs: the checksum of its ids, and whether it
 * equals the host reference's (the torch side records the same checksum for its routing).
 */
async function deviceIdsChecksum(s: BenchShape, x: TokenInputs, hidden: tf.Tensor2D | null): Promise<Line> {
  const r = s.routing;
  const out = s.kind === 'moe' && hidden ? selectExperts(hidden, x.logits, moeOptions(s, x.bias)) :
    r.kind === 'grouped' ?
      groupedTopK(x.logits, {topK: s.k, renormalize: r.renormalize, numExpertGroup: r.numExpertGroup,
        topkGroup: r.topkGroup, scoringFunc: r.scoringFunc, eScoreCorrectionBias: x.bias ?? undefined,
        routedScalingFactor: r.routedScalingFactor}) :
      fusedTopK(x.logits, s.k, r.renormalize, {scoringFunc: r.scoringFunc});
  const ids = await out.topkIds.data();
  tf.dispose([out.topkIds, out.topkWeights]);
  const device = idsChecksum(ids, s.k), host = idsChecksum(x.routed.ids, s.k);
  return {ids_checksum: device, ids_checksum_host: host, ids_match_host: device === host};
}

/** One untimed call of an impl, its sampled rows against the float64 reference (emitted as a check line too). */
async function referenceCheck(ctx: RowContext, impl: string, s: MoEShape, M: number, sample: Sample,
    call: () => Promise<tf.Tensor>): Promise<Line> {
  const out = await call();
  const r = await checkRows(out, sample);
  out.dispose();
  ctx.out.emit({impl, backend: ctx.backend, check: 'sampled-rows-vs-float64', shape: s.name, M, ok: r.ref_ok,
    rows: sample.tokens.length, max_abs_err: r.ref_max_abs_err, tol: r.ref_tol});
  if (!r.ref_ok) {
    log(`[${ctx.backend}] ${s.name} M=${M} ${impl}: sampled rows differ from the float64 reference by ` +
        `${r.ref_max_abs_err} > ${r.ref_tol}`);
  }
  return {...r};
}

async function benchMoE(ctx: RowContext, s: MoEShape, tokens: number[], naiveWhyNot: string, oursWhyNot: string):
    Promise<void> {
  const {args, backend} = ctx;
  const weights = makeExpertWeights(s);
  let naiveWeights: NaiveExpertWeights | null = null;
  try {
    if (args.impls.includes('naive-tfjs') && !naiveWhyNot) naiveWeights = naiveExpertWeights(weights.w13, weights.w2);
    // The float64 reference rows for every M at once (each expert's weights regenerated once per shape).
    const samples = args.check ? referenceRows(s, tokens.map((M) =>
      ({M, routed: hostRouting(s, M).routed, tokens: sampleTokens(s, M)}))) : null;
    for (const [mi, M] of tokens.entries()) {
      const x: TokenInputs = makeTokenInputs(s, M);
      const flops = moeFlops(s, M);
      const bytes = expertBytes(s, x.distinctExperts);
      const base: Line = {backend, shape: s.name, E: s.E, k: s.k, H: s.H, I: s.I, M, dtype: 'float32',
        format: 'float32', weight_shards: weights.w13.length, distinct_experts: x.distinctExperts, flops, bytes};
      const ours = () => fusedMoE(x.hidden!, x.logits, weights.w13, weights.w2, moeOptions(s, x.bias));
      const naive = (timer?: KernelTimer) => naiveMoE(x.hidden!, x.logits, x.bias, naiveWeights!, s.routing, s.k, timer);
      const sample = samples ? samples[mi] : null;
      if (args.impls.includes('ours')) {
        await runRow(ctx, 'ours', base, async () => {
          if (oursWhyNot) throw new Error(oursWhyNot);
          const extra: Line = await deviceIdsChecksum(s, x, x.hidden);
          if (sample) Object.assign(extra, await referenceCheck(ctx, 'ours', s, M, sample, async () => ours()));
          const m = await measure(async (timer) => timer ? timer.time(ours) : ours(), args.time);
          return timedRow(ctx, 'ours', base, m, flops, bytes, {...extra, parity: ctx.oursParity});
        });
      }
      if (args.impls.includes('naive-tfjs')) {
        await runRow(ctx, 'naive-tfjs', base, async () => {
          if (naiveWhyNot) throw new Error(naiveWhyNot);
          const extra = sample ? await referenceCheck(ctx, 'naive-tfjs', s, M, sample, () => naive()) : {};
          return timedRow(ctx, 'naive-tfjs', base, await measure(naive, args.time), flops, bytes, extra);
        });
      }
      disposeInputs(x);
    }
  } finally {
    if (naiveWeights) disposeNaiveWeights(naiveWeights);
    tf.dispose([...weights.w13, ...weights.w2]);
  }
}

async function benchRouting(ctx: RowContext, s: RoutingShape, tokens: number[], naiveWhyNot: string, oursWhyNot: string):
    Promise<void> {
  const {args, backend} = ctx;
  const r = s.routing;
  for (const M of tokens) {
    const x = makeTokenInputs(s, M);
    const base: Line = {backend, shape: s.name, E: s.E, k: s.k, H: null, I: null, M, dtype: 'float32', format: 'float32'};
    const ours = () => {
      const out = r.kind === 'grouped' ?
        groupedTopK(x.logits, {topK: s.k, renormalize: r.renormalize, numExpertGroup: r.numExpertGroup,
          topkGroup: r.topkGroup, scoringFunc: r.scoringFunc, eScoreCorrectionBias: x.bias ?? undefined,
          routedScalingFactor: r.routedScalingFactor}) :
        fusedTopK(x.logits, s.k, r.renormalize, {scoringFunc: r.scoringFunc});
      return [out.topkWeights, out.topkIds];
    };
    const naive = () => {
      const out = naiveRouting(x.logits, x.bias, r, s.k);
      return [out.weights, out.ids];
    };
    const entries: [string, () => tf.Tensor[], string][] =
        [['ours', ours, oursWhyNot], ['naive-tfjs', naive, naiveWhyNot]];
    for (const [impl, f, whyNot] of entries) {
      if (!args.impls.includes(impl)) continue;
      await runRow(ctx, impl, base, async () => {
        if (whyNot) throw new Error(whyNot);
        const extra: Line = impl === 'ours' ? {parity: ctx.oursParity, ...(await deviceIdsChecksum(s, x, null))} : {};
        return timedRow(ctx, impl, base, await measure(async (timer) => timer ? timer.time(f) : f(), args.time),
            null, null, extra);
      });
    }
    disposeInputs(x);
  }
}

async function benchBackend(backend: string, args: Args, out: Output, setup: WebGPUSetup | null,
    deadline: number): Promise<void> {
  if (!(await tf.setBackend(backend))) {
    out.emit({impl: 'meta', backend, error: `backend '${backend}' could not be initialized`});
    return;
  }
  await tf.ready();
  const shapes = parseShapes(args.shapes);
  const tiny = shapes.some((s) => s.name.startsWith('tiny-'));
  const tokens = args.tokens ?? DEFAULT_TOKENS[tiny ? 'tiny' : 'real'];
  out.emit({impl: 'meta', backend, date: new Date().toISOString(), host: os.hostname(), node: process.version,
    tfjs: `core ${tf.version_core}, cpu ${version_cpu}`, commit: gitCommit(),
    ...(await deviceMeta(backend, setup)), shapes: shapes.map((s) => s.name), tokens,
    f32_peak_tflops_assumed: args.f32PeakTflops,
    notes: 'us = GPU time from timestamp-query where available (us_from), else wall; wall_us = call until the ' +
      'GPU is done; gbps = selected experts\' weight bytes / us; copy gbps = 2 x bytes / time; ' +
      `frac_f32_peak assumes a float32 (non-tensor-core) peak of ${args.f32PeakTflops} TFLOP/s (H200: about 67)` +
      (tiny ? '; tiny shapes: a functional run, not a performance measurement' : '')});

  let naiveWhyNot = '';
  // Ours is timed even when its check fails (the numbers still guide the kernel work), flagged so.
  let oursParity = 'unchecked';
  if (args.check) {
    const withOurs = SHAPE_ROUTINGS.every((s) => oursMissing(backend, s) === '');
    const lines = await parityChecks(backend, withOurs);
    for (const line of lines) {
      out.emit({...line});
      if (!line.ok) log(`[${backend}] CHECK FAILED: ${describeCheck(line)}`);
    }
    const failed = (impl: string) => lines.find((l) => l.impl === impl && !l.ok);
    const naiveFail = failed('naive-tfjs') ?? failed('fill');
    if (naiveFail) naiveWhyNot = `not timed: it disagrees with the cpu reference on ${backend}: ${describeCheck(naiveFail)}`;
    const oursFail = failed('ours');
    if (withOurs) oursParity = oursFail ? `failed: ${describeCheck(oursFail)}` : 'passed';
  }

  const ctx: RowContext = {backend, out, args, copyGbps: null, deadline, oursParity};
  if (backend === 'webgpu' && args.impls.includes('copy')) {
    const device = (tf.backend() as WebGPUBackend).device;
    try {
      const c = await copyBandwidth(device, args.copyMiB * 2 ** 20, Math.max(5, Math.min(args.time.reps, 10)));
      ctx.copyGbps = c.gbps;
      out.emit({impl: 'copy', backend, via: 'copyBufferToBuffer', shape: 'copy', M: null, dtype: 'bytes',
        bytes: c.bytes, us: round(c.us), us_from: 'wall', gbps: round(c.gbps), copies_per_submit: c.copiesPerSubmit,
        reps: c.reps});
      log(`[${backend}] copy ${c.bytes / 2 ** 20} MiB: ${round(c.us)} µs, ${round(c.gbps)} GB/s (read + write)`);
    } catch (e) {
      out.emit({impl: 'copy', backend, shape: 'copy', error: (e as Error).message});
    }
  }

  for (const s of shapes) {
    const why = oursMissing(backend, s);
    if (s.kind === 'moe') await benchMoE(ctx, s, tokens, naiveWhyNot, why);
    else await benchRouting(ctx, s, tokens, naiveWhyNot, why);
  }
}

function printTable(lines: Line[]): void {
  const rows = lines.filter((l) => l.impl !== 'meta' && l.check == null);
  const cols: [string, (l: Line) => unknown][] = [
    ['impl', (l) => l.impl], ['backend', (l) => l.backend], ['shape', (l) => l.shape], ['M', (l) => l.M],
    ['us', (l) => l.us], ['from', (l) => l.us_from === 'gpu-timestamps' ? 'gpu' : l.us_from],
    ['wall_us', (l) => l.wall_us], ['TFLOP/s', (l) => l.tflops], ['GB/s', (l) => l.gbps],
    ['%copy', (l) => l.frac_copy_bw != null ? round(100 * (l.frac_copy_bw as number)) : null],
    ['ids', (l) => l.ids_checksum == null ? '' : `${l.ids_checksum}${l.ids_match_host === false ? ' (≠ host)' : ''}`],
    ['note', (l) => l.error ?? (l.ref_ok != null ?
      `float64 ${l.ref_ok ? 'ok' : 'DIFFERS'} (${l.ref_rows} rows, |err| ${round(l.ref_max_abs_err as number, 2)})` : '')],
  ];
  const cells = rows.map((l) => cols.map(([, f]) => {
    const v = f(l);
    return v == null ? '' : String(v);
  }));
  const widths = cols.map(([h], i) => Math.min(60, Math.max(h.length, ...cells.map((c) => c[i].length))));
  const fmt = (c: string[]) => c.map((v, i) => (v.length > 60 ? v.slice(0, 57) + '...' : v).padEnd(widths[i])).join('  ');
  console.log(fmt(cols.map(([h]) => h)));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const c of cells) console.log(fmt(c));
  const checks = lines.filter((l) => l.check != null);
  const failed = checks.filter((l) => !l.ok);
  console.log(`\nchecks against the cpu / float64 reference: ${checks.length - failed.length} passed, ${failed.length} failed`);
  for (const l of failed) console.log(`  FAILED [${l.backend}] ${describeCheck(l as unknown as CheckLine)}`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const out = new Output(args.json, args.out);
  const setup = args.backends.includes('webgpu') ? setupWebGPUNode() : null;
  const deadline = performance.now() + args.maxSeconds * 1000;
  for (const backend of args.backends) await benchBackend(backend, args, out, setup, deadline);
  if (!args.json) printTable(out.lines);
  if (args.out) log(`wrote ${out.lines.length} JSON lines to ${args.out}`);
}

main().then(() => {
  releaseWebGPU();
  process.exit(0);
}, (e) => {
  console.error(e instanceof Error ? e.message : e);
  releaseWebGPU();
  process.exit(1);
});

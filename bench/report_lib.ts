/**
 * Benchmark JSON lines (bench/run.ts and bench/torch_anchor.py output) → the side-by-side markdown
 * table with ratios and the issue's targets, and an SVG chart. bench/report.ts is the command.
 *
 * Ratios use `us` on both sides: GPU time from timestamps for ours and naive where the adapter has
 * timestamp-query (the naive way's CPU round trip is then not counted against it, which favours it),
 * CUDA-event time for PyTorch. The wall-clock ratio against naive is given beside it.
 * No Node built-ins here: the tests import this module in the browser too.
 */
export type Row = {[field: string]: any};  // eslint-disable-line @typescript-eslint/no-explicit-any

/** The issue's targets (issue 6), for float32 weights on the H200, by shape. */
export const TARGETS: {[shape: string]: {decodeUs: number; vsTorchF32: number; prefillTflops: number}} = {
  'mixtral': {decodeUs: 470, vsTorchF32: 1, prefillTflops: 40},
  'qwen3': {decodeUs: 100, vsTorchF32: 2, prefillTflops: 21.5},
  'dsv3tp8': {decodeUs: 100, vsTorchF32: 2, prefillTflops: 10},
};
export const VS_NAIVE = 20;
export const ROUTING_TARGET_US = 30;
export const ROUTING_TARGET_TOKENS = 4096;
export const WALL_OVER_GPU_AT_DECODE = 2;

const TORCH_IMPLS = ['torch-eager-f32', 'torch-eager-bf16', 'torch-grouped-mm-bf16'];

const isMeasurement = (r: Row) => r.impl !== 'meta' && r.check == null;
const isTimed = (r: Row) => isMeasurement(r) && r.error == null && typeof r.us === 'number';

/** The measurement of one impl at (shape, M): ours and naive on `backend`, a torch impl on any. */
function find(rows: Row[], impl: string, shape: string, M: number, backend?: string): Row | undefined {
  return rows.find((r) => isMeasurement(r) && r.impl === impl && r.shape === shape && r.M === M &&
      (backend == null || r.backend === backend));
}

export function fmtUs(us: number | null | undefined): string {
  if (us == null || !Number.isFinite(us)) return '–';
  if (us >= 1e6) return `${sig(us / 1e6)} s`;
  if (us >= 1e3) return `${sig(us / 1e3)} ms`;
  return `${sig(us)} µs`;
}

function sig(x: number, digits = 3): string {
  return String(Number(x.toPrecision(digits)));
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a != null && b != null && b > 0 ? a / b : undefined;
}

function fmtRatio(x: number | undefined): string {
  return x == null ? '–' : `${sig(x, 2)}×`;
}

function pct(x: number | null | undefined): string {
  return x == null ? '–' : `${sig(100 * x, 2)}%`;
}

interface Verdict {
  text: string;
  met: boolean | null;
}

/** The issue's targets for one (shape, M) row of ours on a GPU backend. */
export function verdicts(rows: Row[], ours: Row, backend: string): Verdict[] {
  const t = TARGETS[ours.shape];
  if (!t) return [];
  const out: Verdict[] = [];
  const {shape, M} = ours;
  if (M === 1) {
    out.push({text: `≤ ${t.decodeUs} µs`, met: ours.us <= t.decodeUs});
    if (ours.gpu_us != null) {
      out.push({text: `wall ≤ ${WALL_OVER_GPU_AT_DECODE}× GPU (${sig(ours.wall_us / ours.gpu_us, 2)}×)`,
        met: ours.wall_us <= WALL_OVER_GPU_AT_DECODE * ours.gpu_us});
    }
  }
  if (M === 16 || M === 256) {
    const torch = find(rows, 'torch-eager-f32', shape, M);
    const r = ratio(torch?.us, ours.us);
    const need = t.vsTorchF32 === 1 ? 'at least torch f32 eager' : `≥ ${t.vsTorchF32}× torch f32 eager`;
    out.push(r == null ? {text: `${need}: no torch row`, met: null} :
      {text: `${need} (${fmtRatio(r)})`, met: r >= t.vsTorchF32});
  }
  if (M === 4096) out.push({text: `≥ ${t.prefillTflops} TFLOP/s`, met: ours.tflops >= t.prefillTflops});
  const naive = find(rows, 'naive-tfjs', shape, M, backend);
  const r = ratio(naive?.us, ours.us);
  out.push(r == null ? {text: `≥ ${VS_NAIVE}× naive: no naive row`, met: null} :
    {text: `≥ ${VS_NAIVE}× naive (${fmtRatio(r)})`, met: r >= VS_NAIVE});
  return out;
}

function fmtVerdicts(v: Verdict[], tiny: boolean): string {
  if (tiny) return 'n/a (tiny shape)';
  if (v.length === 0) return '–';
  return v.map((x) => `${x.met == null ? '?' : x.met ? 'pass' : '**FAIL**'} ${x.text}`).join('; ');
}

function table(header: string[], body: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`,
    ...body.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const byShapeThenM = (order: string[]) => (a: Row, b: Row) =>
  (order.indexOf(a.shape) - order.indexOf(b.shape)) || (a.M - b.M);

export function markdown(rows: Row[], name: string): string {
  const metas = rows.filter((r) => r.impl === 'meta');
  const shapeOrder = [...new Set(rows.filter((r) => isMeasurement(r) && r.shape && r.impl !== 'copy')
      .map((r) => r.shape as string))];
  // Judged on the MoE shapes (routing-alone problems have no tiny variant): a device run also times tiny checks.
  const moeShapes = [...new Set(rows.filter((r) => isMeasurement(r) && r.H != null && r.impl !== 'copy')
      .map((r) => r.shape as string))];
  const tinyRun = moeShapes.length > 0 && moeShapes.every((s) => s.startsWith('tiny-'));
  const lines: string[] = [`# MoE benchmark: ${name}`, ''];
  if (tinyRun) {
    lines.push('> **A functional run at tiny shapes on a machine without a GPU (webgpu = Dawn on SwiftShader, a ' +
        'software Vulkan). It shows that the harness and the kernels run and agree with the cpu reference; its ' +
        'times are not a performance measurement.**', '');
  }
  for (const m of metas) {
    const what = [m.device, m.vulkan && `via ${m.vulkan}`, m.torch && `torch ${m.torch}`, m.cuda && `CUDA ${m.cuda}`,
      m.tfjs && `tfjs ${m.tfjs}`, m.commit && `commit ${m.commit}`, m.timestamp_query != null && `timestamp-query ${m.timestamp_query ? 'yes' : 'no'}`,
      m.subgroups != null && `subgroups ${m.subgroups ? 'yes' : `no (${m.subgroups_reason})`}`,
      m.sync_latency_us != null && `empty submit → onSubmittedWorkDone ${fmtUs(m.sync_latency_us)}`]
        .filter(Boolean).join(', ');
    lines.push(`- **${m.backend}** (${m.date ?? 'undated'}): ${what}`);
  }
  const peak = metas.find((m) => m.f32_peak_tflops_assumed)?.f32_peak_tflops_assumed ?? 67;
  lines.push('', `Assumptions: float32 peak ${peak} TFLOP/s (the H200's non-tensor-core float32 rate, not measured); ` +
      'copy bandwidth counts bytes read plus bytes written; decode GB/s counts the weight bytes of the experts the ' +
      'tokens selected, each once. `us` is GPU time from timestamp-query (webgpu) or CUDA events (torch) where ' +
      'available, else wall time.', '');

  const copies = rows.filter((r) => r.impl === 'copy' && isTimed(r));
  if (copies.length) {
    lines.push('## Copy bandwidth', '', table(['backend', 'how', 'bytes', 'time', 'GB/s'],
        copies.map((c) => [c.backend, c.via ?? '', `${sig(c.bytes / 2 ** 20)} MiB`, fmtUs(c.us), sig(c.gbps)])), '');
  }

  // Decode is judged against the best copy any backend achieved on this device: Dawn's copyBufferToBuffer
  // reaches a fraction of what a CUDA copy does, and the weights live in the same HBM either way.
  const bestCopyGbps = copies.reduce((best, c) => Math.max(best, c.gbps ?? 0), 0);
  const oursBackends = [...new Set(rows.filter((r) => isMeasurement(r) && r.impl === 'ours')
      .map((r) => r.backend as string))];
  for (const backend of oursBackends) {
    const ours = rows.filter((r) => isMeasurement(r) && r.impl === 'ours' && r.backend === backend && r.H != null)
        .sort(byShapeThenM(shapeOrder));
    if (ours.length === 0) continue;
    lines.push(`## fusedMoE on ${backend}: ours against the anchors`, '');
    const body = ours.map((o) => {
      const naive = find(rows, 'naive-tfjs', o.shape, o.M, backend);
      const torch = TORCH_IMPLS.map((impl) => find(rows, impl, o.shape, o.M));
      const cell = (r: Row | undefined) => r && isTimed(r) ? fmtUs(r.us) : r?.error ? 'error' : '–';
      if (o.error) {
        return [o.shape, String(o.M), `error: ${o.error}`, '–', cell(naive), ...torch.map(cell),
          '–', '–', '–', '–', '–', '–', '–'];
      }
      const tiny = o.shape.startsWith('tiny-');
      return [
        o.shape, String(o.M), fmtUs(o.us) + (o.us_from === 'wall' ? ' (wall)' : ''), fmtUs(o.wall_us),
        cell(naive), ...torch.map(cell),
        fmtRatio(ratio(naive?.us, o.us)), fmtRatio(ratio(naive?.wall_us, o.wall_us)),
        fmtRatio(ratio(torch[0]?.us, o.us)),
        o.tflops != null ? sig(o.tflops) : '–', o.gbps != null ? sig(o.gbps) : '–',
        o.M === 1 ? (bestCopyGbps && o.gbps != null ? `${pct(o.gbps / bestCopyGbps)} of best copy` : '–') :
          `${pct(o.frac_f32_peak)} of f32 peak`,
        fmtVerdicts(verdicts(rows, o, backend), tiny) + (o.parity && o.parity !== 'passed' ? ` (parity ${o.parity})` : '') +
          (o.agrees_with_naive === false ? ` (**differs from naive** by ${sig(o.max_abs_diff_vs_naive)})` : ''),
      ];
    });
    lines.push(table(['shape', 'M', 'ours', 'ours wall', 'naive tfjs', 'torch f32 eager', 'torch bf16 eager',
      'torch grouped_mm bf16', 'vs naive', 'vs naive (wall)', 'vs torch f32', 'TFLOP/s', 'GB/s', 'fraction',
      'targets'], body), '');
    const naiveErrors = [...new Set(rows.filter((r) => r.impl === 'naive-tfjs' && r.backend === backend && r.error)
        .map((r) => r.error as string))];
    for (const e of naiveErrors) lines.push(`naive tfjs on ${backend}: ${e}`, '');

    const routing = rows.filter((r) => isMeasurement(r) && r.impl === 'ours' && r.backend === backend && r.H == null)
        .sort(byShapeThenM(shapeOrder));
    if (routing.length) {
      lines.push(`### Routing alone on ${backend}`, '');
      lines.push(table(['problem', 'T', 'ours', 'ours wall', 'naive tfjs', 'torch f32', 'target'], routing.map((o) => {
        const naive = find(rows, 'naive-tfjs', o.shape, o.M, backend);
        const torch = find(rows, 'torch-eager-f32', o.shape, o.M);
        const target = o.M === ROUTING_TARGET_TOKENS && !tinyRun ?
          `${o.us <= ROUTING_TARGET_US ? 'pass' : '**FAIL**'} ≤ ${ROUTING_TARGET_US} µs` : '–';
        return [o.shape, String(o.M), o.error ? `error: ${o.error}` : fmtUs(o.us), fmtUs(o.wall_us),
          naive && isTimed(naive) ? fmtUs(naive.us) : '–', torch && isTimed(torch) ? fmtUs(torch.us) : '–', target];
      })), '');
    }

    const profiled = ours.filter((o) => o.kernels && Object.keys(o.kernels).length);
    if (profiled.length) {
      lines.push(`### Where ours spends its GPU time on ${backend} (timestamp-query, per program)`, '');
      lines.push(table(['shape', 'M', 'dispatches', 'per program'], profiled.map((o) => [o.shape, String(o.M),
        String(o.dispatches ?? '–'),
        Object.entries(o.kernels as {[k: string]: number}).map(([k, us]) => `${k} ${fmtUs(us)}`).join(', ')])), '');
    }
  }

  const checks = rows.filter((r) => r.check != null);
  if (checks.length) {
    const failed = checks.filter((c) => !c.ok);
    lines.push('## Parity checks', '', `${checks.length - failed.length} passed, ${failed.length} failed ` +
        '(ours and naive tfjs against the cpu reference at the tiny shapes, before timing; torch eager against a ' +
        'float64 loop).', '');
    for (const c of failed) {
      lines.push(`- FAILED ${c.impl} [${c.backend}] ${c.check} ${c.shape ?? ''} M=${c.M ?? '–'}: ` +
          `${c.error ?? `max |err| ${c.max_abs_err} > ${c.tol}`}`);
    }
    if (failed.length) lines.push('');
  }
  return lines.join('\n');
}

const SERIES_COLORS = ['#d62728', '#ff9896', '#1f77b4', '#aec7e8', '#2ca02c', '#98df8a', '#9467bd', '#8c564b'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Grouped bars per (shape, M), one bar per implementation, log-scaled time (lower is better). */
export function svgChart(rows: Row[], title: string): string {
  const moe = rows.filter((r) => isTimed(r) && r.H != null && r.impl !== 'copy');
  const oursBackends = [...new Set(moe.filter((r) => r.impl === 'ours').map((r) => r.backend))];
  const seriesOf = (r: Row) => r.impl.startsWith('torch-') ? `${r.impl} (${r.backend})` :
    oursBackends.length > 1 ? `${r.impl} (${r.backend})` : r.impl;
  const rank = (s: string) => (s.startsWith('ours') ? 0 : s.startsWith('naive') ? 1 : 2);
  const series = [...new Set(moe.map(seriesOf))].sort((a, b) => rank(a) - rank(b));
  const shapeOrder = [...new Set(moe.map((r) => r.shape as string))];
  const groups = [...new Map(moe.map((r) => [`${r.shape}|${r.M}`, {shape: r.shape as string, M: r.M as number}]))
      .values()].sort((a, b) => (shapeOrder.indexOf(a.shape) - shapeOrder.indexOf(b.shape)) || (a.M - b.M));
  if (groups.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="400" height="40"><text x="10" y="25">no timed rows</text></svg>\n`;

  const bar = 11, gap = 14, left = 64, plotH = 300, bottom = 50;
  const groupW = series.length * bar + gap;
  const width = Math.max(560, left + groups.length * groupW + 20);
  const legendW = 230, legendCols = Math.max(1, Math.floor((width - left) / legendW));
  const top = 40 + 16 * Math.ceil(series.length / legendCols);
  const height = top + plotH + bottom;
  const values = moe.map((r) => r.us as number).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...values)));
  const hi = Math.ceil(Math.log10(Math.max(...values)));
  const y = (us: number) => top + plotH - (Math.log10(us) - lo) / Math.max(1, hi - lo) * plotH;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${left}" y="18" font-size="14" font-weight="bold">${esc(title)}</text>`);
  series.forEach((s, i) => {
    const lx = left + (i % legendCols) * legendW, ly = 32 + 16 * Math.floor(i / legendCols);
    out.push(`<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${SERIES_COLORS[i % SERIES_COLORS.length]}"/>`);
    out.push(`<text x="${lx + 14}" y="${ly}">${esc(s)}</text>`);
  });
  for (let d = lo; d <= hi; d++) {
    const yy = y(10 ** d);
    out.push(`<line x1="${left}" x2="${width - 20}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${yy + 4}" text-anchor="end">${esc(fmtUs(10 ** d))}</text>`);
  }
  out.push(`<text transform="translate(14 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">` +
      'time per call (log scale, lower is better)</text>');
  groups.forEach((g, gi) => {
    const x0 = left + gi * groupW + gap / 2;
    series.forEach((s, si) => {
      const r = moe.find((row) => row.shape === g.shape && row.M === g.M && seriesOf(row) === s);
      if (!r) return;
      const yy = y(r.us);
      out.push(`<rect x="${x0 + si * bar}" y="${yy.toFixed(1)}" width="${bar - 1}" ` +
          `height="${(top + plotH - yy).toFixed(1)}" fill="${SERIES_COLORS[si % SERIES_COLORS.length]}">` +
          `<title>${esc(`${s} ${g.shape} M=${g.M}: ${fmtUs(r.us)}`)}</title></rect>`);
    });
    const cx = x0 + series.length * bar / 2;
    out.push(`<text x="${cx}" y="${top + plotH + 14}" text-anchor="middle">M=${g.M}</text>`);
    if (gi === 0 || groups[gi - 1].shape !== g.shape) {
      out.push(`<text x="${x0}" y="${top + plotH + 32}" font-weight="bold">${esc(g.shape)}</text>`);
    }
  });
  out.push(`<line x1="${left}" x2="${width - 20}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Benchmark JSON lines (bench/run.ts, bench/torch_anchor.py and any entry that writes the same rows, e.g.
 * low-precision rows with a `format`) → the side-by-side markdown table with ratios and the issue's
 * targets, a README table, and an SVG chart. bench/report.ts is the command.
 *
 * Every ratio compares the same window on both sides (docs/benchmarks.md, "How each ratio is formed"):
 *  - wall against wall: `wall_us`, the median time from the call until the GPU is done, on both sides
 *    (ours: until onSubmittedWorkDone; torch: until torch.cuda.synchronize() returns). The headline.
 *  - GPU-busy against GPU-busy: ours' `gpu_us` (the sum of per-program timestamp-query times) against
 *    torch's `gpu_busy_us` (the sum of its kernel times from torch.profiler) or naive's `gpu_us` (the same
 *    timestamp-query sum); only where both sides have that field.
 * torch's CUDA-event time of the whole call (`cuda_event_us`) is neither and is never divided by ours' GPU sum.
 * A row is paired with the torch anchors of its own precision (`format`): float32 with torch eager f32,
 * bf16 with torch eager bf16, a quantized format with torch's dequantize-then-matmul of that format, and every
 * format with torch._grouped_mm bf16, the strongest anchor. A naive row whose sampled output disagrees with
 * the float64 reference is not counted in "× naive".
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

/** Weight formats in table order; `format` of a row (or its `dtype` in older rows) maps to one of them. */
export const FORMATS = ['float32', 'bf16', 'int4-g128', 'fp8-block', 'mxfp4'];
const FORMAT_ALIASES: {[k: string]: string} = {float32: 'float32', f32: 'float32', bf16: 'bf16', bfloat16: 'bf16',
  'int4': 'int4-g128', 'int4-g128': 'int4-g128', 'uint4': 'int4-g128', 'fp8': 'fp8-block', 'fp8-block': 'fp8-block',
  'e4m3': 'fp8-block', 'mxfp4': 'mxfp4', 'e2m1': 'mxfp4'};
export function formatOf(r: Row): string {
  const f = String(r.format ?? r.dtype ?? 'float32');
  return FORMAT_ALIASES[f] ?? f;
}
export const GROUPED_MM = 'torch-grouped-mm-bf16';

/** The format names of src/quant/format.ts's codes, as the report's formats. */
const CODE_FORMATS: {[code: string]: string} = {bf16: 'bf16', f16: 'bf16', uint4: 'int4-g128', e4m3: 'fp8-block',
  e2m1: 'mxfp4'};

/**
 * Rows of bench/gpu_quant.ts in the report's terms: its `format` is a formatKey ('uint4_g128_r1_...'), its shape
 * name carries the format ('mixtral-int4g128'), its times are gpuUs / wallUs. Other rows pass unchanged.
 */
export function normalizeRow(r: Row): Row {
  if (r.gpuUs == null || typeof r.format !== 'string' || !r.format.includes('_')) return r;
  const code = r.format.split('_')[0];
  const gpu = Number(r.gpuUs), wall = Number(r.wallUs);
  return {...r, backend: r.backend ?? 'webgpu', shape: String(r.shape).replace(/-[^-]*$/, ''),
    format: CODE_FORMATS[code] ?? r.format, us: gpu, us_from: 'gpu-timestamps', gpu_us: gpu, wall_us: wall};
}
/** The torch anchor of the same precision as a row of `format`. */
export function samePrecisionAnchor(format: string): string {
  return format === 'float32' ? 'torch-eager-f32' : format === 'bf16' ? 'torch-eager-bf16' : `torch-dequant-${format}`;
}
const ANCHOR_LABEL: {[impl: string]: string} = {
  'torch-eager-f32': 'torch eager f32', 'torch-eager-bf16': 'torch eager bf16', [GROUPED_MM]: 'torch grouped_mm bf16',
};
const anchorLabel = (impl: string) => ANCHOR_LABEL[impl] ?? impl.replace(/^torch-dequant-/, 'torch dequant→bf16 ');

const isMeasurement = (r: Row) => r.impl !== 'meta' && r.check == null;
const isTimed = (r: Row) => isMeasurement(r) && r.error == null && typeof r.us === 'number';

/** The measurement of one impl at (shape, M): ours and naive on `backend`, a torch impl on any. */
function find(rows: Row[], impl: string, shape: string, M: number, backend?: string): Row | undefined {
  return rows.find((r) => isMeasurement(r) && r.impl === impl && r.shape === shape && r.M === M &&
      (backend == null || r.backend === backend));
}

/** Wall against wall: anchor / ours (> 1: ours is faster). */
export function wallRatio(anchor: Row | undefined, ours: Row): number | undefined {
  return anchor && isTimed(anchor) ? ratio(anchor.wall_us, ours.wall_us) : undefined;
}

/** GPU-busy against GPU-busy: torch's profiler kernel sum, or naive's timestamp sum, over ours' timestamp sum. */
export function busyRatio(anchor: Row | undefined, ours: Row): number | undefined {
  if (!anchor || !isTimed(anchor)) return undefined;
  const theirs = anchor.impl.startsWith('torch-') ? anchor.gpu_busy_us :
    anchor.us_from === 'gpu-timestamps' ? anchor.gpu_us : undefined;
  return ours.us_from === 'gpu-timestamps' ? ratio(theirs, ours.gpu_us) : undefined;
}

/**
 * A naive row counts in "× naive" only where its sampled rows matched the float64 reference (or were not
 * checked); in runs from before that check, where ours' row says the two outputs differ.
 */
export function naiveCounts(naive: Row | undefined, ours?: Row): boolean {
  return naive != null && isTimed(naive) && naive.ref_ok !== false && ours?.agrees_with_naive !== false;
}

/** What differs between the experts ours and the anchors selected (by the ids checksums), '' when nothing does. */
export function idsMismatch(ours: Row, anchors: (Row | undefined)[]): string {
  const out: string[] = [];
  if (ours.ids_match_host === false) out.push(`ours' device routing ≠ host reference (${ours.ids_checksum} vs ${ours.ids_checksum_host})`);
  for (const a of anchors) {
    if (a?.ids_checksum != null && ours.ids_checksum != null && a.ids_checksum !== ours.ids_checksum) {
      out.push(`${a.impl} routed other experts (${a.ids_checksum} vs ours ${ours.ids_checksum})`);
    }
  }
  return [...new Set(out)].join('; ');
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
  if (!t || formatOf(ours) !== 'float32') return [];
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
    const r = wallRatio(torch, ours);
    const need = t.vsTorchF32 === 1 ? 'at least torch f32 eager (wall)' : `≥ ${t.vsTorchF32}× torch f32 eager (wall)`;
    out.push(r == null ? {text: `${need}: no torch wall time`, met: null} :
      {text: `${need} (${fmtRatio(r)})`, met: r >= t.vsTorchF32});
  }
  if (M === 4096) out.push({text: `≥ ${t.prefillTflops} TFLOP/s`, met: ours.tflops >= t.prefillTflops});
  const naive = find(rows, 'naive-tfjs', shape, M, backend);
  if (naive && isTimed(naive) && !naiveCounts(naive, ours)) {
    out.push({text: `≥ ${VS_NAIVE}× naive: its output is wrong, not counted`, met: null});
  } else {
    // GPU sum against GPU sum where both have timestamps (the issue's measure; naive's leaves out its
    // read-back, in its favour), else wall against wall.
    const busy = busyRatio(naive, ours);
    const r = busy ?? (naive ? wallRatio(naive, ours) : undefined);
    const how = busy != null ? 'GPU' : 'wall';
    out.push(r == null ? {text: `≥ ${VS_NAIVE}× naive: no naive row`, met: null} :
      {text: `≥ ${VS_NAIVE}× naive (${how}) (${fmtRatio(r)})`, met: r >= VS_NAIVE});
  }
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

/** The per-format anchors of a row: the same-precision one, torch eager bf16 for low-precision rows, grouped_mm. */
function anchorsFor(format: string): string[] {
  const same = samePrecisionAnchor(format);
  const list = [same];
  if (format !== 'float32' && format !== 'bf16') list.push('torch-eager-bf16');
  if (!list.includes(GROUPED_MM)) list.push(GROUPED_MM);
  return list;
}

const SHAPE_TITLES: {[shape: string]: string} = {
  mixtral: 'Mixtral (8, 2, 4096, 14336)', qwen3: 'Qwen3-30B-A3B (128, 8, 2048, 768)',
  dsv3tp8: 'DeepSeek-V3 TP8 (256, 8, 7168, 256)', gptoss20b: 'gpt-oss-20b (32, 4, 2880, 2880)',
};

function refCell(r: Row | undefined): string {
  if (!r || r.ref_ok == null) return '–';
  return r.ref_ok ? `ok (${r.ref_rows} rows)` : `**DIFFERS** by ${sig(r.ref_max_abs_err)} > ${sig(r.ref_tol)}`;
}

/**
 * The README's performance table: for each format that ours has rows in, wall against wall with the
 * same-precision anchor and torch._grouped_mm bf16, GPU-busy against GPU-busy where both sides have it.
 */
export function readmeTable(rows: Row[], backend = 'webgpu'): string {
  const ours = rows.filter((r) => isTimed(r) && r.impl === 'ours' && r.backend === backend && r.H != null &&
      !String(r.shape).startsWith('tiny-'));
  const bestCopyGbps = rows.filter((r) => r.impl === 'copy' && isTimed(r)).reduce((b, c) => Math.max(b, c.gbps ?? 0), 0);
  const shapeOrder = [...new Set(ours.map((r) => r.shape as string))];
  const out: string[] = [];
  for (const format of [...new Set([...FORMATS, ...ours.map(formatOf)])]) {
    const mine = ours.filter((r) => formatOf(r) === format).sort(byShapeThenM(shapeOrder));
    if (mine.length === 0) continue;
    const [same, ...others] = anchorsFor(format);
    const withNaive = format === 'float32';
    const header = ['shape (E, k, H, I)', 'M', 'ours wall', 'ours GPU', `${anchorLabel(same)} wall`,
      `vs ${anchorLabel(same)} (wall / GPU busy)`, ...others.flatMap((o) => [`${anchorLabel(o)} wall`, `vs ${anchorLabel(o)} (wall)`]),
      ...(withNaive ? ['naive tfjs wall', 'vs naive (wall / GPU)'] : []), 'float64 check', 'of the hardware'];
    const body = mine.map((o, i) => {
      const a = find(rows, same, o.shape, o.M);
      const naive = find(rows, 'naive-tfjs', o.shape, o.M, backend);
      const busy = busyRatio(a, o);
      const naiveCell = !naive || !isTimed(naive) ? ['–', '–'] : !naiveCounts(naive, o) ?
        [fmtUs(naive.wall_us), 'wrong output, not counted'] :
        [fmtUs(naive.wall_us), `${fmtRatio(wallRatio(naive, o))} / ${fmtRatio(busyRatio(naive, o))}`];
      const hw = o.M === 1 ? (bestCopyGbps && o.gbps != null ? `${pct(o.gbps / bestCopyGbps)} of copy bandwidth` : '') :
        o.M === 4096 && o.tflops != null ? `${sig(o.tflops)} TFLOP/s` + (format === 'float32' ? ` (${pct(o.frac_f32_peak)} of f32 peak)` : '') : '';
      const flag = idsMismatch(o, [a, ...others.map((x) => find(rows, x, o.shape, o.M))]);
      return [i > 0 && mine[i - 1].shape === o.shape ? '' : (SHAPE_TITLES[o.shape] ?? o.shape), String(o.M),
        fmtUs(o.wall_us), o.us_from === 'gpu-timestamps' ? fmtUs(o.gpu_us) : '–', a && isTimed(a) ? fmtUs(a.wall_us) : '–',
        `${fmtRatio(wallRatio(a, o))} / ${fmtRatio(busy)}`,
        ...others.flatMap((x) => {
          const r = find(rows, x, o.shape, o.M);
          return [r && isTimed(r) ? fmtUs(r.wall_us) : '–', fmtRatio(wallRatio(r, o))];
        }),
        ...(withNaive ? naiveCell : []), refCell(o) + (flag ? ` **ids differ**: ${flag}` : ''), hw];
    });
    out.push(`**${format} weights**`, '', table(header, body), '');
  }
  return out.join('\n');
}

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
      'tokens selected, each once.', '',
  '**How the ratios are formed** (anchor ÷ ours, > 1 = ours faster; docs/benchmarks.md): *wall* = the median time ' +
      'from the call until the GPU is done on both sides (ours: until `onSubmittedWorkDone`; torch: until ' +
      '`torch.cuda.synchronize()` returns); *GPU busy* = the sum of the GPU programs\' own times on both sides (ours ' +
      'and naive: timestamp-query per program; torch: its kernels from torch.profiler), shown only where both sides ' +
      'have it. torch\'s CUDA-event time of the whole call is listed, never divided by ours\' GPU sum. Each row is ' +
      'paired with the torch anchors of its own precision, and with torch._grouped_mm bf16 (the strongest). A naive ' +
      'row whose sampled output disagrees with the float64 reference is not counted. *ids* compares the checksums ' +
      'of the experts each side selected for the same logits.', '');

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
  const cell = (r: Row | undefined, field = 'wall_us') => r && isTimed(r) ? fmtUs(r[field]) : r?.error ? 'error' : '–';
  for (const backend of oursBackends) {
    const oursAll = rows.filter((r) => isMeasurement(r) && r.impl === 'ours' && r.backend === backend && r.H != null)
        .sort(byShapeThenM(shapeOrder));
    if (oursAll.length === 0) continue;
    const formats = [...new Set([...FORMATS.filter((f) => oursAll.some((o) => formatOf(o) === f)), ...oursAll.map(formatOf)])];
    for (const format of formats) {
      const ours = oursAll.filter((o) => formatOf(o) === format);
      const [same, ...others] = anchorsFor(format);
      const withNaive = format === 'float32';
      lines.push(`## fusedMoE on ${backend}, ${format} weights: ours against the anchors`, '');
      const body = ours.map((o) => {
        const naive = withNaive ? find(rows, 'naive-tfjs', o.shape, o.M, backend) : undefined;
        const a = find(rows, same, o.shape, o.M);
        const rest = others.map((x) => find(rows, x, o.shape, o.M));
        const naiveCells = !withNaive ? [] : !naive ? ['–', '–'] : !isTimed(naive) ? [cell(naive), '–'] :
          !naiveCounts(naive, o) ? [`${fmtUs(naive.wall_us)} (**wrong output**: ${naive.ref_ok === false ?
            `${sig(naive.ref_max_abs_err)} from float64` : 'differs from ours'})`, 'not counted'] :
            [fmtUs(naive.wall_us), `${fmtRatio(wallRatio(naive, o))} / ${fmtRatio(busyRatio(naive, o))}`];
        if (o.error) {
          return [o.shape, String(o.M), `error: ${o.error}`, '–', cell(a), cell(a, 'gpu_busy_us'), '–', '–',
            ...rest.flatMap((r) => [cell(r), '–']), ...naiveCells.map(() => '–'), '–', '–', '–', '–', '–', '–'];
        }
        const tiny = o.shape.startsWith('tiny-');
        const flag = idsMismatch(o, [a, ...rest]);
        return [
          o.shape, String(o.M), fmtUs(o.wall_us), o.us_from === 'gpu-timestamps' ? fmtUs(o.gpu_us) : '–',
          cell(a), cell(a, 'gpu_busy_us'), fmtRatio(wallRatio(a, o)), fmtRatio(busyRatio(a, o)),
          ...rest.flatMap((r) => [cell(r), fmtRatio(wallRatio(r, o))]),
          ...naiveCells,
          refCell(o), o.ids_checksum == null ? '–' : flag ? `**differ**: ${flag}` : a?.ids_checksum != null ? 'same' : 'no anchor checksum',
          o.tflops != null ? sig(o.tflops) : '–', o.gbps != null ? sig(o.gbps) : '–',
          o.M === 1 ? (bestCopyGbps && o.gbps != null ? `${pct(o.gbps / bestCopyGbps)} of best copy` : '–') :
            format === 'float32' ? `${pct(o.frac_f32_peak)} of f32 peak` : '–',
          fmtVerdicts(verdicts(rows, o, backend), tiny || format !== 'float32') +
            (o.parity && o.parity !== 'passed' ? ` (parity ${o.parity})` : ''),
        ];
      });
      const sameLabel = anchorLabel(same);
      lines.push(table(['shape', 'M', 'ours wall', 'ours GPU', `${sameLabel} wall`, `${sameLabel} GPU busy`,
        `vs ${sameLabel} (wall)`, `vs ${sameLabel} (GPU busy)`,
        ...others.flatMap((x) => [`${anchorLabel(x)} wall`, `vs ${anchorLabel(x)} (wall)`]),
        ...(withNaive ? ['naive tfjs wall', 'vs naive (wall / GPU)'] : []),
        'float64 check', 'ids', 'TFLOP/s', 'GB/s', 'fraction', 'targets'], body), '');
    }
    const naiveErrors = [...new Set(rows.filter((r) => r.impl === 'naive-tfjs' && r.backend === backend && r.error)
        .map((r) => r.error as string))];
    for (const e of naiveErrors) lines.push(`naive tfjs on ${backend}: ${e}`, '');

    // Every torch anchor's three times side by side: what each window holds.
    const torchRows = rows.filter((r) => isTimed(r) && r.impl.startsWith('torch-') && r.H != null)
        .sort(byShapeThenM(shapeOrder));
    if (torchRows.length) {
      lines.push('### The torch anchors\' three times', '', 'wall: call until synchronize; CUDA events: the whole call ' +
          'on the GPU\'s clock (kernels, the gaps between them and the host sync for the counts); GPU busy: the sum ' +
          'of its kernels (torch.profiler), the measure of ours\' GPU column.', '');
      lines.push(table(['shape', 'M', 'anchor', 'format', 'wall', 'CUDA events', 'GPU busy', 'max rel. diff vs f32'],
          torchRows.map((r) => [r.shape, String(r.M), r.impl, formatOf(r), fmtUs(r.wall_us), fmtUs(r.cuda_event_us ?? r.gpu_us),
            fmtUs(r.gpu_busy_us), r.max_rel_diff_vs_f32 != null ? sig(r.max_rel_diff_vs_f32, 2) : '–'])), '');
    }

    const routing = rows.filter((r) => isMeasurement(r) && r.impl === 'ours' && r.backend === backend && r.H == null)
        .sort(byShapeThenM(shapeOrder));
    if (routing.length) {
      lines.push(`### Routing alone on ${backend}`, '');
      lines.push(table(['problem', 'T', 'ours GPU', 'ours wall', 'naive tfjs wall', 'torch f32 wall', 'vs torch (wall)',
        'ids', 'target'], routing.map((o) => {
        const naive = find(rows, 'naive-tfjs', o.shape, o.M, backend);
        const torch = find(rows, 'torch-eager-f32', o.shape, o.M);
        const target = o.M === ROUTING_TARGET_TOKENS && !tinyRun ?
          `${o.us <= ROUTING_TARGET_US ? 'pass' : '**FAIL**'} ≤ ${ROUTING_TARGET_US} µs` : '–';
        const flag = idsMismatch(o, [torch]);
        return [o.shape, String(o.M), o.error ? `error: ${o.error}` : o.us_from === 'gpu-timestamps' ? fmtUs(o.gpu_us) : '–',
          fmtUs(o.wall_us), cell(naive), cell(torch), o.error ? '–' : fmtRatio(wallRatio(torch, o)),
          o.ids_checksum == null ? '–' : flag ? `**differ**: ${flag}` : torch?.ids_checksum != null ? 'same' : '–', target];
      })), '');
    }

    const profiled = oursAll.filter((o) => o.kernels && Object.keys(o.kernels).length);
    if (profiled.length) {
      lines.push(`### Where ours spends its GPU time on ${backend} (timestamp-query, per program)`, '');
      lines.push(table(['shape', 'M', 'format', 'dispatches', 'per program'], profiled.map((o) => [o.shape, String(o.M),
        formatOf(o), String(o.dispatches ?? '–'),
        Object.entries(o.kernels as {[k: string]: number}).map(([k, us]) => `${k} ${fmtUs(us)}`).join(', ')])), '');
    }
    if (!tinyRun) lines.push(`## README table (${backend})`, '', readmeTable(rows, backend));
  }

  const checks = rows.filter((r) => r.check != null);
  if (checks.length) {
    const failed = checks.filter((c) => !c.ok);
    lines.push('## Checks', '', `${checks.length - failed.length} passed, ${failed.length} failed ` +
        '(ours and naive tfjs against the cpu reference at the tiny shapes before timing, and sampled output rows ' +
        'of both against a float64 host reference at every benchmarked shape and M; torch eager against a ' +
        'float64 loop).', '');
    for (const c of failed) {
      lines.push(`- FAILED ${c.impl} [${c.backend}] ${c.check} ${c.shape ?? ''} M=${c.M ?? '–'}: ` +
          `${c.error ?? `max |err| ${c.max_abs_err} > ${c.tol}`}`);
    }
    if (failed.length) lines.push('');
  }
  return lines.join('\n');
}

const SERIES_COLORS = ['#d62728', '#ff9896', '#1f77b4', '#aec7e8', '#2ca02c', '#98df8a', '#9467bd', '#8c564b',
  '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#ff7f0e', '#c5b0d5'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Grouped bars per (shape, M), one bar per implementation (and format), log-scaled wall time: the same
 * window on every side (lower is better).
 */
export function svgChart(rows: Row[], title: string): string {
  const moe = rows.filter((r) => isTimed(r) && r.H != null && r.impl !== 'copy' && typeof r.wall_us === 'number');
  const oursBackends = [...new Set(moe.filter((r) => r.impl === 'ours').map((r) => r.backend))];
  const fmt = (r: Row) => r.impl.startsWith('torch-') || formatOf(r) === 'float32' ? '' : ` ${formatOf(r)}`;
  const seriesOf = (r: Row) => (r.impl.startsWith('torch-') ? `${r.impl} (${r.backend})` :
    oursBackends.length > 1 ? `${r.impl} (${r.backend})` : r.impl) + fmt(r);
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
  const values = moe.map((r) => r.wall_us as number).filter((v) => v > 0);
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
      'wall time per call, until the GPU is done (log scale, lower is better)</text>');
  groups.forEach((g, gi) => {
    const x0 = left + gi * groupW + gap / 2;
    series.forEach((s, si) => {
      const r = moe.find((row) => row.shape === g.shape && row.M === g.M && seriesOf(row) === s);
      if (!r) return;
      const yy = y(r.wall_us);
      out.push(`<rect x="${x0 + si * bar}" y="${yy.toFixed(1)}" width="${bar - 1}" ` +
          `height="${(top + plotH - yy).toFixed(1)}" fill="${SERIES_COLORS[si % SERIES_COLORS.length]}">` +
          `<title>${esc(`${s} ${g.shape} M=${g.M}: wall ${fmtUs(r.wall_us)}`)}</title></rect>`);
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

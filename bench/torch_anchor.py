#!/usr/bin/env python3
"""PyTorch anchors for the MoE benchmark (issue 6), on the same shapes and token counts as bench/run.ts.

  impl torch-eager-f32 / torch-eager-bf16: what a PyTorch user writes without fused kernels (HF's and
      vLLM's torch reference): route, count tokens per expert (one host sync), then per expert
      index_select the tokens, two matmuls with silu(gate) * up, scale by the routing weight, index_add.
  impl torch-grouped-mm-bf16: the same with torch._grouped_mm over the tokens sorted by expert (no host
      sync); only where torch has it (SM90+ on CUDA).
  impl torch-dequant-<format>: the eager loop over quantized weights: per expert with tokens, dequantize
      its packed weights with torch ops to bf16, then the bf16 matmuls (--formats: int4-g128, fp8-block,
      mxfp4; each row has `format`).
  impl copy: a device-to-device copy of a 1 GiB tensor: the achievable bandwidth (2 x bytes / time).

Inputs are those of bench/run.ts, bit for bit: router logits, correction bias, hidden states and float32
weights all come from the counter-based hash of bench/fill_uniform_webgpu.ts (lowbias32 of index ^
lowbias32(seed), 24 bits -> [0, 1), scaled in float64, rounded once to float32), so both sides route the
same tokens to the same experts; each row records `ids_checksum` (FNV-1a over the ids, each token's k ids
sorted) and the report flags a difference from ours'.

Times per row, each the median over repeats after warm-up:
  wall_us       host clock from the call until torch.cuda.synchronize() returns (what bench/run.ts
                measures for ours: call until the GPU is done);
  cuda_event_us CUDA events recorded around the call (the whole call on the GPU's clock: kernels plus
                the gaps between them, the host sync for the counts included); `us` is this (wall on cpu);
  gpu_busy_us   the sum of the call's GPU kernel and memcpy/memset times from torch.profiler (mean over
                the profiled calls): the same quantity as ours' gpu_us (the sum of per-program times).
Prints JSON lines like bench/run.ts. Needs only python3 and torch.

  python3 bench/torch_anchor.py --shapes real --tokens 1,16,256,4096 --out torch.jsonl
  python3 bench/torch_anchor.py --device cpu --shapes tiny            # a functional run without a GPU
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SOFTMAX_TOPK = {'kind': 'topk', 'renormalize': True}
DEEPSEEK_V3 = {'kind': 'grouped', 'renormalize': True, 'groups': 8, 'topk_group': 4, 'scale': 2.5}

# The same problems as bench/shapes.ts.
SHAPES = {
    'mixtral': dict(kind='moe', E=8, k=2, H=4096, I=14336, routing=SOFTMAX_TOPK),
    'qwen3': dict(kind='moe', E=128, k=8, H=2048, I=768, routing=SOFTMAX_TOPK),
    'dsv3tp8': dict(kind='moe', E=256, k=8, H=7168, I=256, routing=DEEPSEEK_V3),
    # gpt-oss-20b's expert shape (its SwiGLU-OAI activation is timed as silu here: the same work).
    'gptoss20b': dict(kind='moe', E=32, k=4, H=2880, I=2880, routing=SOFTMAX_TOPK),
    'topk-e256': dict(kind='routing', E=256, k=8, H=None, I=None, routing=SOFTMAX_TOPK),
    'grouped-dsv3': dict(kind='routing', E=256, k=8, H=None, I=None, routing=DEEPSEEK_V3),
    'tiny-mixtral': dict(kind='moe', E=8, k=2, H=72, I=100, routing=SOFTMAX_TOPK),
    'tiny-qwen3': dict(kind='moe', E=32, k=8, H=40, I=24, routing=SOFTMAX_TOPK),
    'tiny-dsv3': dict(kind='moe', E=32, k=8, H=56, I=20, routing=DEEPSEEK_V3),
}
SETS = {
    'real': ['mixtral', 'qwen3', 'dsv3tp8', 'topk-e256', 'grouped-dsv3'],
    'routing': ['topk-e256', 'grouped-dsv3'],
    'tiny': ['tiny-mixtral', 'tiny-qwen3', 'tiny-dsv3', 'topk-e256', 'grouped-dsv3'],
}
DEFAULT_TOKENS = {'real': [1, 16, 256, 4096], 'tiny': [1, 16, 64]}
# Quantized-weight anchors (torch-dequant-<format>): format -> shapes. --formats overrides.
DEFAULT_FORMATS = {'real': 'int4-g128:mixtral,qwen3,dsv3tp8;fp8-block:dsv3tp8;mxfp4:gptoss20b',
                   'tiny': 'int4-g128:tiny-mixtral;fp8-block:tiny-dsv3;mxfp4:tiny-qwen3'}

# ---- Inputs: the hash of bench/fill_uniform_webgpu.ts, bit for bit ----------------------------------------

MASK32 = 0xffffffff


def lowbias32_int(v):
    h = v & MASK32
    h ^= h >> 16
    h = (h * 0x7feb352d) & MASK32
    h ^= h >> 15
    h = (h * 0x846ca68b) & MASK32
    h ^= h >> 16
    return h


def _mul32(h, c):
    """(h * c) mod 2^32 for an int64 tensor h < 2^32 without int64 overflow."""
    lo, hi = c & 0xffff, c >> 16
    return (h * lo + (((h * hi) & 0xffff) << 16)) & MASK32


def lowbias32(h):
    h = h ^ (h >> 16)
    h = _mul32(h, 0x7feb352d)
    h = h ^ (h >> 15)
    h = _mul32(h, 0x846ca68b)
    return h ^ (h >> 16)


def hash_uniform(shape, seed, scale, device, offset=0, chunk=1 << 25):
    """float32 values in [-scale, scale): element i is uniformHostValue(offset + i, seed, scale) of
    bench/fill_uniform_webgpu.ts (the value FillUniformProgram writes on the GPU)."""
    n = 1
    for d in shape:
        n *= d
    s = lowbias32_int(seed)
    sc = float(torch.tensor(scale, dtype=torch.float32))  # Math.fround(scale)
    out = torch.empty(n, dtype=torch.float32, device=device)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        h = lowbias32(torch.arange(offset + a, offset + b, dtype=torch.int64, device=device) ^ s)
        u = (h >> 8).double() / 16777216.0
        out[a:b] = ((2 * u - 1) * sc).float()
    return out.view(*shape)


def ids_checksum(ids):
    """FNV-1a (32-bit) over the selected ids, each token's k ids sorted ascending, tokens in order;
    bench/run.ts computes the same (idsChecksum)."""
    h = 0x811c9dc5
    for v in ids.sort(dim=-1).values.flatten().tolist():
        h = ((h ^ int(v)) * 0x01000193) & MASK32
    return f'{h:08x}'


# ---- The MoE layer in torch ------------------------------------------------------------------------------


def route(logits, bias, s):
    """vLLM's fused_topk (softmax) or grouped_topk (DeepSeek-V3: sigmoid, bias, groups), in float32."""
    r, k = s['routing'], s['k']
    logits = logits.float()
    if r['kind'] == 'topk':
        scores = torch.softmax(logits, dim=-1)
        weights, ids = scores.topk(k, dim=-1)
        if r['renormalize']:
            weights = weights / weights.sum(-1, keepdim=True)
        return weights, ids
    T, E = logits.shape
    G = r['groups']
    scores = torch.sigmoid(logits)
    choice = scores + bias
    group_scores = choice.view(T, G, -1).topk(2, dim=-1).values.sum(-1)
    group_idx = group_scores.topk(r['topk_group'], dim=-1).indices
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    expert_mask = group_mask.unsqueeze(-1).expand(T, G, E // G).reshape(T, E)
    ids = choice.masked_fill(expert_mask == 0, float('-inf')).topk(k, dim=-1).indices
    weights = scores.gather(1, ids)
    if r['renormalize']:
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
    return weights * r['scale'], ids


def expert_segments(ids, s):
    """(expert, its pairs, their tokens) for each expert with pairs, the pairs sorted by expert: the eager loops'
    walk (the bincount is their host sync)."""
    flat = ids.flatten()
    order = flat.argsort(stable=True)
    start = 0
    for e, n in enumerate(torch.bincount(flat, minlength=s['E']).tolist()):
        if n:
            pairs = order[start:start + n]
            start += n
            yield e, pairs, pairs // s['k']


def moe_eager(x, logits, bias, w13, w2, s):
    """Per-expert loop: w13 [E, 2I, H] (gate rows, then up rows), w2 [E, H, I]; w13 / w2 may also be
    callables e -> that expert's [2I, H] / [H, I] matrix (the dequantizing anchors)."""
    weights, ids = route(logits, bias, s)
    I = s['I']
    pair_weights = weights.flatten().to(x.dtype)
    get13 = w13 if callable(w13) else (lambda e: w13[e])
    get2 = w2 if callable(w2) else (lambda e: w2[e])
    out = torch.zeros_like(x)
    for e, pairs, tokens in expert_segments(ids, s):
        h = x.index_select(0, tokens) @ get13(e).t()
        a = F.silu(h[:, :I]) * h[:, I:]
        out.index_add_(0, tokens, (a @ get2(e).t()) * pair_weights[pairs, None])
    return out


def moe_grouped_mm(x, logits, bias, w13_t, w2_t, s):
    """torch._grouped_mm over the (token, slot) pairs sorted by expert; w13_t [E, H, 2I], w2_t [E, I, H]."""
    weights, ids = route(logits, bias, s)
    k, I = s['k'], s['I']
    flat = ids.flatten()
    order = flat.argsort(stable=True)
    tokens = order // k
    offs = torch.bincount(flat, minlength=s['E']).cumsum(0).to(torch.int32)
    h = torch._grouped_mm(x.index_select(0, tokens), w13_t, offs=offs)
    a = F.silu(h[:, :I]) * h[:, I:]
    y = torch._grouped_mm(a, w2_t, offs=offs) * weights.flatten()[order, None].to(x.dtype)
    return torch.zeros_like(x).index_add_(0, tokens, y)


def quant_rows_int8(a):
    """vLLM's int8_w8a8 quantization: symmetric int8 per row (per token, or per output channel of a weight),
    scale = absmax / 127, rounded to nearest."""
    scale = a.abs().amax(dim=-1, keepdim=True).float().clamp_min(1e-10) / 127
    return torch.round(a.float() / scale).clamp_(-128, 127).to(torch.int8), scale


def int_mm_rows(q, w_t):
    """torch._int_mm (cuBLASLt int8 -> int32) of q [n, K] by w_t [K, N] (a row-major [N, K] weight's transpose);
    _int_mm wants more than 16 rows, so fewer are padded with zero rows and cut off after."""
    n = q.shape[0]
    if n > 16:
        return torch._int_mm(q, w_t)
    return torch._int_mm(torch.cat([q, q.new_zeros((17 - n, q.shape[1]))]), w_t)[:n]


def moe_eager_int8(x, logits, bias, w13q, w13s, w2q, w2s, s):
    """int8_w8a8 per expert, vLLM's numerics: x and act quantized per token (dynamic), weights per output channel
    (w13q [E, 2I, H] int8 with w13s [E, 2I, 1], w2q [E, H, I] with w2s [E, H, 1]), int32 accumulation, the two
    scales applied in float32."""
    weights, ids = route(logits, bias, s)
    I = s['I']
    xq, xs = quant_rows_int8(x)
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for e, pairs, tokens in expert_segments(ids, s):
        h = int_mm_rows(xq.index_select(0, tokens), w13q[e].t()).float() * xs[tokens] * w13s[e].t()
        aq, as_ = quant_rows_int8(F.silu(h[:, :I]) * h[:, I:])
        y = int_mm_rows(aq, w2q[e].t()).float() * as_ * w2s[e].t()
        out.index_add_(0, tokens, y * weights.flatten()[pairs, None])
    return out


def reference_loop(x, weights, ids, w13, w2, I):
    """Token by token, slot by slot, in float64: the check for the eager loop."""
    out = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            h = w13[e].double() @ x[t].double()
            a = F.silu(h[:I]) * h[I:]
            out[t] += (w2[e].double() @ a) * float(weights[t, j])
    return out


# ---- Quantized weights: packed with torch ops, dequantized per selected expert ----------------------------

E2M1_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def _pack_nibbles(q):
    """uint8 codes 0..15 [..., K] (K even) -> uint8 [..., K/2], element 2j in the low nibble."""
    return (q[..., 0::2] | (q[..., 1::2] << 4)).contiguous()


def _unpack_nibbles(p):
    return torch.stack((p & 15, p >> 4), dim=-1).flatten(-2)


def _expand_groups(scale, group, K):
    return scale.repeat_interleave(group, dim=-1)[..., :K]


class QuantWeights:
    """One projection stack [E, N, K] in `fmt`; dequant(e) -> bf16 [N, K]. nbytes(e) = one expert's bytes."""

    def __init__(self, fmt, w):
        self.fmt = fmt
        E, N, K = w.shape
        self.N, self.K = N, K
        if fmt == 'int4-g128':
            # Symmetric int4, one float32 scale per 128 inputs of a row (GPTQ/AWQ-like layout, zero 8).
            parts, scales = [], []
            for e in range(E):
                g = F.pad(w[e], (0, (-K) % 128)).view(N, -1, 128)
                sc = g.abs().amax(-1).clamp_min(1e-12) / 7
                q = (torch.round(g / sc[..., None]).clamp_(-8, 7) + 8).to(torch.uint8).flatten(-2)[:, :K]
                parts.append(_pack_nibbles(q))
                scales.append(sc)
            self.data, self.scale = torch.stack(parts), torch.stack(scales)
        elif fmt == 'fp8-block':
            # float8 e4m3 with one float32 scale per 128 x 128 block (DeepSeek-V3's checkpoint layout).
            nb, kb = -(-N // 128), -(-K // 128)
            parts, scales = [], []
            for e in range(E):
                g = F.pad(w[e], (0, kb * 128 - K, 0, nb * 128 - N)).view(nb, 128, kb, 128)
                sc = g.abs().amax(dim=(1, 3)).clamp_min(1e-12) / 448
                q = (g / sc[:, None, :, None]).to(torch.float8_e4m3fn).view(nb * 128, kb * 128)[:N, :K]
                parts.append(q.contiguous())
                scales.append(sc)
            self.data, self.scale = torch.stack(parts), torch.stack(scales)
        elif fmt == 'mxfp4':
            # OCP MX: e2m1 codes, one E8M0 scale (a power of two) per 32 inputs of a row (gpt-oss's layout).
            mids = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], device=w.device)
            parts, scales = [], []
            for e in range(E):
                g = F.pad(w[e], (0, (-K) % 32)).view(N, -1, 32)
                amax = g.abs().amax(-1).clamp_min(2.0 ** -126)
                ex = torch.floor(torch.log2(amax)) - 2  # 6 = 1.5 * 2^2 is e2m1's largest value
                v = g / torch.exp2(ex)[..., None]
                code = torch.bucketize(v.abs(), mids).to(torch.uint8) | ((v < 0).to(torch.uint8) << 3)
                parts.append(_pack_nibbles(code.flatten(-2)[:, :K]))
                scales.append((ex + 127).clamp(0, 254).to(torch.uint8))
            self.data, self.scale = torch.stack(parts), torch.stack(scales)
            self.lut = torch.tensor(E2M1_VALUES + [-v for v in E2M1_VALUES], dtype=torch.bfloat16, device=w.device)
        else:
            raise ValueError(f'unknown format {fmt!r} (int4-g128, fp8-block, mxfp4)')

    def dequant(self, e):
        N, K = self.N, self.K
        if self.fmt == 'int4-g128':
            q = _unpack_nibbles(self.data[e]).to(torch.bfloat16).sub_(8)
            return q * _expand_groups(self.scale[e], 128, K).to(torch.bfloat16)
        if self.fmt == 'fp8-block':
            sc = self.scale[e].repeat_interleave(128, 0)[:N].repeat_interleave(128, 1)[:, :K]
            return self.data[e].to(torch.bfloat16) * sc.to(torch.bfloat16)
        q = self.lut[_unpack_nibbles(self.data[e]).long()]
        sc = torch.exp2(self.scale[e].float() - 127)
        return q * _expand_groups(sc, 32, K).to(torch.bfloat16)

    def nbytes(self):
        return (self.data[0].numel() * self.data.element_size() + self.scale[0].numel() * self.scale.element_size())


# ---- Timing -----------------------------------------------------------------------------------------------


class Timer:
    def __init__(self, device, warmup, reps, max_row_s, profile_reps):
        self.device, self.warmup, self.reps, self.max_row_s = device, warmup, reps, max_row_s
        self.profile_reps = profile_reps
        self.cuda = device.type == 'cuda'

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def _repeat(self, once):
        out, started = [], time.perf_counter()
        while len(out) < 3 or (len(out) < self.reps and time.perf_counter() - started < self.max_row_s / 2):
            out.append(once())
        return out

    def measure(self, f):
        """{wall_us, cuda_event_us, gpu_busy_us, reps}: medians (gpu_busy_us: mean over the profiled calls)."""
        for _ in range(self.warmup):
            f()
        self.sync()

        def wall_once():
            t0 = time.perf_counter()
            f()
            self.sync()
            return (time.perf_counter() - t0) * 1e6

        wall = self._repeat(wall_once)
        result = {'wall_us': statistics.median(wall), 'cuda_event_us': None, 'gpu_busy_us': None, 'reps': len(wall)}
        if not self.cuda:
            return result

        def event_once():
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            f()
            end.record()
            end.synchronize()
            return begin.elapsed_time(end) * 1e3

        result['cuda_event_us'] = statistics.median(self._repeat(event_once))
        if self.profile_reps > 0:
            try:
                result['gpu_busy_us'] = self.gpu_busy(f)
            except Exception as e:  # the profiler (CUPTI) may be missing; the row keeps its other times
                result['gpu_busy_error'] = f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
        return result

    def gpu_busy(self, f):
        """Sum of the device-side activity (kernels, memcpy, memset) of profile_reps calls / profile_reps, µs."""
        from torch.profiler import ProfilerActivity, profile
        from torch.autograd import DeviceType
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(self.profile_reps):
                f()
            self.sync()
        total = 0.0
        seen = 0
        for ev in prof.events():
            # Device activity only (kernels, memcpy, memset), not the GPU-timeline copies of record_function ranges.
            if ev.device_type == DeviceType.CUDA and not getattr(ev, 'is_user_annotation', False):
                total += ev.time_range.elapsed_us()
                seen += 1
        if seen == 0:
            raise RuntimeError('the profiler recorded no CUDA activity')
        return total / self.profile_reps


def round3(x):
    return None if x is None else float(f'{x:.3g}')


def parse_formats(text):
    """'int4-g128:mixtral,qwen3;fp8-block:dsv3tp8' -> [(format, [shapes])]."""
    out = []
    for part in filter(None, (p.strip() for p in (text or '').split(';'))):
        fmt, _, names = part.partition(':')
        out.append((fmt.strip(), [n.strip() for n in names.split(',') if n.strip()]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--shapes', default=None, help='tiny | real | routing | comma list (default: real on cuda, tiny on cpu)')
    ap.add_argument('--tokens', default=None, help='comma list of M (default 1,16,256,4096 real; 1,16,64 tiny)')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--reps', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--max-row-s', type=float, default=2.0, help='per timing loop pair (wall, then CUDA events)')
    ap.add_argument('--profile-reps', type=int, default=3, help='calls under torch.profiler for gpu_busy_us (0: off)')
    ap.add_argument('--copy-mib', type=int, default=1024)
    ap.add_argument('--f32-peak-tflops', type=float, default=67.0)
    ap.add_argument('--impls', default='torch-eager-f32,torch-eager-bf16,torch-grouped-mm-bf16,torch-dequant,copy')
    ap.add_argument('--formats', default=None,
                    help="quantized anchors, 'FORMAT:shape,shape;...' (formats int4-g128, fp8-block, mxfp4; "
                         "'' for none); default: int4-g128 on the real MoE shapes, fp8-block on dsv3tp8, mxfp4 on "
                         "gptoss20b (tiny runs: one tiny shape each)")
    ap.add_argument('--out', default=None, help='also append the JSON lines to this file')
    args = ap.parse_args()

    device = torch.device(args.device)
    impls = args.impls.split(',')
    shapes_arg = args.shapes or ('real' if device.type == 'cuda' else 'tiny')

    def expand(items):
        names = []
        for item in items:
            for name in SETS.get(item, [item]):
                if name not in SHAPES:
                    sys.exit(f'--shapes: unknown shape {name!r}; known: {", ".join(SHAPES)} and sets {", ".join(SETS)}')
                if name not in names:
                    names.append(name)
        return names

    names = expand(shapes_arg.split(','))
    tiny = any(n.startswith('tiny-') for n in names)
    tokens = [int(t) for t in args.tokens.split(',')] if args.tokens else DEFAULT_TOKENS['tiny' if tiny else 'real']
    formats = parse_formats(args.formats if args.formats is not None else DEFAULT_FORMATS['tiny' if tiny else 'real'])
    if 'torch-dequant' not in impls:
        formats = []
    quant_of = {}  # shape -> [formats]
    for fmt, shape_names in formats:
        for n in expand(shape_names):
            quant_of.setdefault(n, []).append(fmt)
            if n not in names:
                names.append(n)
    # Routing-alone problems last, so that a run cut short by its time limit loses those first.
    names.sort(key=lambda n: SHAPES[n]['kind'] == 'routing')
    out_file = open(args.out, 'w') if args.out else None
    backend = device.type
    # float32 means float32 (no TF32), as in the WebGPU kernels.
    torch.set_float32_matmul_precision('highest')
    torch.backends.cuda.matmul.allow_tf32 = False

    def emit(line):
        text = json.dumps(line)
        print(text, flush=True)
        if out_file:
            out_file.write(text + '\n')
            out_file.flush()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    timer = Timer(device, args.warmup, args.reps, args.max_row_s, args.profile_reps)
    has_grouped_mm = hasattr(torch, '_grouped_mm')
    emit({'impl': 'meta', 'backend': backend, 'date': datetime.datetime.now(datetime.timezone.utc).isoformat(),
          'host': platform.node(), 'torch': torch.__version__,
          'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu',
          'cuda': torch.version.cuda, 'shapes': names, 'tokens': tokens, 'tf32': False,
          'formats': {n: f for n, f in quant_of.items()},
          'grouped_mm': has_grouped_mm, 'f32_peak_tflops_assumed': args.f32_peak_tflops, 'inputs': 'lowbias32-hash',
          'notes': 'wall_us = call until torch.cuda.synchronize() returns (median); cuda_event_us = CUDA events '
                   'around the call (median), = us; gpu_busy_us = sum of the kernels\' (and memcpy/memset) '
                   'times from torch.profiler per call; gbps = selected experts\' weight bytes / us; copy gbps = '
                   '2 x bytes / time' + ('; tiny shapes: a functional run' if tiny else '')})

    copy_gbps = None
    if 'copy' in impls:
        nbytes = args.copy_mib * 2 ** 20
        src = torch.empty(nbytes, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        saved, timer.profile_reps = timer.profile_reps, 0
        t = timer.measure(lambda: dst.copy_(src))
        timer.profile_reps = saved
        us = t['cuda_event_us'] if t['cuda_event_us'] is not None else t['wall_us']
        copy_gbps = 2 * nbytes / (us * 1e3)
        emit({'impl': 'copy', 'backend': backend, 'via': 'torch copy_', 'shape': 'copy', 'M': None, 'dtype': 'bytes',
              'bytes': nbytes, 'us': round3(us), 'gpu_us': round3(t['cuda_event_us']), 'wall_us': round3(t['wall_us']),
              'gbps': round3(copy_gbps), 'reps': t['reps']})
        log(f'[{backend}] copy {args.copy_mib} MiB: {us:.1f} µs, {copy_gbps:.0f} GB/s (read + write)')
        del src, dst

    def uniform(shape, seed, scale):
        return hash_uniform(shape, seed, scale, device)

    def row(impl, s, name, M, dtype, fmt, f, distinct, expert_bytes, checksum, extra=None):
        t = timer.measure(f)
        us = t['cuda_event_us'] if t['cuda_event_us'] is not None else t['wall_us']
        line = {'impl': impl, 'backend': backend, 'shape': name, 'E': s['E'], 'k': s['k'], 'H': s['H'], 'I': s['I'],
                'M': M, 'dtype': dtype, 'format': fmt, 'us': round3(us),
                'us_from': 'cuda-events' if t['cuda_event_us'] is not None else 'wall',
                'wall_us': round3(t['wall_us']), 'cuda_event_us': round3(t['cuda_event_us']),
                'gpu_busy_us': round3(t['gpu_busy_us']), 'gpu_us': round3(t['cuda_event_us']),
                'reps': t['reps'], 'ids_checksum': checksum, 'tflops': None, 'gbps': None}
        if 'gpu_busy_error' in t:
            line['gpu_busy_error'] = t['gpu_busy_error']
        if s['kind'] == 'moe':
            flops = 2 * M * s['k'] * 3 * s['I'] * s['H']
            nbytes = distinct * expert_bytes
            line.update(flops=flops, bytes=nbytes, distinct_experts=distinct, tflops=round3(flops / us / 1e6),
                        gbps=round3(nbytes / us / 1e3))
            line['frac_copy_bw'] = round3(line['gbps'] / copy_gbps) if copy_gbps else None
            line['frac_f32_peak'] = round3(line['tflops'] / args.f32_peak_tflops) if dtype == 'float32' else None
        line.update(extra or {})
        emit(line)
        log(f'[{backend}] {name} M={M} {impl}: wall {line["wall_us"]} µs, events {line["cuda_event_us"]} µs, '
            f'busy {line["gpu_busy_us"]} µs' +
            (f', {line["tflops"]} TFLOP/s, {line["gbps"]} GB/s' if s['kind'] == 'moe' else ''))

    def error(impl, s, name, M, msg, fmt=None):
        emit({'impl': impl, 'backend': backend, 'shape': name, 'E': s['E'], 'k': s['k'], 'H': s['H'], 'I': s['I'],
              'M': M, 'format': fmt, 'error': msg})
        log(f'[{backend}] {name} M={M} {impl}: ERROR {msg}')

    for name in names:
        s = SHAPES[name]
        E, k, H, I = s['E'], s['k'], s['H'], s['I']
        bias = uniform((E,), 4000, 0.1) if s['routing']['kind'] == 'grouped' else None
        if s['kind'] == 'routing':
            for M in tokens:
                logits = uniform((M, E), 3000 + M, 4.0)
                checksum = ids_checksum(route(logits, bias, s)[1])
                if 'torch-eager-f32' in impls:
                    row('torch-eager-f32', s, name, M, 'float32', 'float32', lambda: route(logits, bias, s), None, 0,
                        checksum)
            continue

        w13 = uniform((E, 2 * I, H), 1000, (3 / H) ** 0.5)
        w2 = uniform((E, H, I), 2000, (3 / I) ** 0.5)
        inputs = {}
        for M in tokens:
            x = uniform((M, H), 5000 + M, 1.0)
            logits = uniform((M, E), 3000 + M, 4.0)
            ids = route(logits, bias, s)[1]
            distinct = int(torch.unique(ids).numel())
            reference = moe_eager(x, logits, bias, w13, w2, s)
            inputs[M] = (x, logits, distinct, reference, ids_checksum(ids))
            if M <= 16:
                # The eager loop against a float64 token-by-token loop (small M only: it is slow).
                w, ids = route(logits, bias, s)
                exact = reference_loop(x, w, ids, w13, w2, I)
                err = float((reference.double() - exact).abs().max())
                tol = 1e-5 + 1e-3 * float(exact.abs().max())
                emit({'impl': 'torch-eager-f32', 'backend': backend, 'check': 'parity-vs-float64-loop', 'shape': name,
                      'M': M, 'ok': err <= tol, 'max_abs_err': err, 'tol': tol})
            if 'torch-eager-f32' in impls:
                row('torch-eager-f32', s, name, M, 'float32', 'float32',
                    lambda: moe_eager(x, logits, bias, w13, w2, s), distinct, 3 * I * H * 4, inputs[M][4])
        # Quantized anchors: packed from the float32 weights, which are freed after.
        quants = []
        for fmt in quant_of.get(name, []):
            try:
                quants.append((fmt, QuantWeights(fmt, w13), QuantWeights(fmt, w2)))
            except (RuntimeError, ValueError, TypeError) as e:
                for M in tokens:
                    error(f'torch-dequant-{fmt}', s, name, M, str(e).split('\n')[0], fmt)
        # int8 w8a8 per output channel, packed from the float32 weights before they are freed.
        q8 = (quant_rows_int8(w13), quant_rows_int8(w2)) if 'torch-eager-int8' in impls else None
        # bfloat16: the same weights rounded, the float32 ones freed first.
        w13b, w2b = w13.to(torch.bfloat16), w2.to(torch.bfloat16)
        del w13, w2
        for M in tokens:
            x, logits, distinct, reference, checksum = inputs[M]
            xb = x.to(torch.bfloat16)
            scale = float(reference.abs().max()) or 1.0

            def rel_diff(out):
                return round3(float((out.float() - reference).abs().max()) / scale)

            if 'torch-eager-bf16' in impls:
                out = moe_eager(xb, logits, bias, w13b, w2b, s)
                row('torch-eager-bf16', s, name, M, 'bfloat16', 'bf16', lambda: moe_eager(xb, logits, bias, w13b, w2b, s),
                    distinct, 3 * I * H * 2, checksum, {'max_rel_diff_vs_f32': rel_diff(out)})
            if q8 is not None:
                (w13q, w13s), (w2q, w2s) = q8
                f = (lambda: moe_eager_int8(x, logits, bias, w13q, w13s, w2q, w2s, s))
                try:
                    out = f()
                except (RuntimeError, NotImplementedError) as e:
                    error('torch-eager-int8', s, name, M, str(e).split('\n')[0], 'int8-w8a8')
                else:
                    row('torch-eager-int8', s, name, M, 'int8', 'int8-w8a8', f, distinct, 3 * I * H, checksum,
                        {'max_rel_diff_vs_f32': rel_diff(out)})
            for fmt, q13, q2 in quants:
                impl = f'torch-dequant-{fmt}'
                f = (lambda q13=q13, q2=q2: moe_eager(xb, logits, bias, q13.dequant, q2.dequant, s))
                try:
                    out = f()
                except (RuntimeError, NotImplementedError) as e:
                    error(impl, s, name, M, str(e).split('\n')[0], fmt)
                    continue
                row(impl, s, name, M, 'bfloat16', fmt, f, distinct, q13.nbytes() + q2.nbytes(), checksum,
                    {'max_rel_diff_vs_f32': rel_diff(out)})
            if 'torch-grouped-mm-bf16' in impls:
                if not has_grouped_mm:
                    error('torch-grouped-mm-bf16', s, name, M, f'torch {torch.__version__} has no torch._grouped_mm', 'bf16')
                    continue
                w13t, w2t = w13b.transpose(1, 2), w2b.transpose(1, 2)
                try:
                    out = moe_grouped_mm(xb, logits, bias, w13t, w2t, s)
                except (RuntimeError, NotImplementedError) as e:
                    error('torch-grouped-mm-bf16', s, name, M, str(e).split('\n')[0], 'bf16')
                    continue
                row('torch-grouped-mm-bf16', s, name, M, 'bfloat16', 'bf16',
                    lambda: moe_grouped_mm(xb, logits, bias, w13t, w2t, s), distinct, 3 * I * H * 2, checksum,
                    {'max_rel_diff_vs_f32': rel_diff(out)})
        del w13b, w2b, inputs, quants, q8
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    if out_file:
        out_file.close()


if __name__ == '__main__':
    main()

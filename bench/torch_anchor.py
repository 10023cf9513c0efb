#!/usr/bin/env python3
"""PyTorch anchors for the MoE benchmark (issue 6), on the same shapes and token counts as bench/run.ts.

  impl torch-eager-f32 / torch-eager-bf16: what a PyTorch user writes without fused kernels (HF's and
      vLLM's torch reference): route, count tokens per expert (one host sync), then per expert
      index_select the tokens, two matmuls with silu(gate) * up, scale by the routing weight, index_add.
  impl torch-grouped-mm-bf16: the same with torch._grouped_mm over the tokens sorted by expert (no host
      sync); only where torch has it (SM90+ on CUDA).
  impl copy: a device-to-device copy of a 1 GiB tensor: the achievable bandwidth (2 x bytes / time).

Times are CUDA events around one call, median of repeats after warm-up (`us`), and the host wall clock
of the call until synchronize (`wall_us`). Prints JSON lines like bench/run.ts (fields impl, backend,
shape, E, k, H, I, M, dtype, us, tflops, gbps, ...). Needs only python3 and torch.

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


def moe_eager(x, logits, bias, w13, w2, s):
    """Per-expert loop: w13 [E, 2I, H] (gate rows, then up rows), w2 [E, H, I]."""
    weights, ids = route(logits, bias, s)
    k, I = s['k'], s['I']
    flat = ids.flatten()
    order = flat.argsort(stable=True)
    counts = torch.bincount(flat, minlength=s['E']).tolist()  # the host sync of the eager way
    pair_weights = weights.flatten().to(x.dtype)
    out = torch.zeros_like(x)
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        pairs = order[start:start + n]
        start += n
        tokens = pairs // k
        h = x.index_select(0, tokens) @ w13[e].t()
        a = F.silu(h[:, :I]) * h[:, I:]
        out.index_add_(0, tokens, (a @ w2[e].t()) * pair_weights[pairs, None])
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


class Timer:
    def __init__(self, device, warmup, reps, max_row_s):
        self.device, self.warmup, self.reps, self.max_row_s = device, warmup, reps, max_row_s

    def sync(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize()

    def measure(self, f):
        """Median CUDA-event time and median wall time of f(), µs."""
        for _ in range(self.warmup):
            f()
        self.sync()
        gpu, wall = [], []
        started = time.perf_counter()
        while len(wall) < 3 or (len(wall) < self.reps and time.perf_counter() - started < self.max_row_s):
            if self.device.type == 'cuda':
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                t0 = time.perf_counter()
                begin.record()
                f()
                end.record()
                end.synchronize()
                wall.append((time.perf_counter() - t0) * 1e6)
                gpu.append(begin.elapsed_time(end) * 1e3)
            else:
                t0 = time.perf_counter()
                f()
                wall.append((time.perf_counter() - t0) * 1e6)
        return (statistics.median(gpu) if gpu else None), statistics.median(wall), len(wall)


def round3(x):
    return None if x is None else float(f'{x:.3g}')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--shapes', default=None, help='tiny | real | routing | comma list (default: real on cuda, tiny on cpu)')
    ap.add_argument('--tokens', default=None, help='comma list of M (default 1,16,256,4096 real; 1,16,64 tiny)')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--reps', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--max-row-s', type=float, default=2.0)
    ap.add_argument('--copy-mib', type=int, default=1024)
    ap.add_argument('--f32-peak-tflops', type=float, default=67.0)
    ap.add_argument('--impls', default='torch-eager-f32,torch-eager-bf16,torch-grouped-mm-bf16,copy')
    ap.add_argument('--out', default=None, help='also append the JSON lines to this file')
    args = ap.parse_args()

    device = torch.device(args.device)
    impls = args.impls.split(',')
    shapes_arg = args.shapes or ('real' if device.type == 'cuda' else 'tiny')
    names = []
    for item in shapes_arg.split(','):
        for name in SETS.get(item, [item]):
            if name not in SHAPES:
                sys.exit(f'--shapes: unknown shape {name!r}; known: {", ".join(SHAPES)} and sets {", ".join(SETS)}')
            if name not in names:
                names.append(name)
    tiny = any(n.startswith('tiny-') for n in names)
    tokens = [int(t) for t in args.tokens.split(',')] if args.tokens else DEFAULT_TOKENS['tiny' if tiny else 'real']
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

    timer = Timer(device, args.warmup, args.reps, args.max_row_s)
    has_grouped_mm = hasattr(torch, '_grouped_mm')
    emit({'impl': 'meta', 'backend': backend, 'date': datetime.datetime.now(datetime.timezone.utc).isoformat(),
          'host': platform.node(), 'torch': torch.__version__,
          'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu',
          'cuda': torch.version.cuda, 'shapes': names, 'tokens': tokens, 'tf32': False,
          'grouped_mm': has_grouped_mm, 'f32_peak_tflops_assumed': args.f32_peak_tflops,
          'notes': 'us = CUDA-event time of one call (wall on cpu); gbps = selected experts\' weight bytes / us; '
                   'copy gbps = 2 x bytes / time' + ('; tiny shapes: a functional run' if tiny else '')})

    copy_gbps = None
    if 'copy' in impls:
        nbytes = args.copy_mib * 2 ** 20
        src = torch.empty(nbytes, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        gpu_us, wall_us, reps = timer.measure(lambda: dst.copy_(src))
        us = gpu_us if gpu_us is not None else wall_us
        copy_gbps = 2 * nbytes / (us * 1e3)
        emit({'impl': 'copy', 'backend': backend, 'via': 'torch copy_', 'shape': 'copy', 'M': None, 'dtype': 'bytes', 'bytes': nbytes,
              'us': round3(us), 'gpu_us': round3(gpu_us), 'wall_us': round3(wall_us), 'gbps': round3(copy_gbps),
              'reps': reps})
        log(f'[{backend}] copy {args.copy_mib} MiB: {us:.1f} µs, {copy_gbps:.0f} GB/s (read + write)')
        del src, dst

    gen = torch.Generator(device=device)

    def uniform(shape, scale, dtype=torch.float32, seed=0):
        gen.manual_seed(seed)
        return (torch.rand(shape, generator=gen, device=device, dtype=dtype) * 2 - 1) * scale

    def row(impl, s, name, M, dtype, f, distinct, bytes_per_value, extra=None):
        gpu_us, wall_us, reps = timer.measure(f)
        us = gpu_us if gpu_us is not None else wall_us
        line = {'impl': impl, 'backend': backend, 'shape': name, 'E': s['E'], 'k': s['k'], 'H': s['H'], 'I': s['I'],
                'M': M, 'dtype': dtype, 'us': round3(us), 'us_from': 'cuda-events' if gpu_us is not None else 'wall',
                'gpu_us': round3(gpu_us), 'wall_us': round3(wall_us), 'reps': reps, 'tflops': None, 'gbps': None}
        if s['kind'] == 'moe':
            flops = 2 * M * s['k'] * 3 * s['I'] * s['H']
            nbytes = distinct * 3 * s['I'] * s['H'] * bytes_per_value
            line.update(flops=flops, bytes=nbytes, distinct_experts=distinct, tflops=round3(flops / us / 1e6),
                        gbps=round3(nbytes / us / 1e3))
            line['frac_copy_bw'] = round3(line['gbps'] / copy_gbps) if copy_gbps else None
            line['frac_f32_peak'] = round3(line['tflops'] / args.f32_peak_tflops) if dtype == 'float32' else None
        line.update(extra or {})
        emit(line)
        log(f'[{backend}] {name} M={M} {impl}: {line["us"]} µs' +
            (f', {line["tflops"]} TFLOP/s, {line["gbps"]} GB/s' if s['kind'] == 'moe' else ''))

    def error(impl, s, name, M, msg):
        emit({'impl': impl, 'backend': backend, 'shape': name, 'E': s['E'], 'k': s['k'], 'H': s['H'], 'I': s['I'],
              'M': M, 'error': msg})
        log(f'[{backend}] {name} M={M} {impl}: ERROR {msg}')

    for name in names:
        s = SHAPES[name]
        E, k, H, I = s['E'], s['k'], s['H'], s['I']
        bias = uniform((E,), 0.1, seed=4000) if s['routing']['kind'] == 'grouped' else None
        if s['kind'] == 'routing':
            for M in tokens:
                logits = uniform((M, E), 4.0, seed=3000 + M)
                if 'torch-eager-f32' in impls:
                    row('torch-eager-f32', s, name, M, 'float32', lambda: route(logits, bias, s), None, 4)
            continue

        w13 = uniform((E, 2 * I, H), (3 / H) ** 0.5, seed=1000)
        w2 = uniform((E, H, I), (3 / I) ** 0.5, seed=2000)
        inputs = {}
        for M in tokens:
            x = uniform((M, H), 1.0, seed=5000 + M)
            logits = uniform((M, E), 4.0, seed=3000 + M)
            distinct = int(torch.unique(route(logits, bias, s)[1]).numel())
            reference = moe_eager(x, logits, bias, w13, w2, s)
            inputs[M] = (x, logits, distinct, reference)
            if M <= 16:
                # The eager loop against a float64 token-by-token loop (small M only: it is slow).
                w, ids = route(logits, bias, s)
                exact = reference_loop(x, w, ids, w13, w2, I)
                err = float((reference.double() - exact).abs().max())
                tol = 1e-5 + 1e-3 * float(exact.abs().max())
                emit({'impl': 'torch-eager-f32', 'backend': backend, 'check': 'parity-vs-float64-loop', 'shape': name,
                      'M': M, 'ok': err <= tol, 'max_abs_err': err, 'tol': tol})
            if 'torch-eager-f32' in impls:
                row('torch-eager-f32', s, name, M, 'float32', lambda: moe_eager(x, logits, bias, w13, w2, s), distinct, 4)
        # bfloat16: the same weights rounded, the float32 ones freed first.
        w13b, w2b = w13.to(torch.bfloat16), w2.to(torch.bfloat16)
        del w13, w2
        for M in tokens:
            x, logits, distinct, reference = inputs[M]
            xb = x.to(torch.bfloat16)
            scale = float(reference.abs().max()) or 1.0

            def rel_diff(out):
                return round3(float((out.float() - reference).abs().max()) / scale)

            if 'torch-eager-bf16' in impls:
                out = moe_eager(xb, logits, bias, w13b, w2b, s)
                row('torch-eager-bf16', s, name, M, 'bfloat16', lambda: moe_eager(xb, logits, bias, w13b, w2b, s),
                    distinct, 2, {'max_rel_diff_vs_f32': rel_diff(out)})
            if 'torch-grouped-mm-bf16' in impls:
                if not has_grouped_mm:
                    error('torch-grouped-mm-bf16', s, name, M, f'torch {torch.__version__} has no torch._grouped_mm')
                    continue
                w13t, w2t = w13b.transpose(1, 2), w2b.transpose(1, 2)
                try:
                    out = moe_grouped_mm(xb, logits, bias, w13t, w2t, s)
                except (RuntimeError, NotImplementedError) as e:
                    error('torch-grouped-mm-bf16', s, name, M, str(e).split('\n')[0])
                    continue
                row('torch-grouped-mm-bf16', s, name, M, 'bfloat16',
                    lambda: moe_grouped_mm(xb, logits, bias, w13t, w2t, s), distinct, 2,
                    {'max_rel_diff_vs_f32': rel_diff(out)})
        del w13b, w2b, inputs
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    if out_file:
        out_file.close()


if __name__ == '__main__':
    main()

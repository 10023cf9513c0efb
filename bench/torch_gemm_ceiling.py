"""cuBLAS on the plain GEMM that bench/tc_probe.ts times (M x N x K, default 4096 x 14336 x 4096): f16 and bf16
matmul (f32 accumulation) and torch._int_mm (int8 -> int32), CUDA events around each call after a warm second,
so that the probe's kernels read against what the same card does through CUDA. One JSON line per type.

  python3 bench/torch_gemm_ceiling.py [--m 4096 --n 14336 --k 4096] [--out FILE]
"""
import argparse
import json

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--m', type=int, default=4096)
    ap.add_argument('--n', type=int, default=14336)
    ap.add_argument('--k', type=int, default=4096)
    ap.add_argument('--reps', type=int, default=50)
    ap.add_argument('--out', default=None)
    args = ap.parse_args()
    M, N, K = args.m, args.n, args.k
    dev = torch.device('cuda')
    out = open(args.out, 'a') if args.out else None
    g = torch.Generator(device=dev).manual_seed(0)
    for dtype in (torch.float16, torch.bfloat16, torch.int8):
        if dtype == torch.int8:
            a = torch.randint(-127, 128, (M, K), device=dev, dtype=torch.int8, generator=g)
            b = torch.randint(-127, 128, (N, K), device=dev, dtype=torch.int8, generator=g).t()  # column-major
            f = (lambda: torch._int_mm(a, b))
        else:
            a = torch.randn((M, K), device=dev, dtype=dtype, generator=g)
            b = torch.randn((N, K), device=dev, dtype=dtype, generator=g).t()
            f = (lambda: a @ b)
        # Warm the clocks (the H200 runs slow for about a second after idling), then time each call.
        t0 = torch.cuda.Event(enable_timing=True)
        t1 = torch.cuda.Event(enable_timing=True)
        t0.record()
        while True:
            for _ in range(20):
                f()
            t1.record()
            t1.synchronize()
            if t0.elapsed_time(t1) > 1000:
                break
        times = []
        for _ in range(args.reps):
            t0.record()
            f()
            t1.record()
            t1.synchronize()
            times.append(t0.elapsed_time(t1))
        ms = sorted(times)[len(times) // 2]
        line = {'impl': 'torch-gemm', 'via': 'torch._int_mm' if dtype == torch.int8 else 'matmul',
                'dtype': str(dtype).replace('torch.', ''), 'M': M, 'N': N, 'K': K, 'ms': round(ms, 4),
                'min_ms': round(min(times), 4), 'tops': round(2 * M * N * K / ms / 1e9, 1),
                'device': torch.cuda.get_device_name(dev), 'torch': torch.__version__}
        print(json.dumps(line), flush=True)
        if out:
            out.write(json.dumps(line) + '\n')
    if out:
        out.close()


if __name__ == '__main__':
    main()

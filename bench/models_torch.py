#!/usr/bin/env python3
"""The PyTorch anchor for bench/models.ts: transformers' eager model (attn_implementation='eager'),
float32, at the same shapes (bench/model_shapes.json: Qwen3-30B-A3B and Mixtral-8x7B cut to 2 layers),
random weights (transformers' own init), the same prompt length and decode steps.

  prefill: model(prompt, use_cache=True) + argmax of the last row, synchronized (median of reps)
  decode:  one token with past_key_values + argmax, synchronized (median of the steps)
  MoE share: the sparse MoE blocks alone (forward hooks around them, CUDA events), over the step time

Prints JSON lines with the fields of bench/models.ts --json. Needs torch and transformers.

  python3 bench/models_torch.py --device cuda --prompt 128 --decode 32
  python3 bench/models_torch.py --device cpu --models qwen3-30b-a3b-2l --prompt 8 --decode 2   # functional run
"""
import argparse
import datetime
import json
import os
import statistics
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def build(name, shape, device):
    import transformers
    config_cls = {'qwen3_moe': transformers.Qwen3MoeConfig, 'mixtral': transformers.MixtralConfig}[shape['model_type']]
    fields = {k: v for k, v in shape.items() if k not in ('architectures', 'model_type')}
    # The expert count under both names: transformers 4.x reads num_experts, 5.x num_local_experts.
    experts = fields.get('num_experts', fields.get('num_local_experts'))
    fields.update(num_experts=experts, num_local_experts=experts)
    config = config_cls(**fields)
    config._attn_implementation = 'eager'
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation='eager')
    return model.float().eval(), transformers.__version__


def is_moe_block(module):
    # Qwen3MoeSparseMoeBlock / MixtralSparseMoeBlock (class names are stable across 4.x and 5.x).
    return type(module).__name__.endswith('SparseMoeBlock')


class MoETimer:
    """Sums the time spent inside the MoE blocks of one forward, with CUDA events (or the clock on cpu)."""

    def __init__(self, model, device):
        self.device = device
        self.spans = []
        self.active = False
        for m in model.modules():
            if is_moe_block(m):
                m.register_forward_pre_hook(self.pre)
                m.register_forward_hook(self.post)

    def now(self):
        if self.device == 'cuda':
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def pre(self, module, args):
        if self.active:
            self.spans.append([self.now(), None])

    def post(self, module, args, out):
        if self.active:
            self.spans[-1][1] = self.now()

    def total_ms(self):
        if self.device == 'cuda':
            torch.cuda.synchronize()
            return sum(a.elapsed_time(b) for a, b in self.spans)
        return sum((b - a) * 1000 for a, b in self.spans)


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


@torch.no_grad()
def bench(name, shape, args):
    model, tf_version = build(name, shape, args.device)
    timer = MoETimer(model, args.device)
    vocab = shape['vocab_size']
    prompt = torch.tensor([[(i * 7919 + 13) % vocab for i in range(args.prompt)]], device=args.device)

    def prefill():
        out = model(prompt, use_cache=True)
        return out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)

    for _ in range(2):  # warm-up
        prefill()
    sync(args.device)
    prefill_ms, prefill_moe = [], []
    for _ in range(args.reps):
        timer.spans, timer.active = [], True
        start = time.perf_counter()
        cache, token = prefill()
        token.item()
        prefill_ms.append((time.perf_counter() - start) * 1000)
        timer.active = False
        prefill_moe.append(timer.total_ms())

    step_ms, step_moe = [], []
    for _ in range(args.decode):
        timer.spans, timer.active = [], True
        start = time.perf_counter()
        out = model(token, past_key_values=cache, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        token.item()
        step_ms.append((time.perf_counter() - start) * 1000)
        timer.active = False
        step_moe.append(timer.total_ms())

    p, d = statistics.median(prefill_ms), statistics.median(step_ms)
    layers = shape['num_hidden_layers']
    return {
        'model': name, 'backend': f'torch-eager-f32-{args.device}', 'layers': layers,
        'moe_layers': sum(1 for m in model.modules() if is_moe_block(m)), 'prompt': args.prompt,
        'prefill_ms': round(p, 3), 'prefill_tok_s': round(args.prompt * 1000 / p, 3),
        'prefill_moe_share': round(statistics.median(prefill_moe) / p, 3),
        'decode_ms': round(d, 3), 'decode_tok_s': round(1000 / d, 3),
        'decode_moe_share': round(statistics.median(step_moe) / d, 3),
        'backend_detail': f'torch {torch.__version__}, transformers {tf_version}, '
                          f'{torch.cuda.get_device_name() if args.device == "cuda" else "cpu"}',
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }


def main():
    with open(os.path.join(HERE, 'model_shapes.json')) as f:
        shapes = json.load(f)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--models', default=','.join(shapes), help='names in bench/model_shapes.json')
    ap.add_argument('--prompt', type=int, default=128)
    ap.add_argument('--decode', type=int, default=32)
    ap.add_argument('--reps', type=int, default=5)
    args = ap.parse_args()
    for name in args.models.split(','):
        if name not in shapes:
            raise SystemExit(f"--models: '{name}' is not in bench/model_shapes.json ({', '.join(shapes)})")
        print(json.dumps(bench(name, shapes[name], args)), flush=True)


if __name__ == '__main__':
    main()

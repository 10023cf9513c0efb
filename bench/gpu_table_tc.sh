#!/usr/bin/env bash
# Issue 11's tensor-core table in one device call (about 2 minutes): torch's grouped GEMM and eager loop, ours f16
# with the package's own variant choice (timing only), and int8 w8a8 on both plain kernels (checked against the cpu
# reference). Pack first, from the project root:
#   ../shared/gpu/pack.sh bench/gpu_check_tc.ts bench/gpu_check_int8.ts && cp bench/gpu_table_tc.sh .gpu/
# then, with the device tool (carry [".gpu"]; bench/torch_anchor.py comes with the working tree):
#   bash .gpu/gpu_table_tc.sh
# $OUT receives torch.jsonl, ours.log, int8.log and their stdout; the README's table is read from those
# (bench/results/2026-12-05-h200-table-after-trip-count.log is one such call, kept whole).
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
echo "## torch $(date -u +%FT%TZ)"
timeout 100 python3 bench/torch_anchor.py --impls torch-grouped-mm-bf16,torch-eager-bf16 --shapes mixtral,qwen3,dsv3tp8 \
  --tokens 64,256,4096 --profile-reps 2 --reps 10 --max-row-s 1.0 --out "$OUT/torch.jsonl" > "$OUT/torch.stdout" 2>&1
echo "torch rc=$?"
echo "## ours f16 $(date -u +%FT%TZ)"
timeout 150 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --skip-check --variants default --real-formats f32 \
  --shapes qwen3,dsv3tp8,mixtral --tokens 64,256,4096 --out "$OUT/ours.log" > "$OUT/ours.stdout" 2>&1
echo "ours rc=$?"
echo "## int8 $(date -u +%FT%TZ)"
timeout 170 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --skip-tiny --shapes qwen3,dsv3tp8,mixtral --tokens 64,256,4096 \
  --kernels tensor-core-i8-plain-64,tensor-core-i8-plain-32 --out "$OUT/int8.log" > "$OUT/int8.stdout" 2>&1
echo "int8 rc=$?"
echo "## end $(date -u +%FT%TZ); deprecated: $(cat "$OUT"/*.stdout | grep -c deprecated)"

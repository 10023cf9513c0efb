#!/usr/bin/env bash
# Issue 11's table in one device call of about 9 minutes, each log appended straight into $OUT (a call cut short
# keeps what ran): the f16 default (grouped-64x256) against staggered-64x256 at M = 256 and 4096; torch's anchors;
# our f16 default at every M; the int8 defaults (checked against the cpu reference on sampled rows); the f16 default
# checked on the tiny problems (every weight format) and at Mixtral M = 4096. Pack first, from the project root:
#   ../shared/gpu/pack.sh bench/gpu_check_tc.ts bench/gpu_check_int8.ts && cp bench/gpu_ab_tc.sh .gpu/
# then, with the device tool (carry [".gpu"]): bash .gpu/gpu_ab_tc.sh
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
echo "## f16 ab $(date -u +%FT%TZ)"
timeout 110 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --skip-check --variants grouped-64x256,staggered-64x256 --real-formats f32 \
  --shapes mixtral,qwen3,dsv3tp8 --tokens 256,4096 --out "$OUT/ab.log" 2>&1 | grep -v '^{' | tail -5
echo "## torch $(date -u +%FT%TZ)"
timeout 100 python3 bench/torch_anchor.py --impls torch-grouped-mm-bf16,torch-eager-bf16 --shapes mixtral,qwen3,dsv3tp8 \
  --tokens 64,256,4096 --profile-reps 2 --reps 10 --max-row-s 1.0 --out "$OUT/torch.jsonl" 2>&1 | grep '^\[cuda\]'
echo "## ours f16 default $(date -u +%FT%TZ)"
timeout 60 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --skip-check --variants default --real-formats f32 \
  --shapes qwen3,dsv3tp8,mixtral --tokens 64,256,4096 --out "$OUT/ours.log" 2>&1 | grep -v '^{' | tail -5
echo "## int8 defaults $(date -u +%FT%TZ)"
timeout 120 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --skip-tiny --shapes mixtral,qwen3,dsv3tp8 --tokens 64,256,4096 \
  --kernels tensor-core-i8-plain-64,tensor-core-i8-plain-32 --out "$OUT/int8.log" 2>&1 | grep -v '^{' | tail -5
echo "## check grouped-64x256 $(date -u +%FT%TZ)"
# The tiny problems, then M = 4096 (Mixtral's host reference alone ran past 170 s on the H200).
timeout 300 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --variants grouped-64x256 --real-formats f32 \
  --shapes qwen3,dsv3tp8,mixtral --tokens 4096 --out "$OUT/check.log" 2>&1 | grep -v '^{' | tail -8
echo "## end $(date -u +%FT%TZ); deprecated: $(grep -c deprecated "$OUT/all.stdout")"

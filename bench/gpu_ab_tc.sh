#!/usr/bin/env bash
# Issue 11's table in one device call of about 8 minutes, each log appended straight into $OUT (a call cut short
# keeps what ran): our f16 default (the package's own choice by rows an expert) beside the variants it replaced
# (grouped-64x256 above 64 rows an expert, pipelined-32 below), timing only; torch's anchors (bf16 grouped GEMM and
# eager loop, int8 w8a8 eager loop on cuBLASLt's int8 GEMM); cuBLAS on tc_probe's plain GEMM (f16, bf16, int8); the
# int8 kernels the default chooses among (checked against the cpu reference on sampled rows); the f16 default
# checked against the host reference at every
# real shape and M (about 90 s since the reference rounds on float32 bits). Variants to A/B against the default: AB
# (comma-separated). Pack first, from the project root:
#   ../shared/gpu/pack.sh bench/gpu_check_tc.ts bench/gpu_check_int8.ts && cp bench/gpu_ab_tc.sh .gpu/
# then, with the device tool (carry [".gpu"]): bash .gpu/gpu_ab_tc.sh
AB=${AB:-grouped-64x256,pipelined-32}
# The int8 kernels timed (each checked against the cpu reference): the defaults by rows an expert and I.
INT8=${INT8:-tensor-core-i8-staged-128-quant-pass,tensor-core-i8-plain-64,tensor-core-i8-plain-32}
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
echo "## ours f16, default and $AB $(date -u +%FT%TZ)"
timeout 150 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --skip-check --variants default,"$AB" --real-formats f32 \
  --shapes qwen3,dsv3tp8,mixtral --tokens 64,256,4096 --out "$OUT/ours.log" 2>&1 | grep -v '^{' | tail -3
echo "## torch $(date -u +%FT%TZ)"
timeout 120 python3 bench/torch_anchor.py --impls torch-grouped-mm-bf16,torch-eager-bf16,torch-eager-int8 --shapes mixtral,qwen3,dsv3tp8 \
  --tokens 64,256,4096 --profile-reps 2 --reps 10 --max-row-s 1.0 --out "$OUT/torch.jsonl" 2>&1 | grep '^\[cuda\]'
echo "## cuBLAS on the probe's plain GEMM $(date -u +%FT%TZ)"
timeout 40 python3 bench/torch_gemm_ceiling.py --out "$OUT/gemm.jsonl" 2>&1 | tail -3
echo "## int8 kernels: $INT8 $(date -u +%FT%TZ)"
timeout 160 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --skip-tiny --shapes mixtral,qwen3,dsv3tp8 --tokens 64,256,4096 \
  --kernels "$INT8" --out "$OUT/int8.log" 2>&1 | grep -v '^{' | tail -3
echo "## check default $(date -u +%FT%TZ)"
timeout 200 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --variants default --real-formats f32 \
  --shapes qwen3,dsv3tp8,mixtral --tokens 64,256,4096 --out "$OUT/check.log" 2>&1 | grep -v '^{' | tail -3
echo "## end $(date -u +%FT%TZ); deprecated: $(grep -c deprecated "$OUT/all.stdout")"

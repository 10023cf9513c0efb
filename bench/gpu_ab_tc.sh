#!/usr/bin/env bash
# The eighth session's A/Bs, not yet timed (docs/tensor-cores.md, "Made ... an eighth session"), then issue 11's
# table, in one device call of about 8 minutes, each log appended straight into $OUT (a call cut short keeps what
# ran): f16 grouped / trimmed / both against the default staggered-64x256 at M = 256 and 4096; int8 grouped-64
# pipelined-64x256 and staggered-64x256 against plain-64 and plain-32 (checked against the cpu reference); torch's anchors; our f16
# default at every M. Pack first, from the project root:
#   ../shared/gpu/pack.sh bench/gpu_check_tc.ts bench/gpu_check_int8.ts && cp bench/gpu_ab_tc.sh .gpu/
# then, with the device tool (carry [".gpu"]): bash .gpu/gpu_ab_tc.sh
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
echo "## tc ab $(date -u +%FT%TZ)"
timeout 130 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --skip-check --variants grouped-64x256,grouped-trimmed-64x256,trimmed-64x256,staggered-64x256 --real-formats f32 \
  --shapes mixtral,qwen3,dsv3tp8 --tokens 256,4096 --out "$OUT/tc-ab.log" 2>&1 | grep -v '^{' | tail -5
echo "## int8 $(date -u +%FT%TZ)"
timeout 200 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --skip-tiny --shapes mixtral,qwen3,dsv3tp8 --tokens 64,256,4096 \
  --kernels tensor-core-i8-grouped-64,tensor-core-i8-pipelined-64x256,tensor-core-i8-staggered-64x256,tensor-core-i8-plain-64,tensor-core-i8-plain-32 --out "$OUT/int8.log" 2>&1 | grep -v '^{' | tail -5
echo "## torch $(date -u +%FT%TZ)"
timeout 100 python3 bench/torch_anchor.py --impls torch-grouped-mm-bf16,torch-eager-bf16 --shapes mixtral,qwen3,dsv3tp8 \
  --tokens 64,256,4096 --profile-reps 2 --reps 10 --max-row-s 1.0 --out "$OUT/torch.jsonl" 2>&1 | tail -5
echo "## ours f16 default $(date -u +%FT%TZ)"
timeout 60 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --skip-check --variants default --real-formats f32 \
  --shapes qwen3,dsv3tp8,mixtral --tokens 64,256,4096 --out "$OUT/ours.log" 2>&1 | grep -v '^{' | tail -5
echo "## end $(date -u +%FT%TZ); deprecated: $(grep -c deprecated "$OUT/all.stdout")"

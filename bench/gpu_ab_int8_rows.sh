#!/usr/bin/env bash
# (Not kept: no change.) One device call: int8's blocked-rows program with four 4-byte stores a lane (build a, .gpu/gpu_check_int8_a.mjs)
# against one 16-byte store (build b, .gpu/gpu_check_int8.mjs), twice each, alternating, the M = 4096 default
# (tensor-core-i8-plain-64), every output against the cpu reference; then, where the machine is an H200, issue 11's
# table of build b (bench/gpu_ab_tc.sh). Pack build a's gpu_check_int8.ts and rename it, then build b as
# bench/gpu_ab_tc.sh says, and cp this file into .gpu/ too.
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
for round in 1 2; do
  for build in a b; do
    entry=.gpu/gpu_check_int8$([ $build = a ] && echo _a).mjs
    echo "## round $round build $build $(date -u +%FT%TZ)"
    timeout 90 bash .gpu/run.sh $entry --skip-tiny --shapes dsv3tp8,qwen3,mixtral --tokens 4096 \
      --kernels tensor-core-i8-plain-64 --out "$OUT/ab-$build.log" 2>&1 | grep -v '^{' | tail -1
  done
done
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  mkdir -p "$OUT/table" && OUT="$OUT/table" exec bash .gpu/gpu_ab_tc.sh
fi
echo "## end (not an H200: no table) $(date -u +%FT%TZ)"

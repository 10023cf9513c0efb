#!/usr/bin/env bash
# One device call: the align program with 256 invocations (build a, .gpu/gpu_check_tc_a.mjs) against the device's
# up to 1024 (build b, .gpu/gpu_check_tc.mjs), twice each, alternating, the f16 default at M = 256 and 4096, timing
# only; then, where the machine is an H200, issue 11's table of build b (bench/gpu_ab_tc.sh). Pack build a's
# gpu_check_tc.ts and rename it, then build b as bench/gpu_ab_tc.sh says, and cp this file into .gpu/ too.
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
for round in 1 2; do
  for build in a b; do
    entry=.gpu/gpu_check_tc$([ $build = a ] && echo _a).mjs
    echo "## round $round build $build $(date -u +%FT%TZ)"
    timeout 80 bash .gpu/run.sh $entry --skip-tiny --skip-check --variants default --real-formats f32 \
      --shapes qwen3,dsv3tp8,mixtral --tokens 256,4096 --out "$OUT/ab-$build.log" 2>&1 | grep -v '^{' | tail -1
  done
done
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  mkdir -p "$OUT/table" && OUT="$OUT/table" exec bash .gpu/gpu_ab_tc.sh
fi
echo "## end (not an H200: no table) $(date -u +%FT%TZ)"

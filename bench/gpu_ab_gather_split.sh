#!/usr/bin/env bash
# One device call of about 6 minutes: the f16 default with the gather's four 4-byte stores (build A,
# .gpu/gpu_check_tc.mjs) against one 16-byte store per invocation (build B, .gpu/gpu_check_tc_gather4.mjs), twice
# each, alternating, at M = 256 and 4096, timing only; Mixtral M = 4096's w2 in one K part against the package's
# choice (2) on both builds; then build B's default checked against the host reference at every real shape and M.
# Pack build A as bench/gpu_ab_tc.sh says, rename its gpu_check_tc.mjs, pack build B, cp this file into .gpu/.
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
for round in 1 2; do
  for build in a b; do
    entry=.gpu/gpu_check_tc_$build.mjs
    echo "## round $round build $build $(date -u +%FT%TZ)"
    timeout 80 bash .gpu/run.sh $entry --skip-tiny --skip-check --variants default --real-formats f32 \
      --shapes qwen3,dsv3tp8,mixtral --tokens 256,4096 --out "$OUT/ab-$build.log" 2>&1 | grep -v '^{' | tail -1
  done
done
for build in a b; do
  echo "## split-K 1, build $build $(date -u +%FT%TZ)"
  timeout 40 bash .gpu/run.sh .gpu/gpu_check_tc_$build.mjs --skip-tiny --skip-check --variants default --real-formats f32 \
    --shapes mixtral --tokens 4096 --split-k 1 --out "$OUT/split-k-1-$build.log" 2>&1 | grep -v '^{' | tail -1
done
echo "## check build b $(date -u +%FT%TZ)"
timeout 250 bash .gpu/run.sh .gpu/gpu_check_tc_b.mjs --skip-tiny --variants default --real-formats f32 \
  --shapes mixtral,qwen3,dsv3tp8 --tokens 64,256,4096 --out "$OUT/check.log" 2>&1 | grep -v '^{' | tail -3
echo "## end $(date -u +%FT%TZ)"

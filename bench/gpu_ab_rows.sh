#!/usr/bin/env bash
# The f16 variants that differ in how they treat an expert's rows, side by side in one device call (about 5 min,
# timing only, each log appended straight into $OUT): 32-row tiles (pipelined-32, staggered-32x256) against 64-row
# ones (grouped-64x256, fitted-64x256) at M = 64 and 256, fitted against grouped again at M = 4096; then
# staggered-32x256 checked on the tiny problems. Pack as bench/gpu_ab_tc.sh says, and cp this file into .gpu/ too.
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
echo "## f16 rows ab, M = 64 and 256 $(date -u +%FT%TZ)"
timeout 150 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --skip-check --real-formats f32 --shapes mixtral,qwen3,dsv3tp8 \
  --variants staggered-32x256,pipelined-32,grouped-64x256,fitted-64x256 --tokens 64,256 --out "$OUT/ab-small.log" 2>&1 \
  | grep -v '^{' | tail -3
echo "## f16 fitted ab, M = 4096 $(date -u +%FT%TZ)"
timeout 90 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --skip-check --real-formats f32 --shapes mixtral,qwen3,dsv3tp8 \
  --variants grouped-64x256,fitted-64x256 --tokens 4096 --out "$OUT/ab-4096.log" 2>&1 | grep -v '^{' | tail -3
echo "## check staggered-32x256 $(date -u +%FT%TZ)"
timeout 100 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-real --variants staggered-32x256 --out "$OUT/check-32x256.log" 2>&1 \
  | grep -v '^{' | tail -3
echo "## end $(date -u +%FT%TZ)"

#!/usr/bin/env bash
# (Its candidate variant was removed after the run it made, bench/results/2026-12-06-h100-wide-ab.log;
# check out c828f5c to run it again.)
# Eight subgroups side by side (fitted-64x512) against four (fitted-64x256) and grouped-64x256, timing only, at
# M = 256 and 4096; then fitted-64x512 checked on the tiny problems. One device call of about 3 minutes; pack as
# bench/gpu_ab_tc.sh says and cp this file into .gpu/ too.
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
echo "## f16 wide ab $(date -u +%FT%TZ)"
timeout 150 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --skip-check --real-formats f32 --shapes mixtral,qwen3,dsv3tp8 \
  --variants fitted-64x512,fitted-64x256,grouped-64x256 --tokens 256,4096 --out "$OUT/ab-wide.log" 2>&1 | grep -v '^{' | tail -3
echo "## check fitted-64x512 $(date -u +%FT%TZ)"
timeout 100 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-real --variants fitted-64x512 --out "$OUT/check-wide.log" 2>&1 \
  | grep -v '^{' | tail -3
echo "## end $(date -u +%FT%TZ)"

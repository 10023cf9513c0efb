#!/usr/bin/env bash
# (Its candidate variant was removed after the run it made, bench/results/2026-12-06-h100-int8-fitted-ab.log;
# check out f27fd04 to run it again.)
# int8 w8a8: tensor-core-i8-fitted-64 (tails run the loop over their live row blocks) against the default
# tensor-core-i8-plain-64 at M = 256 and 4096, each output checked against the cpu reference on sampled rows. One
# device call of about 2 minutes; pack as bench/gpu_ab_tc.sh says and cp this file into .gpu/ too.
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
echo "## int8 fitted ab $(date -u +%FT%TZ)"
timeout 150 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --skip-tiny --shapes mixtral,qwen3,dsv3tp8 --tokens 256,4096 \
  --kernels tensor-core-i8-fitted-64,tensor-core-i8-plain-64 --out "$OUT/int8-fitted.log" 2>&1 | grep -v '^{' | tail -3
echo "## tiny $(date -u +%FT%TZ)"
timeout 60 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --tiny --kernels tensor-core-i8-fitted-64 \
  --out "$OUT/int8-tiny.log" 2>&1 | grep -v '^{' | tail -3
echo "## end $(date -u +%FT%TZ)"

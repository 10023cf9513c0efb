#!/usr/bin/env bash
# w2's K parts at Mixtral M = 64 and 256 (the package chooses 4 at both; chooseSplitK), the default variant,
# timing only, one device call of about 2 minutes; pack as bench/gpu_ab_tc.sh says and cp this file into .gpu/ too.
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
for sk in auto 8 2 1; do
  echo "## split-K $sk $(date -u +%FT%TZ)"
  timeout 40 bash .gpu/run.sh .gpu/gpu_check_tc.mjs --skip-tiny --skip-check --variants default --real-formats f32 \
    --shapes mixtral --tokens 64,256 $([ $sk = auto ] || echo --split-k $sk) --out "$OUT/split-k-$sk.log" 2>&1 | grep -v '^{' | tail -1
done
echo "## end $(date -u +%FT%TZ)"

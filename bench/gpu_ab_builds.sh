#!/usr/bin/env bash
# Two builds of the product in one device call: ENTRY's bundle of build a (.gpu/ENTRY_a.mjs) against build b's
# (.gpu/ENTRY.mjs), twice each, alternating, with the arguments given (each run's lines appended to
# $OUT/ab-a.log or ab-b.log); then, with TABLE=1 and where the machine is an H200, issue 11's table of build b
# (bench/gpu_ab_tc.sh). Pack build a's entry and rename it, then build b as bench/gpu_ab_tc.sh says, e.g.
#   git stash && ../shared/gpu/pack.sh bench/gpu_check_tc.ts && mv .gpu/gpu_check_tc.mjs .gpu/gpu_check_tc_a.mjs
#   git stash pop && ../shared/gpu/pack.sh bench/gpu_check_tc.ts bench/gpu_check_int8.ts
#   cp bench/gpu_ab_builds.sh bench/gpu_ab_tc.sh .gpu/
# and with the device tool (carry [".gpu"]):
#   TABLE=1 bash .gpu/gpu_ab_builds.sh gpu_check_tc --skip-tiny --skip-check --variants default --real-formats f32 \
#     --shapes qwen3,dsv3tp8,mixtral --tokens 256,4096
entry=$1; shift
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
for round in 1 2; do
  for build in a b; do
    echo "## round $round build $build $(date -u +%FT%TZ)"
    timeout 90 bash .gpu/run.sh .gpu/$entry$([ $build = a ] && echo _a).mjs "$@" --out "$OUT/ab-$build.log" 2>&1 |
      grep -v '^{' | tail -1
  done
done
if [ "${TABLE:-0}" = 1 ] && nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  mkdir -p "$OUT/table" && OUT="$OUT/table" exec bash .gpu/gpu_ab_tc.sh
fi
echo "## end $(date -u +%FT%TZ)"

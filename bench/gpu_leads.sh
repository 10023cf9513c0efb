#!/usr/bin/env bash
# The open leads of issue 11 in one device call of about 5 minutes, for whichever card comes (docs/tensor-cores.md,
# "a twentieth session"): probe round 30 (the x-staged loops with more registers live: is register pressure why
# the probe's fastest loops lose inside the layer's kernels?), the int8 default against plain-64 where I is small
# (INT8_QUANT_PASS_MIN_INTERMEDIATE), and probe round 29 at w2's shape with 8 experts' weights. On an H200 run
# bench/gpu_table_h200.sh first: the table is what its targets need. Pack first, from the project root:
#   ../shared/gpu/pack.sh bench/gpu_check_int8.ts bench/tc_probe.ts && cp bench/gpu_leads.sh .gpu/
# then, with the device tool (carry [".gpu"]): bash .gpu/gpu_leads.sh
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
probe() {
  local name=$1; shift
  echo "## $name $(date -u +%FT%TZ)"
  timeout "$@" 2>&1 | grep --line-buffered -v -e '"probe"' -e 'deprecated builtin' > "$OUT/$name.log"
  grep -c '"kernel"' "$OUT/$name.log"
}
probe round30 100 bash .gpu/run.sh .gpu/tc_probe.mjs --round30
echo "## int8 default against plain-64 $(date -u +%FT%TZ)"
timeout 100 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --skip-tiny --shapes qwen3,dsv3tp8,mixtral --tokens 256,4096 \
  --kernels tensor-core-i8-staged-128-quant-pass,tensor-core-i8-plain-64 --out "$OUT/int8.log" 2>&1 | grep -v '^{' | tail -3
probe round29-w2 100 bash .gpu/run.sh .gpu/tc_probe.mjs --round29 --m 8192 --n 4096 --k 14336 --experts 8
echo "## end $(date -u +%FT%TZ)"

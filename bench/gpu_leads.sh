#!/usr/bin/env bash
# Issue 11's open leads in one device call (docs/tensor-cores.md, "a twenty-first session"). On an H200 it runs the
# table (bench/gpu_ab_tc.sh, about 8 minutes) and stops: the targets name that card. On any other card (about 4
# minutes): probe round 31 (the staged loops with the layer kernel's tile lookup through workgroup variables and
# tfjs's entry point: which of them costs the padded loop what the layer costs it), the int8 default's padded
# builds at 'plain-gemm' (bench/gpu_layer_variants.sh: no early return, local_invocation_index as an argument, the
# staged tiles declared first) beside the padded and the plain default in the same call, and the int8 quant-pass
# against plain-64 at Qwen3's M = 1024 and 2048 (INT8_QUANT_PASS_MIN_INTERMEDIATE). Pack first, from the project root:
#   ../shared/gpu/pack.sh bench/gpu_check_tc.ts bench/gpu_check_int8.ts bench/tc_probe.ts && bash bench/gpu_layer_variants.sh
#   cp bench/gpu_leads.sh bench/gpu_ab_tc.sh .gpu/
# then, with the device tool (carry [".gpu"]): bash .gpu/gpu_leads.sh
exec > >(tee -a "$OUT/all.stdout") 2>&1
card=$(nvidia-smi --query-gpu=name --format=csv,noheader)
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
case "$card" in *H200*) bash .gpu/gpu_ab_tc.sh; exit ;; esac
probe() {
  local name=$1; shift
  echo "## $name $(date -u +%FT%TZ)"
  timeout "$@" 2>&1 | grep --line-buffered -v -e '"probe"' -e 'deprecated builtin' > "$OUT/$name.log"
  grep -c '"kernel"' "$OUT/$name.log"
}
for f in .gpu/*.mjs.xz; do xz -dkf "$f"; done
probe round31 150 bash .gpu/run.sh .gpu/tc_probe.mjs --round31
for v in gpu_check_int8_padnoret gpu_check_int8_padli gpu_check_int8_padfirst gpu_check_int8_pad gpu_check_int8; do
  echo "## int8 default ($v) at plain-gemm M=4096 $(date -u +%FT%TZ)"
  timeout 60 bash .gpu/run.sh .gpu/$v.mjs --skip-tiny --shapes plain-gemm --tokens 4096 \
    --kernels tensor-core-i8-staged-128-quant-pass --out "$OUT/$v.log" 2>&1 | grep -v '^{' | tail -2
done
echo "## int8 quant-pass against plain-64, Qwen3 M=1024,2048 $(date -u +%FT%TZ)"
timeout 60 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --skip-tiny --shapes qwen3 --tokens 1024,2048 \
  --kernels tensor-core-i8-staged-128-quant-pass,tensor-core-i8-plain-64 --out "$OUT/int8-qwen3-mid.log" 2>&1 |
  grep -v '^{' | tail -2
echo "## end $(date -u +%FT%TZ)"

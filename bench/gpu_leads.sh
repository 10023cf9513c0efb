#!/usr/bin/env bash
# Issue 11's open leads in one device call of up to 10 minutes, on any card (docs/tensor-cores.md, "a
# twenty-second session"); on an H200 run the table (bench/gpu_ab_tc.sh, about 8 minutes) in a call of its own.
#   1. Probe round 32: the int8 default's w13 GEMM as the layer compiles it, run verbatim by tc_probe's harness
#      beside the probe's own loop (unpadded and padded), with bench/layer_kernel.ts's edits of its text (launch
#      grid and uniforms as literals; builtins as main's arguments; both; the staged tiles declared first; no
#      early return; no tile lookup), for the product's build and each of bench/gpu_layer_variants.sh's (padded;
#      padded with the staged tiles declared first; without the empty tile's early return; with
#      local_invocation_index an argument of main). Verbatim at the layer's time: the shader loses, and the edit
#      that recovers the probe's time says where; verbatim at the probe's: how the layer runs it.
#   2. The layer's own run at 'plain-gemm' and Mixtral, M = 4096, of the default, the padded build and the three
#      candidate fixes (gpu_layer_variants.sh's first, noret, args: each bit-equal to dot4 in the emulated tests), so
#      that the form round 32 names comes with its end-to-end number from the same call.
#   3. Probe round 31 (the probe's loop with the layer's tile lookup, tfjs's entry point, both).
#   4. The int8 quant-pass against plain-64 at Qwen3's M = 1024 and 2048 (INT8_QUANT_PASS_MIN_INTERMEDIATE).
# Steps 3 and 4 may not fit the call's 600 s; what ran is in $OUT either way.
# Pack first, from the project root:
#   ../shared/gpu/pack.sh bench/gpu_check_tc.ts bench/gpu_check_int8.ts bench/tc_probe.ts && bash bench/gpu_layer_variants.sh
#   cp bench/gpu_leads.sh bench/gpu_ab_tc.sh .gpu/
# then, with the device tool (carry [".gpu"]): bash .gpu/gpu_leads.sh
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
probe() {
  local name=$1; shift
  echo "## $name $(date -u +%FT%TZ)"
  timeout "$@" 2>&1 | grep --line-buffered -v -e '"probe"' -e 'deprecated builtin' > "$OUT/$name.log"
  grep '"kernel"' "$OUT/$name.log" | sed -E 's/.*"kernel":"([^"]*)".*"ms":([0-9.]+).*"worst_err_over_bound":([0-9.]+).*/\2 ms  err \3  \1/'
}
for f in .gpu/*.mjs.xz; do xz -dkf "$f"; done
probe round32 90 bash .gpu/run.sh .gpu/tc_probe.mjs --round32
for v in pad padfirst padnoret padli; do
  probe "round32-$v" 90 bash .gpu/run.sh ".gpu/tc_probe_$v.mjs" --round32
done
for v in gpu_check_int8 gpu_check_int8_args gpu_check_int8_noret gpu_check_int8_first gpu_check_int8_pad; do
  echo "## int8 default ($v) in the layer at plain-gemm and Mixtral M=4096 $(date -u +%FT%TZ)"
  timeout 90 bash .gpu/run.sh .gpu/$v.mjs --skip-tiny --shapes plain-gemm,mixtral --tokens 4096 \
    --kernels tensor-core-i8-staged-128-quant-pass --out "$OUT/$v.log" 2>&1 | grep -v '^{' | tail -2
done
probe round31 150 bash .gpu/run.sh .gpu/tc_probe.mjs --round31
echo "## int8 quant-pass against plain-64, Qwen3 M=1024,2048 $(date -u +%FT%TZ)"
timeout 60 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --skip-tiny --shapes qwen3 --tokens 1024,2048 \
  --kernels tensor-core-i8-staged-128-quant-pass,tensor-core-i8-plain-64 --out "$OUT/int8-qwen3-mid.log" 2>&1 |
  grep -v '^{' | tail -2
echo "## end $(date -u +%FT%TZ)"

#!/usr/bin/env bash
# Issue 11's open leads in one device call of up to 10 minutes, on any card (docs/tensor-cores.md, "a
# twenty-second session" and "a twenty-third session"); on an H200 run the table (bench/gpu_ab_tc.sh, about 8
# minutes) in a call of its own. In the order of what each tells, so that a call cut short keeps the most:
#   1. Probe round 32: the int8 default's w13 GEMM as the layer compiles it, run verbatim by tc_probe's harness
#      beside the probe's own loop (unpadded and padded), with bench/layer_kernel.ts's edits of its text (launch
#      grid and uniforms as literals; builtins as main's arguments; both; the staged tiles declared first; no
#      early return; no tile lookup), for the product's build and the padded one. Verbatim at the layer's time:
#      the shader loses, and the edit that recovers the probe's time says where; verbatim at the probe's: how the
#      layer runs it.
#   2. The int8 default in the layer at 'plain-gemm' and Mixtral, M = 4096, as it is and with the three candidate
#      fixes (gpu_layer_variants.sh's args, noret, first: each bit-equal to dot4 in the emulated tests), so that
#      the form round 32 names comes with its end-to-end number from the same call.
#   3. The f16 'staged-128x128' variant (removed in 6934417: 269 TFLOP/s on the probe, 142 in the layer) restored,
#      padded as it was and with the same three fixes, and unpadded, beside the f16 default (fitted-64x256), timed
#      at Mixtral and 'plain-gemm', M = 4096 (each within the bound in the emulated tests; --skip-check here).
#   4. Round 32 for the padded builds with each fix built in (their forms cover the same edits of the text), the
#      padded int8 build in the layer, probe round 31, and the int8 quant-pass against plain-64 at Qwen3's M = 1024
#      and 2048 (INT8_QUANT_PASS_MIN_INTERMEDIATE). These may not fit the call's 600 s; what ran is in $OUT.
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
int8_layer() {
  echo "## int8 default ($1) in the layer at plain-gemm and Mixtral M=4096 $(date -u +%FT%TZ)"
  timeout 90 bash .gpu/run.sh ".gpu/$1.mjs" --skip-tiny --shapes plain-gemm,mixtral --tokens 4096 \
    --kernels tensor-core-i8-staged-128-quant-pass --out "$OUT/$1.log" 2>&1 | grep -v '^{' | tail -2
}
f16_layer() {
  echo "## f16 $2 ($1) in the layer at Mixtral and plain-gemm M=4096 $(date -u +%FT%TZ)"
  timeout 75 bash .gpu/run.sh ".gpu/$1.mjs" --skip-tiny --skip-check --variants "$2" --real-formats f32 \
    --shapes mixtral,plain-gemm --tokens 4096 --out "$OUT/$1.log" 2>&1 | grep -v '^{' | tail -2
}
for f in .gpu/*.mjs.xz; do xz -dkf "$f"; done
probe round32 90 bash .gpu/run.sh .gpu/tc_probe.mjs --round32
probe round32-pad 90 bash .gpu/run.sh .gpu/tc_probe_pad.mjs --round32
for v in gpu_check_int8 gpu_check_int8_args gpu_check_int8_noret gpu_check_int8_first; do int8_layer $v; done
f16_layer gpu_check_tc fitted-64x256
for v in f16pad f16padargs f16padnoret f16padfirst f16; do f16_layer "gpu_check_tc_$v" staged-128x128; done
for v in padfirst padnoret padli; do
  probe "round32-$v" 90 bash .gpu/run.sh ".gpu/tc_probe_$v.mjs" --round32
done
int8_layer gpu_check_int8_pad
probe round31 150 bash .gpu/run.sh .gpu/tc_probe.mjs --round31
echo "## int8 quant-pass against plain-64, Qwen3 M=1024,2048 $(date -u +%FT%TZ)"
timeout 60 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --skip-tiny --shapes qwen3 --tokens 1024,2048 \
  --kernels tensor-core-i8-staged-128-quant-pass,tensor-core-i8-plain-64 --out "$OUT/int8-qwen3-mid.log" 2>&1 |
  grep -v '^{' | tail -2
echo "## end $(date -u +%FT%TZ)"

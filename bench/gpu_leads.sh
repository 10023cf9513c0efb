#!/usr/bin/env bash
# Issue 11's open leads in one device call of up to 10 minutes, on any card (docs/tensor-cores.md, "a
# twenty-fourth session"); on an H200 run the table (bench/gpu_ab_tc.sh, about 8 minutes) in a call of its own.
# Round 31 put the layer's loss in its tile lookup, and only with x's rows padded; in the order of what each tells,
# so that a call cut short keeps the most:
#   1. Probe round 33: the padded int8 and f16 loops without the lookup, with it, with it taken apart (its
#      variables declared after the staged tiles; no binary search; no early return; run but unused), and kept
#      two ways (run by every invocation in registers; its results through subgroupBroadcastFirst).
#   2. Probe round 32: the layer's w13 GEMM verbatim, edited, in the probe's layout, and replaced by the
#      both-staged one ('tensor-core-i8-both-staged-128-quant-pass'), in the probe's harness.
#   3. In the layer at 'plain-gemm' and Mixtral, M = 4096: the int8 default beside the both-staged kernel (the
#      weights staged too, probe round 27's loop, 460 TOPS on the probe, its tile found in registers), then the
#      default padded, padded with the lookup in registers or broadcast, with the staged tiles declared first,
#      without the early return, with local_invocation_index main's argument (gpu_layer_variants.sh builds).
#   4. The f16 'staged-128x128' variant restored (gpu_layer_variants.sh: padded as removed, and with each of
#      the candidate fixes) beside the f16 default, at Mixtral and 'plain-gemm', M = 4096.
#   5. Probe round 32 for the padded builds (the layer's padded GEMM verbatim and with each edit of its text), and
#      the int8 quant-pass against plain-64 at Qwen3's M = 1024 and 2048 (INT8_QUANT_PASS_MIN_INTERMEDIATE).
# Every step's whole log is appended to $OUT/logs.txt: the device tool brings back only a few files a call.
# Pack first, from the project root (the builds below only: all of them pass the 64 MiB carry limit):
#   rm -rf .gpu && ../shared/gpu/pack.sh bench/gpu_check_tc.ts bench/gpu_check_int8.ts bench/tc_probe.ts
#   bash bench/gpu_layer_variants.sh pad padfirst padnoret padli padreg padbcast f16pad f16padfirst f16padnoret \
#     f16padargs f16padreg f16padbcast
#   cp bench/gpu_leads.sh bench/gpu_ab_tc.sh .gpu/
# then, with the device tool (carry [".gpu"]): bash .gpu/gpu_leads.sh
exec > >(tee -a "$OUT/all.stdout") 2>&1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv
logs=$(mktemp -d)
keep() { { echo "### $1"; cat "$logs/$1.log"; } >> "$OUT/logs.txt"; }
probe() {
  local name=$1; shift
  echo "## $name $(date -u +%FT%TZ)"
  timeout "$@" 2>&1 | grep --line-buffered -v -e '"probe"' -e 'deprecated builtin' > "$logs/$name.log"
  grep '"kernel"' "$logs/$name.log" | sed -E 's/.*"kernel":"([^"]*)".*"ms":([0-9.]+).*"worst_err_over_bound":([0-9.]+).*/\2 ms  err \3  \1/'
  keep "$name"
}
int8_layer() {   # a build, and its kernels (default: the int8 default's)
  local kernels=${2:-tensor-core-i8-staged-128-quant-pass}
  echo "## int8 $kernels ($1) in the layer at plain-gemm and Mixtral M=4096 $(date -u +%FT%TZ)"
  timeout 150 bash .gpu/run.sh ".gpu/$1.mjs" --skip-tiny --shapes plain-gemm,mixtral --tokens 4096 \
    --kernels "$kernels" --out "$logs/$1.log" 2>&1 | grep -v '^{' | tail -2
  keep "$1"
}
f16_layer() {
  echo "## f16 $2 ($1) in the layer at Mixtral and plain-gemm M=4096 $(date -u +%FT%TZ)"
  timeout 75 bash .gpu/run.sh ".gpu/$1.mjs" --skip-tiny --skip-check --variants "$2" --real-formats f32 \
    --shapes mixtral,plain-gemm --tokens 4096 --out "$logs/$1.log" 2>&1 | grep -v '^{' | tail -2
  keep "$1"
}
for f in .gpu/*.mjs.xz; do xz -dkf "$f"; done
probe round33 120 bash .gpu/run.sh .gpu/tc_probe.mjs --round33
probe round32 90 bash .gpu/run.sh .gpu/tc_probe.mjs --round32
int8_layer gpu_check_int8 tensor-core-i8-staged-128-quant-pass,tensor-core-i8-both-staged-128-quant-pass
for v in pad padreg padbcast padfirst padnoret padli; do int8_layer "gpu_check_int8_$v"; done
f16_layer gpu_check_tc fitted-64x256
for v in f16pad f16padreg f16padbcast f16padfirst f16padnoret f16padargs; do
  f16_layer "gpu_check_tc_$v" staged-128x128
done
for v in pad padfirst padnoret padli; do
  probe "round32-$v" 90 bash .gpu/run.sh ".gpu/tc_probe_$v.mjs" --round32
done
echo "## int8 quant-pass against plain-64, Qwen3 M=1024,2048 $(date -u +%FT%TZ)"
timeout 60 bash .gpu/run.sh .gpu/gpu_check_int8.mjs --skip-tiny --shapes qwen3 --tokens 1024,2048 \
  --kernels tensor-core-i8-staged-128-quant-pass,tensor-core-i8-plain-64 --out "$logs/int8-qwen3-mid.log" 2>&1 |
  grep -v '^{' | tail -2
keep int8-qwen3-mid
echo "## end $(date -u +%FT%TZ)"

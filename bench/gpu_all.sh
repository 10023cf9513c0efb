#!/usr/bin/env bash
# The whole benchmark on the GPU machine in one command (docs/benchmarks.md says how to pack it):
#   1. bench/run.ts packed as .gpu/run.mjs: checks, copy bandwidth, ours and naive tfjs on webgpu
#      (Dawn on the NVIDIA Vulkan driver), the real shapes and M = 1, 16, 256, 4096;
#   2. bench/torch_anchor.py: PyTorch eager f32/bf16, torch._grouped_mm bf16, the dequantize-then-matmul
#      anchors (int4-g128 on the real shapes, fp8-block on dsv3tp8, mxfp4 on gptoss20b) and the CUDA copy,
#      on the same inputs (the same hash), with wall, CUDA-event and profiler GPU-busy times;
#   3. (only if packed as .gpu/gpu_quant.mjs) the low-precision rows of ours (bench/gpu_quant.ts), run as
#      `gpu_quant.mjs --out quant.jsonl $QUANT_ARGS`: JSON lines like run.ts's with a `format` field, which the
#      report pairs with the torch anchors of the same precision; its log is appended to webgpu.log;
#   4. bench/report.ts packed as .gpu/report.mjs (if packed): the side-by-side table, .md and .svg.
# $OUT receives 7 files, 8 with quant.jsonl (the device tool brings back at most 8): webgpu.jsonl, torch.jsonl,
# webgpu.log, torch.log, nvidia-smi.txt, $NAME.md and $NAME.svg (NAME defaults to <date>-h200); the tables go
# to stdout.
#
#   bash .gpu/gpu_all.sh [all|node|torch|quant]  (device tool, carry [".gpu"])
#
# Each part has a time limit (NODE_S, TORCH_S, QUANT_S seconds; together about 540 s, under the tool's 600) and
# writes its JSON lines as it goes, so a part cut short keeps what it measured. Extra arguments for
# each part: NODE_ARGS, TORCH_ARGS, QUANT_ARGS (e.g. NODE_ARGS="--shapes mixtral --tokens 1").
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
part=${1:-all}
# About 540 s in all. With the quant entry packed, the three parts share it.
if [ -f "$here/gpu_quant.mjs" ]; then
  NODE_S=${NODE_S:-220}; TORCH_S=${TORCH_S:-205}; QUANT_S=${QUANT_S:-110}
else
  NODE_S=${NODE_S:-300}; TORCH_S=${TORCH_S:-225}; QUANT_S=0
fi
name=${NAME:-$(date -u +%F)-h200}

nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true

if [ "$part" = all ] || [ "$part" = node ]; then
  echo "== webgpu: ours, naive tfjs, copy (limit ${NODE_S}s)"
  # shellcheck disable=SC2086
  timeout -k 10 "$NODE_S" bash "$here/run.sh" "$here/run.mjs" --backend webgpu --shapes real \
    --tokens 1,16,256,4096 --max-seconds $((NODE_S - 25)) --json --out "$out/webgpu.jsonl" ${NODE_ARGS:-} \
    > /dev/null 2> "$out/webgpu.log"
  echo "exit $?"; grep -v '^ -\|^$' "$out/webgpu.log" | tail -n 8
fi

if [ "$part" = all ] || [ "$part" = torch ]; then
  echo "== torch: eager f32/bf16, grouped_mm bf16, dequant int4/fp8/mxfp4, copy (limit ${TORCH_S}s)"
  # shellcheck disable=SC2086
  timeout -k 10 "$TORCH_S" python3 "$here/torch_anchor.py" --shapes real --tokens 1,16,256,4096 --reps 10 \
    --max-row-s 1.5 --out "$out/torch.jsonl" ${TORCH_ARGS:-} > /dev/null 2> "$out/torch.log"
  echo "exit $?"; tail -n 8 "$out/torch.log"
fi

if [ -f "$here/gpu_quant.mjs" ] && { [ "$part" = all ] || [ "$part" = quant ]; }; then
  echo "== webgpu: ours at low precision (limit ${QUANT_S}s)"
  # shellcheck disable=SC2086
  timeout -k 10 "$QUANT_S" bash "$here/run.sh" "$here/gpu_quant.mjs" --out "$out/quant.jsonl" ${QUANT_ARGS:-} \
    > /dev/null 2>> "$out/webgpu.log"
  echo "exit $?"; tail -n 4 "$out/webgpu.log"
fi

results=()
for f in "$out/webgpu.jsonl" "$out/quant.jsonl" "$out/torch.jsonl"; do [ -s "$f" ] && results+=("$f"); done
if [ -f "$here/report.mjs" ] && [ ${#results[@]} -gt 0 ]; then
  echo "== report $name (from ${results[*]})"
  bash "$here/run.sh" "$here/report.mjs" "${results[@]}" --name "$name" --out-dir "$out"
fi

#!/usr/bin/env bash
# Diagnostic builds of the int8 default's GEMM for the device (docs/tensor-cores.md, "a twenty-first session" and
# "a twenty-second session"): the layer's kernel loses to tc_probe's loop at the probe's own GEMM (bench/shapes.ts
# 'plain-gemm'), 9% as it is and 61% with x's workgroup rows padded to 48 bytes, where the probe's padded loop is
# the faster one. Each build is gpu_check_int8 over a patched copy of src/ (never the product itself), bundled as
# pack.sh bundles and xz'd:
#   pad       x's workgroup rows padded to 48 bytes (3 vec4s a 32-byte row): the probe's winner, the layer's loser
#   padfirst  pad, with the staged tiles declared before the tile lookup's workgroup variables
#   padnoret  pad, without the empty tile's early return (its loop runs, its stores are skipped)
#   padli     pad, with local_invocation_index passed to main() instead of read from tfjs's private variable
#   first, noret  the product's GEMM (unpadded) with padfirst's and padnoret's change alone
#   args      the product's GEMMs reading local_invocation_index, workgroup_id and num_workgroups from main()'s
#             parameters (device.ts passes them), none from tfjs's private copies
#   padreg    pad, with the tile found by every invocation in registers (the product's gemmTileInRegistersSnippet,
#             as 'tensor-core-i8-both-staged-128-quant-pass' finds it): no workgroup variables, no barrier
#   padbcast  pad, with the looked-up row start, expert and first column through subgroupBroadcastFirst
#             (probe round 33's 'registers' and 'broadcast', in the layer)
# pad, padfirst, padnoret and padli also bundle tc_probe (its --round32 runs the build's GEMM verbatim in the probe's
# harness, whose text edits expect the lookup through workgroup memory); first,
# noret and args are the candidate fixes, timed in the layer at Mixtral as well.
# The f16 builds are gpu_check_tc over a copy with the f16 'staged-128x128' variant restored (the src/ half of
# `git revert 6934417`: x staged with rows padded to 48 bytes, the loop that ran at 269 TFLOP/s on the probe and
# 142 in the layer), as it was and with the same candidate fixes:
#   f16pad f16padfirst f16padnoret f16padargs f16padreg f16padbcast   (and f16, its rows unpadded)
# Run from the project root after ../shared/gpu/pack.sh (it needs .gpu/); bench/gpu_leads.sh runs them.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
[ -d .gpu ] || { echo "pack first: ../shared/gpu/pack.sh bench/gpu_check_int8.ts bench/tc_probe.ts" >&2; exit 1; }
work=$(mktemp -d "$root/.gpu-variants.XXXXXX")
trap 'rm -rf "$work"' EXIT
grep -qxF "/.gpu-variants.*/" .git/info/exclude 2>/dev/null || echo "/.gpu-variants.*/" >> .git/info/exclude
# Arguments: the builds to make (default all).
for v in ${*:-pad padfirst padnoret padli padreg padbcast first noret args f16pad f16padfirst f16padnoret f16padargs \
    f16padreg f16padbcast f16}; do
  mkdir -p "$work/$v/test" && cp -r src bench package.json tsconfig.json "$work/$v/" && cp -r test/helpers "$work/$v/test/"
  case $v in f16*) git diff 6934417 6934417^ -- src | (cd "$work/$v" && patch -s -p1) ;; esac
  python3 - "$work/$v" "$v" <<'PY'
import sys
root, variant = sys.argv[1], sys.argv[2]
def patch(path, pairs):
    p = f'{root}/{path}'
    s = open(p).read()
    for a, b in pairs:
        if s.count(a) != 1:
            sys.exit(f'gpu_layer_variants: {variant}: expected one match in {path} of: {a[:80]!r}')
        s = s.replace(a, b)
    open(p, 'w').write(s)
f16 = variant.startswith('f16')
if f16:
    variant = variant[3:]
    staged = 'src/kernels/webgpu/experts_gemm_tc_staged_webgpu.ts'
    decl = ('      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end k stage\n'
            '      var<workgroup> wgN0 : i32;           // first column, workgroup-uniform through it\n')
    tiles = '      var<workgroup> As : array<array<vec4<u32>, ${BV}>, ${2 * RB * SK}>;   // [buffer][row block][k block]: 16 × 16 f16\n'
    grid = "${gemmGridSnippet('w16', BM, stages, stages, w13 ? tile.w13Columns : tile.w2Columns, groupRows)}"
    program = 'export class ExpertsTensorCoreStagedGemmProgram implements WebGPUProgram {\n'
    body = ("  getUserCode(): string {\n    const c = this.c;\n    const w13 = c.stage === 'w13';\n"
            "    const L = w13 ? c.layout.w13 : c.layout.w2;\n"
            "    const {rows: BM, subgroups: WN, kBlocksPerStage: SK, ahead: D, groupRows} = F16_STAGED_TILE;")
    if not variant.startswith('pad'):
        patch('src/kernels/webgpu/tensor_core_plan.ts', [('groupRows: 8, padRows: true};', 'groupRows: 8, padRows: false};')])
else:
    staged = 'src/kernels/webgpu/experts_int8_tc_staged_webgpu.ts'
    decl = ('      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end 64-k step\n'
            '      var<workgroup> wgN0 : i32;           // first column, workgroup-uniform through it\n')
    tiles = '      var<workgroup> As : array<array<vec4<u32>, 32>, ${2 * RB * SK}>;   // [buffer][row block][k block]: 16 rows × 32 i8\n'
    grid = "${gemmGridSnippet('wb', BM, stages, stages, (w13 ? 64 : 128), groupRows)}"
    program = 'export class ExpertsInt8StagedGemmProgram extends Int8StagedGemmBase {\n'
    body = ("  getUserCode(): string {\n    const c = this.c;\n    const w13 = c.stage === 'w13';\n"
            "    const {rows: BM, subgroups: WN, kBlocksPerStage: SK, ahead: D, groupRows} = INT8_STAGED_TILE;")
pad = variant.startswith('pad') and not f16   # the restored f16 variant pads its rows itself (F16_STAGED_TILE.padRows)
if pad:
    patch(staged, [
        (tiles, tiles.replace('u32>, 32>', 'u32>, 48>')),
        ('${q(p)} % ${32 * SK}u / 32u][${q(p)} % 32u] = rA${p};',
         '${q(p)} % ${32 * SK}u / 32u][${q(p)} % 32u / 2u * 3u + ${q(p)} % 2u] = rA${p};'),
        ('${j}u], 0u, 2u);`', '${j}u], 0u, 3u);`'),
        ('t.kBlocksPerStage * 512;', 't.kBlocksPerStage * 768;')])
    tiles = tiles.replace('u32>, 32>', 'u32>, 48>')
if variant.endswith('first'):
    patch(staged, [(decl + tiles, tiles + decl)])
if variant.endswith('noret'):
    patch(staged, [
        (grid, grid[:-1] + ".replace('if (tile.x < 0) { return; }', '')"
         ".replace('let rowStart = tile.x;', 'let rowStart = max(tile.x, 0);')}"),
        ('        ${stores}\n      }\n    `;', '        if (tile.x >= 0) {\n        ${stores}\n        }\n      }\n    `;')])
wgn = "        let wgN = workgroupUniformLoad(&wgN0);   // the workgroup's first column\n"
if variant.endswith('reg'):
    # The product's gemmTileInRegistersSnippet (experts_wgsl.ts), main taking every id (device.ts passMainIds).
    t = open(f'{root}/{staged}').read()
    if 'gemmTileInRegistersSnippet' not in t:
        open(f'{root}/{staged}', 'w').write("import {gemmTileInRegistersSnippet} from './experts_wgsl';\n" + t)
    columns = grid[grid.index('stages, stages, ') + len('stages, stages, '):grid.rindex(', groupRows)}')]
    weights = grid[grid.index("('") + 2:grid.index("',")]
    patch(staged, [(decl, ''), (wgn, ''),
        (grid, f"${{gemmTileInRegistersSnippet('{weights}', BM, {columns}, groupRows)}}"),
        ('fn main(wid : vec3<u32>, sid : u32, lane : u32) {\n        ${gemm',
         'fn main(wid : vec3<u32>, sid : u32, lane : u32, li : u32, nwg : vec3<u32>) {\n        ${gemm')])
if variant.endswith('bcast'):
    patch(staged, [
        (grid, grid[:-1] + ".replace('let rowStart = tile.x;', 'let rowStart = subgroupBroadcastFirst(tile.x);')"
         ".replace('let e = tile.y;', 'let e = subgroupBroadcastFirst(tile.y);')}"),
        (wgn, wgn.replace('workgroupUniformLoad(&wgN0)', 'subgroupBroadcastFirst(workgroupUniformLoad(&wgN0))'))])
# padli reads local_invocation_index from main's parameters, args it, workgroup_id and num_workgroups (device.ts
# passMainIds passes both to a main that declares them).
names = {'padli': [('localIndex', 'li')],
         'args': [('localIndex', 'li'), ('workgroupId', 'wid'), ('numWorkgroups', 'nwg')]}.get(
    'args' if variant.endswith('args') else variant)
if names:
    extra = 'li : u32, nwg : vec3<u32>'
    renames = ''.join(f".replace(/\\b{a}\\b/g, '{b}')" for a, b in names)
    patch(staged, [
        (program,
         program +
         '  getUserCode(): string {\n'
         f"    return this.code(){renames}\n"
         f"      .replace('fn main(wid : vec3<u32>, sid : u32, lane : u32)', 'fn main(wid : vec3<u32>, sid : u32, lane : u32, {extra})');\n"
         '  }\n\n'),
        (body, body.replace('  getUserCode(): string {', '  code(): string {', 1))])
PY
  entries=gpu_check_int8
  case $v in pad|padfirst|padnoret|padli) entries="gpu_check_int8 tc_probe" ;; f16*) entries=gpu_check_tc ;; esac
  for entry in $entries; do
    node_modules/.bin/esbuild "$work/$v/bench/$entry.ts" --bundle --platform=node --format=esm --target=node20 \
      --log-level=warning --outfile=".gpu/${entry}_$v.mjs" --external:webgpu \
      --banner:js="import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);"
    xz -T2 -6 -f ".gpu/${entry}_$v.mjs"
    echo "built .gpu/${entry}_$v.mjs.xz"
  done
done

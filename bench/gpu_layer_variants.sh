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
# The pad builds also bundle tc_probe (its --round32 runs the build's GEMM verbatim in the probe's harness); first,
# noret and args are the candidate fixes, timed in the layer at Mixtral as well.
# Run from the project root after ../shared/gpu/pack.sh (it needs .gpu/); bench/gpu_leads.sh runs them.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
[ -d .gpu ] || { echo "pack first: ../shared/gpu/pack.sh bench/gpu_check_int8.ts bench/tc_probe.ts" >&2; exit 1; }
work=$(mktemp -d "$root/.gpu-variants.XXXXXX")
trap 'rm -rf "$work"' EXIT
grep -qxF "/.gpu-variants.*/" .git/info/exclude 2>/dev/null || echo "/.gpu-variants.*/" >> .git/info/exclude
for v in pad padfirst padnoret padli first noret args; do
  mkdir -p "$work/$v" && cp -r src bench package.json tsconfig.json "$work/$v/"
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
staged = 'src/kernels/webgpu/experts_int8_tc_staged_webgpu.ts'
pad = variant.startswith('pad')
decl = ('      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end 64-k step\n'
        '      var<workgroup> wgN0 : i32;           // first column, workgroup-uniform through it\n')
tiles = '      var<workgroup> As : array<array<vec4<u32>, 32>, ${2 * RB * SK}>;   // [buffer][row block][k block]: 16 rows × 32 i8\n'
if pad:
    patch(staged, [
        (tiles, tiles.replace('32>', '48>')),
        ('${q(p)} % ${32 * SK}u / 32u][${q(p)} % 32u] = rA${p};',
         '${q(p)} % ${32 * SK}u / 32u][${q(p)} % 32u / 2u * 3u + ${q(p)} % 2u] = rA${p};'),
        ('${j}u], 0u, 2u);`', '${j}u], 0u, 3u);`'),
        ('t.kBlocksPerStage * 512;', 't.kBlocksPerStage * 768;')])
    tiles = tiles.replace('32>', '48>')
if variant.endswith('first'):
    patch(staged, [(decl + tiles, tiles + decl)])
if variant.endswith('noret'):
    patch(staged, [
        ("${gemmGridSnippet('wb', BM, stages, stages, (w13 ? 64 : 128), groupRows)}",
         "${gemmGridSnippet('wb', BM, stages, stages, (w13 ? 64 : 128), groupRows).replace('if (tile.x < 0) { return; }', '')"
         ".replace('let rowStart = tile.x;', 'let rowStart = max(tile.x, 0);')}"),
        ('        ${stores}\n      }\n    `;', '        if (tile.x >= 0) {\n        ${stores}\n        }\n      }\n    `;')])
# padli passes local_invocation_index alone; args passes it and num_workgroups (workgroup_id is main's wid already).
params = {'padli': ('li : u32', 'LocalIndex', [('localIndex', 'li')]),
          'args': ('li : u32, nwg : vec3<u32>', 'LocalIndex, NumWorkgroups',
                   [('localIndex', 'li'), ('workgroupId', 'wid'), ('numWorkgroups', 'nwg')])}.get(variant)
if params:
    extra, passed, names = params
    patch('src/kernels/webgpu/device.ts', [
        (".replace(call, 'main(WorkgroupId, SubgroupId, SubgroupInvocationId);');",
         f".replace(call, code.includes(', {extra}) {{') ? 'main(WorkgroupId, SubgroupId, SubgroupInvocationId, "
         f"{passed});' : 'main(WorkgroupId, SubgroupId, SubgroupInvocationId);');")])
    renames = ''.join(f".replace(/\\b{a}\\b/g, '{b}')" for a, b in names)
    patch(staged, [
        ('export class ExpertsInt8StagedGemmProgram extends Int8StagedTileProgram {\n',
         'export class ExpertsInt8StagedGemmProgram extends Int8StagedTileProgram {\n'
         '  getUserCode(): string {\n'
         f"    return this.code(){renames}\n"
         f"      .replace('fn main(wid : vec3<u32>, sid : u32, lane : u32)', 'fn main(wid : vec3<u32>, sid : u32, lane : u32, {extra})');\n"
         '  }\n\n'),
        ('  getUserCode(): string {\n    const c = this.c;\n    const w13 = c.stage === \'w13\';\n'
         '    const {rows: BM, subgroups: WN, kBlocksPerStage: SK, ahead: D, groupRows} = INT8_STAGED_TILE;',
         '  code(): string {\n    const c = this.c;\n    const w13 = c.stage === \'w13\';\n'
         '    const {rows: BM, subgroups: WN, kBlocksPerStage: SK, ahead: D, groupRows} = INT8_STAGED_TILE;')])
PY
  entries=gpu_check_int8
  case $v in pad*) entries="gpu_check_int8 tc_probe" ;; esac
  for entry in $entries; do
    node_modules/.bin/esbuild "$work/$v/bench/$entry.ts" --bundle --platform=node --format=esm --target=node20 \
      --log-level=warning --outfile=".gpu/${entry}_$v.mjs" --external:webgpu \
      --banner:js="import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);"
    xz -T2 -6 -f ".gpu/${entry}_$v.mjs"
    echo "built .gpu/${entry}_$v.mjs.xz"
  done
done

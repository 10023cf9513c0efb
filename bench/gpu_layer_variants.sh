#!/usr/bin/env bash
# Diagnostic builds of the int8 default's GEMM for the device (docs/tensor-cores.md, "a twenty-first session"): the
# layer's kernel loses to tc_probe's loop at the probe's own GEMM (bench/shapes.ts 'plain-gemm'), 9% as it is and
# 61% with x's workgroup rows padded to 48 bytes, where the probe's padded loop is the faster one. Each build is
# gpu_check_int8 over a patched copy of src/ (never the product itself), bundled as pack.sh bundles and xz'd:
#   pad       x's workgroup rows padded to 48 bytes (3 vec4s a 32-byte row): the probe's winner, the layer's loser
#   padfirst  pad, with the staged tiles declared before the tile lookup's workgroup variables
#   padnoret  pad, without the empty tile's early return (its loop runs, its stores are skipped)
#   padli     pad, with local_invocation_index passed to main() instead of read from tfjs's private variable
# Each build also bundles tc_probe (its --round32 runs the build's GEMM verbatim in the probe's harness).
# Run from the project root after ../shared/gpu/pack.sh (it needs .gpu/); bench/gpu_leads.sh runs them.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
[ -d .gpu ] || { echo "pack first: ../shared/gpu/pack.sh bench/gpu_check_int8.ts bench/tc_probe.ts" >&2; exit 1; }
work=$(mktemp -d "$root/.gpu-variants.XXXXXX")
trap 'rm -rf "$work"' EXIT
grep -qxF "/.gpu-variants.*/" .git/info/exclude 2>/dev/null || echo "/.gpu-variants.*/" >> .git/info/exclude
for v in pad padfirst padnoret padli; do
  mkdir -p "$work/$v" && cp -r src bench package.json tsconfig.json "$work/$v/"
  python3 - "$work/$v" "$v" <<'EOF'
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
decl = ('      var<workgroup> wgTile : vec4<i32>;   // row start, expert, first and end 64-k step\n'
        '      var<workgroup> wgN0 : i32;           // first column, workgroup-uniform through it\n')
tiles = '      var<workgroup> As : array<array<vec4<u32>, 48>, ${2 * RB * SK}>;   // [buffer][row block][k block]: 16 rows × 32 i8\n'
patch(staged, [
    (tiles.replace('48', '32'), tiles),
    ('${q(p)} % ${32 * SK}u / 32u][${q(p)} % 32u] = rA${p};',
     '${q(p)} % ${32 * SK}u / 32u][${q(p)} % 32u / 2u * 3u + ${q(p)} % 2u] = rA${p};'),
    ('${j}u], 0u, 2u);`', '${j}u], 0u, 3u);`'),
    ('t.kBlocksPerStage * 512;', 't.kBlocksPerStage * 768;')])
if variant == 'padfirst':
    patch(staged, [(decl + tiles, tiles + decl)])
if variant == 'padnoret':
    patch(staged, [
        ("${gemmGridSnippet('wb', BM, stages, stages, (w13 ? 64 : 128), groupRows)}",
         "${gemmGridSnippet('wb', BM, stages, stages, (w13 ? 64 : 128), groupRows).replace('if (tile.x < 0) { return; }', '')"
         ".replace('let rowStart = tile.x;', 'let rowStart = max(tile.x, 0);')}"),
        ('        ${stores}\n      }\n    `;', '        if (tile.x >= 0) {\n        ${stores}\n        }\n      }\n    `;')])
if variant == 'padli':
    patch('src/kernels/webgpu/device.ts', [
        (".replace(call, 'main(WorkgroupId, SubgroupId, SubgroupInvocationId);');",
         ".replace(call, code.includes('lane : u32, li : u32)') ? 'main(WorkgroupId, SubgroupId, SubgroupInvocationId, "
         "LocalIndex);' : 'main(WorkgroupId, SubgroupId, SubgroupInvocationId);');")])
    patch(staged, [
        ('export class ExpertsInt8StagedGemmProgram extends Int8StagedTileProgram {\n',
         'export class ExpertsInt8StagedGemmProgram extends Int8StagedTileProgram {\n'
         '  getUserCode(): string {\n'
         "    return this.code().replace(/\\blocalIndex\\b/g, 'li')\n"
         "      .replace('fn main(wid : vec3<u32>, sid : u32, lane : u32)', 'fn main(wid : vec3<u32>, sid : u32, lane : u32, li : u32)');\n"
         '  }\n\n'),
        ('  getUserCode(): string {\n    const c = this.c;\n    const w13 = c.stage === \'w13\';\n'
         '    const {rows: BM, subgroups: WN, kBlocksPerStage: SK, ahead: D, groupRows} = INT8_STAGED_TILE;',
         '  code(): string {\n    const c = this.c;\n    const w13 = c.stage === \'w13\';\n'
         '    const {rows: BM, subgroups: WN, kBlocksPerStage: SK, ahead: D, groupRows} = INT8_STAGED_TILE;')])
EOF
  for entry in gpu_check_int8 tc_probe; do
    node_modules/.bin/esbuild "$work/$v/bench/$entry.ts" --bundle --platform=node --format=esm --target=node20 \
      --log-level=warning --outfile=".gpu/${entry}_$v.mjs" --external:webgpu \
      --banner:js="import { createRequire as __cr } from 'module'; const require = __cr(import.meta.url);"
    xz -T2 -6 -f ".gpu/${entry}_$v.mjs"
    echo "built .gpu/${entry}_$v.mjs.xz"
  done
done

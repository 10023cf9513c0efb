/**
 * The WGSL that the subgroup-matrix emulations share (i8_subgroup_matrix_emulation.ts,
 * f16_subgroup_matrix_emulation.ts): operands as lazy references (SmOperand, read by each emulation's own
 * `smAt(m, r, c)`), and each lane's 8 of a 16×16 result's 256 elements, row lane / 2, columns (lane % 2)·8 + j,
 * as on the H200: the multiply-accumulate `smMma` over `k` (C += A · B, in k order) and `smStore_NAME` for each
 * array a result is stored into, whose `element(index)` is the element written and `length` bounds the whole
 * store (skipped unless off + s·15 + 16 ≤ length, Tint's check). The emulation sets `smLane` in main().
 */
export function subgroupMatrixLanesWgsl(scalar: 'i32' | 'f32', k: number,
    stores: Array<{name: string; element: (index: string) => string; length: string}>): string {
  return `
      var<private> smLane : u32;
      struct SmOperand { arr : u32, off : u32, stride : u32, colMajor : bool, ok : bool }
      struct SmResult { v : array<${scalar}, 8> }
      fn smMma(a : SmOperand, b : SmOperand, acc : SmResult) -> SmResult {
        var out = acc;
        let r = smLane / 2u;
        for (var j = 0u; j < 8u; j++) {
          let n = (smLane % 2u) * 8u + j;
          var s = out.v[j];
          for (var k = 0u; k < ${k}u; k++) { s += smAt(a, r, k) * smAt(b, k, n); }
          out.v[j] = s;
        }
        return out;
      }
      ${stores.map(({name, element, length}) => `fn smStore_${name}(off : u32, m : SmResult, colMajor : bool, stride : u32) {
        let s = max(stride, 16u);
        if (off + s * 15u + 16u > ${length}) { return; }
        let r = smLane / 2u;
        for (var j = 0u; j < 8u; j++) {
          let c = (smLane % 2u) * 8u + j;
          ${element('off + select(r * s + c, c * s + r, colMajor)')} = m.v[j];
        }
      }`).join('\n      ')}`;
}

/**
 * Sets `smLane` at the top of main(): lanes are localIndex % 32 and subgroups localIndex / 32, as on the H200.
 * SwiftShader's own subgroups are 4 wide, so in a program that takes its ids as arguments (`// moe-main-ids`:
 * `fn main(wid : vec3<u32>, sid : u32, lane : u32)`) the subgroup id and lane passed in are replaced.
 */
export function emulatedLanesInMain(code: string, emulation: string): string {
  const withIds = /fn main\(wid : vec3<u32>, sid : u32, lane : u32\) \{/;
  if (withIds.test(code)) {
    return code.replace(withIds, 'fn main(wid : vec3<u32>, sidIn : u32, laneIn : u32) {\n' +
      '        let sid = localIndex / 32u;\n        let lane = localIndex % 32u;\n        smLane = lane;');
  }
  if (/fn main\(\) \{/.test(code)) return code.replace(/fn main\(\) \{/, 'fn main() {\n        smLane = localIndex % 32u;');
  throw new Error(`${emulation}: no main() found`);
}

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
 * `fn main(wid : vec3<u32>, sid : u32, lane : u32)`, maybe with more builtins after them) the subgroup id and lane
 * passed in are replaced.
 */
export function emulatedLanesInMain(code: string, emulation: string): string {
  const withIds = /fn main\(wid : vec3<u32>, sid : u32, lane : u32((?:, [^)]*)?)\) \{/;
  if (withIds.test(code)) {
    return code.replace(withIds, 'fn main(wid : vec3<u32>, sidIn : u32, laneIn : u32$1) {\n' +
      '        let sid = localIndex / 32u;\n        let lane = localIndex % 32u;\n        smLane = lane;');
  }
  if (/fn main\(\) \{/.test(code)) return code.replace(/fn main\(\) \{/, 'fn main() {\n        smLane = localIndex % 32u;');
  throw new Error(`${emulation}: no main() found`);
}

/**
 * Rewrites the kernels' subgroup-matrix loads and stores, in WGSL's current form
 * (`subgroupMatrixLoad<T, row_major|col_major>(p, offset, stride)`, `subgroupMatrixStore<row_major|col_major>(p,
 * offset, value, stride)`, offsets and strides counted in the pointed-to array's elements), into the emulations'
 * own notation: `subgroupMatrixLoad<T>(p, offset, colMajor, stride)` and `subgroupMatrixStore(p, offset, value,
 * colMajor, stride)`, offsets and strides in matrix elements, `perElement(array)` of them in one element of a
 * loaded array (results are stored into arrays of their own scalar). That notation is WGSL's deprecated form,
 * which Tint warns about at every call: a kernel that still uses it is refused here.
 */
export function toMatrixElementOffsets(code: string, perElement: (array: string) => number, emulation: string): string {
  const deprecated = code.match(/subgroupMatrixLoad<subgroup_matrix_\w+<[^<>]*>>\(|subgroupMatrixStore\(/);
  if (deprecated) throw new Error(`${emulation}: a subgroup-matrix load or store in the deprecated form: ${deprecated[0]}`);
  const head = /subgroupMatrix(Load<([^<>]*<[^<>]*>), |Store<)(row_major|col_major)>\(/g;
  let out = code;
  let m: RegExpExecArray | null;
  while ((m = head.exec(out)) != null) {
    // The call's arguments, up to its balanced closing parenthesis, split at top-level commas.
    const args: string[] = [];
    let depth = 0, start = m.index + m[0].length, i = start;
    for (; depth >= 0; i++) {
      const ch = out[i];
      if (ch === '(' || ch === '[') depth++;
      else if (ch === ')' || ch === ']') depth--;
      if ((ch === ',' && depth === 0) || depth < 0) {
        args.push(out.slice(start, i).trim());
        start = i + 1;
      }
    }
    const colMajor = m[3] === 'col_major';
    let call: string;
    if (m[2] != null) {
      const [pointer, offset, stride] = args;
      const array = pointer.match(/^&(\w+)/)?.[1];
      if (args.length !== 3 || array == null) throw new Error(`${emulation}: a load it cannot read: ${out.slice(m.index, i)}`);
      const per = perElement(array);
      const scaled = (e: string) => per === 1 ? e : `(${e}) * ${per}u`;
      call = `subgroupMatrixLoad<${m[2]}>(${pointer}, ${scaled(offset)}, ${colMajor}, ${scaled(stride)})`;
    } else {
      const [pointer, offset, value, stride] = args;
      if (args.length !== 4) throw new Error(`${emulation}: a store it cannot read: ${out.slice(m.index, i)}`);
      call = `subgroupMatrixStore(${pointer}, ${offset}, ${value}, ${colMajor}, ${stride})`;
    }
    out = out.slice(0, m.index) + call + out.slice(i);
    head.lastIndex = m.index + call.length;
  }
  return out;
}

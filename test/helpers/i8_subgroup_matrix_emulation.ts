import {emulatedLanesInMain, subgroupMatrixLanesWgsl, toMatrixElementOffsets} from './subgroup_matrix_lanes';

/**
 * Runs the int8 tensor-core GEMMs' WGSL where no GPU here has subgroup matrices (SwiftShader): the
 * i8 × i8 → i32 16×16×32 types and builtins are replaced by WGSL functions with their semantics, so that the
 * kernels' tiling (workgroup tiles, offsets, strides, padding, which subgroup multiplies what, the staged
 * results and the epilogue) runs and can be compared with the dot4I8Packed GEMM bit for bit.
 *
 * Semantics emulated (Dawn's subgroup_matrix.md; Tint's SPIR-V, test/tint/builtins/gen/var/subgroupMatrixLoad):
 *   subgroup_matrix_left<i8, K, M>   M rows × K columns;  subgroup_matrix_right<i8, N, K>  K rows × N columns;
 *   subgroup_matrix_result<i32, N, M> M rows × N columns;  C += A · B.
 *   load<T, row_major|col_major>(&arr, off, stride), i8 in array<i32> (4 a word, byte b of a word = element
 *   4w + b; off and stride in words, or in vec4s for vec4<u32> tiles): with o = 4·off,
 *   s = max(4·stride, minor extent), element (r, c) at o + r·s + c (row-major) or o + c·s + r (column-major); the
 *   whole load is skipped (zero matrix) unless o + s·(major extent − 1) + minor extent ≤ 4·length (Tint's check).
 *   store of an i32 result into a workgroup array<i32>, or into `result` (tfjs's output binding, array<i32> for an
 *   int32 output: the staged kernel's straight results): element (r, c) at off + r·s + c (row-major) or
 *   off + c·s + r, same check against 1·length.
 *   load(&blocks[b], off, ..) from a binding marked `// moe-storage-i32-blocks` (device.ts declares it
 *   array<array<i32, 128>>, as on the GPU, and the kernel's own reads index it so): o + 512·b in the same i8;
 *   from a workgroup array<array<vec4<u32>, n>>: o + 16·n·b.
 *
 * How: operands are lazy (array, offset, stride, layout, in bounds) and read at the multiply, which equals a
 * read at the load wherever no workgroup write lies between the two (true of these kernels: loads and multiplies
 * sit between the same two barriers, or read read-only storage). Each lane holds 8 of a result's 256 elements (row lane / 2, columns
 * (lane % 2)·8 ..), lanes being localIndex % 32 and subgroups localIndex / 32, as on the H200: SwiftShader's own
 * subgroups are 4 wide, so the subgroup ids passed to main() (`// moe-main-ids`) are replaced.
 *
 * The emulated kernel's workgroup arrays must fit `maxWorkgroupBytes` (SwiftShader allows 32768; the largest
 * kernel, the staged one, declares 16404 bytes).
 */
export function emulateI8SubgroupMatrices(source: string, maxWorkgroupBytes = Infinity): string {
  const {code: tiled, vec4s, blockBytes} = wordTiles(source);
  const code = toMatrixElementOffsets(tiled, (arr) => vec4s.has(arr) ? 16 : 4, 'emulateI8SubgroupMatrices');
  const sizes = new Map([...code.matchAll(/var<workgroup>\s+(\w+)\s*:\s*array<i32,\s*(\d+)>/g)]
    .map((m) => [m[1], Number(m[2])] as [string, number]));
  let out = code.replace(/^\s*enable chromium_experimental_subgroup_matrix;\s*$/m, '');
  const declared = [...code.matchAll(/var<workgroup>\s+\w+\s*:\s*(?:array<(?:i32|f32|u32),\s*(\d+)>|vec4<i32>)/g)]
    .reduce((n, m) => n + (m[1] ? 4 * Number(m[1]) : 16), 0);
  if (declared > maxWorkgroupBytes) {
    throw new Error(`emulateI8SubgroupMatrices: the kernel declares ${declared} bytes of workgroup memory and the ` +
      `device allows ${maxWorkgroupBytes}`);
  }
  // An operand array that is not a workgroup array<i32> is a storage binding (the pipelined kernels read both
  // operands from storage): its length is arrayLength's.
  // Bindings of 512-byte blocks: device.ts's declaration stays (the marker too), words are read through blocks.
  const blocks = new Set([...code.matchAll(/^[ \t]*\/\/ moe-storage-i32-blocks (\w+)[ \t]*$/gm)].map((m) => m[1]));
  const lengthOf = (arr: string) => sizes.has(arr) ? `${sizes.get(arr)}u` :
    blocks.has(arr) ? `128u * arrayLength(&${arr})` : `arrayLength(&${arr})`;
  const at = (arr: string, index: string) => {
    if (blocks.has(arr)) return `${arr}[(${index}) / 128u][(${index}) % 128u]`;
    return `${arr}[${index}]`;
  };
  out = emulatedLanesInMain(out, 'emulateI8SubgroupMatrices');
  const loaded: string[] = [];
  const id = (arr: string) => {
    if (!loaded.includes(arr)) loaded.push(arr);
    return loaded.indexOf(arr);
  };
  out = out
    .replace(/subgroupMatrixLoad<subgroup_matrix_(left<i8, 32, 16>|right<i8, 16, 32>)>\(&(\w+)\[([^\]]+)\], /g,
      (_, type, arr, block) => `subgroupMatrixLoad<subgroup_matrix_${type}>(&${arr}, (${block}) * ${blockBytes.get(arr) ?? 512}u + `)
    .replace(/subgroupMatrixLoad<subgroup_matrix_left<i8, 32, 16>>\(&(\w+), /g,
      (_, arr) => `smLoad(${id(arr)}u, ${lengthOf(arr)}, 16u, 32u, `)
    .replace(/subgroupMatrixLoad<subgroup_matrix_right<i8, 16, 32>>\(&(\w+), /g,
      (_, arr) => `smLoad(${id(arr)}u, ${lengthOf(arr)}, 32u, 16u, `);
  const stored = new Set<string>();
  out = out.replace(/subgroupMatrixStore\(&(\w+), /g, (_, arr) => {
    if (!sizes.has(arr) && arr !== 'result') {
      throw new Error(`emulateI8SubgroupMatrices: store into ${arr}, neither a workgroup array<i32> nor the output`);
    }
    stored.add(arr);
    return `smStore_${arr}(`;
  });
  out = out.replace(/subgroup_matrix_(left|right)<i8, (32, 16|16, 32)>/g, 'SmOperand')
    .replace(/subgroup_matrix_result<i32, 16, 16>/g, 'SmResult')
    .replace(/subgroupMatrixMultiplyAccumulate\(/g, 'smMma(');
  if (/subgroup_matrix|subgroupMatrix/.test(out)) {
    throw new Error(`emulateI8SubgroupMatrices: a subgroup-matrix type or builtin is left: ${
      out.match(/.*(subgroup_matrix|subgroupMatrix).*/)?.[0]}`);
  }
  return `${out}
      fn smLoad(arr : u32, len : u32, rows : u32, cols : u32, off : u32, colMajor : bool, stride : u32) -> SmOperand {
        let minor = select(cols, rows, colMajor);
        let major = select(rows, cols, colMajor);
        let s = max(stride, minor);
        return SmOperand(arr, off, s, colMajor, off + s * (major - 1u) + minor <= 4u * len);
      }
      fn smI8(arr : u32, o : u32) -> i32 {
        var w = 0;
        switch arr {
          ${loaded.map((a, i) => `case ${i}u: { w = ${at(a, 'o / 4u')}; }`).join('\n          ')}
          default: {}
        }
        return extractBits(w, (o % 4u) * 8u, 8u);
      }
      fn smAt(m : SmOperand, r : u32, c : u32) -> i32 {
        if (!m.ok) { return 0; }
        return smI8(m.arr, m.off + select(r * m.stride + c, c * m.stride + r, m.colMajor));
      }
      ${subgroupMatrixLanesWgsl('i32', 32, [...stored].map((arr) =>
        ({name: arr, element: (i: string) => at(arr, i), length: lengthOf(arr)})))}
`;
}

/**
 * Workgroup tiles declared array<vec4<u32>> or array<array<vec4<u32>, n>> (the staged
 * kernel's): each becomes an array<i32> of 4 words a vec4, and each 16-byte store `T[i] = v;` (`T[i][j] = v;`) four
 * word stores. Its loads keep counting vec4s (toMatrixElementOffsets is told which arrays these are).
 */
function wordTiles(source: string): {code: string; vec4s: Set<string>; blockBytes: Map<string, number>} {
  const vec4s = new Set<string>();
  // Arrays of blocks of vec4s (the staged kernel's array<array<vec4<u32>, 32>, N>): vec4 j of block i is word
  // 4·(i·inner + j), and a load through &T[i] starts at byte 16·inner·i (blockBytes).
  const inner = new Map<string, number>();
  let code = source.replace(/var<workgroup>\s+(\w+)\s*:\s*array<(?:array<vec4<u32>,\s*(\d+)>|vec4<u32>),\s*(\d+)>;/g,
    (_, name, blockVec4s, n) => {
      vec4s.add(name);
      if (blockVec4s) inner.set(name, Number(blockVec4s));
      return `var<workgroup> ${name} : array<i32, ${4 * (blockVec4s ? Number(blockVec4s) : 1) * Number(n)}>;`;
    });
  for (const name of vec4s) {
    const store = inner.has(name) ? `\\b${name}\\[([^\\]]+)\\]\\[([^\\]]+)\\] = ([^;]+);` : `\\b${name}\\[([^\\]]+)\\] = ([^;]+);`;
    code = code.replace(new RegExp(store, 'g'), (...m: string[]) => {
      const [i, v] = inner.has(name) ? [`(${m[1]}) * ${inner.get(name)}u + (${m[2]})`, m[3]] : [m[1], m[2]];
      return `{ let smV = bitcast<vec4<i32>>(${v}); let smI = 4u * (${i}); ${name}[smI] = smV.x; ${name}[smI + 1u] = smV.y; ` +
        `${name}[smI + 2u] = smV.z; ${name}[smI + 3u] = smV.w; }`;
    });
  }
  return {code, vec4s, blockBytes: new Map([...inner].map(([name, n]) => [name, 16 * n]))};
}

import {emulatedLanesInMain, subgroupMatrixLanesWgsl, toMatrixElementOffsets} from './subgroup_matrix_lanes';

/**
 * Runs the f16 tensor-core GEMMs' WGSL (experts_gemm_tc_storage_webgpu.ts: the storage and pipelined variants)
 * where no GPU here has subgroup matrices or shader-f16 (SwiftShader): the f16 × f16 → f32 16×16×16 types and
 * builtins are replaced by WGSL functions with their semantics, and the f16 storage bindings stay the i32 words
 * of two halves that tfjs allocates, read through unpack2x16float. So the kernels' tile lookup, offsets, blocked
 * layouts, k loop, epilogues and stores run, and the whole prefill can be checked against the host reference.
 *
 * Semantics emulated (Dawn's subgroup_matrix.md, as test/helpers/i8_subgroup_matrix_emulation.ts):
 *   subgroup_matrix_left<f16, 16, 16>, _right<f16, 16, 16>, _result<f32, 16, 16>;  C += A · B.
 *   load<T, row_major|col_major>(&arr, off, stride) of halves: element (r, c) at off + r·s + c (row-major) or
 *   off + c·s + r, s = max(stride, 16); the whole load is zero unless off + s·15 + 16 ≤ the binding's length in
 *   halves.
 *   load(&blocks[b], off, ..) from an array<array<f16, 256>> (device.ts's block declarations): off + 256·b in
 *   the same halves (a block past the array reads zeros here; robustness clamps its index on a GPU).
 *   store of an f32 result into array<f32> (workgroup or storage): the same addressing and check.
 * The products of two halves are exact in f32; the k sum is in k order, one f32 rounding per step, where the
 * hardware's order is its own: within the reference's f32-accumulation bound either way.
 *
 * Each lane holds 8 of a result's 256 elements (row lane / 2, columns (lane % 2)·8 ..), lane = localIndex % 32
 * (and a program's subgroup id localIndex / 32: emulatedLanesInMain);
 * operands are lazy (read at the multiply), sound here since both operands come from read-only storage.
 */
export function emulateF16SubgroupMatrices(source: string): string {
  const code = toMatrixElementOffsets(source, () => 1, 'emulateF16SubgroupMatrices');
  const f16Bindings = [...code.matchAll(/^[ \t]*\/\/ moe-storage-f16(?:-blocks)? (\w+)[ \t]*$/gm)].map((m) => m[1]);
  let out = code.replace(/^\s*enable (f16|chromium_experimental_subgroup_matrix);\s*$/gm, '')
      .replace(/^[ \t]*\/\/ moe-storage-f16(?:-blocks)? \w+[ \t]*$/gm, '');
  out = emulatedLanesInMain(out, 'emulateF16SubgroupMatrices');
  const loaded: string[] = [];
  const id = (arr: string) => {
    if (!f16Bindings.includes(arr)) throw new Error(`emulateF16SubgroupMatrices: a load from ${arr}, not an f16 binding`);
    if (!loaded.includes(arr)) loaded.push(arr);
    return loaded.indexOf(arr);
  };
  // Block pointers (&arr[block], offset) into arrays of 16 × 16 blocks: the same halves at block · 256 + offset.
  out = out.replace(/subgroupMatrixLoad<subgroup_matrix_(?:left|right)<f16, 16, 16>>\(&(\w+)\[([^\]]+)\], /g,
      (_, arr, block) => `smLoad(${id(arr)}u, 2u * arrayLength(&${arr}), (${block}) * 256u + `);
  out = out.replace(/subgroupMatrixLoad<subgroup_matrix_(?:left|right)<f16, 16, 16>>\(&(\w+), /g,
      (_, arr) => `smLoad(${id(arr)}u, 2u * arrayLength(&${arr}), `);
  const stored = new Set<string>();
  out = out.replace(/subgroupMatrixStore\(&(\w+), /g, (_, arr) => {
    stored.add(arr);
    return `smStore_${arr}(`;
  });
  out = out.replace(/subgroup_matrix_(?:left|right)<f16, 16, 16>/g, 'SmOperand')
      .replace(/subgroup_matrix_result<f32, 16, 16>/g, 'SmResult')
      .replace(/subgroupMatrixMultiplyAccumulate\(/g, 'smMma(');
  const left = out.split('\n').map((line) => line.replace(/\/\/.*$/, ''))
      .find((line) => /subgroup_matrix|subgroupMatrix|\bf16\b/.test(line));
  if (left != null) throw new Error(`emulateF16SubgroupMatrices: an f16 or subgroup-matrix use is left: ${left.trim()}`);
  const workgroupLength = (arr: string) => out.match(new RegExp(`var<workgroup>\\s+${arr}\\s*:\\s*array<f32,\\s*(\\d+)>`))?.[1];
  return `${out}
      fn smLoad(arr : u32, len : u32, off : u32, colMajor : bool, stride : u32) -> SmOperand {
        let s = max(stride, 16u);
        return SmOperand(arr, off, s, colMajor, off + s * 15u + 16u <= len);
      }
      fn smHalf(arr : u32, o : u32) -> f32 {
        var w = 0;
        switch arr {
          ${loaded.map((a, i) => `case ${i}u: { w = ${a}[o / 2u]; }`).join('\n          ')}
          default: {}
        }
        return unpack2x16float(bitcast<u32>(w))[o % 2u];
      }
      fn smAt(m : SmOperand, r : u32, c : u32) -> f32 {
        if (!m.ok) { return 0.0; }
        return smHalf(m.arr, m.off + select(r * m.stride + c, c * m.stride + r, m.colMajor));
      }
      ${subgroupMatrixLanesWgsl('f32', 16, [...stored].map((arr) => {
        const n = workgroupLength(arr);
        return {name: arr, element: (i: string) => `${arr}[${i}]`, length: n != null ? `${n}u` : `arrayLength(&${arr})`};
      }))}
`;
}

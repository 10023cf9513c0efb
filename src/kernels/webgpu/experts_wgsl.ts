/**
 * WGSL pieces shared by the expert programs (align, GEMV, GEMM, combine). Each returns code whose
 * every baked constant is a parameter, so a program's shader key is built from the same values.
 */
import type {Activation} from '../../kernel_names';

/** Threads per workgroup for every expert program (SwiftShader allows at most 256). */
export const EXPERTS_WORKGROUP = 256;

/**
 * `fn expertGlu(gate, up) -> f32`: act(gate) · up, or gpt-oss's clamped SwiGLU for 'swigluoai'; act is
 * silu, or exact gelu 0.5·g·(1 + erf(g/√2)) with the erfc Chebyshev fit
 * of src/math.ts (fractional error < 1.2e-7), since WGSL has no erf.
 */
export function activationSnippet(activation: Activation): string {
  if (activation === 'swigluoai') {
    // gpt-oss (vLLM 'swigluoai'): g = min(gate, 7), u = clamp(up, -7, 7), (u + 1) · g · σ(1.702 g).
    return `
  fn expertGlu(gate : f32, up : f32) -> f32 {
    let g = min(gate, 7.0);
    let u = clamp(up, -7.0, 7.0);
    return (u + 1.0) * g * (1.0 / (1.0 + exp(-1.702 * g)));
  }`;
  }
  return `${actSnippet(activation)}
  fn expertGlu(gate : f32, up : f32) -> f32 { return expertAct(gate) * up; }`;
}

/** The local expert row of gate row i and up row i of w13 (interleaved 2i, 2i + 1 for 'swigluoai'). */
export function gateUpRows(activation: Activation, I: number): {gate: (i: string) => string; upOffset: string} {
  return activation === 'swigluoai' ? {gate: (i) => `2 * (${i})`, upOffset: '1'} : {gate: (i) => `${i}`, upOffset: `${I}`};
}

/**
 * `fn weightRow(e, r) -> i32`: the shard row of a GEMM tile's weight row r (columns from n0): w13's first `half`
 * rows are gate rows and the next `half` their up rows (gateUpRows' layout), w2's are h rows; -1 past N.
 */
export function weightRowSnippet(stage: 'w13' | 'w2', activation: Activation, H: number, I: number, half: number):
    string {
  if (stage === 'w2') {
    return `fn weightRow(e : i32, r : i32) -> i32 {
      let h = n0 + r;
      if (h >= ${H}) { return -1; }
      return e * ${H} + h;
    }`;
  }
  const gu = gateUpRows(activation, I);
  return `fn weightRow(e : i32, r : i32) -> i32 {
      let i = n0 + (r % ${half});
      if (i >= ${I}) { return -1; }
      return e * ${2 * I} + select(0, ${gu.upOffset}, r >= ${half}) + ${gu.gate('i')};
    }`;
}

function actSnippet(activation: Activation): string {
  if (activation === 'silu') {
    return `fn expertAct(g : f32) -> f32 { return g / (1.0 + exp(-g)); }`;
  }
  return `
  fn expertErf(x : f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let erfc = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
        t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
        t * (-0.82215223 + t * 0.17087277)))))))));
    return select(erfc - 1.0, 1.0 - erfc, x >= 0.0);
  }
  fn expertAct(g : f32) -> f32 { return 0.5 * g * (1.0 + expertErf(g * 0.70710678118654752)); }`;
}

/**
 * `fn localExpertOf(id) -> i32`: the local expert a global id maps to, or -1 when the pair contributes
 * nothing (expertMap -1, or an id outside [0, E) or a local id outside [0, E_local), defensively).
 * Reads the binding `expertMap` when `hasExpertMap`.
 */
export function localExpertSnippet(hasExpertMap: boolean, globalNumExperts: number, numLocalExperts: number): string {
  return `
  fn localExpertOf(id : i32) -> i32 {
    if (id < 0 || id >= ${globalNumExperts}) { return -1; }
    let local = ${hasExpertMap ? 'expertMap[id]' : 'id'};
    if (local < 0 || local >= ${numLocalExperts}) { return -1; }
    return local;
  }`;
}

/**
 * A GEMM's (row tile, column tile) from its workgroup's place in the launch order, x fastest, row tiles taken
 * `groupRows` at a time (Triton's GROUP_SIZE_M, as vLLM's fused_moe kernel orders its tiles): the workgroups in
 * flight then share a few row tiles' x and their experts' weight columns in L2, where x-major order sweeps every
 * row tile for each column and reads x again from memory for each. Declares `gridRow` and `gridCol` (u32). From
 * tfjs's private copies of the ids (`wid`, `nwg` left out) they are only for the tile lookup that localIndex 0
 * writes to workgroup memory; from main's arguments (device.ts passMainIds) they are uniform.
 */
export function groupedGridSnippet(groupRows: number, wid = 'workgroupId', nwg = 'numWorkgroups'): string {
  return `let gridLinear = ${wid}.y * ${nwg}.x + ${wid}.x;
        let gridGroup = gridLinear / (${groupRows}u * ${nwg}.y);
        let gridInGroup = gridLinear % (${groupRows}u * ${nwg}.y);
        let gridRows = min(${groupRows}u, ${nwg}.x - gridGroup * ${groupRows}u);
        let gridRow = gridGroup * ${groupRows}u + gridInGroup % gridRows;
        let gridCol = gridInGroup / gridRows;`;
}

/**
 * The blocked GEMMs' start: the workgroup's first column written to `wgN0` (a workgroup i32 the program declares),
 * then gemmTileSnippet, both from the launch grid in x-major order or, with `groupRows` > 0, groupedGridSnippet's.
 */
export function gemmGridSnippet(weights: string, blockRows: number, kTilesPerPart: number, kTiles: number,
    workgroupColumns: number, groupRows: number): string {
  return `${groupRows ? groupedGridSnippet(groupRows) : ''}
        if (localIndex == 0u) { wgN0 = i32(${groupRows ? 'gridCol' : 'workgroupId.y'}) * ${workgroupColumns}; }
        ${gemmTileSnippet(weights, blockRows, kTilesPerPart, kTiles, groupRows ? 'gridRow' : undefined)}`;
}

/**
 * The staged GEMMs' tile without workgroup memory, for a program whose main takes every id as an argument
 * (`fn main(wid, sid, lane, li, nwg)`, device.ts passMainIds): each invocation finds the workgroup's first column
 * `wgN`, its `rowStart` and the expert `e` in the shard from the launch grid (groupedGridSnippet's order with
 * `groupRows` > 0), the uniforms and align (read-only storage): all uniform to Tint, so an empty tile returns before
 * the barriers with no workgroup variable and barrier to share the tile. On an H100 the padded staged loops lost
 * 52% (int8) and 67% (f16) with the tile through workgroup memory (bench/tc_probe.ts round 31).
 */
export function gemmTileInRegistersSnippet(weights: string, blockRows: number, workgroupColumns: number,
    groupRows: number): string {
  return `${groupRows ? groupedGridSnippet(groupRows, 'wid', 'nwg') : ''}
        let wgN = i32(${groupRows ? 'gridCol' : 'wid.y'}) * ${workgroupColumns};
        let first = uniforms.firstExpert;
        let rowStart = align[first] + i32(${groupRows ? 'gridRow' : 'wid.x'}) * ${blockRows};
        if (rowStart >= align[first + uniforms.${weights}Shape.x]) { return; }
        ${segmentOwnerSnippet(`uniforms.${weights}Shape.x`, 'rowStart')}
        let e = lo - first;`;
}

/**
 * WGSL leaving `lo` = the expert (an index into align's offsets, from `first`) among the shard's `count` segments
 * whose segment starts at or before `row`: the last one that does (binary search). `first` must be defined.
 */
export function segmentOwnerSnippet(count: string, row: string): string {
  return `var lo = first;
            var hi = first + ${count} - 1;
            while (lo < hi) {
              let mid = (lo + hi + 1) / 2;
              if (align[mid] <= ${row}) { lo = mid; } else { hi = mid - 1; }
            }`;
}

/**
 * WGSL for the grouped GEMMs' tile lookup: invocation 0 finds the workgroup's `blockRows` expert-sorted rows
 * (from `align`'s offsets), the expert that owns them (binary search over the segments of the bound shard) and
 * the k-tile range of its split-K part, and shares them through `wgTile`; an empty tile returns. Leaves
 * `tile` (row start, expert in the shard, first and end k tile), `rowStart` and `e` defined.
 * `weights` names the binding whose first dimension is the shard's expert count.
 */
export function gemmTileSnippet(weights: string, blockRows: number, kTilesPerPart: number, kTiles: number,
    rowTile = 'workgroupId.x'): string {
  return `if (localIndex == 0u) {
          let first = uniforms.firstExpert;
          let segEnd = align[first + uniforms.${weights}Shape.x];
          let rowStart = align[first] + i32(${rowTile}) * ${blockRows};
          var tile = vec4<i32>(-1, 0, 0, 0);
          if (rowStart < segEnd) {
            // The owner: the last expert whose segment starts at or before rowStart.
            ${segmentOwnerSnippet(`uniforms.${weights}Shape.x`, 'rowStart')}
            let kt0 = i32(workgroupId.z) * ${kTilesPerPart};
            tile = vec4<i32>(rowStart, lo - first, kt0, min(kt0 + ${kTilesPerPart}, ${kTiles}));
          }
          wgTile = tile;
        }
        let tile = workgroupUniformLoad(&wgTile);
        if (tile.x < 0) { return; }
        let rowStart = tile.x;
        let e = tile.y;`;
}

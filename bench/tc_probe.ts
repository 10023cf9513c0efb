/**
 * Tensor-core GEMM probe on raw WebGPU (no tfjs): which subgroup-matrix kernel shapes Dawn compiles, and how
 * fast each runs, on a plain f16 GEMM C[M, N] (f32) = A[M, K] · B[N, K]ᵀ, before a shape goes into the
 * expert GEMMs. Device only (needs chromium-experimental-subgroup-matrix and shader-f16):
 *   bash .gpu/run.sh .gpu/tc_probe.mjs [--m 4096 --n 14336 --k 4096]
 * Prints one JSON line per kernel: GPU time (timestamp queries, median of 10), TFLOP/s, and the worst error
 * on 256 sampled outputs against float64 sums of the same f16 operands (int8: exact i32 sums).
 * Rounds: --round2 … --round6 (see README's tensor-core notes); --round7 the pipelined 64×64 kernel on f16 and
 * int8 blocks in each load form (--round7-n8: only the 16×8 result configs beside the f16 baseline); --round8
 * that kernel's multiplies without loads and loads with a quarter of the multiplies, and a 64 × 128 subgroup tile;
 * --round9 / --round10 operands staged in workgroup memory; --round11 the workgroups' tile order; --round12 loads
 * through block pointers against element offsets (blockNames; run it again with --dawn-toggles disable_robustness);
 * --round13 the GEMM on 1-16 row tiles (waves of workgroups; run with --n 28672, Mixtral's w13 columns); --round14
 * several 64 × 64 subgroups per workgroup on block pointers, sharing operand blocks through L1, and 96 × 64
 * subgroup tiles (M 4608 by default); --round15 those subgroups each walking k from its own start, so that a block
 * a neighbour loaded a few steps before is in L1 when it asks for it; --round16 the k loop's bounds known at run
 * time only (as in the expert GEMMs) and the plain loop unrolled by hand; --round17 the prefetching loop one k
 * block ahead (not a two-block step), one subgroup and four staggered; --round18 plain loads touching the blocks
 * a few steps ahead (run also with --m 512 --n 28672 --experts 8); --round19 80-row subgroup tiles; --round20 A
 * staged in workgroup memory, B streamed from storage (deeper, and with tall, narrow subgroup tiles) or staged too;
 * --round21 round 20's tall, narrow tiles again (f16 1 × 8 repeated and deeper, one k block a stage, int8 128 × 16);
 * --round22 the 128 × 32 tiles with row tiles fastest (the expert GEMMs' launch order); --round23 those with their
 * results through workgroup memory, as the layer's epilogue takes them; --round24 those with fewer barriers
 * (two buffers in turn, or four blocks a round); --round25 those stored straight in workgroups of 2, 4 and 8
 * subgroups, and 64 × 32 subgroup tiles; --round26 taller and wider subgroup tiles (96-192 × 32-48); --round27 the
 * weights staged in workgroup memory too on 128 × 32 subgroup tiles (1 × 4, 2 × 4 and 2 × 2 subgroups); --round28
 * which part of round 27's padded, both-staged kernel pays; --round29 x padded, weights streamed, under the layer's
 * conditions (--experts 8 at w13's and w2's shapes, x-major and 8 row tiles at a time); --round30 those loops with
 * 12 or 20 more registers kept live through the k loop; --round31 those loops with the layer kernel's tile lookup
 * through workgroup variables and tfjs's entry point; --round32 the layer's int8 w13 GEMM verbatim
 * (bench/layer_kernel.ts), edits of it and the both-staged GEMM ('tensor-core-i8-both-staged-128-quant-pass') beside
 * round 31's first loops; --round33 round 31's padded loops with its tile lookup taken apart, and kept in registers
 * or broadcast. --pick i,j,… times only the round's kernels of those indices.
 */
import * as fs from 'fs';
import {tensorCoreDawnToggles} from './dawn_toggles';
import {bothStagedForm, int8W13Gemm, layerGemmForms, oneExpertInputs, toBlocks, w13WeightRow} from './layer_kernel';
import {MoEShape, SHAPES} from './shapes';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
// eslint-disable-next-line @typescript-eslint/no-var-requires
const {create, globals} = require('webgpu');
Object.assign(globalThis, globals);
const args = process.argv.slice(2);
const gpu: GPU = create(tensorCoreDawnToggles());

const arg = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
/**
 * --experts E (round 18): B holds E copies of its N rows, row tile t multiplying copy t % E, so that a GEMM of
 * few row tiles streams E·N·K weights from memory as the expert GEMMs do at M = 256 (one tile an expert); aStaged
 * (rounds 20, 22): row tiles in E contiguous runs, run e multiplying copy e (the same where there is one tile an
 * expert), as the expert GEMMs' sorted rows do at any M; int8 copies too.
 */
const EXPERTS = arg('experts', 1);

/** float32 → IEEE half bits (round to nearest even; inputs here are small and finite). */
const halfScratch = new Float32Array(1), halfBits = new Uint32Array(halfScratch.buffer);
function toHalf(x: number): number {
  // One scratch word, not an array a call: 150M calls (--round29's operands) took minutes with the allocations.
  halfScratch[0] = x;
  const u = halfBits[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  let mant = u & 0x7fffff;
  if (exp <= 0) return sign;
  let h = sign | (exp << 10) | (mant >>> 13);
  mant &= 0x1fff;
  if (mant > 0x1000 || (mant === 0x1000 && (h & 1))) h++;
  return h;
}
function fromHalf(h: number): number {
  const e = (h >>> 10) & 0x1f, m = h & 0x3ff, s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

interface Kernel {
  name: string;
  code: string;
  workgroups: [number, number, number];
  /** Operands in 16×16 block-major layout (each block 512 contiguous bytes) instead of row-major: both, or one. */
  blocked?: boolean | 'A' | 'B';
  /** Round 7: int8 operands (A8/B8 in 16×32 blocks, C i32, checked exactly) instead of f16. */
  int8?: boolean;
  /** Round 8: not a GEMM (its outputs are not checked); `flops` counts its multiply-accumulates. */
  synthetic?: {flops: number};
  /**
   * Round 32, a kernel with bindings of its own (the layer's, verbatim): its entry point, its buffers in binding
   * order, the one holding C (row-major, N columns, rows from 0), and the B row behind each column of C.
   */
  own?: {entry: string; buffers: GPUBuffer[]; out: GPUBuffer; bRow: (j: number) => number};
}

const SG = 'subgroup_matrix';

/** The 16 × 16 × 16 f16 (f32 results) or 16 × 16 × 32 int8 (i32 results) subgroup-matrix types. */
function matrixTypes(int8: boolean): {left: string; right: string; result: string} {
  return int8 ? {left: `${SG}_left<i8, 32, 16>`, right: `${SG}_right<i8, 16, 32>`, result: `${SG}_result<i32, 16, 16>`} :
    {left: `${SG}_left<f16, 16, 16>`, right: `${SG}_right<f16, 16, 16>`, result: `${SG}_result<f32, 16, 16>`};
}

/** Today's storage-64 shape: one subgroup, 64×64 from storage (A row-major, B rows = C columns). */
function storage64(M: number, N: number, K: number): Kernel {
  const rows = [0, 1, 2, 3], cols = [0, 1, 2, 3];
  return {name: 'storage-64 (1 subgroup, 64×64, operands from storage)', workgroups: [N / 64, M / 64, 1], code: `
enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wg: vec3<u32>) {
  let m0 = wg.y * 64u;
  let n0 = wg.x * 64u;
  ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c}: ${SG}_result<f32, 16, 16>;`)).join('\n  ')}
  for (var k = 0u; k < ${K}u; k += 16u) {
    ${rows.map((r) => `let a${r} = subgroupMatrixLoad<${SG}_left<f16, 16, 16>>(&A, (m0 + ${16 * r}u) * ${K}u + k, false, ${K}u);`).join('\n    ')}
    ${cols.map((c) => `let b${c} = subgroupMatrixLoad<${SG}_right<f16, 16, 16>>(&B, (n0 + ${16 * c}u) * ${K}u + k, true, ${K}u);`).join('\n    ')}
    ${rows.flatMap((r) => cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${r}, b${c}, acc${r}${c});`)).join('\n    ')}
  }
  ${rows.flatMap((r) => cols.map((c) => `subgroupMatrixStore(&C, (m0 + ${16 * r}u) * ${N}u + n0 + ${16 * c}u, acc${r}${c}, false, ${N}u);`)).join('\n  ')}
}`};
}

interface TiledShape {
  BM: number; BN: number; BK: number;
  /** Subgroups along M and N; each computes (BM/WM) × (BN/WN). */
  WM: number; WN: number;
  /** How a subgroup learns its index: 'builtin' (@builtin(subgroup_id)) or 'index' (local index / 32). */
  sid: 'builtin' | 'index';
  /** Padding (halves) per shared row, against bank conflicts. */
  pad: number;
  /** Prefetch the next k tile into registers while the current one is multiplied. */
  prefetch: boolean;
  /** Two tile buffers: the next tile is stored while the current one is multiplied (one barrier per k tile). */
  double?: boolean;
  /**
   * Round 8: the tiles as array<vec4<u32>> (one 16-byte store per vec4 loaded, not 8 f16 stores) and read with the
   * new subgroupMatrixLoad form (offsets and strides in vec4s; pad a multiple of 8).
   */
  v4?: boolean;
}

/**
 * Workgroup tiles in shared memory: WM×WN subgroups load A [BM, BK] and B [BN, BK] tiles as vec4<u32>
 * (8 halves) per lane, then each subgroup multiplies its TM×TN 16×16 blocks out of shared memory.
 */
function tiled(M: number, N: number, K: number, s: TiledShape): Kernel {
  const {BM, BN, BK, WM, WN, pad} = s;
  const threads = WM * WN * 32;
  const TM = BM / WM / 16, TN = BN / WN / 16;
  const S = BK + pad;   // shared row stride, halves
  const vecsA = BM * BK / 8, vecsB = BN * BK / 8;
  const perA = vecsA / threads, perB = vecsB / threads;
  if (!Number.isInteger(perA) || !Number.isInteger(perB)) throw new Error('tile not divisible by threads');
  const rows = Array.from({length: TM}, (_, i) => i), cols = Array.from({length: TN}, (_, i) => i);
  const kv = K / 8, bkv = BK / 8;
  const loadA = (i: number) => `A[(m0 + (li + ${i * threads}u) / ${bkv}u) * ${kv}u + kt * ${bkv}u + (li + ${i * threads}u) % ${bkv}u]`;
  const loadB = (i: number) => `B[(n0 + (li + ${i * threads}u) / ${bkv}u) * ${kv}u + kt * ${bkv}u + (li + ${i * threads}u) % ${bkv}u]`;
  const put = (arr: string, i: number, v: string) => `put${arr}((li + ${i * threads}u) / ${bkv}u * ${S}u + (li + ${i * threads}u) % ${bkv}u * 8u, ${v});`;
  const ia = Array.from({length: perA}, (_, i) => i), ib = Array.from({length: perB}, (_, i) => i);
  const name = `tiles ${BM}×${BN}×${BK}${s.v4 ? ' as vec4<u32> (new load form)' : ''}, ${WM}×${WN} subgroups (${TM}×${TN} blocks each), pad ${pad}, ` +
    `${s.double ? 'double-buffered' : s.prefetch ? 'register prefetch' : 'no prefetch'}, subgroup index from ${s.sid}`;
  if (s.double) return doubleBuffered(M, N, K, s, name);
  return {name, workgroups: [N / BN, M / BM, 1], code: `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
${s.v4 ? `var<workgroup> As: array<vec4<u32>, ${BM * S / 8}>;
var<workgroup> Bs: array<vec4<u32>, ${BN * S / 8}>;
fn putA(o: u32, v: vec4<u32>) { As[o / 8u] = v; }
fn putB(o: u32, v: vec4<u32>) { Bs[o / 8u] = v; }` : `var<workgroup> As: array<f16, ${BM * S}>;
var<workgroup> Bs: array<f16, ${BN * S}>;
fn putA(o: u32, v: vec4<u32>) {
  for (var j = 0u; j < 4u; j++) { let h = bitcast<vec2<f16>>(v[j]); As[o + 2u * j] = h.x; As[o + 2u * j + 1u] = h.y; }
}
fn putB(o: u32, v: vec4<u32>) {
  for (var j = 0u; j < 4u; j++) { let h = bitcast<vec2<f16>>(v[j]); Bs[o + 2u * j] = h.x; Bs[o + 2u * j + 1u] = h.y; }
}`}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32${s.sid === 'builtin' ? ', @builtin(subgroup_id) sidIn: u32' : ''}) {
  let m0 = wg.y * ${BM}u;
  let n0 = wg.x * ${BN}u;
  let sid = ${s.sid === 'builtin' ? 'sidIn' : 'li / 32u'};
  let wm = sid % ${WM}u;
  let wn = sid / ${WM}u;
  ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c}: ${SG}_result<f32, 16, 16>;`)).join('\n  ')}
  var kt = 0u;
  ${s.prefetch ? `${ia.map((i) => `var ra${i} = ${loadA(i)};`).join(' ')}
  ${ib.map((i) => `var rb${i} = ${loadB(i)};`).join(' ')}` : ''}
  for (kt = 0u; kt < ${K / BK}u; kt++) {
    ${s.prefetch ? `${ia.map((i) => put('A', i, `ra${i}`)).join(' ')}
    ${ib.map((i) => put('B', i, `rb${i}`)).join(' ')}
    workgroupBarrier();
    if (kt + 1u < ${K / BK}u) {
      kt++;
      ${ia.map((i) => `ra${i} = ${loadA(i)};`).join(' ')}
      ${ib.map((i) => `rb${i} = ${loadB(i)};`).join(' ')}
      kt--;
    }` : `${ia.map((i) => put('A', i, loadA(i))).join(' ')}
    ${ib.map((i) => put('B', i, loadB(i))).join(' ')}
    workgroupBarrier();`}
    for (var kk = 0u; kk < ${BK}u; kk += 16u) {
      ${rows.map((r) => s.v4 ?
        `let a${r} = subgroupMatrixLoad<${SG}_left<f16, 16, 16>, row_major>(&As, (wm * ${TM * 16}u + ${16 * r}u) * ${S / 8}u + kk / 8u, ${S / 8}u);` :
        `let a${r} = subgroupMatrixLoad<${SG}_left<f16, 16, 16>>(&As, (wm * ${TM * 16}u + ${16 * r}u) * ${S}u + kk, false, ${S}u);`).join('\n      ')}
      ${cols.map((c) => s.v4 ?
        `let b${c} = subgroupMatrixLoad<${SG}_right<f16, 16, 16>, col_major>(&Bs, (wn * ${TN * 16}u + ${16 * c}u) * ${S / 8}u + kk / 8u, ${S / 8}u);` :
        `let b${c} = subgroupMatrixLoad<${SG}_right<f16, 16, 16>>(&Bs, (wn * ${TN * 16}u + ${16 * c}u) * ${S}u + kk, true, ${S}u);`).join('\n      ')}
      ${rows.flatMap((r) => cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${r}, b${c}, acc${r}${c});`)).join('\n      ')}
    }
    workgroupBarrier();
  }
  ${rows.flatMap((r) => cols.map((c) => `subgroupMatrixStore(&C, (m0 + wm * ${TM * 16}u + ${16 * r}u) * ${N}u + n0 + wn * ${TN * 16}u + ${16 * c}u, acc${r}${c}, false, ${N}u);`)).join('\n  ')}
}`};
}

/** tiled() with two tile buffers: one barrier per k tile. */
function doubleBuffered(M: number, N: number, K: number, s: TiledShape, name: string): Kernel {
  const {BM, BN, BK, WM, WN, pad} = s;
  const threads = WM * WN * 32;
  const TM = BM / WM / 16, TN = BN / WN / 16;
  const S = BK + pad;
  const bkv = BK / 8, kv = K / 8;
  const perA = BM * bkv / threads, perB = BN * bkv / threads;
  const rows = Array.from({length: TM}, (_, i) => i), cols = Array.from({length: TN}, (_, i) => i);
  const ia = Array.from({length: perA}, (_, i) => i), ib = Array.from({length: perB}, (_, i) => i);
  const at = (i: number) => `(li + ${i * threads}u)`;
  return {name, workgroups: [N / BN, M / BM, 1], code: `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
var<workgroup> As: array<f16, ${2 * BM * S}>;
var<workgroup> Bs: array<f16, ${2 * BN * S}>;
fn putA(o: u32, v: vec4<u32>) {
  for (var j = 0u; j < 4u; j++) { let h = bitcast<vec2<f16>>(v[j]); As[o + 2u * j] = h.x; As[o + 2u * j + 1u] = h.y; }
}
fn putB(o: u32, v: vec4<u32>) {
  for (var j = 0u; j < 4u; j++) { let h = bitcast<vec2<f16>>(v[j]); Bs[o + 2u * j] = h.x; Bs[o + 2u * j + 1u] = h.y; }
}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sid: u32) {
  let m0 = wg.y * ${BM}u;
  let n0 = wg.x * ${BN}u;
  let wm = sid % ${WM}u;
  let wn = sid / ${WM}u;
  ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c}: ${SG}_result<f32, 16, 16>;`)).join('\n  ')}
  ${ia.map((i) => `let aAt${i} = (m0 + ${at(i)} / ${bkv}u) * ${kv}u + ${at(i)} % ${bkv}u; let aPut${i} = ${at(i)} / ${bkv}u * ${S}u + ${at(i)} % ${bkv}u * 8u;`).join('\n  ')}
  ${ib.map((i) => `let bAt${i} = (n0 + ${at(i)} / ${bkv}u) * ${kv}u + ${at(i)} % ${bkv}u; let bPut${i} = ${at(i)} / ${bkv}u * ${S}u + ${at(i)} % ${bkv}u * 8u;`).join('\n  ')}
  ${ia.map((i) => `putA(aPut${i}, A[aAt${i}]);`).join(' ')}
  ${ib.map((i) => `putB(bPut${i}, B[bAt${i}]);`).join(' ')}
  workgroupBarrier();
  for (var kt = 0u; kt < ${K / BK}u; kt++) {
    let cur = (kt % 2u);
    let more = kt + 1u < ${K / BK}u;
    ${ia.map((i) => `var ra${i} = vec4<u32>();`).join(' ')} ${ib.map((i) => `var rb${i} = vec4<u32>();`).join(' ')}
    if (more) {
      ${ia.map((i) => `ra${i} = A[aAt${i} + (kt + 1u) * ${bkv}u];`).join(' ')}
      ${ib.map((i) => `rb${i} = B[bAt${i} + (kt + 1u) * ${bkv}u];`).join(' ')}
    }
    for (var kk = 0u; kk < ${BK}u; kk += 16u) {
      ${rows.map((r) => `let a${r} = subgroupMatrixLoad<${SG}_left<f16, 16, 16>>(&As, cur * ${BM * S}u + (wm * ${TM * 16}u + ${16 * r}u) * ${S}u + kk, false, ${S}u);`).join('\n      ')}
      ${cols.map((c) => `let b${c} = subgroupMatrixLoad<${SG}_right<f16, 16, 16>>(&Bs, cur * ${BN * S}u + (wn * ${TN * 16}u + ${16 * c}u) * ${S}u + kk, true, ${S}u);`).join('\n      ')}
      ${rows.flatMap((r) => cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${r}, b${c}, acc${r}${c});`)).join('\n      ')}
    }
    if (more) {
      let nxt = 1u - cur;
      ${ia.map((i) => `putA(nxt * ${BM * S}u + aPut${i}, ra${i});`).join(' ')}
      ${ib.map((i) => `putB(nxt * ${BN * S}u + bPut${i}, rb${i});`).join(' ')}
    }
    workgroupBarrier();
  }
  ${rows.flatMap((r) => cols.map((c) => `subgroupMatrixStore(&C, (m0 + wm * ${TM * 16}u + ${16 * r}u) * ${N}u + n0 + wn * ${TN * 16}u + ${16 * c}u, acc${r}${c}, false, ${N}u);`)).join('\n  ')}
}`};
}

interface BlockedShape {
  /** Subgroups along M and N, and 16×16 blocks per subgroup along M and N. */
  WM: number; WN: number; TM: number; TN: number;
  /** k steps (of 16) whose fragments are loaded before their multiplies. */
  unroll: number;
  /** Round 11: the order in which workgroups walk the output tiles (tileOrder). */
  order?: TileOrder;
}

/**
 * Round 11: which output tile workgroup wg computes. 'n-fastest' (rounds 1-10): consecutive workgroups share A's
 * rows and walk all of B; 'm-fastest': they share B's columns and walk A (4096 × 4096 f16 is 32 MB, which fits
 * the H200's L2, and B is 117 MB, which does not); 'grouped': Triton's GROUP_SIZE_M swizzle, 8 row tiles at a time.
 */
type TileOrder = 'n-fastest' | 'm-fastest' | 'grouped';
function tileOrder(order: TileOrder, tilesM: number, tilesN: number): {workgroups: [number, number, number]; wgsl: string} {
  if (order === 'm-fastest') return {workgroups: [tilesM, tilesN, 1], wgsl: 'let tm = wg.x; let tn = wg.y;'};
  if (order === 'n-fastest') return {workgroups: [tilesN, tilesM, 1], wgsl: 'let tm = wg.y; let tn = wg.x;'};
  const G = 8;
  if (tilesM % G !== 0) throw new Error(`grouped order: ${tilesM} row tiles is not a multiple of ${G}`);
  return {workgroups: [tilesN, tilesM, 1], wgsl: `let id = wg.y * ${tilesN}u + wg.x;
  let tm = id / ${G * tilesN}u * ${G}u + id % ${G}u;
  let tn = id % ${G * tilesN}u / ${G}u;`};
}

/**
 * Operands in 16×16 block-major layout: block (i, kb) of A at ((i · K/16) + kb) · 256 halves, row-major inside,
 * so one subgroup-matrix load reads 512 contiguous bytes straight from storage. No workgroup memory, no
 * barriers: subgroups of a workgroup share operand blocks through the L1 cache. Weights can be laid out so once
 * at load; activations by the gather that already writes their f16 copy.
 */
function blocked(M: number, N: number, K: number, s: BlockedShape): Kernel {
  const {WM, WN, TM, TN, unroll} = s;
  const KB = K / 16;
  const rows = Array.from({length: TM}, (_, i) => i), cols = Array.from({length: TN}, (_, i) => i);
  const us = Array.from({length: unroll}, (_, i) => i);
  const BM = WM * TM * 16, BN = WN * TN * 16;
  const order = tileOrder(s.order ?? 'n-fastest', M / BM, N / BN);
  return {name: `blocked operands from storage, ${BM}×${BN} per workgroup, ${WM}×${WN} subgroups (${TM}×${TN} blocks each), k unroll ${unroll}` +
      (s.order ? `, ${s.order} tile order` : ''),
    workgroups: order.workgroups, blocked: true, code: `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(${WM * WN * 32})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_id) sid: u32) {
  ${order.wgsl}
  let wm = sid % ${WM}u;
  let wn = sid / ${WM}u;
  let am = (tm * ${BM / 16}u + wm * ${TM}u) * ${KB}u * 256u;
  let bn = (tn * ${BN / 16}u + wn * ${TN}u) * ${KB}u * 256u;
  ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c}: ${SG}_result<f32, 16, 16>;`)).join('\n  ')}
  for (var kb = 0u; kb < ${KB}u; kb += ${unroll}u) {
    ${us.flatMap((u) => rows.map((r) => `let a${u}${r} = subgroupMatrixLoad<${SG}_left<f16, 16, 16>>(&A, am + ${r * KB * 256}u + (kb + ${u}u) * 256u, false, 16u);`)).join('\n    ')}
    ${us.flatMap((u) => cols.map((c) => `let b${u}${c} = subgroupMatrixLoad<${SG}_right<f16, 16, 16>>(&B, bn + ${c * KB * 256}u + (kb + ${u}u) * 256u, true, 16u);`)).join('\n    ')}
    ${us.flatMap((u) => rows.flatMap((r) => cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${u}${r}, b${u}${c}, acc${r}${c});`))).join('\n    ')}
  }
  ${rows.flatMap((r) => cols.map((c) => `subgroupMatrixStore(&C, (tm * ${BM}u + wm * ${TM * 16}u + ${16 * r}u) * ${N}u + tn * ${BN}u + wn * ${TN * 16}u + ${16 * c}u, acc${r}${c}, false, ${N}u);`)).join('\n  ')}
}`};
}

/**
 * A through workgroup memory as in tiled() (128 rows × 32 k, padded, register prefetch); B in block-major layout
 * read straight from storage: half the workgroup-memory stores of tiled().
 */
function hybrid(M: number, N: number, K: number): Kernel {
  const BM = 128, BN = 128, BK = 32, WM = 2, WN = 2, pad = 8, threads = 128;
  const TM = 4, TN = 4, S = BK + pad, KB = K / 16;
  const bkv = BK / 8, kv = K / 8, perA = BM * bkv / threads;
  const rows = [0, 1, 2, 3], cols = [0, 1, 2, 3];
  const ia = Array.from({length: perA}, (_, i) => i);
  const at = (i: number) => `(li + ${i * threads}u)`;
  return {name: 'hybrid: A tiles 128×32 in workgroup memory (pad 8, prefetch), B blocked from storage, 2×2 subgroups (4×4 blocks each)',
    workgroups: [N / BN, M / BM, 1], blocked: 'B', code: `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
var<workgroup> As: array<f16, ${BM * S}>;
fn putA(o: u32, v: vec4<u32>) {
  for (var j = 0u; j < 4u; j++) { let h = bitcast<vec2<f16>>(v[j]); As[o + 2u * j] = h.x; As[o + 2u * j + 1u] = h.y; }
}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sid: u32) {
  let m0 = wg.y * ${BM}u;
  let wm = sid % ${WM}u;
  let wn = sid / ${WM}u;
  let bn = (wg.x * ${BN / 16}u + wn * ${TN}u) * ${KB}u * 256u;
  ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c}: ${SG}_result<f32, 16, 16>;`)).join('\n  ')}
  ${ia.map((i) => `let aAt${i} = (m0 + ${at(i)} / ${bkv}u) * ${kv}u + ${at(i)} % ${bkv}u; let aPut${i} = ${at(i)} / ${bkv}u * ${S}u + ${at(i)} % ${bkv}u * 8u;`).join('\n  ')}
  ${ia.map((i) => `var ra${i} = A[aAt${i}];`).join(' ')}
  for (var kt = 0u; kt < ${K / BK}u; kt++) {
    ${ia.map((i) => `putA(aPut${i}, ra${i});`).join(' ')}
    workgroupBarrier();
    if (kt + 1u < ${K / BK}u) {
      ${ia.map((i) => `ra${i} = A[aAt${i} + (kt + 1u) * ${bkv}u];`).join(' ')}
    }
    for (var kk = 0u; kk < ${BK / 16}u; kk++) {
      ${rows.map((r) => `let a${r} = subgroupMatrixLoad<${SG}_left<f16, 16, 16>>(&As, (wm * ${TM * 16}u + ${16 * r}u) * ${S}u + kk * 16u, false, ${S}u);`).join('\n      ')}
      ${cols.map((c) => `let b${c} = subgroupMatrixLoad<${SG}_right<f16, 16, 16>>(&B, bn + ${c * KB * 256}u + (kt * ${BK / 16}u + kk) * 256u, true, 16u);`).join('\n      ')}
      ${rows.flatMap((r) => cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${r}, b${c}, acc${r}${c});`)).join('\n      ')}
    }
    workgroupBarrier();
  }
  ${rows.flatMap((r) => cols.map((c) => `subgroupMatrixStore(&C, (m0 + wm * ${TM * 16}u + ${16 * r}u) * ${N}u + wg.x * ${BN}u + wn * ${TN * 16}u + ${16 * c}u, acc${r}${c}, false, ${N}u);`)).join('\n  ')}
}`};
}

interface PipeShape {
  /** Subgroups along M and N, and 16×16 blocks per subgroup along M and N. */
  WM: number; WN: number; TM: number; TN: number;
  /**
   * Where A comes from: 'tile' a BM×BK workgroup-memory tile (scalar f16 stores, register prefetch) as
   * hybrid(); 'blocked' 16×16 blocks straight from storage, as B always is here.
   */
  a: 'tile' | 'blocked';
  /** k per workgroup tile ('tile' only): 32 or 64. */
  BK?: number;
  /** 16-k steps per iteration ('blocked' only). */
  unroll?: number;
  /** 'blocked' only: read A and/or B row-major (stride K) instead of in 16×16 blocks. */
  rowMajor?: 'A' | 'B' | 'AB';
}

/**
 * Software-pipelined variants of hybrid() and blocked(): the next k step's storage fragments are loaded into
 * registers before the current step's multiplies (round 3's loads sat right before their multiplies, so a
 * subgroup waited out the whole storage latency each step).
 */
function pipelined(M: number, N: number, K: number, s: PipeShape): Kernel {
  const {WM, WN, TM, TN} = s;
  const threads = WM * WN * 32;
  const BM = WM * TM * 16, BN = WN * TN * 16, KB = K / 16;
  const rows = Array.from({length: TM}, (_, i) => i), cols = Array.from({length: TN}, (_, i) => i);
  const left = `${SG}_left<f16, 16, 16>`, right = `${SG}_right<f16, 16, 16>`;
  const bRows = (s.rowMajor ?? '').includes('B'), aRows = (s.rowMajor ?? '').includes('A');
  const loadB = (c: number, kb: string) => bRows ?
    `subgroupMatrixLoad<${right}>(&B, (wg.x * ${BN}u + wn * ${TN * 16}u + ${16 * c}u) * ${K}u + (${kb}) * 16u, true, ${K}u)` :
    `subgroupMatrixLoad<${right}>(&B, bn + ${c * KB * 256}u + (${kb}) * 256u, true, 16u)`;
  const mma = (a: (r: number) => string, b: (c: number) => string) =>
    rows.flatMap((r) => cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(${a(r)}, ${b(c)}, acc${r}${c});`)).join('\n      ');
  const store = rows.flatMap((r) => cols.map((c) => `subgroupMatrixStore(&C, (wg.y * ${BM}u + wm * ${TM * 16}u + ${16 * r}u) * ${N}u + ` +
    `wg.x * ${BN}u + wn * ${TN * 16}u + ${16 * c}u, acc${r}${c}, false, ${N}u);`)).join('\n  ');
  const head = (aDecl: string) => `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
${aDecl}
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;`;
  const ids = `let wm = sid % ${WM}u;
  let wn = sid / ${WM}u;
  let bn = (wg.x * ${BN / 16}u + wn * ${TN}u) * ${KB}u * 256u;
  ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c}: ${SG}_result<f32, 16, 16>;`)).join('\n  ')}`;
  if (s.a === 'blocked') {
    const U = s.unroll ?? 1;
    const us = Array.from({length: U}, (_, i) => i);
    const loadA = (r: number, kb: string) => aRows ?
      `subgroupMatrixLoad<${left}>(&A, (wg.y * ${BM}u + wm * ${TM * 16}u + ${16 * r}u) * ${K}u + (${kb}) * 16u, false, ${K}u)` :
      `subgroupMatrixLoad<${left}>(&A, am + ${r * KB * 256}u + (${kb}) * 256u, false, 16u)`;
    const operands = s.rowMajor ? `${s.rowMajor === 'AB' ? 'A and B' : s.rowMajor} row-major` : 'blocked operands';
    return {name: `pipelined ${operands}, ${BM}×${BN} per workgroup, ${WM}×${WN} subgroups (${TM}×${TN} blocks each), ${U} k step(s) per iteration`,
      workgroups: [N / BN, M / BM, 1], blocked: s.rowMajor === 'AB' ? false : s.rowMajor === 'A' ? 'B' : s.rowMajor === 'B' ? 'A' : true, code: `${head('@group(0) @binding(0) var<storage, read> A: array<f16>;')}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_id) sid: u32) {
  ${ids}
  let am = (wg.y * ${BM / 16}u + wm * ${TM}u) * ${KB}u * 256u;
  ${us.flatMap((u) => rows.map((r) => `var a${u}${r} = ${loadA(r, `${u}u`)};`)).join(' ')}
  ${us.flatMap((u) => cols.map((c) => `var b${u}${c} = ${loadB(c, `${u}u`)};`)).join(' ')}
  for (var kb = 0u; kb < ${KB}u; kb += ${U}u) {
    let nk = min(kb + ${U}u, ${KB - U}u);
    ${us.flatMap((u) => rows.map((r) => `let na${u}${r} = ${loadA(r, `nk + ${u}u`)};`)).join(' ')}
    ${us.flatMap((u) => cols.map((c) => `let nb${u}${c} = ${loadB(c, `nk + ${u}u`)};`)).join(' ')}
    ${us.map((u) => mma((r) => `a${u}${r}`, (c) => `b${u}${c}`)).join('\n    ')}
    ${us.flatMap((u) => rows.map((r) => `a${u}${r} = na${u}${r};`)).join(' ')}
    ${us.flatMap((u) => cols.map((c) => `b${u}${c} = nb${u}${c};`)).join(' ')}
  }
  ${store}
}`};
  }
  const BK = s.BK ?? 32, S = BK + 8, kSub = BK / 16, KT = K / BK;
  const bkv = BK / 8, kv = K / 8, perA = BM * bkv / threads;
  if (!Number.isInteger(perA)) throw new Error('A tile not divisible by threads');
  const ia = Array.from({length: perA}, (_, i) => i), ks = Array.from({length: kSub}, (_, i) => i);
  const at = (i: number) => `(li + ${i * threads}u)`;
  return {name: `pipelined hybrid: A tiles ${BM}×${BK} in workgroup memory, B blocked from storage one tile ahead, ${WM}×${WN} subgroups (${TM}×${TN} blocks each)`,
    workgroups: [N / BN, M / BM, 1], blocked: 'B', code: `${head('@group(0) @binding(0) var<storage, read> A: array<vec4<u32>>;')}
var<workgroup> As: array<f16, ${BM * S}>;
fn putA(o: u32, v: vec4<u32>) {
  for (var j = 0u; j < 4u; j++) { let h = bitcast<vec2<f16>>(v[j]); As[o + 2u * j] = h.x; As[o + 2u * j + 1u] = h.y; }
}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sid: u32) {
  let m0 = wg.y * ${BM}u;
  ${ids}
  ${ia.map((i) => `let aAt${i} = (m0 + ${at(i)} / ${bkv}u) * ${kv}u + ${at(i)} % ${bkv}u; let aPut${i} = ${at(i)} / ${bkv}u * ${S}u + ${at(i)} % ${bkv}u * 8u;`).join('\n  ')}
  ${ia.map((i) => `var ra${i} = A[aAt${i}];`).join(' ')}
  ${ks.flatMap((k) => cols.map((c) => `var b${k}${c} = ${loadB(c, `${k}u`)};`)).join(' ')}
  for (var kt = 0u; kt < ${KT}u; kt++) {
    ${ia.map((i) => `putA(aPut${i}, ra${i});`).join(' ')}
    workgroupBarrier();
    let nt = min(kt + 1u, ${KT - 1}u);
    ${ia.map((i) => `ra${i} = A[aAt${i} + nt * ${bkv}u];`).join(' ')}
    ${ks.flatMap((k) => cols.map((c) => `let nb${k}${c} = ${loadB(c, `nt * ${kSub}u + ${k}u`)};`)).join(' ')}
    ${ks.map((k) => `{
      ${rows.map((r) => `let a${r} = subgroupMatrixLoad<${left}>(&As, (wm * ${TM * 16}u + ${16 * r}u) * ${S}u + ${16 * k}u, false, ${S}u);`).join('\n      ')}
      ${mma((r) => `a${r}`, (c) => `b${k}${c}`)}
    }`).join('\n    ')}
    ${ks.flatMap((k) => cols.map((c) => `b${k}${c} = nb${k}${c};`)).join(' ')}
    workgroupBarrier();
  }
  ${store}
}`};
}

/** Round 7's operand declarations: how the blocked operands are typed and addressed. */
interface OperandSyntax {
  /** 'old': subgroupMatrixLoad<T>(p, offset, colMajor, stride), offsets in matrix elements; 'new':
   * subgroupMatrixLoad<T, row_major|col_major>(p, offset, stride), offsets in the array's elements. */
  form: 'old' | 'new';
  /** The storage arrays' element: the matrix's scalar (f16; i8 packed in i32) or vec4<u32> (16 bytes). */
  array: 'scalar' | 'vec4';
}

/**
 * The pipelined k loop of rounds 7 and 12: two k blocks a step, the next step's blocks loaded into registers
 * before this step's multiplies (`mma(u)`: the multiplies of k block u, on a{u}{r} and b{u}{c}).
 */
function pipelinedSteps(KB: number, rows: number[], cols: number[], a: (r: number, kb: string) => string,
    b: (c: number, kb: string) => string, mma: (u: number) => string, bounds?: {first: string; end: string}): string {
  const us = [0, 1];
  // Round 16 passes bounds the compiler cannot see; without them the loop is rounds 7-15's, text unchanged.
  const at = (u: number) => bounds ? `${bounds.first} + ${u}u` : `${u}u`;
  return `${us.flatMap((u) => rows.map((r) => `var a${u}${r} = ${a(r, at(u))};`)).join('\n  ')}
  ${us.flatMap((u) => cols.map((c) => `var b${u}${c} = ${b(c, at(u))};`)).join('\n  ')}
  for (var kb = ${bounds?.first ?? '0u'}; kb < ${bounds?.end ?? `${KB}u`}; kb += 2u) {
    let nk = min(kb + 2u, ${bounds ? `${bounds.end} - 2u` : `${KB - 2}u`});
    ${us.flatMap((u) => rows.map((r) => `let na${u}${r} = ${a(r, `nk + ${u}u`)};`)).join('\n    ')}
    ${us.flatMap((u) => cols.map((c) => `let nb${u}${c} = ${b(c, `nk + ${u}u`)};`)).join('\n    ')}
    ${us.map(mma).join('\n    ')}
    ${us.flatMap((u) => rows.map((r) => `a${u}${r} = na${u}${r};`)).join(' ')}
    ${us.flatMap((u) => cols.map((c) => `b${u}${c} = nb${u}${c};`)).join(' ')}
  }`;
}

/**
 * Round 7: the pipelined 64×64 one-subgroup kernel (round 5's best, 2 blocks per iteration, the next
 * iteration's blocks loaded before this one's multiplies) on f16 (16×16 blocks) or int8 (16×32 blocks, i32
 * results) operands, each block 512 contiguous bytes, declared and addressed per `syntax`. Tests whether int8
 * runs at twice f16's rate on this path (it did not in the expert GEMMs), and whether 16-byte array elements
 * (which let the driver assume 16-byte alignment) change the load cost.
 */
function pipelinedTyped(M: number, N: number, K: number, int8: boolean, syntax: OperandSyntax, n8 = false): Kernel {
  const kPerBlock = int8 ? 32 : 16, KB = K / kPerBlock;
  // n8: the 16×8 result configs (right matrices of 8 columns, each block's halves), 4 × 8 results per subgroup.
  const rows = [0, 1, 2, 3], cols = n8 ? [0, 1, 2, 3, 4, 5, 6, 7] : [0, 1, 2, 3];
  const NC = n8 ? 8 : 16;
  // A block's size and a block row's stride in the offset units of the chosen form.
  const unit = syntax.array === 'vec4' ? 16 : syntax.form === 'old' || !int8 ? (int8 ? 1 : 2) : 4;
  const BLK = 512 / unit, STRIDE = 32 / unit;
  const elem = syntax.array === 'vec4' ? 'vec4<u32>' : int8 ? 'i32' : 'f16';
  const left = int8 ? `${SG}_left<i8, 32, 16>` : `${SG}_left<f16, 16, 16>`;
  const right = int8 ? `${SG}_right<i8, ${NC}, 32>` : `${SG}_right<f16, ${NC}, 16>`;
  const result = int8 ? `${SG}_result<i32, ${NC}, 16>` : `${SG}_result<f32, ${NC}, 16>`;
  const load = (m: string, p: string, off: string, colMajor: boolean) => syntax.form === 'old' ?
    `subgroupMatrixLoad<${m}>(&${p}, ${off}, ${colMajor}, ${STRIDE}u)` :
    `subgroupMatrixLoad<${m}, ${colMajor ? 'col_major' : 'row_major'}>(&${p}, ${off}, ${STRIDE}u)`;
  const a = (r: number, kb: string) => load(left, 'A', `am + ${r * KB * BLK}u + (${kb}) * ${BLK}u`, false);
  const b = (c: number, kb: string) => n8 ?
    load(right, 'B', `bn + ${(c >> 1) * KB * BLK + (c & 1) * BLK / 2}u + (${kb}) * ${BLK}u`, true) :
    load(right, 'B', `bn + ${c * KB * BLK}u + (${kb}) * ${BLK}u`, true);
  const store = (r: number, c: number) => {
    const off = `(wg.y * 64u + ${16 * r}u) * ${N}u + wg.x * 64u + ${NC * c}u`;
    return syntax.form === 'old' ? `subgroupMatrixStore(&C, ${off}, acc${r}${c}, false, ${N}u);` :
      `subgroupMatrixStore<row_major>(&C, ${off}, acc${r}${c}, ${N}u);`;
  };
  return {name: `round7 ${int8 ? 'int8 16×32' : 'f16 16×16'} blocks, ${n8 ? '16×8 results, ' : ''}64×64 one subgroup, ${syntax.form} form, ` +
      `array<${elem}>`, workgroups: [N / 64, M / 64, 1], blocked: true, int8, code: `
enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<${elem}>;
@group(0) @binding(1) var<storage, read> B: array<${elem}>;
@group(0) @binding(2) var<storage, read_write> C: array<${int8 ? 'i32' : 'f32'}>;
@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wg: vec3<u32>) {
  let am = wg.y * ${4 * KB * BLK}u;
  let bn = wg.x * ${4 * KB * BLK}u;
  ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c}: ${result};`)).join('\n  ')}
  ${pipelinedSteps(KB, rows, cols, a, b, (u) => rows.flatMap((r) => cols.map((c) =>
    `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${u}${r}, b${u}${c}, acc${r}${c});`)).join('\n    '))}
  ${rows.flatMap((r) => cols.map((c) => store(r, c))).join('\n  ')}
}`};
}

/**
 * Round 8: where the ~200 T ops/s of round 7 goes. Both kernels have the 64 × 64 one-subgroup shape, the GEMM's
 * grid and its k steps, and run on f16 or int8 blocks:
 *   'mma-only':  the 4 + 4 matrices loaded once, then every k step's 16 multiply-accumulates on them (the
 *                tensor-core rate of this path with no loads in the loop);
 *   'loads':     every k step loads its 4 + 4 matrices, as the GEMM does, but multiplies only the 4 diagonal
 *                pairs (the load rate, with a quarter of the multiplies).
 */
function synthetic(M: number, N: number, K: number, int8: boolean, kind: 'mma-only' | 'loads'): Kernel {
  const kPerBlock = int8 ? 32 : 16, KB = K / kPerBlock, BLK = int8 ? 512 : 256, STRIDE = int8 ? 32 : 16;
  const rows = [0, 1, 2, 3], cols = [0, 1, 2, 3];
  const {left, right, result} = matrixTypes(int8);
  const a = (r: number, kb: string) => `subgroupMatrixLoad<${left}>(&A, am + ${r * KB * BLK}u + (${kb}) * ${BLK}u, false, ${STRIDE}u)`;
  const b = (c: number, kb: string) => `subgroupMatrixLoad<${right}>(&B, bn + ${c * KB * BLK}u + (${kb}) * ${BLK}u, true, ${STRIDE}u)`;
  const pairs = kind === 'mma-only' ? rows.flatMap((r) => cols.map((c) => [r, c])) : rows.map((r) => [r, r]);
  const mmas = pairs.map(([r, c]) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${r}, b${c}, acc${r}${c});`).join('\n    ');
  const body = kind === 'mma-only' ? `
  ${rows.map((r) => `let a${r} = ${a(r, '0u')};`).join(' ')}
  ${cols.map((c) => `let b${c} = ${b(c, '0u')};`).join(' ')}
  for (var kb = 0u; kb < ${KB}u; kb++) {
    ${mmas}
  }` : `
  for (var kb = 0u; kb < ${KB}u; kb++) {
    ${rows.map((r) => `let a${r} = ${a(r, 'kb')};`).join(' ')}
    ${cols.map((c) => `let b${c} = ${b(c, 'kb')};`).join(' ')}
    ${mmas}
  }`;
  return {name: `round8 ${kind} ${int8 ? 'int8' : 'f16'}: 64×64 one subgroup, ${pairs.length} multiplies and ` +
      `${kind === 'mma-only' ? 'no' : '8'} loads per k step`, workgroups: [N / 64, M / 64, 1], blocked: true, int8,
  synthetic: {flops: (M / 64) * (N / 64) * KB * pairs.length * 2 * 16 * 16 * kPerBlock}, code: `
enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<${int8 ? 'i32' : 'f16'}>;
@group(0) @binding(1) var<storage, read> B: array<${int8 ? 'i32' : 'f16'}>;
@group(0) @binding(2) var<storage, read_write> C: array<${int8 ? 'i32' : 'f32'}>;
@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wg: vec3<u32>) {
  let am = wg.y * ${4 * KB * BLK}u;
  let bn = wg.x * ${4 * KB * BLK}u;
  ${pairs.map(([r, c]) => `var acc${r}${c}: ${result};`).join('\n  ')}
  ${body}
  ${pairs.map(([r, c]) => `subgroupMatrixStore(&C, (wg.y * 64u + ${16 * r}u) * ${N}u + wg.x * 64u + ${16 * c}u, acc${r}${c}, false, ${N}u);`).join('\n  ')}
}`};
}

/**
 * Round 8: the load rate from workgroup memory: the 'loads' kernel of synthetic() with its 4 + 4 matrices read
 * from a 128-row tile (40-half rows, filled once from A) instead of storage, in the old form from array<f16> or
 * the new one from array<vec4<u32>>; the offsets move with k so that no load can leave the loop.
 */
function sharedLoads(M: number, N: number, K: number, v4: boolean): Kernel {
  const KB = K / 16, S = 40, rows = [0, 1, 2, 3];
  const at = (row: string, kk: string) => v4 ? `(${row}) * ${S / 8}u + (${kk}) / 8u` : `(${row}) * ${S}u + ${kk}`;
  const load = (m: string, row: string, colMajor: boolean) => v4 ?
    `subgroupMatrixLoad<${m}, ${colMajor ? 'col_major' : 'row_major'}>(&T, ${at(row, 'kk')}, ${S / 8}u)` :
    `subgroupMatrixLoad<${m}>(&T, ${at(row, 'kk')}, ${colMajor}, ${S}u)`;
  return {name: `round8 loads from workgroup memory f16 (${v4 ? 'array<vec4<u32>>, new form' : 'array<f16>, old form'}): ` +
      `64×64 one subgroup, 4 multiplies and 8 loads per k step`, workgroups: [N / 64, M / 64, 1], blocked: true,
  synthetic: {flops: (M / 64) * (N / 64) * KB * 4 * 2 * 16 * 16 * 16}, code: `
enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
var<workgroup> T: array<${v4 ? 'vec4<u32>' : 'f16'}, ${v4 ? 128 * S / 8 : 128 * S}>;
@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  _ = arrayLength(&B);   // bound like the GEMMs' B (the 'auto' layout keeps only what is used)
  for (var i = li; i < ${128 * S / 8}u; i += 32u) {
    let v = A[(wg.y * ${128 * S / 8}u + i) % arrayLength(&A)];
    ${v4 ? 'T[i] = v;' : 'for (var j = 0u; j < 4u; j++) { let h = bitcast<vec2<f16>>(v[j]); T[8u * i + 2u * j] = h.x; T[8u * i + 2u * j + 1u] = h.y; }'}
  }
  workgroupBarrier();
  ${rows.map((r) => `var acc${r}${r}: ${SG}_result<f32, 16, 16>;`).join('\n  ')}
  for (var kb = 0u; kb < ${KB}u; kb++) {
    let kk = (kb % 2u) * 16u;
    ${rows.map((r) => `let a${r} = ${load(`${SG}_left<f16, 16, 16>`, `${16 * r}u`, false)};`).join('\n    ')}
    ${rows.map((c) => `let b${c} = ${load(`${SG}_right<f16, 16, 16>`, `${64 + 16 * c}u`, true)};`).join('\n    ')}
    ${rows.map((r) => `acc${r}${r} = subgroupMatrixMultiplyAccumulate(a${r}, b${r}, acc${r}${r});`).join('\n    ')}
  }
  ${rows.map((r) => `subgroupMatrixStore(&C, (wg.y * 64u + ${16 * r}u) * ${N}u + wg.x * 64u + ${16 * r}u, acc${r}${r}, false, ${N}u);`).join('\n  ')}
}`};
}

/**
 * Round 12: how a subgroup-matrix load names its block. Tint lowers subgroupMatrixLoad to
 * OpCooperativeMatrixLoadKHR on a pointer to one element of the binding's array, offset and stride in that array's
 * elements, and (robustness on) rewrites a runtime offset and stride into selects against arrayLength; no `Aligned`
 * operand is emitted for storage arrays (google/dawn src/tint/lang/spirv/writer/raise/builtin_polyfill.cc,
 * core/ir/transform/robustness.cc). Round 8 timed these loads at 6× the same loads from workgroup memory, and an
 * int8 block at 1.8× an f16 one of the same bytes, as if the driver loaded element by element. Here each operand
 * is declared as an array of whole blocks (array<array<f16, 256>> or array<array<i32, 128>>, 512 bytes each) and
 * each load reads `&A[block]` at the constant offset 0 with a constant stride, so Tint adds no select and the
 * pointer is a 512-byte array element; against the same kernel with element offsets into the flat binding. The
 * 64 × 64 one-subgroup kernel, as a GEMM ('plain': each 16-k block loaded right before its multiplies;
 * 'pipelined': the next 32-k step's blocks in flight) and as round 8's loads kernel (8 loads, 4 multiplies), which
 * 'cached-loads' runs on two k blocks only, read again every step: if that costs what streaming costs, the loads are
 * bound by their instructions (element by element), not by memory.
 */
function blockNames(M: number, N: number, K: number, int8: boolean, pointers: boolean,
    loop: 'plain' | 'pipelined' | 'pipelined-1' | 'loads' | 'cached-loads', vec4 = false, sub: {WM: number; WN: number; lag?: number} =
    {WM: 1, WN: 1}, tile = {TM: 4, TN: 4}, bounds: {runtime?: boolean; unroll?: number; touch?: Touch} = {}): Kernel {
  const kPerBlock = int8 ? 32 : 16, KB = K / kPerBlock;
  const experts = EXPERTS;
  if (int8 && experts > 1) throw new Error('blockNames: --experts copies the f16 weights only');
  // Round 15: subgroup (m, n) of the workgroup walks k from block KB - (m + n)·lag, wrapping, so each block it
  // shares with (m - 1, n) or (m, n - 1) was loaded by that neighbour `lag` blocks earlier (round 14's subgroups
  // asked for a shared block at the same moment, and neither found it in L1).
  const lag = sub.lag ?? 0;
  if (lag && (KB & (KB - 1)) !== 0) throw new Error(`blockNames: k lag needs a power-of-two block count, got ${KB}`);
  const kAt = (kb: string) => lag ? `(((${kb}) + rot) & ${KB - 1}u)` : kb;   // WGSL: no + beside & unparenthesized
  // New load form: offsets and strides in the array's elements (f16, i32 holding 4 i8, or vec4<u32>: a block row
  // of 32 bytes is 2 of them, as in NVIDIA's sample and llama.cpp's f16vec4 views).
  const BLK = vec4 ? 32 : int8 ? 128 : 256, STRIDE = vec4 ? 2 : int8 ? 8 : 16;
  const elem = vec4 ? 'vec4<u32>' : int8 ? 'i32' : 'f16';
  // 16-row blocks and 16-column blocks per subgroup (round 14: 6 × 4 as well as 4 × 4).
  const {TM, TN} = tile, SM = 16 * TM, SN = 16 * TN;
  const rows = Array.from({length: TM}, (_, i) => i), cols = Array.from({length: TN}, (_, i) => i);
  const {left, right, result} = matrixTypes(int8);
  const load = (m: string, p: string, block: string, major: string) => pointers ?
    `subgroupMatrixLoad<${m}, ${major}>(&${p}[${block}], 0u, ${STRIDE}u)` :
    `subgroupMatrixLoad<${m}, ${major}>(&${p}, (${block}) * ${BLK}u, ${STRIDE}u)`;
  const a = (r: number, kb: string) => load(left, 'A', `am + ${r * KB}u + ${kAt(kb)}`, 'row_major');
  const b = (c: number, kb: string) => load(right, 'B', `bn + ${c * KB}u + ${kAt(kb)}`, 'col_major');
  const loadsOnly = loop === 'loads' || loop === 'cached-loads';
  const pairs = loadsOnly ? rows.map((r) => [r, r]) : rows.flatMap((r) => cols.map((c) => [r, c]));
  const mma = (ap: string, bp: string) => pairs.map(([r, c]) =>
    `acc${r}${c} = subgroupMatrixMultiplyAccumulate(${ap}${r}, ${bp}${c}, acc${r}${c});`).join('\n    ');
  // Round 16: the k loop's bounds as the expert GEMMs have them, not known to the compiler (a tile's k range is
  // read from workgroup memory there); arrayLength(&C) is never 1, so first and end are 0 and KB at run time.
  const runtime = bounds.runtime ?? false, unroll = bounds.unroll ?? 1;
  if (KB % unroll !== 0) throw new Error(`blockNames: unroll ${unroll} does not divide ${KB} k blocks`);
  const first = runtime ? 'kbFirst' : '0u', end = runtime ? 'kbEnd' : `${KB}u`;
  const us = Array.from({length: unroll}, (_, u) => u);
  // Round 17: one k block a step, its successor's loads issued before its multiplies (the pipelined loop holds two).
  const oneAhead = `
  ${rows.map((r) => `var a${r} = ${a(r, first)};`).join('\n  ')}
  ${cols.map((c) => `var b${c} = ${b(c, first)};`).join('\n  ')}
  for (var kb = ${first}; kb < ${end}; kb++) {
    let nk = min(kb + 1u, ${end} - 1u);
    ${rows.map((r) => `let na${r} = ${a(r, 'nk')};`).join('\n    ')}
    ${cols.map((c) => `let nb${c} = ${b(c, 'nk')};`).join('\n    ')}
    ${mma('a', 'b')}
    ${rows.map((r) => `a${r} = na${r};`).join(' ')}
    ${cols.map((c) => `b${c} = nb${c};`).join(' ')}
  }`;
  // Round 18: plain loads touching the blocks `dist` steps ahead, their values summed one step later (so no
  // multiply waits on them), only to start those blocks' lines on their way before the subgroup-matrix loads.
  const touch = bounds.touch;
  if (touch && !(pointers && loop === 'pipelined' && !runtime)) throw new Error('blockNames: touch is for the pipelined loop on block pointers');
  const touched = touch ? [...(touch.which.includes('a') ? rows.map((r) => ({p: 'A', first: `am + ${r * KB}u`, n: `a${r}`})) : []),
    ...(touch.which.includes('b') ? cols.map((c) => ({p: 'B', first: `bn + ${c * KB}u`, n: `b${c}`})) : [])] : [];
  const touchAt = (t: {p: string; first: string}, kb: string) => `${t.p}[${t.first} + ${kAt(kb)}][(li % 32u) * 8u]`;
  const touchVars = touched.flatMap((t) => [0, 1].map((u) => `var t${t.n}${u} = ${touchAt(t, `${u}u`)};`)).join(' ');
  const touchStep = !touch ? '' : `sink += ${touched.flatMap((t) => [0, 1].map((u) => `f32(t${t.n}${u})`)).join(' + ')};
    let tk = min(kb + ${2 * touch.dist}u, ${KB - 2}u);
    ${touched.flatMap((t) => [0, 1].map((u) => `t${t.n}${u} = ${touchAt(t, `tk + ${u}u`)};`)).join(' ')}
    `;
  const body = (runtime ? `
  let kbFirst = select(0u, 1u, arrayLength(&C) == 1u);
  let kbEnd = select(${KB}u, 2u, arrayLength(&C) == 1u);` : '') + (loop === 'pipelined-1' ? oneAhead : loop === 'pipelined' ? `
  ${touch ? `var sink = 0.0;
  ${touchVars}` : ''}
  ${pipelinedSteps(KB, rows, cols, a, b, (u) => (u === 0 ? touchStep : '') + mma(`a${u}`, `b${u}`), runtime ? {first, end} : undefined)}
  ${touch ? 'if (sink == -1.0e30) { C[0] = sink; }   // never: keeps the touches' : ''}` : unroll > 1 ? `
  for (var kb = ${first}; kb < ${end}; kb += ${unroll}u) {
    ${us.flatMap((u) => rows.map((r) => `let a${u}${r} = ${a(r, `kb + ${u}u`)};`)).join('\n    ')}
    ${us.flatMap((u) => cols.map((c) => `let b${u}${c} = ${b(c, `kb + ${u}u`)};`)).join('\n    ')}
    ${us.map((u) => mma(`a${u}`, `b${u}`)).join('\n    ')}
  }` : `
  for (var kb = ${first}; kb < ${end}; kb++) {
    ${loop === 'cached-loads' ? 'let kc = kb % 2u;   // two k blocks, read again and again: from L1, not memory' : ''}
    ${rows.map((r) => `let a${r} = ${a(r, loop === 'cached-loads' ? 'kc' : 'kb')};`).join('\n    ')}
    ${cols.map((c) => `let b${c} = ${b(c, loop === 'cached-loads' ? 'kc' : 'kb')};`).join('\n    ')}
    ${mma('a', 'b')}
  }`);
  const decl = pointers ? `array<array<${elem}, ${BLK}>>` : `array<${elem}>`;
  const {WM, WN} = sub, one = WM * WN === 1, shape = `${SM}×${SN}`;
  const tm = one ? 'wg.y' : 'tm', tn = one ? 'wg.x' : 'tn';
  return {name: `round${loop === 'pipelined-1' ? 17 : runtime || unroll > 1 ? 16 : lag ? 15 : one && TM === 4 && TN === 4 ? 12 : 14} ${loop} ${int8 ? 'int8' : 'f16'}, ` +
      (one ? `${shape} one subgroup, ` : `${SM * WM}×${SN * WN} per workgroup, ${WM}×${WN} subgroups of ${shape}, `) +
      (pointers ? `block pointers (&A[block], offset 0, ${decl})` : `element offsets (&A, block·${BLK}, array<${elem}>)`) +
      (lag ? `, k lag ${lag} blocks a neighbour` : '') +
      (runtime ? ', k bounds known at run time only' : '') + (unroll > 1 ? `, ${unroll} k blocks loaded per iteration` : '') +
      (touch ? `, ${touch.which} blocks touched ${touch.dist} steps ahead` : '') + (experts > 1 ? `, ${experts} experts' B` : ''),
  workgroups: [N / (SN * WN), M / (SM * WM), 1], blocked: true, int8,
  ...(loadsOnly ? {synthetic: {flops: (M / SM) * (N / SN) * KB * pairs.length * 2 * 16 * 16 * kPerBlock}} : {}), code: `
enable f16;${one ? '' : '\nenable subgroups;'}
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: ${decl};
@group(0) @binding(1) var<storage, read> B: ${decl};
@group(0) @binding(2) var<storage, read_write> C: array<${int8 ? 'i32' : 'f32'}>;
@compute @workgroup_size(${32 * WM * WN})
fn main(@builtin(workgroup_id) wg: vec3<u32>${one ? '' : ', @builtin(subgroup_id) sid: u32'}${touch ? ', @builtin(local_invocation_index) li: u32' : ''}) {
  ${one ? '' : `let tm = wg.y * ${WM}u + sid % ${WM}u;   // this subgroup's tile of rows and of columns
  let tn = wg.x * ${WN}u + sid / ${WM}u;
  ${lag ? `let rot = ${KB}u - (sid % ${WM}u + sid / ${WM}u) * ${lag}u;   // wraps to 0 for subgroup 0 (& ${KB - 1})` : ''}
  `}let am = ${tm} * ${TM * KB}u;   // first block of the tile's ${SM} rows (A) and ${SN} columns (B)
  let bn = ${experts > 1 ? `(${tm} % ${experts}u) * ${N / 16 * KB}u + ` : ''}${tn} * ${TN * KB}u;
  ${pairs.map(([r, c]) => `var acc${r}${c}: ${result};`).join('\n  ')}
  ${body}
  ${pairs.map(([r, c]) => `subgroupMatrixStore<row_major>(&C, (${tm} * ${SM}u + ${16 * r}u) * ${N}u + ${tn} * ${SN}u + ${16 * c}u, acc${r}${c}, ${N}u);`).join('\n  ')}
}`};
}

/**
 * aStaged's results through workgroup memory, `St` holding `stBlocks` 16-row blocks of each subgroup's TN results:
 * true one block between two barriers; 'double' the blocks alternating between two buffers, one barrier each;
 * 'batch4' four blocks between two barriers.
 */
function stagedEpilogue(how: true | 'double' | 'batch4', rows: number[], TM: number, TN: number, N: number): string {
  const stBlocks = how === 'double' ? 2 : how === 'batch4' ? 4 : 1;
  const slot = (r: number) => how === 'double' ? r % 2 : how === 'batch4' ? r % 4 : 0;
  const region = TN * 256 * stBlocks;
  const store = (r: number) => `{
    ${Array.from({length: TN}, (_, c) => `subgroupMatrixStore<row_major>(&St, sid * ${region}u + ${(slot(r) * TN + c) * 256}u, acc${r}${c}, 16u);`).join(' ')}
  }`;
  const write = (r: number) => `for (var i = 0u; i < ${TN * 8}u; i++) {
      let e = i * 32u + li % 32u;   // element e of the ${TN} results: result e / 256, row e % 256 / 16, column e % 16
      C[(tm * ${16 * TM}u + ${16 * r}u + e % 256u / 16u) * ${N}u + tn * ${16 * TN}u + e / 256u * 16u + e % 16u] = St[sid * ${region}u + ${slot(r) * TN * 256}u + e];
    }`;
  if (how === 'double') {
    return rows.map((r) => `${store(r)}
  workgroupBarrier();
  ${write(r)}`).join('\n  ');
  }
  const rounds = Array.from({length: Math.ceil(rows.length / stBlocks)}, (_, i) => rows.slice(i * stBlocks, (i + 1) * stBlocks));
  return rounds.map((rs) => `${rs.map(store).join('\n  ')}
  workgroupBarrier();
  ${rs.map(write).join('\n  ')}
  workgroupBarrier();`).join('\n  ');
}

/**
 * Round 20: A (x's rows, shared by every subgroup of the workgroup) staged in workgroup memory, SK k blocks a stage,
 * double-buffered with one barrier a stage; B (the weights) streamed from storage through block pointers, one k
 * block ahead, as the product's loop does, or (stageB) staged the same way. Rounds 3-5 and 9-11 staged before block
 * pointers made storage loads cheap (round 3's A-staged kernel beat storage-only then, 152 against 31-100 TFLOP/s);
 * with 64 × 64 subgroup tiles each subgroup moves 4 + 4/WN blocks from L2 per 16 multiplies instead of 8.
 */
function aStaged(M: number, N: number, K: number, s: {WM: number; WN: number; SK: number; int8?: boolean; pad?: boolean;
    stageB?: boolean; TM?: number; TN?: number; ahead?: number; rowsFastest?: boolean;
    stagedStores?: boolean | 'double' | 'batch4'; groupRows?: number; live?: number; tfjsEntry?: boolean;
    tileThroughWorkgroup?: boolean | TileLookupPart}): Kernel {
  const {WM, WN, SK} = s, int8 = s.int8 ?? false, stageB = s.stageB ?? false;
  // rowsFastest: consecutive workgroups take consecutive row tiles (the expert GEMMs' x-major launch order);
  // groupRows G (with rowsFastest): G row tiles at a time over every column tile, then the next G (the layer's
  // groupedGridSnippet order).
  const rowsFastest = s.rowsFastest ?? false, G = s.groupRows ?? 0;
  if (G > 0 && !rowsFastest) throw new Error('aStaged: groupRows needs rowsFastest');
  const gx0 = G > 0 ? 'gCol' : rowsFastest ? 'wg.y' : 'wg.x', gy0 = G > 0 ? 'gRow' : rowsFastest ? 'wg.x' : 'wg.y';
  // Round 31, the layer kernel's code around the same loop: tileThroughWorkgroup, gemmTileSnippet's lookup (the row
  // and column tile through workgroup variables declared before the staged tiles: invocation 0 writes them, finding
  // the expert by a binary search whose trip count the compiler cannot know, everyone reads them by
  // workgroupUniformLoad, an empty tile returns); tfjsEntry, tfjs's entry point (the body a function called from
  // it, local_invocation_index read from a private variable at every use).
  // Round 33 takes the lookup apart (TileLookupPart): 'after', its variables declared after the staged tiles;
  // 'noSearch', invocation 0 writing the expert without the binary search; 'noReturn', without the empty tile's
  // return; 'unused', all of it run but the launch grid's tile used for the addresses. And two ways to keep it:
  // 'registers', every invocation running the lookup itself (uniform to Tint: the launch grid is main's argument),
  // no workgroup variables or barrier; 'broadcast', the lookup as it is, the tile then through
  // subgroupBroadcastFirst (so that the driver knows it uniform, as it knows the launch grid).
  const tileWg = s.tileThroughWorkgroup ?? false, tfjsEntry = s.tfjsEntry ?? false;
  const tileUsed = tileWg !== false && tileWg !== 'unused';
  const gx = tileUsed ? 'tileC' : gx0, gy = tileUsed ? 'tileR' : gy0;
  const search = `var lo = 0;
    var hi = i32(arrayLength(&C) / ${M * N}u) * ${EXPERTS} - 1;   // ${EXPERTS} - 1: C holds M × N
    while (lo < hi) {
      let mid = (lo + hi + 1) / 2;
      if (mid * ${M / (16 * (s.TM ?? 4) * WM) / EXPERTS} <= rowTile) { lo = mid; } else { hi = mid - 1; }
    }`;
  const tileLookup = !tileWg ? '' : tileWg === 'registers' ? `
  let rowTile = i32(${gy0}) + i32(arrayLength(&C) / ${M * N}u) - 1;   // the grid's, through a value not known here
  ${search}
  let tile = vec4<i32>(rowTile, lo, 0, 0);
  if (tile.x < 0) { return; }
  let tileR = u32(tile.x);
  let tileC = u32(${gx0});` : `
  if (li == 0u) { wgN0 = i32(${gx0}); }
  if (li == 0u) {
    let rowTile = i32(${gy0});
    ${tileWg === 'noSearch' ? 'let lo = 0;' : search}
    wgTile = vec4<i32>(rowTile, lo, 0, 0);
  }
  let tileU = workgroupUniformLoad(&wgTile);
  ${tileWg === 'noReturn' ? '' : 'if (tileU.x < 0) { return; }'}
  let tile = ${tileWg === 'broadcast' ? 'subgroupBroadcastFirst(tileU)' : 'tileU'};
  let tileR = u32(tile.x);
  let tileC = u32(${tileWg === 'broadcast' ? 'subgroupBroadcastFirst(workgroupUniformLoad(&wgN0))' : 'workgroupUniformLoad(&wgN0)'});`;
  const tileDecl = tileWg && tileWg !== 'registers' ? 'var<workgroup> wgTile: vec4<i32>;\nvar<workgroup> wgN0: i32;' : '';
  const rowTiles = M / (16 * (s.TM ?? 4) * WM), colTiles = N / (16 * (s.TN ?? 4) * WN);
  // live L (round 30): L vec4<u32> loaded before the k loop and used at every stage in a chain the compiler cannot
  // fold (hv = hv · lv0 + lv1 …), so 4·L + 4 more registers (with hv's) stay live through the loop, as the layer
  // kernel's tile lookup, bases and uniforms do; the chain's end decides a store that never happens on these operands.
  const live = Array.from({length: s.live ?? 0}, (_, j) => j);
  const liveDecl = live.map((j) => `let lv${j} = A[li + ${j * 32 * WM * WN}u];`).join('\n  ') +
    (live.length ? '\n  var hv = vec4<u32>(li);' : '');
  const liveUse = live.length ? `hv = ${live.reduce((e, j) => j % 2 === 0 ? `(${e}) * lv${j}` : `(${e}) + lv${j}`, 'hv')};` : '';
  const liveEnd = live.length ? `if (all(hv == vec4<u32>(0x9e3779b9u))) { C[0] = ${s.int8 ? '0' : '0.0'}; }` : '';
  const grouped = G === 0 ? '' : `
  let gLin = wg.x + wg.y * ${rowTiles}u;
  let gFirst = gLin / ${G * colTiles}u * ${G}u;
  let gIn = gLin % ${G * colTiles}u;
  let gRows = min(${G}u, ${rowTiles}u - gFirst);
  let gRow = gFirst + gIn % gRows;
  let gCol = gIn / gRows;`;
  // stagedStores: the results leave as the expert GEMMs' epilogue takes them, per 16-row block through workgroup
  // memory between two barriers, each lane then writing its elements (the int8 'staged-128' kernel's epilogue);
  // 'double': two such buffers taken in turn, one barrier a block (a block's reads end before the next block's
  // barrier, which comes before the store into their buffer two blocks on); 'batch4': 4 blocks a round between
  // two barriers (4 barriers a tile against 16; 32 KiB of results, beside the 16 KiB of A: the limit).
  const stagedStores = s.stagedStores ?? false;
  const stBlocks = stagedStores === 'double' ? 2 : stagedStores === 'batch4' ? 4 : 1;
  // A subgroup's tile: TM × TN blocks of 16 × 16 (with A from workgroup memory a tall, narrow tile loads fewer B
  // blocks from storage per multiply: 128 × 32 half of 64 × 64's); B loaded `ahead` k blocks before its multiplies.
  const TM = s.TM ?? 4, TN = s.TN ?? 4, D = s.ahead ?? 1;
  if (stageB && D !== 1) throw new Error('aStaged: ahead is for streamed B');
  // pad: each 32-byte block row followed by 16 bytes, so that rows 8 apart fall in other banks (stride 3 vec4s).
  const pad = s.pad ?? false, RV = pad ? 48 : 32, RS = pad ? 3 : 2;
  const kPerBlock = int8 ? 32 : 16, KB = K / kPerBlock, KS = KB / SK;
  if (!Number.isInteger(KS)) throw new Error(`aStaged: ${SK} k blocks a stage do not divide ${KB}`);
  if (stageB && EXPERTS > 1) throw new Error('aStaged: staged B is one expert\'s (no --experts)');
  const threads = 32 * WM * WN, RB = TM * WM, CB = TN * WN;   // the workgroup's 16-row and 16-column blocks
  const rows = Array.from({length: TM}, (_, i) => i), cols = Array.from({length: TN}, (_, i) => i);
  const ds = Array.from({length: D}, (_, i) => i);
  const js = Array.from({length: SK}, (_, j) => j);
  const {left, right, result} = matrixTypes(int8);
  const bDecl = stageB ? 'array<vec4<u32>>' : int8 ? 'array<array<i32, 128>>' : 'array<array<f16, 256>>';
  const bStride = int8 ? 8 : 16;
  const b = (c: number, kb: string) => `subgroupMatrixLoad<${right}, col_major>(&B[bn + ${c * KB}u + ${kb}], 0u, ${bStride}u)`;
  // Each staged operand X: NB blocks of 16 rows a stage, copy p of a lane at q = li + p·threads: block q / (32·SK),
  // vec4 q % (32·SK) of that block row's SK contiguous k blocks.
  const staged = [{X: 'A', NB: RB, first: 'aFirst'}, ...(stageB ? [{X: 'B', NB: CB, first: 'bFirst'}] : [])].map((o) => {
    const P = o.NB * SK * 32 / threads;
    if (!Number.isInteger(P)) throw new Error('aStaged: a stage does not divide among the lanes');
    return {...o, ps: Array.from({length: P}, (_, i) => i)};
  });
  const q = (p: number) => `(li + ${p * threads}u)`;
  const gAt = (X: string, first: string, p: number, st: string) =>
    `${X}[${first} + ${q(p)} / ${32 * SK}u * ${KB * 32}u + (${st}) * ${SK * 32}u + ${q(p)} % ${32 * SK}u]`;
  const put = (X: string, NB: number, p: number, buf: string) => `${X}s[(${buf} * ${NB}u + ${q(p)} / ${32 * SK}u) * ${SK}u + ` +
    `${q(p)} % ${32 * SK}u / 32u][${pad ? `${q(p)} % 32u / 2u * 3u + ${q(p)} % 2u` : `${q(p)} % 32u`}]`;
  const copy = (buf: string) => staged.flatMap((o) => o.ps.map((p) => `${put(o.X, o.NB, p, buf)} = r${o.X}${p};`)).join('\n    ');
  // Streamed B: registers b{d}{c} hold k blocks kb + d (d < D); each step loads kb + D and shifts them down.
  const bUse = (c: number) => stageB ? `b${c}` : `b0${c}`;
  const mma = rows.flatMap((r) => cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${r}, ${bUse(c)}, acc${r}${c});`)).join('\n      ');
  const steps = js.map((j) => `{
      ${stageB ? '' : `let nk = min(st * ${SK}u + ${j + D}u, ${KB - 1}u);
      ${cols.map((c) => `let nb${c} = ${b(c, 'nk')};`).join('\n      ')}`}
      ${rows.map((r) => `let a${r} = subgroupMatrixLoad<${left}, row_major>(&As[(buf * ${RB}u + wm * ${TM}u + ${r}u) * ${SK}u + ${j}u], 0u, ${RS}u);`).join('\n      ')}
      ${stageB ? cols.map((c) => `let b${c} = subgroupMatrixLoad<${right}, col_major>(&Bs[(buf * ${CB}u + wn * ${TN}u + ${c}u) * ${SK}u + ${j}u], 0u, ${RS}u);`).join('\n      ') : ''}
      ${mma}
      ${stageB ? '' : ds.flatMap((d) => cols.map((c) => `b${d}${c} = ${d + 1 < D ? `b${d + 1}${c}` : `nb${c}`};`)).join(' ')}
    }`).join('\n    ');
  return {name: `round20 ${stageB ? 'A and B' : 'A'} staged ${SK} k blocks a stage${stageB ? '' : `, B streamed ${D === 1 ? 'one block' : `${D} blocks`} ahead`}, ` +
      `${int8 ? 'int8' : 'f16'}, ${16 * TM * WM}×${16 * TN * WN} per workgroup, ${WM}×${WN} subgroups of ${16 * TM}×${16 * TN}` +
      `${pad ? ', rows padded' : ''}${EXPERTS > 1 ? `, ${EXPERTS} experts' B` : ''}${rowsFastest ? ', row tiles fastest' : ''}` +
      `${stagedStores ? `, results through workgroup memory${stagedStores === true ? '' : ` (${stagedStores})`}` : ''}` +
      `${G > 0 ? `, ${G} row tiles at a time` : ''}${live.length ? `, ${4 * live.length + 4} more registers live` : ''}` +
      `${tileWg === 'registers' ? ', tile lookup in registers' : tileWg ? `, tile through workgroup memory${tileWg === true ? '' : ` (${tileWg})`}` : ''}` +
      `${tfjsEntry ? ', tfjs entry point' : ''}`,
  workgroups: rowsFastest ? [M / (16 * RB), N / (16 * CB), 1] : [N / (16 * CB), M / (16 * RB), 1], blocked: true, int8,
  code: (tfjsEntry ? asTfjsEntry : (c: string) => c)(`
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> B: ${bDecl};
@group(0) @binding(2) var<storage, read_write> C: array<${int8 ? 'i32' : 'f32'}>;
${tileWg === 'after' ? '' : tileDecl}
${staged.map((o) => `var<workgroup> ${o.X}s: array<array<vec4<u32>, ${RV}>, ${2 * o.NB * SK}>;   // [buffer][16-row block][k block]`).join('\n')}
${tileWg === 'after' ? tileDecl : ''}
${stagedStores ? `var<workgroup> St: array<${int8 ? 'i32' : 'f32'}, ${stBlocks * WM * WN * TN * 256}>;   // ${stBlocks} of a subgroup's 16-row blocks of results` : ''}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_id) sid: u32, @builtin(local_invocation_index) li: u32) {${grouped}${tileLookup}
  let wm = sid % ${WM}u;
  let wn = sid / ${WM}u;
  let tm = ${gy} * ${WM}u + wm;   // this subgroup's tile of ${16 * TM} rows and of ${16 * TN} columns
  let tn = ${gx} * ${WN}u + wn;
  let aFirst = ${gy} * ${RB * KB * 32}u;   // the workgroup's first A block, in vec4s
  ${stageB ? `let bFirst = ${gx} * ${CB * KB * 32}u;` : `let bn = ${tileUsed ? `u32(tile.y) * ${N / 16 * KB}u + ` : EXPERTS > 1 ? `(tm / ${M / (16 * RB) / EXPERTS}u) * ${N / 16 * KB}u + ` : ''}tn * ${TN * KB}u;`}
  ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c}: ${result};`)).join('\n  ')}
  ${staged.flatMap((o) => o.ps.map((p) => `var r${o.X}${p} = ${gAt(o.X, o.first, p, '0u')};`)).join('\n  ')}
  ${copy('0u')}
  ${stageB ? '' : ds.flatMap((d) => cols.map((c) => `var b${d}${c} = ${b(c, `${d}u`)};`)).join('\n  ')}
  ${liveDecl}
  workgroupBarrier();
  for (var st = 0u; st < ${KS}u; st++) {
    let buf = st % 2u;
    ${liveUse}
    let nst = min(st + 1u, ${KS - 1}u);   // the last stage copies itself into the idle buffer, read by no one
    ${staged.flatMap((o) => o.ps.map((p) => `r${o.X}${p} = ${gAt(o.X, o.first, p, 'nst')};`)).join('\n    ')}
    ${steps}
    ${copy('(1u - buf)')}
    workgroupBarrier();
  }
  ${liveEnd}
  ${stagedStores ? stagedEpilogue(stagedStores, rows, TM, TN, N) : rows.flatMap((r) => cols.map((c) => `subgroupMatrixStore<row_major>(&C, (tm * ${16 * TM}u + ${16 * r}u) * ${N}u + tn * ${16 * TN}u + ${16 * c}u, acc${r}${c}, ${N}u);`)).join('\n  ')}
}`)};
}

/** Round 33's parts of round 31's tile lookup (aStaged's tileThroughWorkgroup). */
type TileLookupPart = 'after' | 'noSearch' | 'noReturn' | 'unused' | 'registers' | 'broadcast';

/**
 * Round 31: a kernel's entry point as tfjs-backend-webgpu writes it (webgpu_program.ts makeShader, with this
 * package's passMainIds): its body a function of (workgroup id, subgroup id, subgroup invocation id) called from the
 * entry, which first copies the builtins into private variables; the body reads local_invocation_index from one.
 */
function asTfjsEntry(code: string): string {
  const head = /@compute @workgroup_size\((\d+)\)\nfn main\(@builtin\(workgroup_id\) wg: vec3<u32>, @builtin\(subgroup_id\) sid: u32, @builtin\(local_invocation_index\) li: u32\) \{/;
  const m = head.exec(code);
  if (m == null) throw new Error('asTfjsEntry: no entry point of the expected form');
  const body = code.slice(m.index + m[0].length).replace(/\bli\b/g, 'localIndex');
  return `${code.slice(0, m.index)}var<private> localId: vec3<u32>;
var<private> localIndex: u32;
var<private> globalId: vec3<u32>;
var<private> numWorkgroups: vec3<u32>;
var<private> workgroupId: vec3<u32>;
fn kernelBody(wg: vec3<u32>, sid: u32, lane: u32) {${body}
@compute @workgroup_size(${m[1]}, 1, 1)
fn main(@builtin(local_invocation_id) LocalId: vec3<u32>, @builtin(global_invocation_id) GlobalId: vec3<u32>,
    @builtin(local_invocation_index) LocalIndex: u32, @builtin(workgroup_id) WorkgroupId: vec3<u32>,
    @builtin(num_workgroups) NumWorkgroups: vec3<u32>, @builtin(subgroup_id) SubgroupId: u32,
    @builtin(subgroup_invocation_id) SubgroupInvocationId: u32) {
  localId = LocalId;
  localIndex = LocalIndex;
  globalId = GlobalId;
  numWorkgroups = NumWorkgroups;
  workgroupId = WorkgroupId;
  kernelBody(WorkgroupId, SubgroupId, SubgroupInvocationId);
}
`;
}

/**
 * Round 32: the layer's int8 w13 GEMM for 'plain-gemm' (one expert, H = K, 2I = N), verbatim, on the probe's int8
 * operands (oneExpertInputs; the weights B8 as they are: the layer's blocked weights have the same [column block]
 * [k block] layout, its result columns checked against w13WeightRow's rows); beside it, layerGemmForms' edits.
 */
function layerVerbatim(device: GPUDevice, M: number, N: number, K: number, a8Blocks: Int8Array, B8: GPUBuffer,
    buf: (data: ArrayBufferView | number, usage: number) => GPUBuffer): Kernel[] {
  const s = SHAPES['plain-gemm'] as MoEShape;
  if (s.E !== 1 || s.k !== 1 || s.H !== K || 2 * s.I !== N) {
    throw new Error(`--round32: 'plain-gemm' (H ${s.H}, 2I ${2 * s.I}) is not this GEMM (K ${K}, N ${N})`);
  }
  const g = int8W13Gemm(s, M);
  const {xb, align} = oneExpertInputs(g, M, K, a8Blocks);
  const out = buf(g.shapes.result[0] * g.shapes.result[1] * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  const uniforms = device.createBuffer({size: g.uniforms.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST});
  device.queue.writeBuffer(uniforms, 0, g.uniforms);
  const padded = /As : array<array<vec4<u32>, 48>/.test(g.code);
  const xbBuffer = buf(xb, GPUBufferUsage.STORAGE), alignBuffer = buf(align, GPUBufferUsage.STORAGE);
  const skipped: string[] = [];
  const forms = [...layerGemmForms(g, skipped), bothStagedForm(s, M, g)];
  for (const why of skipped) console.log(JSON.stringify({round32_skipped: why}));
  return forms.map(({what, code, dispatch, xbWords, kernel}) => ({name: `layer int8 w13 GEMM ` +
      `${kernel ? `replaced by ${kernel}'s` : 'verbatim'} (tfjs's shader, bindings, ` +
      `uniforms, dispatch ${(dispatch ?? g.dispatch).join('×')})${padded ? ', rows padded' : ''}${what}`, code, workgroups: dispatch ?? g.dispatch,
  int8: true, own: {entry: '_start', out, bRow: w13WeightRow, buffers: [out, xbWords == null ? xbBuffer :
    buf(oneExpertInputs(g, M, K, a8Blocks, xbWords).xb, GPUBufferUsage.STORAGE), alignBuffer, B8, uniforms]}}));
}

/** Round 18's plain loads ahead of the subgroup-matrix loads: which operands' blocks, and how many 32-k steps ahead. */
interface Touch {
  which: 'a' | 'b' | 'ab';
  dist: number;
}

/** Rounds 14-15 choose M, N and tile shapes separately: refuse a kernel whose workgroups do not tile the GEMM. */
function mustTile(kernels: Kernel[], M: number, N: number): void {
  for (const k of kernels) {
    const [x, y] = k.workgroups;
    if (!Number.isInteger(x) || !Number.isInteger(y)) throw new Error(`${k.name} does not tile ${M} × ${N}`);
  }
}

interface StagedShape {
  /** Workgroup tile, k per stage, and subgroups along M and N (each multiplies (BM/WM) × (BN/WN)). */
  BM: number; BN: number; BK: number; WM: number; WN: number;
  /** Tile buffers: 1 (store, barrier, multiply, barrier) or 2 (the next tile stored while this one is multiplied). */
  buffers: 1 | 2;
  /** Operands in storage: row-major, or in blocks of 16 rows × 32 bytes, 512 contiguous bytes (toBlocks). */
  src: 'rows' | 'blocks';
  /** int8 operands (16×32 blocks, i32 results, round 7's data) instead of f16; blocks only. */
  int8?: boolean;
  /** Round 11: the order in which workgroups walk the output tiles. */
  order?: TileOrder;
}

/**
 * Round 9: both operands staged in workgroup memory as vec4<u32> (one 16-byte load and one 16-byte store per lane
 * and part; rows padded by one vec4 against bank conflicts), the next tile's loads in flight in registers while
 * the current one is multiplied, and every subgroup-matrix load from workgroup memory (new form). Round 8 timed
 * those loads at a quarter of the cost of loads from storage.
 */
function staged(M: number, N: number, K: number, s: StagedShape): Kernel {
  const {BM, BN, BK, WM, WN, buffers, src} = s;
  const int8 = s.int8 ?? false;
  if (int8 && src !== 'blocks') throw new Error('staged: int8 operands come in blocks');
  const E = int8 ? 16 : 8;   // elements per vec4; one multiply's k (16 halves or 32 int8) is 2 vec4s either way
  const threads = WM * WN * 32;
  const TM = BM / WM / 16, TN = BN / WN / 16;
  const S4 = BK / E + 1;   // vec4s per tile row
  const KT = K / BK, kv = K / E, bkv = BK / E;
  const perA = BM * bkv / threads, perB = BN * bkv / threads;
  if (!Number.isInteger(perA) || !Number.isInteger(perB)) throw new Error('staged: tile not divisible by threads');
  const rows = Array.from({length: TM}, (_, i) => i), cols = Array.from({length: TN}, (_, i) => i);
  const ia = Array.from({length: perA}, (_, i) => i), ib = Array.from({length: perB}, (_, i) => i);
  const idx = (i: number) => `(li + ${i * threads}u)`;
  // Where part idx of a tile lives in storage (vec4 offset, k tile kt added in the loop) and in workgroup memory.
  const at = (X: 'a' | 'b', i: number, first: string) => src === 'rows' ?
    `let ${X}At${i} = (${first} + ${idx(i)} / ${bkv}u) * ${kv}u + ${idx(i)} % ${bkv}u; ` +
    `let ${X}Put${i} = ${idx(i)} / ${bkv}u * ${S4}u + ${idx(i)} % ${bkv}u;` :
    // blocks: each 16-row group's BK/(2E) blocks are contiguous (32 vec4s each): rows j/2, k parts kb·2 + j%2.
    `let ${X}At${i} = ((${first} / 16u + ${idx(i)} / ${16 * bkv}u) * ${kv / 2}u) * 32u + ${idx(i)} % ${16 * bkv}u; ` +
    `let ${X}Put${i} = (${idx(i)} / ${16 * bkv}u * 16u + ${idx(i)} % 32u / 2u) * ${S4}u + ${idx(i)} % ${16 * bkv}u / 32u * 2u + ${idx(i)} % 2u;`;
  const step = src === 'rows' ? `${bkv}u` : `${16 * bkv}u`;   // vec4s per k tile along a row (group)
  const {left, right, result} = matrixTypes(int8);
  const stA = BM * S4, stB = BN * S4;
  const order = tileOrder(s.order ?? 'n-fastest', M / BM, N / BN);
  const mult = (buf: string) => `for (var kk = 0u; kk < ${bkv}u; kk += 2u) {
      ${rows.map((r) => `let a${r} = subgroupMatrixLoad<${left}, row_major>(&As, ${buf} * ${stA}u + (wm * ${TM * 16}u + ${16 * r}u) * ${S4}u + kk, ${S4}u);`).join('\n      ')}
      ${cols.map((c) => `let b${c} = subgroupMatrixLoad<${right}, col_major>(&Bs, ${buf} * ${stB}u + (wn * ${TN * 16}u + ${16 * c}u) * ${S4}u + kk, ${S4}u);`).join('\n      ')}
      ${rows.flatMap((r) => cols.map((c) => `acc${r}${c} = subgroupMatrixMultiplyAccumulate(a${r}, b${c}, acc${r}${c});`)).join('\n      ')}
    }`;
  const load = (kt: string) => `${ia.map((i) => `ra${i} = A[aAt${i} + (${kt}) * ${step}];`).join(' ')}
      ${ib.map((i) => `rb${i} = B[bAt${i} + (${kt}) * ${step}];`).join(' ')}`;
  const store = (buf: string) => `${ia.map((i) => `As[${buf} * ${stA}u + aPut${i}] = ra${i};`).join(' ')}
    ${ib.map((i) => `Bs[${buf} * ${stB}u + bPut${i}] = rb${i};`).join(' ')}`;
  const loop = buffers === 2 ? `
  ${store('0u')}
  workgroupBarrier();
  for (var kt = 0u; kt < ${KT}u; kt++) {
    let more = kt + 1u < ${KT}u;
    if (more) {
      ${load('kt + 1u')}
    }
    ${mult('(kt % 2u)')}
    if (more) {
      ${store('(1u - kt % 2u)')}
    }
    workgroupBarrier();
  }` : `
  for (var kt = 0u; kt < ${KT}u; kt++) {
    ${store('0u')}
    workgroupBarrier();
    if (kt + 1u < ${KT}u) {
      ${load('kt + 1u')}
    }
    ${mult('0u')}
    workgroupBarrier();
  }`;
  return {name: `round9 staged ${BM}×${BN}×${BK}, ${WM}×${WN} subgroups (${TM}×${TN} blocks each), ${buffers} buffer(s), ` +
      `from ${src === 'rows' ? 'row-major' : 'block'} storage${int8 ? ', int8' : ''}${s.order ? `, ${s.order} tile order` : ''}`,
  workgroups: order.workgroups,
  blocked: src === 'blocks', int8, code: `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> C: array<${int8 ? 'i32' : 'f32'}>;
var<workgroup> As: array<vec4<u32>, ${buffers * stA}>;
var<workgroup> Bs: array<vec4<u32>, ${buffers * stB}>;
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32${threads > 32 ? ', @builtin(subgroup_id) sid: u32' : ''}) {
  ${order.wgsl}
  let m0 = tm * ${BM}u;
  let n0 = tn * ${BN}u;
  let wm = ${threads > 32 ? `sid % ${WM}u` : '0u'};
  let wn = ${threads > 32 ? `sid / ${WM}u` : '0u'};
  ${rows.flatMap((r) => cols.map((c) => `var acc${r}${c}: ${result};`)).join('\n  ')}
  ${ia.map((i) => at('a', i, 'm0')).join('\n  ')}
  ${ib.map((i) => at('b', i, 'n0')).join('\n  ')}
  ${ia.map((i) => `var ra${i}: vec4<u32>;`).join(' ')} ${ib.map((i) => `var rb${i}: vec4<u32>;`).join(' ')}
  ${load('0u')}${loop}
  ${rows.flatMap((r) => cols.map((c) => `subgroupMatrixStore(&C, (m0 + wm * ${TM * 16}u + ${16 * r}u) * ${N}u + n0 + wn * ${TN * 16}u + ${16 * c}u, acc${r}${c}, false, ${N}u);`)).join('\n  ')}
}`};
}

async function compileErrors(device: GPUDevice, code: string, entryPoint = 'main'): Promise<string> {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({code});
  const info = await module.getCompilationInfo();
  const msgs = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
  let pipelineError = '';
  try {
    await device.createComputePipelineAsync({layout: 'auto', compute: {module, entryPoint}});
  } catch (e) {
    pipelineError = String((e as Error).message ?? e);
  }
  const scope = await device.popErrorScope();
  return [...msgs, pipelineError, scope?.message ?? ''].filter(Boolean).join(' | ').slice(0, 600);
}

async function main() {
  const adapter = await gpu.requestAdapter({powerPreference: 'high-performance'});
  if (!adapter) throw new Error('no adapter');
  const features = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix']
    .filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const l = adapter.limits;
  const device = await adapter.requestDevice({requiredFeatures: features, requiredLimits: {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize, maxBufferSize: l.maxBufferSize,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX}});
  console.log(`# tc_probe ${new Date().toISOString()} adapter ${adapter.info.vendor} ${adapter.info.architecture} ` +
    `${adapter.info.device}; features ${features.join(',')}; workgroup storage ${l.maxComputeWorkgroupStorageSize}`);

  // 1. What compiles: subgroup-matrix offsets that differ between the subgroups of one workgroup.
  const probe = (head: string, sidDecl: string, sid: string) => `
enable f16;
${head}
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read_write> C: array<f32>;
var<workgroup> As: array<f16, 2048>;
@compute @workgroup_size(128)
fn main(@builtin(local_invocation_index) li: u32${sidDecl}) {
  As[li] = f16(li);
  workgroupBarrier();
  let s = ${sid};
  let a = subgroupMatrixLoad<${SG}_left<f16, 16, 16>>(&As, s * 256u, false, 16u);
  let b = subgroupMatrixLoad<${SG}_right<f16, 16, 16>>(&As, s * 256u, true, 16u);
  var acc: ${SG}_result<f32, 16, 16>;
  acc = subgroupMatrixMultiplyAccumulate(a, b, acc);
  subgroupMatrixStore(&C, s * 256u, acc, false, 16u);
}`;
  const probes: Array<[string, string]> = [
    ['offsets from local_invocation_index / 32', probe('enable subgroups;', '', 'li / 32u')],
    ['offsets from @builtin(subgroup_id)', probe('enable subgroups;', ', @builtin(subgroup_id) sid: u32', 'sid')],
    ['offsets from subgroup_id, requires subgroup_id', probe('enable subgroups;\nrequires subgroup_id;', ', @builtin(subgroup_id) sid: u32', 'sid')],
    ['offsets from subgroupBroadcastFirst(li / 32)', probe('enable subgroups;', '', 'subgroupBroadcastFirst(li / 32u)')],
    // The product's 64x128 variants avoid this form (their stores hang on no condition); whether Tint takes it.
    ['a store under a condition on subgroup_id', probe('enable subgroups;', ', @builtin(subgroup_id) sid: u32', 'sid')
      .replace(/subgroupMatrixStore\(([^;]*);/, 'if (s < 2u) { subgroupMatrixStore($1; }')],
  ];
  const compiles: {[name: string]: string} = {};
  for (const [name, code] of probes) {
    compiles[name] = await compileErrors(device, code);
    console.log(JSON.stringify({probe: name, ok: compiles[name] === '', error: compiles[name] || undefined}));
  }
  const sid: 'builtin' | 'index' = compiles['offsets from local_invocation_index / 32'] === '' ? 'index' : 'builtin';

  // 2. Timing on one GEMM.
  // Round 14's tiles of 96 and 128 rows both divide 4608.
  const round26 = args.includes('--round26');   // its tiles of 96 rows and 48 columns need 3072 × 12288
  const M = arg('m', args.includes('--round14') ? 4608 : round26 ? 3072 : 4096), N = arg('n', round26 ? 12288 : 14336),
    K = arg('k', 4096);
  const rnd = (() => {
    let s = 12345;
    return () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  })();
  const a16 = new Uint16Array(M * K), b16 = new Uint16Array(N * K);
  for (let i = 0; i < a16.length; i++) a16[i] = toHalf(rnd());
  for (let i = 0; i < b16.length; i++) b16[i] = toHalf(rnd() * 0.25);
  const buf = (data: ArrayBufferView | number, usage: number) => {
    const size = typeof data === 'number' ? data : data.byteLength;
    const b = device.createBuffer({size, usage: usage | GPUBufferUsage.COPY_DST});
    if (typeof data !== 'number') device.queue.writeBuffer(b, 0, data as unknown as ArrayBuffer);
    return b;
  };
  const A = buf(a16, GPUBufferUsage.STORAGE), B = buf(b16, GPUBufferUsage.STORAGE);
  // Rounds 3-14 build on the blocked operands, rounds 7-14 also on the int8 ones.
  const roundFrom = (from: number) => args.some((a) => /^--round\d+$/.test(a) && Number(a.slice(7)) >= from);
  const round4 = args.includes('--round4');
  const round6 = args.includes('--round6');
  const round3 = roundFrom(3);
  const Ab = round3 ? buf(toBlocks(a16, M, K), GPUBufferUsage.STORAGE) : A;
  // B's blocks, EXPERTS copies one after another (--experts).
  const Bb = !round3 ? B : (() => {
    const blocks = toBlocks(b16, N, K);
    const copies = buf(EXPERTS * blocks.byteLength, GPUBufferUsage.STORAGE);
    for (let e = 0; e < EXPERTS; e++) device.queue.writeBuffer(copies, e * blocks.byteLength, blocks as unknown as ArrayBuffer);
    return copies;
  })();
  const C = buf(M * N * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  const samples = Array.from({length: 256}, () => [Math.floor((rnd() + 1) / 2 * M), Math.floor((rnd() + 1) / 2 * N)]);
  const expected = samples.map(([i, j]) => {
    let s = 0, mag = 0;
    for (let k = 0; k < K; k++) {
      const p = fromHalf(a16[i * K + k]) * fromHalf(b16[j * K + k]);
      s += p;
      mag += Math.abs(p);
    }
    return [s, mag];
  });
  const RUNS = 20;
  const querySet = device.createQuerySet({type: 'timestamp', count: 2 * RUNS});
  const resolve = device.createBuffer({size: 16 * RUNS, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC});
  const readTs = device.createBuffer({size: 16 * RUNS, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
  const readC = device.createBuffer({size: M * N * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
  const flops = 2 * M * N * K;

  const kernels: Kernel[] = args.includes('--round2') ? [] : [storage64(M, N, K)];
  const round7 = roundFrom(7);
  // Round 7's int8 operands: codes in [-127, 127], in 16 × 32 blocks; exact i32 sums on the sampled outputs.
  const a8 = new Int8Array(round7 ? M * K : 0), b8 = new Int8Array(round7 ? N * K : 0);
  for (let i = 0; i < a8.length; i++) a8[i] = Math.round(rnd() * 127);
  for (let i = 0; i < b8.length; i++) b8[i] = Math.round(rnd() * 127);
  const a8Blocks = round7 ? toBlocks(a8, M, K, 32) : new Int8Array(0);
  const A8 = round7 ? buf(a8Blocks, GPUBufferUsage.STORAGE) : A;
  // --experts: EXPERTS copies, as Bb.
  const B8 = !round7 ? B : (() => {
    const blocks = toBlocks(b8, N, K, 32);
    const copies = buf(EXPERTS * blocks.byteLength, GPUBufferUsage.STORAGE);
    for (let e = 0; e < EXPERTS; e++) device.queue.writeBuffer(copies, e * blocks.byteLength, blocks as unknown as ArrayBuffer);
    return copies;
  })();
  if (round3) {
    kernels.length = 0;
    const blockedShapes: BlockedShape[] = [
      {WM: 1, WN: 1, TM: 4, TN: 4, unroll: 1},
      {WM: 2, WN: 2, TM: 4, TN: 4, unroll: 1},
      {WM: 2, WN: 2, TM: 4, TN: 4, unroll: 2},
      {WM: 2, WN: 4, TM: 4, TN: 2, unroll: 2},
      {WM: 4, WN: 2, TM: 2, TN: 4, unroll: 2},
      {WM: 2, WN: 2, TM: 2, TN: 4, unroll: 2},
      {WM: 1, WN: 1, TM: 4, TN: 4, unroll: 2},
      {WM: 4, WN: 4, TM: 2, TN: 2, unroll: 2},
    ];
    for (const b of blockedShapes) kernels.push(blocked(M, N, K, b));
    kernels.push(hybrid(M, N, K));
  }
  if (round7) {
    kernels.length = 0;
    kernels.push(pipelined(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 2}));
    for (const int8 of [false, true]) {
      for (const syntax of [{form: 'old', array: 'scalar'}, {form: 'new', array: 'scalar'}, {form: 'new', array: 'vec4'}] as OperandSyntax[]) {
        if (!args.includes('--round7-n8')) kernels.push(pipelinedTyped(M, N, K, int8, syntax));
      }
      kernels.push(pipelinedTyped(M, N, K, int8, {form: 'old', array: 'scalar'}, true));
    }
  }
  if (args.includes('--round8')) {
    const f16Baseline = pipelined(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 2});
    const int8Baseline = pipelinedTyped(M, N, K, true, {form: 'old', array: 'scalar'});
    const blocked64 = blocked(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 4, unroll: 1});
    const workgroupLoads = [sharedLoads(M, N, K, false), sharedLoads(M, N, K, true)];
    const sid = 'builtin' as const;
    kernels.length = 0;
    if (args.includes('--round8-shared-loads')) {
      kernels.push(f16Baseline, synthetic(M, N, K, false, 'loads'), ...workgroupLoads);
    } else if (args.includes('--round8-shared')) {
      // Loads from workgroup memory, and GEMMs that stage both operands there with 16-byte stores.
      kernels.push(f16Baseline, int8Baseline, blocked64, ...workgroupLoads);
      for (const t of [{BM: 128, BN: 128, BK: 32, WM: 2, WN: 2}, {BM: 128, BN: 128, BK: 64, WM: 2, WN: 2},
        {BM: 128, BN: 256, BK: 32, WM: 2, WN: 4}, {BM: 256, BN: 128, BK: 32, WM: 4, WN: 2}]) {
        kernels.push(tiled(M, N, K, {...t, sid, pad: 8, prefetch: true, v4: true}));
      }
      kernels.push(tiled(M, N, K, {BM: 128, BN: 128, BK: 32, WM: 2, WN: 2, sid, pad: 8, prefetch: true}));
    } else {
      kernels.push(f16Baseline, int8Baseline);
      for (const int8 of [false, true]) {
        for (const kind of ['mma-only', 'loads'] as const) kernels.push(synthetic(M, N, K, int8, kind));
      }
      // Fewer loads per multiply: 4 × 8 blocks per subgroup (12 loads per 32 multiplies; 256 accumulator registers).
      kernels.push(blocked(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 8, unroll: 1}), blocked64);
    }
  }
  // Rounds 9 and 10: round 8's best storage-block kernel, then staged() at each shape that divides the GEMM.
  const stagedRound = (shapes: StagedShape[], ...baselines: Kernel[]) => {
    kernels.length = 0;
    kernels.push(blocked(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 4, unroll: 1}), ...baselines);
    for (const t of shapes) if (M % t.BM === 0 && N % t.BN === 0 && K % t.BK === 0) kernels.push(staged(M, N, K, t));
  };
  if (args.includes('--round9')) {
    // Both operands staged in workgroup memory (16-byte copies), every matrix load from there.
    stagedRound([
      {BM: 64, BN: 64, BK: 32, WM: 1, WN: 1, buffers: 2, src: 'blocks'},
      {BM: 64, BN: 64, BK: 32, WM: 1, WN: 1, buffers: 1, src: 'blocks'},
      {BM: 64, BN: 64, BK: 64, WM: 1, WN: 1, buffers: 2, src: 'blocks'},
      {BM: 64, BN: 64, BK: 32, WM: 1, WN: 1, buffers: 2, src: 'rows'},
      {BM: 128, BN: 64, BK: 32, WM: 2, WN: 1, buffers: 2, src: 'blocks'},
      {BM: 64, BN: 128, BK: 32, WM: 1, WN: 2, buffers: 2, src: 'blocks'},
      {BM: 128, BN: 128, BK: 32, WM: 2, WN: 2, buffers: 2, src: 'blocks'},
      {BM: 128, BN: 128, BK: 32, WM: 2, WN: 2, buffers: 1, src: 'blocks'},
      {BM: 128, BN: 256, BK: 32, WM: 2, WN: 4, buffers: 1, src: 'blocks'},
      {BM: 256, BN: 128, BK: 32, WM: 4, WN: 2, buffers: 1, src: 'blocks'},
      {BM: 64, BN: 64, BK: 16, WM: 1, WN: 1, buffers: 2, src: 'blocks'},
      {BM: 64, BN: 64, BK: 64, WM: 1, WN: 1, buffers: 2, src: 'blocks', int8: true},
      {BM: 128, BN: 128, BK: 64, WM: 2, WN: 2, buffers: 2, src: 'blocks', int8: true},
      {BM: 128, BN: 64, BK: 64, WM: 2, WN: 1, buffers: 2, src: 'blocks', int8: true},
    ], pipelinedTyped(M, N, K, true, {form: 'old', array: 'scalar'}));
  }
  if (args.includes('--round11')) {
    // The order in which workgroups walk the output tiles (L2 reuse), on round 8's best f16 and round 10's int8.
    kernels.length = 0;
    for (const order of ['n-fastest', 'm-fastest', 'grouped'] as TileOrder[]) {
      kernels.push(blocked(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 4, unroll: 1, order}));
    }
    for (const order of ['n-fastest', 'm-fastest', 'grouped'] as TileOrder[]) {
      kernels.push(staged(M, N, K, {BM: 128, BN: 128, BK: 64, WM: 2, WN: 2, buffers: 1, src: 'blocks', int8: true, order}));
    }
    for (const order of ['m-fastest', 'grouped'] as TileOrder[]) {
      kernels.push(staged(M, N, K, {BM: 128, BN: 128, BK: 32, WM: 2, WN: 2, buffers: 1, src: 'blocks', order}));
    }
    kernels.push(blocked(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 4, unroll: 1}));
  }
  if (args.includes('--round13')) {
    // Waves: the 64 × 64 storage-block GEMM on the first m row tiles only (m · N/64 workgroups), as the expert
    // GEMMs run on a few row tiles per expert at small M. If time grows in steps of whole waves, the step's width
    // is the workgroups the GPU runs at once, and the last wave of a dispatch costs a whole one however empty.
    kernels.length = 0;
    for (let m = 1; m <= Math.min(16, M / 64); m++) {
      const k = blocked(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 4, unroll: 1});
      kernels.push({...k, name: `round13 ${m} row tile(s), ${m * N / 64} workgroups: ${k.name}`,
        workgroups: [N / 64, m, 1], synthetic: {flops: 2 * m * 64 * N * K}});
    }
  }
  if (args.includes('--round12')) {
    // Block pointers against element offsets (blockNames), with the loads from workgroup memory as the floor.
    // Run once per set of Dawn toggles: none, disable_robustness (no Tint clamps, no Vulkan robust access).
    kernels.length = 0;
    kernels.push(blocked(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 4, unroll: 1}));
    for (const loop of ['loads', 'cached-loads', 'plain', 'pipelined'] as const) {
      for (const int8 of [false, true]) {
        for (const pointers of [false, true]) kernels.push(blockNames(M, N, K, int8, pointers, loop));
        // Block pointers into 16-byte elements: both alignment cues at once.
        if (loop === 'loads' || loop === 'plain') kernels.push(blockNames(M, N, K, int8, true, loop, true));
      }
    }
    kernels.push(sharedLoads(M, N, K, true));
  }
  if (args.includes('--round14')) {
    // Several 64 × 64 subgroups per workgroup on block pointers, sharing A (along N) or B (along M) through L1
    // instead of workgroup memory: round 12 found the streaming loads bound by L2's rate (9.2 TB/s) and L1 hits
    // a seventh of their cost; round 5 tried 1 × 2 and 2 × 1 before block pointers (198 and 180 against 198).
    // 'loads' at 1 × 2 and 2 × 2 against 1 × 1 says whether the shared blocks are L1 hits at all.
    kernels.length = 0;
    const grids = [{WM: 1, WN: 1}, {WM: 1, WN: 2}, {WM: 2, WN: 1}, {WM: 2, WN: 2}];
    for (const sub of grids) kernels.push(blockNames(M, N, K, false, true, 'pipelined', false, sub));
    for (const sub of grids) kernels.push(blockNames(M, N, K, true, true, 'plain', false, sub));
    for (const sub of grids.slice(0, 3)) kernels.push(blockNames(M, N, K, false, true, 'plain', false, sub));
    for (const int8 of [false, true]) {
      for (const sub of [grids[0], grids[1], grids[3]]) kernels.push(blockNames(M, N, K, int8, true, 'loads', false, sub));
    }
    // 96 × 64 per subgroup (6 × 4 results, 192 accumulator registers a lane, plain loop only: the prefetching
    // one would spill, as round 8's 64 × 128 did): 10 blocks loaded per 24 multiplies against 8 per 16.
    for (const int8 of [false, true]) {
      for (const sub of grids.slice(0, 2)) kernels.push(blockNames(M, N, K, int8, true, 'plain', false, sub, {TM: 6, TN: 4}));
    }
    // The f16 plain loop lost 3.5 % to block pointers at 64 × 64 (round 12): the 96-row tile both ways
    // ('plain-96' and 'tensor-core-i8-plain-96' in the product read as their 64-row kernels do).
    kernels.push(blockNames(M, N, K, false, false, 'plain', false, grids[0], {TM: 6, TN: 4}));
    kernels.push(blockNames(M, N, K, false, false, 'plain'));
    mustTile(kernels, M, N);
  }
  if (args.includes('--round15')) {
    // Round 14's shared blocks were no cheaper (loads 1 × 2: 1.95 against 1.92 ms): both subgroups asked for each
    // block at once. Here a neighbour asks `lag` blocks later, when the first has it in L1 (round 12: L1 hits cost
    // a seventh). If the loads become cheaper, the 1 × 2 / 2 × 2 / 1 × 4 kernels move fewer bytes from L2 per
    // multiply: 12, 8 and 10 blocks per 16 multiplies from L2 against 16, 16 and 32.
    kernels.length = 0;
    const one = {WM: 1, WN: 1};
    kernels.push(blockNames(M, N, K, false, true, 'pipelined', false, one));
    kernels.push(blockNames(M, N, K, true, true, 'plain', false, one));
    for (const int8 of [false, true]) {
      kernels.push(blockNames(M, N, K, int8, true, 'loads', false, one));
      for (const sub of [{WM: 1, WN: 2, lag: 2}, {WM: 2, WN: 2, lag: 2}]) kernels.push(blockNames(M, N, K, int8, true, 'loads', false, sub));
    }
    const grids = [{WM: 1, WN: 2, lag: 1}, {WM: 1, WN: 2, lag: 2}, {WM: 1, WN: 2, lag: 4}, {WM: 2, WN: 2, lag: 1},
      {WM: 2, WN: 2, lag: 2}, {WM: 2, WN: 1, lag: 2}, {WM: 1, WN: 4, lag: 2}];
    for (const sub of grids) kernels.push(blockNames(M, N, K, false, true, 'pipelined', false, sub));
    for (const sub of grids) kernels.push(blockNames(M, N, K, true, true, 'plain', false, sub));
    mustTile(kernels, M, N);
  }
  if (args.includes('--round16')) {
    // The expert GEMMs' int8 plain loop runs at ~211 TOPS (Mixtral M = 4096 w13) where round 12's probe kernel of
    // the same shape reached 299, while the f16 pipelined loop matches its probe. One difference: the product's k
    // bounds come from the tile lookup at run time. The same kernels with run-time bounds, and with the plain
    // loop unrolled by hand (2 or 4 k blocks' loads, then their multiplies).
    kernels.length = 0;
    const one = {WM: 1, WN: 1}, t = {TM: 4, TN: 4};
    for (const int8 of [true, false]) {
      kernels.push(blockNames(M, N, K, int8, true, 'plain', false, one, t));
      kernels.push(blockNames(M, N, K, int8, true, 'plain', false, one, t, {runtime: true}));
      for (const unroll of [2, 4]) {
        kernels.push(blockNames(M, N, K, int8, true, 'plain', false, one, t, {runtime: true, unroll}));
        kernels.push(blockNames(M, N, K, int8, true, 'plain', false, one, t, {unroll}));
      }
      kernels.push(blockNames(M, N, K, int8, true, 'pipelined', false, one, t));
      kernels.push(blockNames(M, N, K, int8, true, 'pipelined', false, one, t, {runtime: true}));
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round17')) {
    // f16: the prefetching loop one k block ahead instead of a two-block step, beside round 12's loops; and the
    // same for int8 beside its plain loop (round 16: the compiler's schedule of that one is the fastest).
    kernels.length = 0;
    const one = {WM: 1, WN: 1}, t = {TM: 4, TN: 4};
    for (const int8 of [false, true]) {
      for (const loop of ['pipelined', 'plain', 'pipelined-1'] as const) kernels.push(blockNames(M, N, K, int8, true, loop, false, one, t));
      kernels.push(blockNames(M, N, K, int8, true, 'pipelined-1', false, one, t, {runtime: true}));
    }
    // Round 15's best f16 workgroup (four subgroups side by side, k staggered) with the plain loop and one block ahead.
    for (const loop of ['pipelined', 'plain', 'pipelined-1'] as const) {
      kernels.push(blockNames(M, N, K, false, true, loop, false, {WM: 1, WN: 4, lag: 2}, t));
    }
    kernels.push(blockNames(M, N, K, true, true, 'plain', false, {WM: 1, WN: 4, lag: 2}, t));
    mustTile(kernels, M, N);
  }
  if (args.includes('--round18')) {
    // Rounds 12-15 put the loads' time in their latency and bytes in flight: a one-subgroup 64 × 64 tile holds
    // one 32-k step (8 KiB) in flight in registers, and a neighbour's earlier load of a block did not make it
    // cheaper. Here each lane also loads one half every 16 bytes of the blocks `dist` steps ahead (1 register a
    // block, summed a step later), so their lines are requested well before the subgroup-matrix loads ask.
    // Run twice: the plain GEMM, and with --m 512 --n 28672 --experts 8 (Mixtral's w13 at M = 256: weights
    // streamed from memory once).
    kernels.length = 0;
    const one = {WM: 1, WN: 1}, four = {WM: 1, WN: 4, lag: 2}, t = {TM: 4, TN: 4};
    for (const sub of [four, one]) {
      kernels.push(blockNames(M, N, K, false, true, 'pipelined', false, sub, t));
      for (const touch of [{which: 'b', dist: 2}, {which: 'b', dist: 4}, {which: 'ab', dist: 2}] as Touch[]) {
        kernels.push(blockNames(M, N, K, false, true, 'pipelined', false, sub, t, {touch}));
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round19')) {
    // 80-row subgroup tiles (5 × 4 results, 160 accumulator registers a lane): Mixtral's experts at M = 256 hold
    // 56-74 rows, which 64-row tiles split into 11 row tiles where 80-row ones need 8. Round 14's 96 rows
    // collapsed (likely spills); whether 80 do, beside the 64-row kernels. Run with --m 5120 (80 and 64 divide it)
    // and with --m 640 --n 28672 --experts 8 (one 80-row tile an expert; round 18's M = 512 is the 64-row case).
    kernels.length = 0;
    const one = {WM: 1, WN: 1}, four = {WM: 1, WN: 4, lag: 2};
    for (const sub of [four, one]) {
      for (const loop of ['pipelined', 'plain'] as const) {
        for (const TM of [4, 5]) kernels.push(blockNames(M, N, K, false, true, loop, false, sub, {TM, TN: 4}));
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round20')) {
    // A staged in workgroup memory (aStaged), beside the product's loop (round 15's four staggered subgroups) and
    // the int8 plain loop. The first H100 call (its kernels: git show e09c37c, less the staged-B ones): A staged
    // alone changes nothing (2.09 against 2.10 ms). With A's loads off storage, what is left is B's: deeper prefetch
    // of B, and tall, narrow subgroup tiles (128 × 32: 2 B blocks per 16 multiplies against 4); not yet run. Run
    // also with --m 512 --n 28672 --experts 8.
    kernels.length = 0;
    const four = {WM: 1, WN: 4, lag: 2}, t = {TM: 4, TN: 4};
    kernels.push(blockNames(M, N, K, false, true, 'pipelined', false, four, t));
    const shapes = [{WM: 1, WN: 4, SK: 2}, {WM: 1, WN: 4, SK: 2, ahead: 2}, {WM: 1, WN: 4, SK: 2, ahead: 3},
      {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2}, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2},
      {WM: 1, WN: 8, SK: 2, TM: 8, TN: 2}, {WM: 1, WN: 8, SK: 2, TM: 8, TN: 2, ahead: 2},
      {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 3}, {WM: 1, WN: 4, SK: 4, TM: 8, TN: 2, ahead: 2}];
    // --experts: one 64-row tile an expert, so only the 64-row subgroup tiles.
    for (const sh of shapes) if (EXPERTS === 1 || sh.TM === undefined) kernels.push(aStaged(M, N, K, sh));
    if (EXPERTS === 1) {
      kernels.push(blockNames(M, N, K, true, true, 'plain', false, {WM: 1, WN: 1}, t));
      for (const sh of shapes) kernels.push(aStaged(M, N, K, {...sh, int8: true}));
      // Both operands staged (round 9's idea, one barrier a stage).
      for (const int8 of [false, true]) kernels.push(aStaged(M, N, K, {WM: 2, WN: 2, SK: 2, stageB: true, int8}));
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round21')) {
    // Round 20's tall, narrow tiles again: the f16 1 × 8 winner (2.031 against 2.105 ms) repeated and deeper, one
    // k block a stage (half the workgroup memory, twice the barriers), and int8's 1 × 4 winner beside 128 × 16 tiles.
    kernels.length = 0;
    const four = {WM: 1, WN: 4, lag: 2}, t = {TM: 4, TN: 4};
    kernels.push(blockNames(M, N, K, false, true, 'pipelined', false, four, t));
    for (const sh of [{WM: 1, WN: 8, SK: 2, TM: 8, TN: 2, ahead: 2}, {WM: 1, WN: 8, SK: 2, TM: 8, TN: 2, ahead: 3},
      {WM: 1, WN: 8, SK: 2, TM: 8, TN: 2, ahead: 4}, {WM: 1, WN: 8, SK: 1, TM: 8, TN: 2, ahead: 2},
      {WM: 1, WN: 4, SK: 1, TM: 8, TN: 2, ahead: 2}, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2}]) {
      kernels.push(aStaged(M, N, K, sh));
    }
    kernels.push(blockNames(M, N, K, false, true, 'pipelined', false, four, t));
    kernels.push(blockNames(M, N, K, true, true, 'plain', false, {WM: 1, WN: 1}, t));
    for (const sh of [{WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2}, {WM: 1, WN: 4, SK: 1, TM: 8, TN: 2, ahead: 2},
      {WM: 1, WN: 8, SK: 1, TM: 8, TN: 2, ahead: 2}, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 1, ahead: 2},
      {WM: 1, WN: 8, SK: 2, TM: 8, TN: 1, ahead: 2}, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 4}]) {
      kernels.push(aStaged(M, N, K, {...sh, int8: true}));
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round22')) {
    // The int8 128 × 32 winner, and f16's, in the expert GEMMs' launch order (row tiles fastest) beside the probe's.
    // With --experts (aStaged: row tiles in EXPERTS contiguous runs, each multiplying its own copy of B, as the
    // expert GEMMs' sorted rows do): int8 only, and no plain baseline (it reads one copy).
    kernels.length = 0;
    if (EXPERTS === 1) kernels.push(blockNames(M, N, K, true, true, 'plain', false, {WM: 1, WN: 1}, {TM: 4, TN: 4}));
    for (const int8 of EXPERTS === 1 ? [true, false] : [true]) {
      for (const rowsFastest of [false, true]) {
        kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2, int8, rowsFastest}));
      }
    }
    if (EXPERTS === 1) kernels.push(aStaged(M, N, K, {WM: 1, WN: 8, SK: 2, TM: 8, TN: 2, ahead: 2, rowsFastest: true}));
    mustTile(kernels, M, N);
  }
  if (args.includes('--round23')) {
    // The int8 128 × 32 winner with its results leaving as the layer's epilogue takes them (round 22's question:
    // what the layer's kernel adds to the probe's loop), both launch orders; f16 beside.
    kernels.length = 0;
    kernels.push(blockNames(M, N, K, true, true, 'plain', false, {WM: 1, WN: 1}, {TM: 4, TN: 4}));
    for (const int8 of [true, false]) {
      for (const stagedStores of [false, true]) {
        kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2, int8, rowsFastest: true, stagedStores}));
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round24')) {
    // Round 23's 18% (int8) and 48% (f16) for results through workgroup memory: how much of it is the 16 barriers?
    kernels.length = 0;
    kernels.push(blockNames(M, N, K, true, true, 'plain', false, {WM: 1, WN: 1}, {TM: 4, TN: 4}));
    for (const int8 of [true, false]) {
      for (const stagedStores of [false, true, 'double', 'batch4'] as const) {
        kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2, int8, rowsFastest: true, stagedStores}));
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round25')) {
    // The 128 × 32 subgroup tiles stored straight (the layer's int8 default GEMM) against the same tiles in
    // workgroups of 2 subgroups (128 × 64: half the workgroup's warps at each barrier, A staged per 2 tiles) and of
    // 8 (256 × 128, 2 × 4: B's blocks shared by two subgroups through L1, half of B's L2 traffic a multiply); and
    // 64 × 32 subgroup tiles (half the accumulators' registers, so more warps an SM to overlap loads with
    // multiplies) in workgroups of 128 × 128 (2 × 4 subgroups) and 128 × 64 (2 × 2).
    kernels.length = 0;
    for (const int8 of [true, false]) {
      for (const [WM, WN, TM] of [[1, 4, 8], [1, 2, 8], [2, 4, 8], [2, 4, 4], [2, 2, 4]]) {
        kernels.push(aStaged(M, N, K, {WM, WN, SK: 2, TM, TN: 2, ahead: 2, int8, rowsFastest: true}));
      }
    }
    mustTile(kernels, M, N);
  }
  if (round26) {
    // Round 25: smaller subgroup tiles lose (64 × 32: 1.95 against 1.30 ms), however many more warps their fewer
    // accumulators allow, so a tile's loads per multiply look like the bound (128 × 32: 8 x blocks from workgroup
    // memory and 2 weight blocks from storage for 16 multiplies). Taller and wider tiles load fewer per multiply:
    // 128 × 48 (11 for 24), 192 × 32 (14 for 24), 96 × 48 (9 for 18), against 96 × 32 (8 for 12); 24
    // accumulators are 192 registers a lane, so the weights go 1 block ahead as well as 2 (fewer live registers).
    // Measured (H100, docs/tensor-cores.md, an eighteenth session): every one of them loses to 128 × 32.
    kernels.length = 0;
    for (const int8 of [true, false]) {
      const shapes = int8 ? [[8, 2, 2], [8, 3, 1], [8, 3, 2], [12, 2, 2], [12, 2, 1], [6, 3, 2], [6, 2, 2]] :
        [[8, 2, 2], [8, 3, 1], [12, 2, 1]];
      for (const [TM, TN, ahead] of shapes) {
        kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK: 2, TM, TN, ahead, int8, rowsFastest: true}));
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round27')) {
    // Rounds 25-26 left 128 × 32 subgroup tiles over staged x, the weights streamed by subgroup-matrix loads from
    // storage (2 a 16-k step a subgroup, 2 ahead), as the best loop. Round 8 found a matrix load from storage
    // dearer per byte in int8 than in f16 (its cost follows elements, not bytes), a load from workgroup memory a
    // sixth of one from storage; round 20 staged both operands only on 64 × 64 tiles. So here the weights are
    // staged too, copied as x is (16-byte loads, one barrier a stage), on the tall tiles: 1 × 4 subgroups (each
    // subgroup's weights its own; 2 k blocks a stage, 32 KiB, or 1, 16 KiB, rows padded or not), 2 × 4 (256 ×
    // 128: each weight block read by two subgroups from workgroup memory, x by four; 1 k block, 24 KiB) and 2 × 2
    // (256 × 64; 1 and 2 k blocks), beside the streamed-weights kernel in the same call.
    kernels.length = 0;
    for (const int8 of [true, false]) {
      kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2, int8, rowsFastest: true}));
      for (const [WM, WN, SK, pad] of [[1, 4, 2, 0], [1, 4, 1, 0], [1, 4, 1, 1], [2, 4, 1, 0], [2, 4, 1, 1], [2, 2, 1, 0],
        [2, 2, 2, 0]]) {
        kernels.push(aStaged(M, N, K, {WM, WN, SK, TM: 8, TN: 2, stageB: true, pad: pad === 1, int8, rowsFastest: true}));
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round28')) {
    // Round 27 (H100): both operands staged one k block a stage with rows padded to 48 bytes won, int8 1.046 ms
    // (460 TOPS) against the streamed weights' 1.295; unpadded 1.218, so most of it is bank conflicts. Which part
    // pays: x padded alone (weights still streamed), one or two k blocks a stage, and 2, 4 or 8 subgroups of
    // 128 × 32 sharing x (1 × 2, 1 × 4, 1 × 8) or 2 × 2.
    kernels.length = 0;
    for (const int8 of [true, false]) {
      kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2, int8, rowsFastest: true}));
      for (const SK of [2, 1]) {
        kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK, TM: 8, TN: 2, ahead: 2, pad: true, int8, rowsFastest: true}));
      }
      for (const [WM, WN, SK] of [[1, 4, 1], [1, 4, 2], [1, 8, 1], [1, 2, 1], [2, 2, 1]]) {
        kernels.push(aStaged(M, N, K, {WM, WN, SK, TM: 8, TN: 2, stageB: true, pad: true, int8, rowsFastest: true}));
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round29')) {
    // Round 28 (H100): x's rows padded, weights streamed, f16 1.790 ms against 1.950 on 4096 × 14336 × 4096; in the
    // int8 layer kernel the same padding lost 44%. The layer's conditions here: run at w13's and w2's shapes with
    // --experts 8 (each expert's row tiles multiply its own weights), x-major and 8 row tiles at a time.
    kernels.length = 0;
    for (const int8 of [true, false]) {
      for (const [pad, SK] of [[false, 2], [true, 2], [true, 1]] as const) {
        for (const groupRows of [0, 8]) {
          kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK, TM: 8, TN: 2, ahead: 2, pad, int8, rowsFastest: true, groupRows}));
        }
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round30')) {
    // Twentieth session: the probe's fastest loops (x padded, weights streamed: f16 269 TFLOP/s, int8 388 TOPS)
    // lost heavily in the layer's kernels (f16 1.6-1.9×, int8 44%), the unpadded int8 loop did not. Whether a few
    // more live registers (the layer keeps its tile lookup's values) tip these loops over: 0, 12 and 20 more.
    kernels.length = 0;
    for (const int8 of [true, false]) {
      for (const pad of [false, true]) {
        for (const live of [0, 2, 4]) {
          kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2, pad, int8, rowsFastest: true,
            live}));
        }
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round31')) {
    // Twenty-first session: the layer's int8 default GEMM at this probe's very GEMM (bench/shapes.ts 'plain-gemm')
    // took 1.429 ms unpadded and 2.075 padded where this loop takes 1.314 and 1.286; round 30 cleared register
    // pressure, round 29 the experts and launch order. What else the layer's kernel has around the loop: its tile
    // through workgroup variables, tfjs's entry point, both.
    kernels.length = 0;
    for (const int8 of [true, false]) {
      for (const pad of [false, true]) {
        for (const [tileThroughWorkgroup, tfjsEntry] of [[false, false], [true, false], [false, true], [true, true]]) {
          kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2, pad, int8, rowsFastest: true,
            groupRows: 8, tileThroughWorkgroup, tfjsEntry}));
        }
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round33')) {
    // Twenty-third session: round 31 on an H100 put the loss in the tile lookup, and only with x's rows padded (int8
    // 1.178 → 1.791 ms, f16 1.744 → 2.913; unpadded and tfjs's entry cost nothing). Which part of the lookup: the
    // padded loops without it, with all of it, with it taken apart, and kept in registers or broadcast
    // (TileLookupPart; the layer builds padreg and padbcast of gpu_layer_variants.sh are the last two).
    kernels.length = 0;
    for (const int8 of [true, false]) {
      for (const tileThroughWorkgroup of [false, true, 'after', 'noSearch', 'noReturn', 'unused', 'registers',
        'broadcast'] as const) {
        kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2, pad: true, int8, rowsFastest: true,
          groupRows: 8, tileThroughWorkgroup}));
      }
    }
    mustTile(kernels, M, N);
  }
  if (args.includes('--round32')) {
    // Twenty-second session: the int8 default's w13 GEMM as the layer compiles it (bench/layer_kernel.ts: tfjs's
    // shader, this package's rewrites, its bindings, uniforms and dispatch), run verbatim by this harness on this
    // GEMM's operands beside round 31's first loops. Its time here against the layer's at 'plain-gemm' (1.429 ms;
    // 2.075 padded, from a gpu_layer_variants.sh build of this probe) says whether the loss is in the shader or in
    // how the layer runs it; against the probe's loop, which part of the shader.
    if (EXPERTS !== 1) throw new Error('--round32: one expert (no --experts)');
    kernels.length = 0;
    for (const pad of [false, true]) {
      kernels.push(aStaged(M, N, K, {WM: 1, WN: 4, SK: 2, TM: 8, TN: 2, ahead: 2, pad, int8: true, rowsFastest: true,
        groupRows: 8}));
    }
    kernels.push(...layerVerbatim(device, M, N, K, a8Blocks, B8, buf));
  }
  if (args.includes('--round10')) {
    // Round 9's staging with more, smaller subgroups per workgroup tile (more warps to hide the copies).
    stagedRound([
      {BM: 128, BN: 128, BK: 32, WM: 2, WN: 2, buffers: 1, src: 'blocks'},
      {BM: 128, BN: 128, BK: 32, WM: 4, WN: 2, buffers: 1, src: 'blocks'},
      {BM: 128, BN: 128, BK: 32, WM: 4, WN: 2, buffers: 2, src: 'blocks'},
      {BM: 128, BN: 128, BK: 32, WM: 2, WN: 4, buffers: 1, src: 'blocks'},
      {BM: 128, BN: 128, BK: 32, WM: 4, WN: 4, buffers: 1, src: 'blocks'},
      {BM: 128, BN: 128, BK: 32, WM: 4, WN: 4, buffers: 2, src: 'blocks'},
      {BM: 128, BN: 128, BK: 64, WM: 4, WN: 2, buffers: 1, src: 'blocks'},
      {BM: 128, BN: 256, BK: 32, WM: 4, WN: 4, buffers: 1, src: 'blocks'},
      {BM: 256, BN: 128, BK: 32, WM: 4, WN: 4, buffers: 1, src: 'blocks'},
      {BM: 128, BN: 256, BK: 32, WM: 4, WN: 4, buffers: 2, src: 'blocks'},
      {BM: 128, BN: 128, BK: 64, WM: 2, WN: 2, buffers: 1, src: 'blocks', int8: true},
      {BM: 128, BN: 128, BK: 64, WM: 4, WN: 2, buffers: 2, src: 'blocks', int8: true},
      {BM: 128, BN: 128, BK: 64, WM: 4, WN: 4, buffers: 2, src: 'blocks', int8: true},
      {BM: 128, BN: 256, BK: 64, WM: 4, WN: 4, buffers: 1, src: 'blocks', int8: true},
      {BM: 128, BN: 256, BK: 64, WM: 4, WN: 4, buffers: 2, src: 'blocks', int8: true},
    ]);
  }
  if (args.includes('--round5')) {
    kernels.length = 0;
    const pipes: PipeShape[] = [
      {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 2},
      {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 2, rowMajor: 'A'},
      {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 2, rowMajor: 'B'},
      {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 2, rowMajor: 'AB'},
      {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 4},
      {WM: 1, WN: 1, TM: 2, TN: 4, a: 'blocked', unroll: 4},
      {WM: 1, WN: 1, TM: 4, TN: 2, a: 'blocked', unroll: 4, rowMajor: 'B'},
      {WM: 1, WN: 2, TM: 4, TN: 4, a: 'blocked', unroll: 2},
      {WM: 2, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 2},
      {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 2},
    ];
    for (const p of pipes) kernels.push(pipelined(M, N, K, p));
  }
  if (round6) {
    // Round 6: the best two shapes of rounds 4-5, run once per set of Dawn toggles (--dawn-toggles).
    kernels.length = 0;
    kernels.push(pipelined(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 2}));
    kernels.push(pipelined(M, N, K, {WM: 1, WN: 2, TM: 4, TN: 4, a: 'blocked', unroll: 2}));
    kernels.push(pipelined(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 2, a: 'blocked', unroll: 4}));
  }
  if (round4) {
    kernels.length = 0;
    kernels.push(hybrid(M, N, K));
    const pipes: PipeShape[] = [
      {WM: 2, WN: 2, TM: 4, TN: 4, a: 'tile', BK: 32},
      {WM: 2, WN: 2, TM: 4, TN: 4, a: 'tile', BK: 64},
      {WM: 4, WN: 2, TM: 4, TN: 4, a: 'tile', BK: 32},
      {WM: 2, WN: 4, TM: 4, TN: 4, a: 'tile', BK: 32},
      {WM: 2, WN: 2, TM: 2, TN: 4, a: 'tile', BK: 32},
      {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 1},
      {WM: 1, WN: 1, TM: 4, TN: 4, a: 'blocked', unroll: 2},
      {WM: 1, WN: 2, TM: 4, TN: 4, a: 'blocked', unroll: 1},
      {WM: 2, WN: 2, TM: 4, TN: 4, a: 'blocked', unroll: 1},
      {WM: 1, WN: 1, TM: 4, TN: 2, a: 'blocked', unroll: 2},
      {WM: 1, WN: 1, TM: 2, TN: 4, a: 'blocked', unroll: 2},
      {WM: 1, WN: 1, TM: 4, TN: 2, a: 'blocked', unroll: 1},
      {WM: 1, WN: 1, TM: 4, TN: 2, a: 'blocked', unroll: 4},
      {WM: 2, WN: 1, TM: 4, TN: 2, a: 'blocked', unroll: 2},
      {WM: 1, WN: 2, TM: 4, TN: 2, a: 'blocked', unroll: 2},
      {WM: 2, WN: 2, TM: 4, TN: 2, a: 'blocked', unroll: 2},
      {WM: 4, WN: 2, TM: 4, TN: 2, a: 'tile', BK: 32},
    ];
    for (const p of pipes) kernels.push(pipelined(M, N, K, p));
    kernels.push(blocked(M, N, K, {WM: 1, WN: 1, TM: 4, TN: 4, unroll: 2}));
  }
  const shapes: TiledShape[] = roundFrom(4) ? [] : round3 ? [{BM: 128, BN: 128, BK: 32, WM: 2, WN: 2, sid, pad: 8, prefetch: true}] :
    args.includes('--round2') ? [
    {BM: 128, BN: 128, BK: 32, WM: 2, WN: 2, sid, pad: 8, prefetch: true},
    {BM: 128, BN: 128, BK: 32, WM: 2, WN: 2, sid, pad: 8, prefetch: true, double: true},
    {BM: 128, BN: 128, BK: 64, WM: 2, WN: 2, sid, pad: 8, prefetch: true},
    {BM: 128, BN: 128, BK: 32, WM: 2, WN: 2, sid, pad: 16, prefetch: true},
    {BM: 128, BN: 256, BK: 32, WM: 2, WN: 4, sid, pad: 8, prefetch: true, double: true},
    {BM: 64, BN: 128, BK: 32, WM: 2, WN: 2, sid, pad: 8, prefetch: true, double: true},
    {BM: 128, BN: 128, BK: 32, WM: 4, WN: 2, sid, pad: 8, prefetch: true, double: true},
  ] : [
    {BM: 128, BN: 128, BK: 32, WM: 2, WN: 4, sid, pad: 8, prefetch: true},
    {BM: 128, BN: 128, BK: 32, WM: 2, WN: 2, sid, pad: 8, prefetch: true},
    {BM: 128, BN: 256, BK: 32, WM: 2, WN: 4, sid, pad: 8, prefetch: true},
    {BM: 128, BN: 128, BK: 32, WM: 2, WN: 4, sid, pad: 0, prefetch: true},
    {BM: 128, BN: 128, BK: 64, WM: 2, WN: 4, sid, pad: 8, prefetch: true},
    {BM: 128, BN: 128, BK: 32, WM: 2, WN: 4, sid, pad: 8, prefetch: false},
    {BM: 64, BN: 128, BK: 32, WM: 2, WN: 2, sid, pad: 8, prefetch: true},
    {BM: 256, BN: 128, BK: 32, WM: 4, WN: 2, sid, pad: 8, prefetch: true},
  ];
  for (const s of shapes) {
    try {
      kernels.push(tiled(M, N, K, s));
    } catch (e) {
      console.log(JSON.stringify({shape: s, skipped: String(e)}));
    }
  }
  // --pick i,j,…: only those of the round's kernels (by index), to finish a round a call's limit cut short.
  const pick = args.indexOf('--pick');
  if (pick >= 0) {
    const raw = args[pick + 1] ?? '';
    const keep = new Set(raw.split(',').map((t) => (t.trim() === '' ? NaN : Number(t))));
    const bad = [...keep].filter((i) => !Number.isInteger(i) || i < 0 || i >= kernels.length);
    if (bad.length) throw new Error(`--pick: expected indices of the round's ${kernels.length} kernels, got '${raw}'`);
    for (let i = kernels.length - 1; i >= 0; i--) if (!keep.has(i)) kernels.splice(i, 1);
  }
  if (args.includes('--print')) {
    for (const k of kernels) console.log(`// ${k.name}\n${k.code}`);
    return;
  }
  for (const k of kernels) {
    const err = await compileErrors(device, k.code, k.own?.entry);
    if (err) {
      console.log(JSON.stringify({kernel: k.name, compiled: false, error: err}));
      continue;
    }
    const module = device.createShaderModule({code: k.code});
    const pipeline = await device.createComputePipelineAsync({layout: 'auto',
      compute: {module, entryPoint: k.own?.entry ?? 'main'}});
    const group = device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries: (k.own ? k.own.buffers : k.int8 ? [A8, B8, C] : k.blocked === 'B' ? [A, Bb, C] : k.blocked === 'A' ? [Ab, B, C] : k.blocked ? [Ab, Bb, C] : [A, B, C]).map((b, i) =>
      ({binding: i, resource: {buffer: b}}))});
    const pass = (enc: GPUCommandEncoder, q?: number) => {
      const p = enc.beginComputePass(q == null ? {} : {timestampWrites: {querySet, beginningOfPassWriteIndex: 2 * q,
        endOfPassWriteIndex: 2 * q + 1}});
      p.setPipeline(pipeline);
      p.setBindGroup(0, group);
      p.dispatchWorkgroups(...k.workgroups);
      p.end();
    };
    // Warm-up: the H200 runs at low clocks for the first second or so of work (round 4's first kernels read
    // 3-5× slow against round 3), so each kernel first keeps the GPU busy for ~warmMs (first: 2 s).
    let enc = device.createCommandEncoder();
    const t0 = performance.now();
    pass(enc);
    pass(enc);
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    const each = Math.max(0.05, (performance.now() - t0) / 2);
    const warmMs = k === kernels[0] ? 2000 : arg('warm-ms', 400);
    for (let left = Math.ceil(warmMs / each); left > 0; left -= 50) {
      enc = device.createCommandEncoder();
      for (let q = 0; q < Math.min(50, left); q++) pass(enc);
      device.queue.submit([enc.finish()]);
    }
    enc = device.createCommandEncoder();
    for (let q = 0; q < RUNS; q++) pass(enc, q);
    enc.resolveQuerySet(querySet, 0, 2 * RUNS, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, readTs, 0, 16 * RUNS);
    enc.copyBufferToBuffer(k.own?.out ?? C, 0, readC, 0, M * N * 4);
    device.queue.submit([enc.finish()]);
    await readTs.mapAsync(GPUMapMode.READ);
    const ts = new BigInt64Array(readTs.getMappedRange().slice(0));
    readTs.unmap();
    const times = Array.from({length: RUNS}, (_, q) => Number(ts[2 * q + 1] - ts[2 * q]) / 1e6).sort((x, y) => x - y);
    await readC.mapAsync(GPUMapMode.READ);
    const mapped = readC.getMappedRange().slice(0);
    readC.unmap();
    let worst = 0;
    if (k.synthetic) {
      worst = NaN;
    } else if (k.int8) {
      // Integer sums: any difference is an error (reported as its size, bound 0.5).
      const c = new Int32Array(mapped);
      for (const [i, j] of samples) {
        let sum = 0;
        const bj = k.own ? k.own.bRow(j) : j;
        for (let kk = 0; kk < K; kk++) sum += a8[i * K + kk] * b8[bj * K + kk];
        worst = Math.max(worst, Math.abs(c[i * N + j] - sum) / 0.5);
      }
    } else {
      const c = new Float32Array(mapped);
      samples.forEach(([i, j], n) => {
        worst = Math.max(worst, Math.abs(c[i * N + j] - expected[n][0]) / (expected[n][1] * 2 ** -11 + 1e-30));
      });
    }
    const ms = times[RUNS >> 1];
    console.log(JSON.stringify({kernel: k.name, M, N, K, ms: +ms.toFixed(3), min_ms: +times[0].toFixed(3),
      tflops: +((k.synthetic?.flops ?? flops) / ms / 1e9).toFixed(1),
      ...(k.int8 ? {tops_int8: +((k.synthetic?.flops ?? flops) / ms / 1e9).toFixed(1)} : {}),
      worst_err_over_bound: k.synthetic ? 'not checked (not a GEMM)' : +worst.toFixed(3)}));
  }
  fs.writeFileSync('/dev/null', '');
  device.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

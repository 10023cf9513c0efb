/**
 * The dequantization vocabulary: one table of weight formats that every expert path (cpu reference,
 * WGSL GEMV / grouped GEMV / GEMM tile loads, TensorFlow ops) reads. A new format is an entry here plus
 * its checkpoint module in src/quant/checkpoint/, never a new kernel (ggml's `type_traits`, the
 * VARIANTS list of ggml-webgpu's mul_mat.tmpl.wgsl).
 *
 * Canonical device layout of one projection stack (w13 or w2), logical shape [E, N, K] (N = output rows,
 * K = inputs, vLLM's orientation; w13 = gate rows then up rows, or interleaved for 'swigluoai'):
 *
 *   data    'f32' code:   float32 [E, N, K], the tensor itself (today's path, unchanged)
 *           other codes:  int32 [E, W] words, W = N·K·bits/32; code of (e, n, k) is the `bits`-wide field
 *                         number n·K + k of expert e's words, little-endian (field i of a word at bits
 *                         (i mod 32/bits)·bits), so a row's K codes are consecutive and 32/bits share a word
 *   scales  scaleCode 'f32':  float32 [E, ⌈N/blockRows⌉, ⌈K/groupSize⌉]
 *           scaleCode 'e8m0': int32 [E, ⌈N·G/4⌉] words of E8M0 bytes (byte n·G + g; 2^(byte − 127))
 *   zeros   zero 'tensor':    float32 [E, N, G] zero points, in code units
 *   gIdx    hasGIdx:          int32 [E, K] group of each input k (GPTQ act-order); without it g = ⌊k / groupSize⌋
 *   bias    (any format):     float32 [E, N], added to the projection's output
 *
 *   w[e, n, k] = (decode(code) − zero) · scale[e, ⌊n / blockRows⌋, g(k)]       (scale 1 when groupSize = 0)
 *   g(k) = gIdx[e, k] with act-order, 0 channel-wise (groupSize −1), else ⌊k / groupSize⌋
 *
 * Scales and zero points stay float32 (E8M0 bytes for MXFP4, where f32 would add 25%), which keeps every
 * format within 1.1× of its checkpoint bytes.
 */

/** How one stored code becomes a number before its zero point and scale. */
export type WeightCode = 'f32' | 'bf16' | 'f16' | 'e4m3' | 'e2m1' | 'uint4' | 'uint8';

export interface WeightFormat {
  code: WeightCode;
  /** Inputs (k) per scale; 0 = no scales; -1 = one scale per row (channel-wise, GPTQ's group_size -1). */
  groupSize: number;
  /** Output rows (n) per scale row: 1, or 128 for DeepSeek-V3's 128×128 fp8 blocks. */
  blockRows: number;
  scaleCode: 'f32' | 'e8m0';
  /** Subtracted from every decoded code (8 for symmetric int4, 128 for uint8, 0 for floats), or per (n, group). */
  zero: number | 'tensor';
  /** GPTQ act-order: the group of input k is gIdx[e, k]. */
  hasGIdx: boolean;
}

export const FLOAT32_FORMAT: WeightFormat =
    {code: 'f32', groupSize: 0, blockRows: 1, scaleCode: 'f32', zero: 0, hasGIdx: false};

/** Per code: its width and its exact decoder; the WGSL twin lives in src/kernels/webgpu/dequant_wgsl.ts. */
export const WEIGHT_CODES: Record<WeightCode, {bits: 4 | 8 | 16 | 32; decode: (code: number) => number}> = {
  f32: {bits: 32, decode: (c) => bitsToFloat32(c)},
  bf16: {bits: 16, decode: (c) => bitsToFloat32((c & 0xffff) << 16)},
  f16: {bits: 16, decode: (c) => halfToFloat(c)},
  e4m3: {bits: 8, decode: (c) => e4m3ToFloat(c)},
  e2m1: {bits: 4, decode: (c) => E2M1[c & 15]},
  uint4: {bits: 4, decode: (c) => c & 15},
  uint8: {bits: 8, decode: (c) => c & 255},
};

export const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function bitsToFloat32(bits: number): number {
  u32Scratch[0] = bits >>> 0;
  return f32Scratch[0];
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float8_e4m3fn (no infinities; S.1111.111 is NaN). */
export function e4m3ToFloat(c: number): number {
  const sign = c & 0x80 ? -1 : 1;
  const exp = (c >> 3) & 15;
  const frac = c & 7;
  if (exp === 15 && frac === 7) return NaN;
  if (exp === 0) return sign * frac * 2 ** -9;
  return sign * (1 + frac / 8) * 2 ** (exp - 7);
}

/** Rounds to the nearest float8_e4m3fn value, ties to even, saturating at ±448 (vLLM's clamp then cast). */
export function roundToE4m3(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.min(Math.abs(x), 448);
  if (a === 0) return 0 * Math.sign(x);
  // Spacing: subnormals (a < 2^-6) step 2^-9; otherwise 2^(exp - 3).
  const exp = Math.max(Math.floor(Math.log2(a)), -6);
  const step = 2 ** (exp - 3);
  let q = a / step;
  const fl = Math.floor(q);
  const diff = q - fl;
  q = diff > 0.5 || (diff === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  return Math.sign(x) * Math.min(q * step, 448);
}

/**
 * Rounds to the nearest IEEE binary16 value, ties to even, overflowing to ±Infinity from 65520 (the
 * f32 → f16 conversion the tensor-core GEMMs apply to their operands; WGSL's f16() and pack2x16float on
 * NVIDIA round this way). Subnormals step 2^-24.
 */
export function roundToF16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  const e = Math.max(Math.floor(Math.log2(a)), -14);
  const step = 2 ** (e - 10);
  const q = a / step;
  const fl = Math.floor(q);
  const r = q - fl > 0.5 || (q - fl === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  return Math.sign(x) * r * step;
}

/** 2^(byte − 127) for an E8M0 scale byte (255 is NaN). */
export function e8m0ToFloat(byte: number): number {
  return byte === 255 ? NaN : 2 ** (byte - 127);
}

export const formatBits = (f: WeightFormat) => WEIGHT_CODES[f.code].bits;

/** Number of scale groups along K. */
export function numGroups(f: WeightFormat, K: number): number {
  return f.groupSize === 0 ? 0 : f.groupSize < 0 ? 1 : Math.ceil(K / f.groupSize);
}

/** The scale group of input k (without act-order). */
export function groupOf(f: WeightFormat, k: number): number {
  return f.groupSize < 0 ? 0 : Math.floor(k / f.groupSize);
}

/** Bytes a stack of `E` experts of logical [N, K] takes in this format on the device (weights, scales, zeros, gIdx). */
export function formatBytes(f: WeightFormat, E: number, N: number, K: number): number {
  const G = numGroups(f, K);
  const data = E * N * K * formatBits(f) / 8;
  const scales = G === 0 ? 0 : f.scaleCode === 'e8m0' ? E * Math.ceil(N * G / 4) * 4 : E * Math.ceil(N / f.blockRows) * G * 4;
  const zeros = f.zero === 'tensor' ? E * N * G * 4 : 0;
  return data + scales + zeros + (f.hasGIdx ? E * K * 4 : 0);
}

/** A short, stable key of everything about a format that changes generated code (shader keys, attrs). */
export function formatKey(f: WeightFormat): string {
  return `${f.code}_g${f.groupSize}_r${f.blockRows}_${f.scaleCode}_z${f.zero}_${f.hasGIdx ? 'gidx' : 'nogidx'}`;
}

/** Inverse of formatKey, with every field checked (kernel attrs cross the op boundary as this key). */
export function parseFormatKey(key: string): WeightFormat {
  const m = /^(f32|bf16|f16|e4m3|e2m1|uint4|uint8)_g(-1|\d+)_r(\d+)_(f32|e8m0)_z(tensor|\d+)_(gidx|nogidx)$/.exec(key);
  if (!m) throw new Error(`not a weight format key: '${key}'`);
  return {code: m[1] as WeightCode, groupSize: Number(m[2]), blockRows: Number(m[3]), scaleCode: m[4] as 'f32' | 'e8m0',
    zero: m[5] === 'tensor' ? 'tensor' : Number(m[5]), hasGIdx: m[6] === 'gidx'};
}

/**
 * The WGSL twin of src/quant/format.ts: one dequantization vocabulary that every expert program (decode
 * GEMV, grouped GEMV, fused w2 + combine GEMV, prefill GEMM tile loads) reads its weights through, in the
 * manner of ggml-webgpu's mul_mat.tmpl.wgsl VARIANTS: a format is an entry of CODE_SNIPPETS plus the table
 * of chunk shapes, never a new kernel.
 *
 * The unit is a CHUNK of consecutive k of one weight row:
 *   'f32':          `vec` values (one vec4, or one scalar when K % 4 != 0), read as today (vec4 loads)
 *   every other:    8 values = one u32 of 4-bit codes, two of 8-bit, four of 16-bit; the data tensor is
 *                   bound with that many components (array<i32>, vec2<i32>, vec4<i32>), so each lane issues
 *                   one load per chunk and consecutive lanes read consecutive words: every packed byte is
 *                   read once, coalesced. Returned as two vec4<f32> (k 0..3, 4..7), already dequantized.
 *
 * Per shard `s` the program binds `weights{s}` (data), then, as the format needs, `scales{s}`, `zeros{s}`,
 * `gidx{s}` and `bias{s}` (weightBindings), and this file emits
 *   fn wload{s}(r : u32, c : u32) -> array<VT, CV>   chunk c of row r (r = e·N + n inside the shard)
 *   fn wbias{s}(r : u32) -> f32                        (with biases)
 * The scale and zero point are looked up once per chunk (groupSize is a multiple of 8, so a chunk never
 * straddles a group); with act-order gIdx, per element. Codes are decoded with bit operations only (no
 * shader-f16): bf16 `bits << 16`, f16 `unpack2x16float`, e4m3 / e2m1 by moving their exponent and mantissa
 * fields into an f32, E8M0 scales as `byte << 23`.
 *
 * Everything that changes the generated code is in weightFormatKey (part of every program's shaderKey).
 */
import {WeightFormat, formatBits, formatKey, numGroups} from '../../quant/format';

/** How a program reads a weight chunk: `values` k per chunk as `vecs` loads of VT (vec4<f32> or f32). */
export interface ChunkShape {
  values: number;
  vecs: number;
  /** Components of x (and of f32 weights) per load: 4, or 1 for f32 with K % 4 != 0. */
  vec: number;
  /** Components the data tensor is bound with. */
  dataComponents: number;
}

export function chunkShape(f: WeightFormat, K: number): ChunkShape {
  if (f.code === 'f32') {
    const vec = K % 4 === 0 ? 4 : 1;
    return {values: vec, vecs: 1, vec, dataComponents: vec};
  }
  return {values: 8, vecs: 2, vec: 4, dataComponents: formatBits(f) / 4};
}

/** Why the webgpu kernels cannot read this format at this K, or null. */
export function unsupportedChunking(f: WeightFormat, K: number, what: string): string | null {
  if (f.code === 'f32') return null;
  if (K % 8 !== 0) return `${what} has K = ${K}; packed weights need K a multiple of 8 on webgpu`;
  if (f.groupSize > 0 && f.groupSize % 8 !== 0) {
    return `group size ${f.groupSize} is not a multiple of 8 (webgpu dequantizes 8 k at a time)`;
  }
  return null;
}

/** The binding names of shard `s`, in the order the kernel passes its tensors. */
export function weightBindings(f: WeightFormat, hasBias: boolean, s: number): string[] {
  const G = numGroups(f, 1);
  return [`weights${s}`, ...(G > 0 ? [`scales${s}`] : []), ...(f.zero === 'tensor' ? [`zeros${s}`] : []),
    ...(f.hasGIdx ? [`gidx${s}`] : []), ...(hasBias ? [`bias${s}`] : [])];
}

/** Components of each binding of weightBindings. */
export function weightBindingComponents(f: WeightFormat, hasBias: boolean, s: number, K: number): number[] {
  return weightBindings(f, hasBias, s).map((n) => n.startsWith('weights') ? chunkShape(f, K).dataComponents : 1);
}

/** The key of everything here that changes code (for shader keys). */
export function weightFormatKey(f: WeightFormat, hasBias: boolean): string {
  return `${formatKey(f)}_${hasBias ? 'bias' : 'nobias'}`;
}

/** The WGSL type of one load. */
export function chunkType(ch: ChunkShape): string {
  return ch.vec === 4 ? 'vec4<f32>' : 'f32';
}

/** Per code: WGSL that turns the chunk's words `w` (u32, vec2<u32> or vec4<u32>) into codes lo, hi (vec4<f32>). */
const CODE_SNIPPETS: Record<Exclude<WeightFormat['code'], 'f32'>, string> = {
  uint4: `let lo = vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
      let hi = vec4<f32>((vec4<u32>(w) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));`,
  e2m1: `let lo = dqE2m1((vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
      let hi = dqE2m1((vec4<u32>(w) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));`,
  uint8: `let lo = vec4<f32>((vec4<u32>(w.x) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u));
      let hi = vec4<f32>((vec4<u32>(w.y) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u));`,
  e4m3: `let lo = dqE4m3((vec4<u32>(w.x) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u));
      let hi = dqE4m3((vec4<u32>(w.y) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u));`,
  bf16: `let lo = bitcast<vec4<f32>>(vec4<u32>(w.x << 16u, w.x & 0xffff0000u, w.y << 16u, w.y & 0xffff0000u));
      let hi = bitcast<vec4<f32>>(vec4<u32>(w.z << 16u, w.z & 0xffff0000u, w.w << 16u, w.w & 0xffff0000u));`,
  f16: `let lo = vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
      let hi = vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));`,
};

/** Helpers the code snippets call (emitted once per program). */
export const DEQUANT_HELPERS = `
  // float8_e4m3fn byte → f32 (exponent bias 7 → 127: +120 on the exponent field; subnormals frac·2^-9).
  fn dqE4m3(b : vec4<u32>) -> vec4<f32> {
    let sign = (b & vec4<u32>(0x80u)) << vec4<u32>(24u);
    let em = b & vec4<u32>(0x7fu);
    let normal = (em + vec4<u32>(0x3c0u)) << vec4<u32>(20u);
    let sub = bitcast<vec4<u32>>(vec4<f32>(em) * 0.001953125);
    return bitcast<vec4<f32>>(select(normal, sub, em < vec4<u32>(8u)) | sign);
  }
  // e2m1 nibble → f32 (exponent bias 1 → 127; em 1 is the subnormal 0.5).
  fn dqE2m1(n : vec4<u32>) -> vec4<f32> {
    let sign = (n & vec4<u32>(8u)) << vec4<u32>(28u);
    let em = n & vec4<u32>(7u);
    let normal = (em + vec4<u32>(252u)) << vec4<u32>(22u);
    let sub = bitcast<vec4<u32>>(vec4<f32>(em) * 0.5);
    return bitcast<vec4<f32>>(select(normal, sub, em < vec4<u32>(2u)) | sign);
  }
  // E8M0 byte → 2^(byte − 127) (byte 0: 2^-127, a subnormal; 255: NaN).
  fn dqE8m0(b : u32) -> f32 {
    return bitcast<f32>(select(select(b << 23u, 0x00400000u, b == 0u), 0x7fc00000u, b == 255u));
  }`;

/**
 * `wload{s}` (and `wbias{s}`) for shard `s` of a projection of N rows and K inputs per expert. The
 * bindings are those of weightBindings(f, hasBias, s).
 */
export function dequantSnippet(f: WeightFormat, hasBias: boolean, s: number, N: number, K: number): string {
  const ch = chunkShape(f, K);
  const VT = chunkType(ch);
  const bias = hasBias ? `
  fn wbias${s}(r : u32) -> f32 { return bias${s}[r]; }` : '';
  if (f.code === 'f32') {
    return `
  fn wload${s}(r : u32, c : u32) -> array<${VT}, 1> { return array<${VT}, 1>(weights${s}[r * ${K / ch.vec}u + c]); }${bias}`;
  }
  const G = numGroups(f, K);
  const KC = K / 8;
  const dc = ch.dataComponents;
  const words = dc === 1 ? `bitcast<u32>(weights${s}[r * ${KC}u + c])` : `bitcast<vec${dc}<u32>>(weights${s}[r * ${KC}u + c])`;
  const constZero = typeof f.zero === 'number' && f.zero !== 0 ? ` - ${f.zero}.0` : '';
  let body: string;
  let helpers = '';
  if (G === 0) {
    body = `return array<vec4<f32>, 2>(lo${constZero}, hi${constZero});`;
  } else {
    const scaleRows = Math.ceil(N / f.blockRows);
    const scale = f.scaleCode === 'e8m0' ?
      `let b = n * ${G}u + g;
    let word = bitcast<u32>(scales${s}[e * ${Math.ceil(N * G / 4)}u + b / 4u]);
    return dqE8m0((word >> ((b % 4u) * 8u)) & 255u);` :
      `return scales${s}[(e * ${scaleRows}u + n${f.blockRows > 1 ? ` / ${f.blockRows}u` : ''}) * ${G}u + g];`;
    const zero = f.zero === 'tensor' ? `return zeros${s}[(e * ${N}u + n) * ${G}u + g];` : `return ${f.zero}.0;`;
    helpers = `
  fn wscale${s}(e : u32, n : u32, g : u32) -> f32 {
    ${scale}
  }
  fn wzero${s}(e : u32, n : u32, g : u32) -> f32 { ${zero} }`;
    if (f.hasGIdx) {
      // Act-order: each k has its own group; scale and zero per element.
      const vecOf = (fn: string, half: number) => `vec4<f32>(${[0, 1, 2, 3].map((i) =>
        `${fn}${s}(e, n, u32(gidx${s}[e * ${K}u + k0 + ${half * 4 + i}u]))`).join(', ')})`;
      body = `let e = r / ${N}u;
      let n = r % ${N}u;
      let k0 = c * 8u;
      return array<vec4<f32>, 2>((lo - ${vecOf('wzero', 0)}) * ${vecOf('wscale', 0)},
                                 (hi - ${vecOf('wzero', 1)}) * ${vecOf('wscale', 1)});`;
    } else {
      const g = f.groupSize < 0 ? '0u' : `(c * 8u) / ${f.groupSize}u`;
      body = `let e = r / ${N}u;
      let n = r % ${N}u;
      let g = ${g};
      let z = wzero${s}(e, n, g);
      let sc = wscale${s}(e, n, g);
      return array<vec4<f32>, 2>((lo - z) * sc, (hi - z) * sc);`;
    }
  }
  return `${helpers}
  fn wload${s}(r : u32, c : u32) -> array<vec4<f32>, 2> {
      let w = ${words};
      ${CODE_SNIPPETS[f.code]}
      ${body}
  }${bias}`;
}

/** Everything a program that reads `shards` weight tensors needs: helpers once, then wload{s} per shard. */
export function dequantSnippets(f: WeightFormat, hasBias: boolean, shards: number, N: number, K: number): string {
  return (f.code === 'f32' ? '' : DEQUANT_HELPERS) +
    Array.from({length: shards}, (_, s) => dequantSnippet(f, hasBias, s, N, K)).join('');
}

/** The projection's shape and format, as a program needs it. */
export interface WeightSourceConfig {
  format: WeightFormat;
  hasBias: boolean;
}

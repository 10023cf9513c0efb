/**
 * The WGSL twin of src/quant/format.ts: one dequantization vocabulary that every expert program (decode
 * GEMV, grouped GEMV, fused w2 + combine GEMV, prefill GEMM tile loads) reads its weights through, in the
 * manner of ggml-webgpu's mul_mat.tmpl.wgsl VARIANTS: a format is a case of codeVec (its decoder) and of
 * chunkShape (its width), never a new kernel.
 *
 * The unit is a CHUNK of consecutive k of one weight row:
 *   'f32':          `vec` values (one vec4, or one scalar when K % 4 != 0), read as today (vec4 loads)
 *   every other:    8 values = one u32 of 4-bit codes, two of 8-bit, four of 16-bit (the GEMM tile loads and
 *                   the grouped GEMV, and by default the per-pair decode GEMVs), or `wide`, 16 bytes = 32 / 16 / 8
 *                   values (the decode GEMVs under setFusedExpertsDecodeChunks('wide'); slower on the H200);
 *                   the data tensor is bound with as many components (array<i32>, vec2<i32>, vec4<i32>), so
 *                   each lane issues one load per chunk and consecutive lanes read consecutive words: every
 *                   packed byte is read once, coalesced. Returned as vec4<f32>s, already dequantized.
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

/**
 * `wide`: 16 bytes of codes per chunk (32 k of 4-bit, 16 of 8-bit, 8 of 16-bit; one vec4<i32> load per lane,
 * as the f32 path's vec4), where K and the group size allow; the decode GEMVs may ask for it. Otherwise 8 k.
 */
export function chunkShape(f: WeightFormat, K: number, wide = false): ChunkShape {
  if (f.code === 'f32') {
    const vec = K % 4 === 0 ? 4 : 1;
    return {values: vec, vecs: 1, vec, dataComponents: vec};
  }
  const bits = formatBits(f);
  const V = 128 / bits;
  if (wide && K % V === 0 && (f.groupSize <= 0 || f.groupSize % V === 0)) {
    return {values: V, vecs: V / 4, vec: 4, dataComponents: 4};
  }
  return {values: 8, vecs: 2, vec: 4, dataComponents: bits / 4};
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
export function weightBindingComponents(f: WeightFormat, hasBias: boolean, s: number, ch: ChunkShape): number[] {
  return weightBindings(f, hasBias, s).map((n) => n.startsWith('weights') ? ch.dataComponents : 1);
}

/** The key of everything here that changes code (for shader keys). */
export function weightFormatKey(f: WeightFormat, hasBias: boolean, ch: ChunkShape): string {
  return `${formatKey(f)}_${hasBias ? 'bias' : 'nobias'}_c${ch.values}`;
}

/** The WGSL type of one load. */
export function chunkType(ch: ChunkShape): string {
  return ch.vec === 4 ? 'vec4<f32>' : 'f32';
}

/**
 * Per code: WGSL for codes 4j .. 4j+3 of the chunk as a vec4<f32> (before zero point and scale), from the
 * chunk's words `word(i)` (field f of a word at bits f·bits, format.ts).
 */
function codeVec(code: Exclude<WeightFormat['code'], 'f32'>, j: number, word: (i: number) => string): string {
  const fields = (bits: number) => {
    const perWord = 32 / bits;
    const w = word(Math.floor(4 * j / perWord));
    const shifts = [0, 1, 2, 3].map((d) => `${((4 * j) % perWord + d) * bits}u`).join(', ');
    return `((vec4<u32>(${w}) >> vec4<u32>(${shifts})) & vec4<u32>(${(1 << bits) - 1}u))`;
  };
  switch (code) {
    case 'uint4': return `vec4<f32>(${fields(4)})`;
    case 'uint8': return `vec4<f32>(${fields(8)})`;
    case 'e2m1': return `dqE2m1(${fields(4)})`;
    case 'e4m3': return `dqE4m3(${fields(8)})`;
    case 'bf16': {
      const [a, b] = [word(2 * j), word(2 * j + 1)];
      return `bitcast<vec4<f32>>(vec4<u32>(${a} << 16u, ${a} & 0xffff0000u, ${b} << 16u, ${b} & 0xffff0000u))`;
    }
    case 'f16': return `vec4<f32>(unpack2x16float(${word(2 * j)}), unpack2x16float(${word(2 * j + 1)}))`;
  }
}

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
export function dequantSnippet(f: WeightFormat, hasBias: boolean, s: number, N: number, K: number,
    ch: ChunkShape): string {
  const VT = chunkType(ch);
  const bias = hasBias ? `
  fn wbias${s}(r : u32) -> f32 { return bias${s}[r]; }` : '';
  if (f.code === 'f32') {
    return `
  fn wload${s}(r : u32, c : u32) -> array<${VT}, 1> { return array<${VT}, 1>(weights${s}[r * ${K / ch.vec}u + c]); }${bias}`;
  }
  const G = numGroups(f, K);
  const V = ch.values;
  const KC = K / V;
  const dc = ch.dataComponents;
  const words = dc === 1 ? `bitcast<u32>(weights${s}[r * ${KC}u + c])` : `bitcast<vec${dc}<u32>>(weights${s}[r * ${KC}u + c])`;
  const vecs = Array.from({length: ch.vecs}, (_, j) => j);
  const codes = vecs.map((j) => `let q${j} = ${codeVec(f.code as Exclude<WeightFormat['code'], 'f32'>, j, (i) => dc === 1 ? 'w' : `w[${i}]`)};`).join('\n      ');
  const constZero = typeof f.zero === 'number' && f.zero !== 0 ? ` - ${f.zero}.0` : '';
  const ret = (v: (j: number) => string) => `return array<vec4<f32>, ${ch.vecs}>(${vecs.map(v).join(', ')});`;
  let body: string;
  let helpers = '';
  if (G === 0) {
    body = ret((j) => `q${j}${constZero}`);
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
      const gOf = (j: number) => `let g${j} = vec4<u32>(${[0, 1, 2, 3].map((i) =>
        `u32(gidx${s}[e * ${K}u + k0 + ${4 * j + i}u])`).join(', ')});`;
      const perElem = (fn: string, j: number) => `vec4<f32>(${[0, 1, 2, 3].map((i) =>
        `${fn}${s}(e, n, g${j}[${i}])`).join(', ')})`;
      body = `let e = r / ${N}u;
      let n = r % ${N}u;
      let k0 = c * ${V}u;
      ${vecs.map(gOf).join('\n      ')}
      ${ret((j) => `(q${j} - ${perElem('wzero', j)}) * ${perElem('wscale', j)}`)}`;
    } else {
      const g = f.groupSize < 0 ? '0u' : `(c * ${V}u) / ${f.groupSize}u`;
      body = `let e = r / ${N}u;
      let n = r % ${N}u;
      let g = ${g};
      let z = wzero${s}(e, n, g);
      let sc = wscale${s}(e, n, g);
      ${ret((j) => `(q${j} - z) * sc`)}`;
    }
  }
  return `${helpers}
  fn wload${s}(r : u32, c : u32) -> array<vec4<f32>, ${ch.vecs}> {
      let w = ${words};
      ${codes}
      ${body}
  }${bias}`;
}

/** Everything a program that reads `shards` weight tensors needs: helpers once, then wload{s} per shard. */
export function dequantSnippets(f: WeightFormat, hasBias: boolean, shards: number, N: number, K: number,
    ch: ChunkShape): string {
  return (f.code === 'f32' ? '' : DEQUANT_HELPERS) +
    Array.from({length: shards}, (_, s) => dequantSnippet(f, hasBias, s, N, K, ch)).join('');
}

/**
 * `fn wload8_{s}(r : u32, k : u32) -> array<vec4<f32>, 2>`: the 8 values k .. k+7 of row r (k a multiple of 8,
 * K a multiple of 8), whatever the format: one packed chunk, or two f32 vec4 chunks. The tensor-core tile
 * loads and the f16 weight copy read 8 k per lane through it.
 */
export function wload8Snippet(f: WeightFormat, s: number, ch: ChunkShape): string {
  if (f.code === 'f32') {
    if (ch.vec !== 4) throw new Error('wload8Snippet: f32 weights need K a multiple of 4');
    return `
  fn wload8_${s}(r : u32, k : u32) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(wload${s}(r, k / 4u)[0], wload${s}(r, k / 4u + 1u)[0]);
  }`;
  }
  if (ch.values !== 8) throw new Error(`wload8Snippet: chunks of ${ch.values} values, not 8`);
  return `
  fn wload8_${s}(r : u32, k : u32) -> array<vec4<f32>, 2> { return wload${s}(r, k / 8u); }`;
}

/** The projection's shape and format, as a program needs it. */
export interface WeightSourceConfig {
  format: WeightFormat;
  hasBias: boolean;
}

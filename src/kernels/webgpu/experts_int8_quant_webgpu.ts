/**
 * int8 w8a8 activations (vLLM `per_token_quant_int8`; the numerics are those of quantizeRowInt8 in
 * src/kernels/cpu/int8_w8a8_impl.ts, bit for bit): each row of x [rows, K] f32 becomes
 *
 *   result [rows, K/4 + 4] int32:  words 0 .. K/4-1   q[4w .. 4w+3] as packed i8x4 (byte b = k 4w+b, two's complement)
 *                                  word K/4           the row's scale, f32 bits (words K/4+1..+3: padding, so that a
 *                                                     row stays 16-byte aligned for vec4 loads)
 *
 *   absmax = max(max|x|, 1e-10),  scale = absmax / 127,  q = clamp(round_half_away(x · (127 / absmax)), ±127)
 *
 * One workgroup per row, which its invocations hold in registers between the max and the quantization: read twice,
 * the rows in flight (2048 of Mixtral's 57 KiB act rows) overran L2 and the second read came from memory again.
 * max|x| is an integer max over the sign-cleared bits (exact, and NaN/Inf land above every
 * finite value: such a row gets a NaN scale and q = 0, as the reference does). The two quotients are correctly
 * rounded by integer long division (divRn): WGSL's `/` is only accurate to 2.5 ulp, and one ulp of 127/absmax
 * moves a q across a rounding boundary. x · inv is a single f32 multiply (correctly rounded in WGSL).
 * With `weighted` (applyRouterWeightOnInput, topK = 1) each row is first multiplied by topkWeights[row].
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';

/**
 * Invocations per row: 256 for long rows; 64 up to 256 vec4s (K ≤ 1024), where 256 left most idle and their longer
 * reduction made DeepSeek-V3 TP8's act rows (K = 256) slower than two reads by 128 (0.24 against 0.13 ms, an H100).
 * With both, against two reads by 128 (M = 4096, an H100, bench/results/2026-12-06-h100-int8-quant-registers.log):
 * act rows Mixtral (K = 14336) 0.39 → 0.22 ms, DeepSeek-V3 TP8 (256) 0.127 → 0.071, Qwen3 (768) 0.130 → 0.078.
 */
function int8QuantThreads(K: number): number {
  return K / 4 <= 256 ? 64 : 256;
}
/** Rows beyond this many workgroups are taken in further passes of the same workgroups. */
const MAX_GRID_Y = 65535;

/** Words of one quantized row of K values: K/4 packed words, the scale, 3 words of padding. */
export function int8RowWords(K: number): number {
  return K / 4 + 4;
}

/**
 * `fn divRn(n, d) -> f32`: n / d rounded to nearest even, for positive normal n and d whose quotient is normal
 * (all the quantizer needs: 127 / absmax and absmax / 127 with absmax in [1e-10, FLT_MAX]). 26 quotient bits of
 * the 24-bit mantissas by restoring division, then guard and sticky.
 */
export const DIV_RN_WGSL = `
  fn divRn(n : f32, d : f32) -> f32 {
    let nb = bitcast<u32>(n);
    let db = bitcast<u32>(d);
    var r = (nb & 0x7fffffu) | 0x800000u;
    let md = (db & 0x7fffffu) | 0x800000u;
    var e = i32((nb >> 23u) & 0xffu) - i32((db >> 23u) & 0xffu) + 127;
    if (r < md) { r = r << 1u; e = e - 1; }
    var q = 0u;
    for (var j = 0; j < 26; j++) {
      q = q << 1u;
      if (r >= md) { q = q | 1u; r = r - md; }
      r = r << 1u;
    }
    var m = q >> 2u;
    let guard = (q >> 1u) & 1u;
    let sticky = (q & 1u) | select(0u, 1u, r != 0u);
    if (guard == 1u && (sticky == 1u || (m & 1u) == 1u)) { m = m + 1u; }
    if (m == 0x1000000u) { m = m >> 1u; e = e + 1; }
    return bitcast<f32>((u32(e) << 23u) | (m & 0x7fffffu));
  }`;

export class ExpertsInt8QuantProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [1], y: [0]};
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number];
  protected readonly K: number;
  private readonly weighted: boolean;

  /** Inputs: x [rows, K] f32 (K a multiple of 4, read as vec4), topkWeights [rows, 1] when `weighted`. */
  constructor(rows: number, K: number, weighted = false) {
    this.K = K;
    this.workgroupSize = [int8QuantThreads(K), 1, 1];
    this.weighted = weighted;
    this.outputShape = [rows, int8RowWords(K)];
    this.dispatch = [1, Math.min(rows, MAX_GRID_Y), 1];
    this.variableNames = weighted ? ['x', 'topkWeights'] : ['x'];
    this.variableComponents = weighted ? [4, 1] : [4];
    this.shaderKey = `moeExpertsInt8Quant_${K}_${weighted}`;
  }

  /** Module-scope WGSL the row's values need. */
  protected valueDecls(): string {
    return '';
  }

  /** The start of quantizeRow(row): what value() reads (it may `return`, workgroup-uniformly, to skip the row). */
  protected rowSetup(): string {
    return `let base = row * ${this.K / 4}u;
        ${this.weighted ? 'let w = topkWeights[row];' : ''}`;
  }

  /** vec4 `i` (a u32 expression) of the row's values. */
  protected value(i: string): string {
    return this.weighted ? `(x[base + ${i}] * w)` : `x[base + ${i}]`;
  }

  getUserCode(): string {
    const KW = this.K / 4;
    const S = int8RowWords(this.K);
    const THREADS = this.workgroupSize[0];
    const chunks = Math.ceil(KW / THREADS);
    const load = (i: string) => this.value(i);
    return `
      ${DIV_RN_WGSL}
      ${this.valueDecls()}
      var<workgroup> red : array<u32, ${THREADS}>;
      var<workgroup> wgRow : u32;

      fn quant1(v : f32) -> i32 {
        let a = abs(v);
        let t = trunc(a);
        let r = min(t + select(0.0, 1.0, a - t >= 0.5), 127.0);
        return select(i32(r), -i32(r), v < 0.0);
      }

      // Four scaled values as one word of i8 codes, byte b = value b.
      fn quantWord(v : vec4<f32>) -> i32 {
        let q = vec4<i32>(quant1(v.x), quant1(v.y), quant1(v.z), quant1(v.w));
        return (q.x & 255) | ((q.y & 255) << 8u) | ((q.z & 255) << 16u) | (q.w << 24u);
      }

      fn maxAbsBits(v : vec4<f32>) -> u32 {
        let b = bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu);
        return max(max(b.x, b.y), max(b.z, b.w));
      }

      // x: [rows, ${this.K}] as vec4; result: [rows, ${S}] int32, ${KW} packed i8x4 words then the scale's bits.
      fn main() {
        // One row per workgroup and pass: the grid is min(rows, ${MAX_GRID_Y}) high, so that is the stride (a constant:
        // tfjs's numWorkgroups is a private variable, which the barriers' uniformity analysis does not trust).
        if (localIndex == 0u) { wgRow = workgroupId.y; }
        let first = workgroupUniformLoad(&wgRow);
        for (var row = first; row < u32(uniforms.outShape.x); row += ${MAX_GRID_Y}u) {
          quantizeRow(row);
        }
      }

      fn quantizeRow(row : u32) {
        ${this.rowSetup()}
        // The row's vec4 localIndex + ${THREADS}·j in vj (straight-line code: registers, not an indexed array).
        var m = 0u;
        ${Array.from({length: chunks}, (_, j) => {
          const i = `localIndex + ${j * THREADS}u`;
          const whole = (j + 1) * THREADS <= KW;
          return `let v${j} = ${whole ? load(`(${i})`) : `select(vec4<f32>(0.0), ${load(`min(${i}, ${KW - 1}u)`)}, ${i} < ${KW}u)`};
        m = max(m, maxAbsBits(v${j}));`;
        }).join('\n        ')}
        red[localIndex] = m;
        workgroupBarrier();
        for (var stride = ${THREADS / 2}u; stride > 0u; stride >>= 1u) {
          if (localIndex < stride) { red[localIndex] = max(red[localIndex], red[localIndex + stride]); }
          workgroupBarrier();
        }
        let amaxBits = max(red[0], 0x2edbe6ffu);   // 1e-10 as f32
        workgroupBarrier();   // red is reused by the next row
        let finite = amaxBits < 0x7f800000u;
        let amax = bitcast<f32>(select(0x3f800000u, amaxBits, finite));
        let inv = select(0.0, divRn(127.0, amax), finite);
        // NaN scale bits for a non-finite row (a NaN literal would not compile)
        let scaleBits = select(0x7fc00000u, bitcast<u32>(divRn(amax, 127.0)), finite);
        let out = row * ${S}u;
        ${Array.from({length: chunks}, (_, j) => {
          const store = `result[out + localIndex + ${j * THREADS}u] = quantWord(select(vec4<f32>(0.0), v${j} * inv, finite));`;
          return (j + 1) * THREADS <= KW ? store : `if (localIndex + ${j * THREADS}u < ${KW}u) { ${store} }`;
        }).join('\n        ')}
        if (localIndex == 0u) {
          result[out + ${KW}u] = bitcast<i32>(scaleBits);
          result[out + ${KW + 1}u] = 0;
          result[out + ${KW + 2}u] = 0;
          result[out + ${KW + 3}u] = 0;
        }
      }
    `;
  }
}

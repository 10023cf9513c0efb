/**
 * The host reference for the f16 tensor-core prefill GEMMs (issue 11), with their documented numerics,
 * and a per-element error bound derived from those numerics (not fitted to a run):
 *
 *   x̂ = f16(x · (w[pair] if the router weight goes on the input))      f16 operands: exact in f32, so
 *   ŵ = f16(dequantized w)                                               each product ŵ·x̂ is exact in f32
 *   g, u = Σ_h ŵ x̂ (+ bias)          f32 sums on the GPU, f64 here
 *   â = f16(glu(g, u))               the activation in f32, rounded to f16 as w2's operand
 *   y = Σ_i ŵ2 â (+ bias),  out[t] = Σ_j w_j · y_j                        (f32 on the GPU)
 *
 * Bound per output element, first order in u = 2^-23 (one f32 ulp: twice the round-to-nearest unit,
 * because tensor cores may truncate while accumulating). The kernels add the k axis in 16-k steps, in
 * increasing k (one MMA per step; a split-K part starts its own sum at a step boundary): the products are
 * exact, a step adds its 16 with error ≤ 2u·Σ|its products|, and adding it to the accumulator rounds once,
 * by ≤ u·|accumulator|. With S_j the running sums at step boundaries (a part's sum is a difference of two,
 * so |it| ≤ 2·max|S_j|):
 *   sums of n terms:  |Σ̂ − Σ| ≤ u·((⌈n/16⌉ + 2)·2·max|S_j| + 2·Σ|terms|) + u·|bias|, and + 10u·|y| for w2's
 *                     up to 8 split-K parts added in the combine
 *   activation:       δa = 1.2·(|u| + 1)·δg + (|g| + 1)·δu + 8·2^-24·|a|   (glu's partial derivatives are
 *                     below these for silu, gelu and swigluoai; 8 f32 ulps for exp, erf, the products)
 *   f16 rounding of a: where [a − δa, a + δa] straddles a rounding boundary the GPU's â may be the other
 *                     neighbour; that element adds |ŵ2|·|f16(a ± δa) − â| to the bound
 *   combine:          k more f32 adds and the routing-weight product: (k + 1)·u·Σ_j|w_j y_j|
 * So a bug of one f16 ulp in an operand, or a wrong row, shows; the f32 accumulation order cannot fail it.
 */
import {Activation} from '../src/kernel_names';
import {gelu, silu, swigluoai} from '../src/math';
import {roundToF16} from '../src/quant/format';

const U = 2 ** -23;

export interface TensorCoreProblem {
  hidden: Float32Array;
  H: number;
  I: number;
  k: number;
  ids: ArrayLike<number>;
  weights: ArrayLike<number>;
  activation: Activation;
  applyRouterWeightOnInput: boolean;
  /** Expert e's dequantized float32 w13 [2I, H] (gate/up as the activation lays them out) and w2 [H, I]. */
  w13Of: (e: number) => Float32Array;
  w2Of: (e: number) => Float32Array;
  b13Of?: (e: number) => Float32Array;
  b2Of?: (e: number) => Float32Array;
  /**
   * Where the rounded weight copies are kept (keyed by stage and expert): a map the caller keeps across calls
   * on the same weights and rounding saves remaking them (Mixtral: 176M values an expert); one per call if absent.
   */
  roundedWeights?: Map<string, Float32Array>;
}

/**
 * roundToF16 of every value, in place, on the float32 bits: 40× faster than roundToF16's arithmetic (78 ns a
 * value), which made the reference's f16 copies of Mixtral's 8 experts (1.4G values) take 110 s on the device
 * machine. Normal halves round the 13 dropped mantissa bits to nearest even (a carry moves into the exponent as
 * it should); subnormal halves, overflow, Inf and NaN (rare here) go through roundToF16.
 */
export function roundFloat32sToF16(values: Float32Array): void {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const a = b & 0x7fffffff;
    if (a >= 0x38800000 && a < 0x477ff000) {  // [2^-14, 65520): a normal half after rounding
      bits[i] = (b + 0xfff + ((b >>> 13) & 1)) & 0xffffe000;
    } else {
      values[i] = roundToF16(values[i]);
    }
  }
}

/** The accumulation bound above for n terms with step-boundary sums up to maxPartial and Σ|terms| = absSum. */
function sumBound(n: number, maxPartial: number, absSum: number): number {
  return U * ((Math.ceil(n / 16) + 2) * 2 * maxPartial + 2 * absSum);
}

function glu(activation: Activation, g: number, u: number): number {
  if (activation === 'swigluoai') return swigluoai(g, u);
  return (activation === 'silu' ? silu(g) : gelu(g)) * u;
}

/**
 * out and tol [rows.length, H] for the tokens `rows`. `roundF16` = identity gives the plain float64
 * reference (the f32 SIMT kernels' numerics, tol then still the f32-sum bound).
 */
export function tensorCoreReference(p: TensorCoreProblem, rows: number[], roundF16: (v: number) => number = roundToF16):
    {out: Float64Array; tol: Float64Array} {
  const {H, I, k} = p;
  const out = new Float64Array(rows.length * H);
  const tol = new Float64Array(rows.length * H);
  // f16 values are exact in float32: round in place, one copy per expert (Mixtral's w13 is 117M values).
  const cache = p.roundedWeights ?? new Map<string, Float32Array>();
  const rounded = (key: string, f: () => Float32Array) => {
    if (!cache.has(key)) {
      const w = Float32Array.from(f());
      if (roundF16 === roundToF16) {
        roundFloat32sToF16(w);
      } else {
        for (let i = 0; i < w.length; i++) w[i] = roundF16(w[i]);
      }
      cache.set(key, w);
    }
    return cache.get(key)!;
  };
  const gu = p.activation === 'swigluoai' ? {gate: (i: number) => 2 * i, up: (i: number) => 2 * i + 1} :
    {gate: (i: number) => i, up: (i: number) => I + i};
  const a = new Float64Array(I);
  const flip = new Float64Array(I);
  rows.forEach((t, ri) => {
    const combineAbs = new Float64Array(H);
    for (let j = 0; j < k; j++) {
      const e = p.ids[t * k + j];
      const s = p.weights[t * k + j];
      const inScale = p.applyRouterWeightOnInput ? s : 1;
      const outScale = p.applyRouterWeightOnInput ? 1 : s;
      const x = Float64Array.from(p.hidden.subarray(t * H, (t + 1) * H), (v) => roundF16(Math.fround(v * inScale)));
      const w13 = rounded(`w13_${e}`, () => p.w13Of(e));
      const w2 = rounded(`w2_${e}`, () => p.w2Of(e));
      const b13 = p.b13Of?.(e);
      const b2 = p.b2Of?.(e);
      for (let i = 0; i < I; i++) {
        const gr = gu.gate(i) * H, ur = gu.up(i) * H;
        let g = 0, u = 0, gAbs = 0, uAbs = 0, gMax = 0, uMax = 0;
        for (let h = 0; h < H; h++) {
          const pg = w13[gr + h] * x[h], pu = w13[ur + h] * x[h];
          g += pg; u += pu; gAbs += Math.abs(pg); uAbs += Math.abs(pu);
          if (h % 16 === 15 || h === H - 1) { gMax = Math.max(gMax, Math.abs(g)); uMax = Math.max(uMax, Math.abs(u)); }
        }
        if (b13) { g += b13[gu.gate(i)]; u += b13[gu.up(i)]; }
        const dg = sumBound(H, gMax, gAbs) + U * Math.abs(g), du = sumBound(H, uMax, uAbs) + U * Math.abs(u);
        const act = glu(p.activation, g, u);
        const da = 1.2 * (Math.abs(u) + 1) * dg + (Math.abs(g) + 1) * du + 8 * 2 ** -24 * Math.abs(act);
        a[i] = roundF16(act);
        flip[i] = Math.max(Math.abs(roundF16(act - da) - a[i]), Math.abs(roundF16(act + da) - a[i]));
      }
      for (let h = 0; h < H; h++) {
        let y = 0, yAbs = 0, yMax = 0, yFlip = 0;
        for (let i = 0; i < I; i++) {
          const w = w2[h * I + i];
          y += w * a[i];
          yAbs += Math.abs(w * a[i]);
          yFlip += Math.abs(w) * flip[i];
          if (i % 16 === 15 || i === I - 1) yMax = Math.max(yMax, Math.abs(y));
        }
        if (b2) y += b2[h];
        out[ri * H + h] += y * outScale;
        tol[ri * H + h] += Math.abs(outScale) * (sumBound(I, yMax, yAbs) + 11 * U * Math.abs(y) + yFlip);
        combineAbs[h] += Math.abs(y * outScale);
      }
    }
    for (let h = 0; h < H; h++) tol[ri * H + h] += (k + 1) * U * combineAbs[h] + 1e-30;
  });
  return {out, tol};
}

/** Max |got − ref| over the rows, the largest ratio to the bound, and whether every element is within it. */
export function compareWithBound(got: ArrayLike<number>, rows: number[], H: number, ref: {out: Float64Array; tol: Float64Array}):
    {err: number; worstRatio: number; pass: boolean} {
  let err = 0, worstRatio = 0;
  rows.forEach((t, ri) => {
    for (let h = 0; h < H; h++) {
      const d = Math.abs(got[t * H + h] - ref.out[ri * H + h]);
      const r = Number.isNaN(d) ? Infinity : d / ref.tol[ri * H + h];
      err = Number.isNaN(d) ? Infinity : Math.max(err, d);
      worstRatio = Math.max(worstRatio, r);
    }
  });
  return {err, worstRatio, pass: worstRatio <= 1};
}

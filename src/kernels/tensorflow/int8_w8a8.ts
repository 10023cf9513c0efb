/**
 * int8 w8a8 (useInt8W8A8) with TensorFlow ops, bit for bit the cpu reference (src/kernels/cpu/int8_w8a8_impl.ts):
 *
 *   quantize   per row of x [n, B, K]: absmax = max(max|x|, 1e-10), inv = 127/absmax and scale = absmax/127
 *              (RealDiv: IEEE float32 division), q = half-away-from-zero(x·inv) as t = floor(|v|),
 *              t + (|v| − t ≥ 0.5) (exact; Round would be half-to-even), clamped to ±127
 *   dot        codes − 128 and q are small integers held exactly in float32; a float32 BatchMatMulV2 over at most
 *              1024 k keeps every partial sum an integer below 2^24 (1024·127·128 < 2^24), so it is exact in any
 *              summation order (and under TF32, whose 11 bits hold ±128); the chunks are cast to int32 and added
 *              in int32: the exact accumulator, without an integer matmul (TensorFlow has none on the GPU)
 *   epilogue   Mul(Mul(Cast(acc), xScale), wScale) (+ bias), the reference's order
 *
 * Rows holding NaN or ±Inf are outside the exact contract here (the reference gives their outputs NaN).
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {ProjectionParts} from './dequantize';
import type {RawOps} from './raw_ops';

/** k per exact float32 matmul chunk: 1024 · 127 · 128 < 2^24. */
const EXACT_K = 1024;

/** Per row of x [n, B, K]: q [n, B, K] (float32 integers) and scale [n, B, 1]. */
export function quantizeRowsInt8(ops: RawOps, x: TensorInfo): {q: TensorInfo; scale: TensorInfo} {
  const amax = ops.maximum(ops.max(ops.abs(x), 2, true), Math.fround(1e-10));
  const inv = ops.div(127, amax);
  const scale = ops.div(amax, 127);
  const v = ops.mul(x, inv);
  const a = ops.abs(v);
  const t = ops.floor(a);
  const r = ops.minimum(ops.select(ops.greaterEqual(ops.sub(a, t), 0.5), ops.add(t, 1), t), 127);
  return {q: ops.select(ops.less(v, 0), ops.neg(r), r), scale};
}

/** The int8 weights (code − 128) of the gathered experts as float32 [n, N, K]. */
function gatherInt8Weights(ops: RawOps, parts: ProjectionParts, experts: TensorInfo, N: number, K: number): TensorInfo {
  const n = experts.shape[0];
  const words = ops.gather(parts.data, experts, 0);                                        // [n, N·K/4]
  const fields = ops.rightShift(ops.reshape(words, [n, N * K / 4, 1]),
      ops.reshape(ops.constant([0, 8, 16, 24], 'int32'), [1, 1, 4]));
  return ops.sub(ops.cast(ops.reshape(ops.bitwiseAnd(fields, 255), [n, N, K]), 'float32'), 128);
}

/** x [n, B, K] · Wᵀ with int8 numerics (+ bias) for the gathered experts: [n, B, N]. */
export function projectInt8(ops: RawOps, x: TensorInfo, parts: ProjectionParts, experts: TensorInfo, N: number,
    K: number): TensorInfo {
  const [n, B] = x.shape;
  const {q, scale} = quantizeRowsInt8(ops, x);
  const w = gatherInt8Weights(ops, parts, experts, N, K);
  let acc: TensorInfo | null = null;
  for (let k0 = 0; k0 < K; k0 += EXACT_K) {
    const kc = Math.min(EXACT_K, K - k0);
    const qc = kc === K ? q : ops.slice(q, [0, 0, k0], [n, B, kc]);
    const wc = kc === K ? w : ops.slice(w, [0, 0, k0], [n, N, kc]);
    const part = ops.cast(ops.batchMatMul(qc, wc, false, true), 'int32');                  // exact integers
    acc = acc ? ops.addInt(acc, part) : part;
  }
  const ws = ops.reshape(ops.gather(parts.scales!, experts, 0), [n, 1, N]);
  const y = ops.mul(ops.mul(ops.cast(acc!, 'float32'), scale), ws);
  if (!parts.bias) return y;
  return ops.add(y, ops.reshape(ops.gather(parts.bias, experts, 0), [n, 1, N]));
}

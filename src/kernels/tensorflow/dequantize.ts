/**
 * Dequantization with TensorFlow ops (the tensorflow backend's twin of cpu/dequantize_impl.ts), for the
 * experts a call gathers: packed words are gathered first, then decoded, so only the selected experts
 * are ever widened and the float32 copies live as long as the gathered float32 weights of the plain
 * path did (one chunk at a time). Peak extra memory: the chunk's unpacked int32 codes, about as large
 * as its float32 weights.
 *
 *   codes   (word >> 0, b, 2b, ...) & mask → [n, N, K] int32
 *   values  float codes: bf16 bits << 16, f16 rebuilt as f32 bits; 8-/4-bit codes through a 2^bits table
 *   w       (value − zero) · scale, scale and zero gathered to [n, N, K] by row block and group (or gIdx)
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import {WEIGHT_CODES, WeightFormat, e8m0ToFloat, formatBits, numGroups} from '../../quant/format';
import type {RawOps} from './raw_ops';

/** One shard of one projection on this backend: its data and the format's extra tensors. */
export interface ProjectionParts {
  data: TensorInfo;
  scales?: TensorInfo;
  zeros?: TensorInfo;
  gidx?: TensorInfo;
  bias?: TensorInfo;
}

/** Weights [n, N, K] float32 of the experts `experts` (int32 [n], indices into the shard). */
export function gatherExpertWeights(ops: RawOps, parts: ProjectionParts, experts: TensorInfo, f: WeightFormat,
    N: number, K: number): TensorInfo {
  if (f.code === 'f32') return ops.gather(parts.data, experts, 0);
  const n = experts.shape[0];
  const bits = formatBits(f);
  const perWord = 32 / bits;
  const words = ops.gather(parts.data, experts, 0);                                       // [n, W]
  const shifts = ops.constant(Array.from({length: perWord}, (_, i) => i * bits), 'int32');
  const fields = ops.rightShift(ops.reshape(words, [n, N * K / perWord, 1]), ops.reshape(shifts, [1, 1, perWord]));
  const codes = ops.reshape(bits === 32 ? fields : ops.bitwiseAnd(fields, (1 << bits) - 1), [n, N, K]);
  let values: TensorInfo;
  if (f.code === 'bf16') {
    values = ops.bitcast(ops.leftShift(codes, 16), 'float32');
  } else if (f.code === 'f16') {
    values = halfToFloat(ops, codes);
  } else {
    const decode = WEIGHT_CODES[f.code].decode;
    values = ops.gather(ops.constant(Array.from({length: 1 << bits}, (_, c) => decode(c))), codes, 0);
  }
  const G = numGroups(f, K);
  if (G === 0) return f.zero === 0 ? values : ops.sub(values, f.zero as number);
  // Per-element group and row-block indices: [N] row blocks, [K] (or [n, K] with act-order) groups.
  const rowBlock = ops.constant(Array.from({length: N}, (_, r) => Math.floor(r / f.blockRows)), 'int32');
  const expand = (t: TensorInfo) => {                                                     // [n, Nb|N, G] → [n, N, K]
    const rows = t.shape[1] === N ? t : ops.gather(t, rowBlock, 1);
    if (f.hasGIdx) return ops.gather(rows, ops.gather(parts.gidx!, experts, 0), 2, 1);
    const group = ops.constant(Array.from({length: K}, (_, k) => (f.groupSize < 0 ? 0 : Math.floor(k / f.groupSize))),
        'int32');
    return ops.gather(rows, group, 2);
  };
  let scales: TensorInfo;
  if (f.scaleCode === 'e8m0') {
    // Bytes n·G + g of each expert's words, through a 256-entry table of 2^(byte − 127).
    const numWords = Math.ceil(N * G / 4);
    const scaleWords = ops.gather(parts.scales!, experts, 0);                              // [n, ⌈N·G/4⌉]
    const bytes = ops.bitwiseAnd(ops.rightShift(ops.reshape(scaleWords, [n, numWords, 1]),
        ops.reshape(ops.constant([0, 8, 16, 24], 'int32'), [1, 1, 4])), 255);
    const flat = ops.slice(ops.reshape(bytes, [n, numWords * 4]), [0, 0], [n, N * G]);
    const table = ops.constant(Array.from({length: 256}, (_, b) => e8m0ToFloat(b)));
    scales = ops.gather(table, ops.reshape(flat, [n, N, G]), 0);
  } else {
    scales = ops.gather(parts.scales!, experts, 0);
  }
  const zero = f.zero === 'tensor' ? expand(ops.gather(parts.zeros!, experts, 0)) : f.zero;
  const centered = zero === 0 ? values : ops.sub(values, zero);
  return ops.mul(centered, expand(scales));
}

/** IEEE half bits (int32 [..], low 16 bits) → float32 values, exactly (subnormals, ±Inf, NaN). */
function halfToFloat(ops: RawOps, h: TensorInfo): TensorInfo {
  const sign = ops.leftShift(ops.bitwiseAnd(h, 0x8000), 16);
  const exp = ops.bitwiseAnd(ops.rightShift(h, 10), 31);
  const frac = ops.bitwiseAnd(h, 1023);
  // Normal: exponent rebased by 127 − 15; exp 31 (Inf/NaN) → 255.
  const exp32 = ops.select(ops.equal(exp, 31), ops.constant(255, 'int32'), ops.addInt(exp, 112));
  const normal = ops.bitcast(ops.bitwiseOr(ops.bitwiseOr(sign, ops.leftShift(exp32, 23)), ops.leftShift(frac, 13)),
      'float32');
  // Subnormal: frac · 2^-24, with the sign.
  const magnitude = ops.mul(ops.cast(frac, 'float32'), 2 ** -24);
  const subnormal = ops.select(ops.equal(sign, 0), magnitude, ops.neg(magnitude));
  return ops.select(ops.equal(exp, 0), subnormal, normal);
}

/**
 * vLLM's dynamic per-token-group fp8 activation quantization of x [.., K] (K a multiple of `group`), in
 * float32: s = max(max|x_g|, 1e-10)/448, x ← e4m3(clamp(x/s, ±448))·s with round-half-even. The e4m3 step
 * of |v| is 2^(max(e, −6) − 3), e its float32 exponent read from the bits (exact, unlike a log).
 */
export function fakeQuantizeFp8(ops: RawOps, x: TensorInfo, group: number): TensorInfo {
  const shape = x.shape;
  const K = shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const g = ops.reshape(x, [rows, K / group, group]);
  const s = ops.div(ops.maximum(ops.max(ops.abs(g), 2, true), 1e-10), 448);
  const v = ops.clip(ops.div(g, s), -448, 448);
  const a = ops.abs(v);
  const e = ops.addInt(ops.bitwiseAnd(ops.rightShift(ops.bitcast(a, 'int32'), 23), 255), -127);
  const stepExp = ops.addInt(ops.cast(ops.maximum(ops.cast(e, 'float32'), -6), 'int32'), -3);
  const step = ops.bitcast(ops.leftShift(ops.addInt(stepExp, 127), 23), 'float32');
  const q = ops.minimum(ops.mul(ops.round(ops.div(a, step)), step), 448);
  const signed = ops.select(ops.less(v, 0), ops.neg(q), q);
  return ops.reshape(ops.mul(signed, s), shape);
}

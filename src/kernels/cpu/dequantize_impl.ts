/**
 * Exact dequantization of one projection stack in the canonical layout of src/quant/format.ts, in plain
 * JavaScript (the reference: shares no code with the WGSL). Returns float32 [E, N, K]:
 *
 *   w[e, n, k] = (decode(code) − zero) · scale[e, ⌊n / blockRows⌋, g(k)]
 *
 * The product is formed in float64 and rounded once to float32, as the float64 fixtures expect.
 */
import {WEIGHT_CODES, WeightFormat, e8m0ToFloat, formatBits, groupOf, numGroups} from '../../quant/format';

export interface PackedProjection {
  format: WeightFormat;
  numExperts: number;
  rows: number;     // N
  cols: number;     // K
  data: ArrayLike<number>;   // float32 values for 'f32', else int32 words
  scales?: ArrayLike<number>;
  zeros?: ArrayLike<number>;
  gIdx?: ArrayLike<number>;
}

export function dequantizeImpl(p: PackedProjection): Float32Array {
  const {format: f, numExperts: E, rows: N, cols: K} = p;
  if (f.code === 'f32') return Float32Array.from(p.data);
  const bits = formatBits(f);
  const perWord = 32 / bits;
  const mask = bits === 32 ? 0xffffffff : (1 << bits) - 1;
  const decode = WEIGHT_CODES[f.code].decode;
  const G = numGroups(f, K);
  const scaleRows = Math.ceil(N / f.blockRows);
  const wordsPerExpert = N * K / perWord;
  const out = new Float32Array(E * N * K);
  const scaleBytes = f.scaleCode === 'e8m0' && p.scales ? wordsToBytes(p.scales) : null;
  const scaleBytesPerExpert = Math.ceil(N * G / 4) * 4;
  for (let e = 0; e < E; e++) {
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const field = n * K + k;
        const word = p.data[e * wordsPerExpert + Math.floor(field / perWord)] >>> 0;
        const code = (word >>> ((field % perWord) * bits)) & mask;
        let v = decode(code);
        if (G > 0) {
          const g = f.hasGIdx ? p.gIdx![e * K + k] : groupOf(f, k);
          const zero = f.zero === 'tensor' ? p.zeros![(e * N + n) * G + g] : f.zero;
          const scale = scaleBytes ? e8m0ToFloat(scaleBytes[e * scaleBytesPerExpert + n * G + g]) :
            p.scales![(e * scaleRows + Math.floor(n / f.blockRows)) * G + g];
          v = (v - zero) * scale;
        } else {
          v -= f.zero as number;
        }
        out[(e * N + n) * K + k] = v;
      }
    }
  }
  return out;
}

function wordsToBytes(words: ArrayLike<number>): Uint8Array {
  const w = Int32Array.from(words);
  return new Uint8Array(w.buffer);
}

/**
 * Random expert weights in the canonical layout of src/quant/format.ts (browser-safe: no fs): random words
 * (16-bit floats with a moderate exponent range, e4m3 without its NaN codes), positive scales, zero points in
 * range, a random valid act-order gIdx (a shuffle of ⌊k / groupSize⌋ per expert), biases.
 */
import * as tf from '@tensorflow/tfjs-core';
import {WEIGHT_CODES, WeightFormat, formatBits, numGroups} from '../../src/quant/format';
import {PackedProjection} from '../../src/kernels/cpu/dequantize_impl';
import type {QuantizedExpertWeights} from '../../src/quant/expert_weights';

export interface RandomProjection extends PackedProjection {
  data: Int32Array | Float32Array;
  scales?: Float32Array | Int32Array;
  zeros?: Float32Array;
  gIdx?: Int32Array;
}

function randomField(f: WeightFormat, rand: () => number): number {
  const r = (n: number) => Math.floor(rand() * n);
  switch (f.code) {
    case 'bf16': return (r(2) << 15) | ((120 + r(11)) << 7) | r(128);          // |v| in [2^-7, 2^4)
    case 'f16': return (r(2) << 15) | (r(18) << 10) | r(1024);                  // subnormals .. 2^3
    case 'e4m3': { const b = r(256); return (b & 0x7f) === 0x7f ? b - 1 : b; }  // no NaN
    default: return r(1 << formatBits(f));
  }
}

export function randomProjection(f: WeightFormat, E: number, N: number, K: number, rand: () => number):
    RandomProjection {
  const p: RandomProjection = {format: f, numExperts: E, rows: N, cols: K, data: new Float32Array(0)};
  if (f.code === 'f32') {
    p.data = Float32Array.from({length: E * N * K}, () => (rand() - 0.5) * 0.6);
    return p;
  }
  const bits = formatBits(f);
  const perWord = 32 / bits;
  const words = new Int32Array(E * N * K / perWord);
  for (let i = 0; i < words.length; i++) {
    let w = 0;
    for (let j = 0; j < perWord; j++) w |= randomField(f, rand) << (j * bits);
    words[i] = w;
  }
  p.data = words;
  const G = numGroups(f, K);
  if (G > 0) {
    if (f.scaleCode === 'e8m0') {
      const bytes = new Uint8Array(E * Math.ceil(N * G / 4) * 4);
      for (let i = 0; i < bytes.length; i++) bytes[i] = 121 + Math.floor(rand() * 6);  // 2^-6 .. 2^-1
      p.scales = new Int32Array(bytes.buffer);
    } else {
      // Decoded codes: ints up to 255 want small scales, floats up to 448 (e4m3) too.
      const unit = f.code === 'uint8' ? 1 / 128 : f.code === 'uint4' ? 1 / 8 : f.code === 'e4m3' ? 1 / 256 : 1 / 4;
      p.scales = Float32Array.from({length: E * Math.ceil(N / f.blockRows) * G}, () => unit * (0.2 + rand()));
    }
  }
  if (f.zero === 'tensor') {
    const max = (1 << bits) - 1;
    p.zeros = Float32Array.from({length: E * N * G}, () => Math.round(rand() * max * 4) / 4);
  }
  if (f.hasGIdx) {
    p.gIdx = new Int32Array(E * K);
    for (let e = 0; e < E; e++) {
      const g = Array.from({length: K}, (_, k) => Math.floor(k / f.groupSize));
      for (let i = K - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [g[i], g[j]] = [g[j], g[i]];
      }
      p.gIdx.set(g, e * K);
    }
  }
  return p;
}

/** A random projection as the tensors fusedExperts takes (float32 stacks stay [E, N, K]), with an optional bias. */
export function quantizedTensors(p: RandomProjection, bias?: Float32Array): QuantizedExpertWeights {
  const {format: f, numExperts: n, rows: N, cols: K} = p;
  const q: QuantizedExpertWeights = {format: f, shape: [n, N, K],
    data: f.code === 'f32' ? tf.tensor3d(p.data, [n, N, K]) : tf.tensor2d(p.data, [n, p.data.length / n], 'int32')};
  if (p.scales) {
    q.scales = p.scales instanceof Int32Array ? tf.tensor2d(p.scales, [n, p.scales.length / n], 'int32') :
      tf.tensor3d(p.scales, [n, Math.ceil(N / f.blockRows), p.scales.length / n / Math.ceil(N / f.blockRows)]);
  }
  if (p.zeros) q.zeros = tf.tensor3d(p.zeros, [n, N, p.zeros.length / n / N]);
  if (p.gIdx) q.gIdx = tf.tensor2d(p.gIdx, [n, K], 'int32');
  if (bias) q.bias = tf.tensor2d(bias, [n, N]);
  return q;
}

/** Checks the decoders see no NaN (the generator's promise). */
export function decodesFinite(f: WeightFormat, code: number): boolean {
  return Number.isFinite(WEIGHT_CODES[f.code].decode(code));
}

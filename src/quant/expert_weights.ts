/**
 * Expert weights in any format of src/quant/format.ts, as `fusedExperts` / `fusedMoE` take them
 * (vLLM passes the same through `w1`/`w2` plus `w1_scale`, `w2_scale`, `w1_zp`, `w2_zp`, `block_shape`,
 * `use_fp8_w8a8` / `use_int4_w4a16` / ...; here the format descriptor says which).
 *
 * ```js
 * // GPTQ int4, group 128, symmetric: logical w13 [E, 2I, H], 8 codes per int32 word along H
 * const w13 = {format: {code: 'uint4', groupSize: 128, blockRows: 1, scaleCode: 'f32', zero: 8, hasGIdx: false},
 *              shape: [E, 2 * I, H], data: words, scales};   // words int32 [E, 2I·H/8], scales [E, 2I, H/128]
 * fusedExperts(x, w13, w2, topkWeights, topkIds);
 * ```
 */
import type {Tensor} from '@tensorflow/tfjs-core';
import {WeightFormat, formatBits, numGroups} from './format';

export interface QuantizedExpertWeights {
  format: WeightFormat;
  /** Logical [experts, N, K]: w13 [E, 2I, H], w2 [E, H, I]. */
  shape: [number, number, number];
  /** float32 [E, N, K] for 'f32', else int32 [E, N·K·bits/32] words (format.ts). */
  data: Tensor;
  scales?: Tensor;
  zeros?: Tensor;
  gIdx?: Tensor;
  /** float32 [E, N]: added to the projection's output (vLLM `has_bias`, gpt-oss). */
  bias?: Tensor;
}

export function isQuantizedExpertWeights(w: unknown): w is QuantizedExpertWeights {
  return typeof w === 'object' && w != null && 'format' in w && 'data' in w && 'shape' in w;
}

/** Shape and dtype of each canonical tensor of an expert stack in `format` (format.ts's layout). */
export interface ExpertTensorShapes {
  data: {shape: number[]; dtype: 'float32' | 'int32'};
  scales?: {shape: number[]; dtype: 'float32' | 'int32'};
  zeros?: {shape: number[]; dtype: 'float32'};
  gIdx?: {shape: number[]; dtype: 'int32'};
  bias?: {shape: number[]; dtype: 'float32'};
}

export function expertTensorShapes(format: WeightFormat, E: number, N: number, K: number, hasBias: boolean):
    ExpertTensorShapes {
  const G = numGroups(format, K);
  const out: ExpertTensorShapes = {data: format.code === 'f32' ? {shape: [E, N, K], dtype: 'float32'} :
    {shape: [E, N * K * formatBits(format) / 32], dtype: 'int32'}};
  if (G > 0) {
    out.scales = format.scaleCode === 'e8m0' ? {shape: [E, Math.ceil(N * G / 4)], dtype: 'int32'} :
      {shape: [E, Math.ceil(N / format.blockRows), G], dtype: 'float32'};
  }
  if (format.zero === 'tensor') out.zeros = {shape: [E, N, G], dtype: 'float32'};
  if (format.hasGIdx) out.gIdx = {shape: [E, K], dtype: 'int32'};
  if (hasBias) out.bias = {shape: [E, N], dtype: 'float32'};
  return out;
}

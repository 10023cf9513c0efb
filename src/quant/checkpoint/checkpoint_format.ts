/**
 * One interface for every checkpoint family (transformers' quantizers: one module per format owns its
 * config parsing and weight conversion; the layer and the loader never branch on the format):
 *
 *   HF `quantization_config` (snake_case, as in config.json)
 *     → [module.parse]  → CheckpointFormat: the WeightFormat of format.ts, the tensors each expert
 *                          projection needs, and `convert`
 *     → [weight_loading.ts] finds and checks those tensors, narrows them for TP/EP, calls `convert`
 *     → canonical rows (format.ts) → the layer's weights
 *
 * `convert` works on the checkpoint's bytes on the CPU (each expert tensor read back once, plain loops
 * over its codes), once, at load time: O(weights) JavaScript work and one host copy of each expert's
 * tensors at a time; the device only ever holds the canonical result.
 */
import type {Activation} from '../../kernel_names';
import {CheckpointTensor} from '../../io/packed_tensor';
import {WeightFormat, bitsToFloat32, formatBits, halfToFloat} from '../format';

/** A stored tensor's dtype: tfjs's ('float32', 'int32') or a PackedTensor's ('bfloat16', 'uint8', ...). */
export type StoredDtype = CheckpointTensor['dtype'];

/** One checkpoint tensor of one expert projection. */
export interface TensorSpec {
  /** Appended to the projection's base name: '.qweight' per expert, '_blocks' for a fused 3-D tensor. */
  suffix: string;
  dtypes: readonly string[];
  /** Shape of one expert's tensor (a fused 3-D checkpoint adds the expert dim in front). */
  shape: number[];
  /** Taken when present (e.g. GPTQ's g_idx without act-order); never required. */
  optional?: boolean;
  /** Exact values the tensor must hold (compressed-tensors' weight_shape). */
  values?: number[];
}

/** One expert's checkpoint tensor as bytes (little-endian, as stored). */
export interface Stored {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

export interface Range { begin: number; size: number }

/**
 * Rows [rows.begin, +size) and inputs [cols.begin, +size) of one projection whose full logical shape is
 * [N, K] (vLLM's orientation: N outputs, K inputs). Ranges are checked against the format's words,
 * groups and blocks before `convert` is called.
 */
export interface ProjectionRequest { N: number; K: number; rows: Range; cols: Range }

/** One expert's narrowed projection in the canonical layout of format.ts (before stacking experts). */
export interface ConvertedRows {
  /** float32 [rows·cols] for 'f32', else the codes packed into int32 words. */
  data: Float32Array | Int32Array;
  /** float32 [⌈rows/blockRows⌉, G], or E8M0 bytes [rows, G]. */
  scales?: Float32Array | Uint8Array;
  /** float32 [rows, G], in code units. */
  zeros?: Float32Array;
  /** int32 [cols]: the group of each input. */
  gIdx?: Int32Array;
}

export interface CheckpointFormat {
  /** For messages: 'gptq int4 group 128 sym', 'fp8 e4m3 block [128, 128]', ... */
  readonly description: string;
  readonly format: WeightFormat;
  /** Per expert (`experts.{e}.{name}.*`) or fused 3-D (`experts.gate_up_proj*`, `experts.down_proj*`). */
  readonly layout: 'per_expert' | 'fused_3d';
  /** Gate and up rows alternate in the fused tensor (gpt-oss); they stay so ('swigluoai' reads them so). */
  readonly interleavedGateUp: boolean;
  /** The activation the checkpoint's model uses, when the format implies one ('swigluoai' for gpt-oss). */
  readonly activation: Activation | null;
  /** The checkpoint carries expert biases (gpt-oss). */
  readonly hasBias: boolean;
  /** Unquantized checkpoints: the dtype the device keeps; undefined for quantized formats. */
  readonly weightDtype?: 'float32' | 'bfloat16' | 'float16';
  /** vLLM would quantize activations too (fp8 `activation_scheme: 'dynamic'`). */
  readonly defaultUseFp8W8A8: boolean;
  /** vLLM would quantize activations to int8 per token (compressed-tensors W8A8 with dynamic token scales). */
  readonly defaultUseInt8W8A8: boolean;
  /** Checkpoint tensors of one expert projection of full logical shape [N, K]; bias not included. */
  tensors(N: number, K: number): TensorSpec[];
  /** Canonical rows of one expert projection; `t` is keyed by TensorSpec.suffix. */
  convert(t: Map<string, Stored>, req: ProjectionRequest): ConvertedRows;
}

/**
 * What most quantized formats share: per-expert tensors, gate and up rows apart, no activation or biases of
 * their own, weights-only compute. A format class extends it and sets `format`, `description` and the rest.
 */
export abstract class PerExpertQuantFormat {
  readonly layout: 'per_expert' | 'fused_3d' = 'per_expert';
  readonly interleavedGateUp: boolean = false;
  readonly activation: Activation | null = null;
  readonly hasBias: boolean = false;
  readonly defaultUseFp8W8A8: boolean = false;
  readonly defaultUseInt8W8A8: boolean = false;
}

/** An unsupported or malformed `quantization_config`: the message names what is supported. */
export class QuantConfigError extends Error {}

// ---- helpers shared by the modules -------------------------------------------------------------

export function int32View(s: Stored): Int32Array {
  return new Int32Array(s.bytes.buffer, s.bytes.byteOffset, s.bytes.byteLength / 4);
}

/** Decodes element i of a float tensor stored as float32, bfloat16 or float16. */
export function floatReader(s: Stored): (i: number) => number {
  const b = s.bytes;
  switch (s.dtype) {
    case 'float32': {
      const v = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
      return (i) => v[i];
    }
    case 'bfloat16': return (i) => bitsToFloat32((b[2 * i] | (b[2 * i + 1] << 8)) << 16);
    case 'float16': return (i) => halfToFloat(b[2 * i] | (b[2 * i + 1] << 8));
    default: throw new Error(`not a float tensor: ${s.dtype}`);
  }
}

/**
 * Packs codes into format.ts's field order: field n·cols + k of the result, `bits` wide, little-endian
 * within int32 words. `code(n, k)` takes local row and input.
 */
export function packCodes(rows: number, cols: number, bits: number, code: (n: number, k: number) => number):
    Int32Array {
  const perWord = 32 / bits;
  const out = new Int32Array(rows * cols / perWord);
  const mask = (1 << bits) - 1;
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const field = n * cols + k;
      out[field / perWord | 0] |= (code(n, k) & mask) << ((field % perWord) * bits);
    }
  }
  return out;
}

/** First scale group of an input range: checked by the loader to start on a group or lie inside one. */
export function firstGroup(format: WeightFormat, cols: Range): number {
  return format.groupSize > 0 ? Math.floor(cols.begin / format.groupSize) : 0;
}

/** float32 [⌈rows/blockRows⌉, G] scales of a range, from a reader over the full [⌈N/blockRows⌉, Gfull] grid. */
export function narrowScales(format: WeightFormat, req: ProjectionRequest, Gfull: number, G: number,
    read: (i: number) => number): Float32Array {
  const r0 = Math.floor(req.rows.begin / format.blockRows);
  const R = Math.ceil(req.rows.size / format.blockRows);
  const g0 = firstGroup(format, req.cols);
  const out = new Float32Array(R * G);
  for (let r = 0; r < R; r++) for (let g = 0; g < G; g++) out[r * G + g] = read((r0 + r) * Gfull + g0 + g);
  return out;
}

export const bitsOf = (f: WeightFormat) => formatBits(f);

/** Reads a config field that must be one of `allowed` (or absent, then `fallback`). */
export function configChoice<T>(cfg: Record<string, unknown>, field: string, allowed: readonly T[], fallback: T,
    method: string): T {
  const v = cfg[field];
  if (v === undefined || v === null) return fallback;
  if (!allowed.includes(v as T)) {
    throw new QuantConfigError(`quantization_config: ${method} '${field}' = ${JSON.stringify(v)} is not supported; ` +
        `supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
  }
  return v as T;
}

export function configInt(cfg: Record<string, unknown>, field: string, method: string, fallback?: number): number {
  const v = cfg[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new QuantConfigError(`quantization_config: ${method} '${field}' must be an integer but got ` +
        `${JSON.stringify(cfg[field])}`);
  }
  return v;
}

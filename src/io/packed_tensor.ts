/**
 * Checkpoint tensors whose dtype tfjs lacks (BF16, F16, F8_E4M3, U8, I8), kept as stored: the raw
 * little-endian bytes in an int32 tensor of ⌈bytes/4⌉ words (zero-padded), beside the logical dtype and
 * shape. On the device they take exactly the checkpoint's bytes; the checkpoint modules of src/quant
 * turn them into the canonical expert layout of src/quant/format.ts without widening.
 *
 *   BF16 [2, 3] = 12 bytes → words int32 [3]; element i is bits [16·(i mod 2), +16) of word ⌊i/2⌋
 */
import {Tensor, Tensor1D, tensor, tensor1d} from '@tensorflow/tfjs-core';
import {bitsToFloat32, e4m3ToFloat, halfToFloat} from '../quant/format';

export type PackedDtype = 'bfloat16' | 'float16' | 'float8_e4m3fn' | 'uint8' | 'int8';

export const PACKED_BYTES: Record<PackedDtype, number> = {bfloat16: 2, float16: 2, float8_e4m3fn: 1, uint8: 1, int8: 1};

const DECODE: Record<PackedDtype, (bits: number) => number> = {
  bfloat16: (b) => bitsToFloat32(b << 16),
  float16: halfToFloat,
  float8_e4m3fn: e4m3ToFloat,
  uint8: (b) => b,
  int8: (b) => (b << 24) >> 24,
};

export class PackedTensor {
  /** int32 [⌈size · bytes / 4⌉]: the stored bytes. */
  readonly words: Tensor1D;

  constructor(readonly dtype: PackedDtype, readonly shape: number[], words: Tensor1D) {
    const bytes = this.size * PACKED_BYTES[dtype];
    if (words.dtype !== 'int32' || words.rank !== 1 || words.shape[0] !== Math.ceil(bytes / 4)) {
      throw new Error(`PackedTensor: ${dtype} [${shape.join(', ')}] needs int32 words [${Math.ceil(bytes / 4)}] but ` +
          `got ${words.dtype} [${words.shape.join(', ')}]`);
    }
    this.words = words;
  }

  /** Packs raw little-endian bytes (copied; any byteOffset and alignment). */
  static fromBytes(dtype: PackedDtype, shape: number[], bytes: Uint8Array): PackedTensor {
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    return new PackedTensor(dtype, shape, tensor1d(new Int32Array(padded.buffer), 'int32'));
  }

  get size(): number { return this.shape.reduce((a, b) => a * b, 1); }
  get rank(): number { return this.shape.length; }
  get isDisposed(): boolean { return this.words.isDisposed; }
  /** Bytes of the stored data (what it takes on the device, up to 3 bytes of padding). */
  get byteLength(): number { return this.size * PACKED_BYTES[this.dtype]; }

  /** The stored bytes, copied out of the words (reads the tensor back). */
  bytes(): Uint8Array {
    const w = this.words.dataSync() as Int32Array;
    return new Uint8Array(w.buffer, w.byteOffset, this.byteLength).slice();
  }

  /** The exact values, widened to float32 (reads the tensor back; for checks and small tensors). */
  toFloat32(): Tensor {
    const b = this.bytes();
    const per = PACKED_BYTES[this.dtype];
    const out = new Float32Array(this.size);
    const decode = DECODE[this.dtype];
    for (let i = 0; i < out.length; i++) out[i] = decode(per === 2 ? b[2 * i] | (b[2 * i + 1] << 8) : b[i]);
    return tensor(out, this.shape, 'float32');
  }

  dispose(): void { this.words.dispose(); }

  toString(): string { return `PackedTensor ${this.dtype} [${this.shape.join(', ')}]`; }
}

/** A tensor or a packed tensor, as `readSafetensors` returns them. */
export type CheckpointTensor = Tensor | PackedTensor;

export function isPackedTensor(t: unknown): t is PackedTensor {
  return t instanceof PackedTensor;
}

/** Disposes tensors and packed tensors alike. */
export function disposeCheckpointTensors(ts: Iterable<CheckpointTensor>): void {
  for (const t of ts) t.dispose();
}

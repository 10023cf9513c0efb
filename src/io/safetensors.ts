/**
 * Safetensors reading: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}, then the raw bytes.
 * F32, F16, BF16 and I32 become float32 / int32 tensors; anything else is rejected by name.
 */
import {Tensor, tensor} from '@tensorflow/tfjs-core';
import {FetchBytesOptions, fetchBytes} from './fetch_bytes';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I32';
export const SAFETENSORS_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16', 'I32'];

export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Decoded values: float32 for F32/F16/BF16, int32 for I32. */
  values: Float32Array | Int32Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  entries: Map<string, SafetensorsEntry>;
}

const BYTES: Record<SafetensorsDtype, number> = {F32: 4, F16: 2, BF16: 2, I32: 4};

/** Parses a whole safetensors file into plain typed arrays (no tensors are made). */
export function parseSafetensors(bytes: Uint8Array | ArrayBuffer): SafetensorsFile {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const fail = (why: string): never => { throw new Error(`readSafetensors: ${why}`); };
  if (u8.byteLength < 8) fail(`the file has ${u8.byteLength} bytes, fewer than the 8-byte header length`);
  const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (8 + headerLength > u8.byteLength) {
    fail(`the header claims ${headerLength} bytes but the file has only ${u8.byteLength - 8} after the length: ` +
        `is it truncated?`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(u8.subarray(8, 8 + headerLength)));
  } catch (e) {
    return fail(`the header is not valid JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + headerLength;
  const dataLength = u8.byteLength - dataStart;
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const entries = new Map<string, SafetensorsEntry>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const {dtype, shape, data_offsets: offsets} = (info ?? {}) as {dtype: string; shape: number[]; data_offsets: number[]};
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0) || !Array.isArray(offsets) ||
        offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      fail(`tensor '${name}' has a malformed header entry ${JSON.stringify(info)}: expected {dtype, shape: ` +
          `[non-negative integers], data_offsets: [begin, end]}`);
    }
    if (!SAFETENSORS_DTYPES.includes(dtype as SafetensorsDtype)) {
      fail(`tensor '${name}' has dtype ${dtype}; supported are ${SAFETENSORS_DTYPES.join(', ')}`);
    }
    const [begin, end] = offsets;
    const size = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== size * BYTES[dtype as SafetensorsDtype]) {
      fail(`tensor '${name}' of ${dtype} shape [${shape.join(', ')}] needs ${size * BYTES[dtype as SafetensorsDtype]} ` +
          `bytes but its offsets span ${end - begin}`);
    }
    if (end > dataLength) {
      fail(`tensor '${name}' ends at byte ${end} of the data but the file holds only ${dataLength}: it is truncated`);
    }
    entries.set(name, {dtype: dtype as SafetensorsDtype, shape,
      values: decode(u8.subarray(dataStart + begin, dataStart + end), dtype as SafetensorsDtype, size)});
  }
  return {metadata, entries};
}

/** Parses a safetensors file into tfjs tensors (float32 or int32), keyed by checkpoint name. */
export function readSafetensors(bytes: Uint8Array | ArrayBuffer): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, e] of parseSafetensors(bytes).entries) {
    out.set(name, tensor(e.values, e.shape, e.values instanceof Int32Array ? 'int32' : 'float32'));
  }
  return out;
}

function decode(raw: Uint8Array, dtype: SafetensorsDtype, size: number): Float32Array | Int32Array {
  // Copy first: the tensor data inside the file need not be aligned for a typed-array view.
  const copy = raw.slice();
  switch (dtype) {
    case 'F32': return new Float32Array(copy.buffer, 0, size);
    case 'I32': return new Int32Array(copy.buffer, 0, size);
    case 'BF16': {
      const half = new Uint16Array(copy.buffer, 0, size);
      const bits = new Uint32Array(size);
      for (let i = 0; i < size; i++) bits[i] = half[i] << 16;
      return new Float32Array(bits.buffer);
    }
    case 'F16': {
      const half = new Uint16Array(copy.buffer, 0, size);
      const out = new Float32Array(size);
      for (let i = 0; i < size; i++) out[i] = halfToFloat(half[i]);
      return out;
    }
  }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export interface LoadSafetensorsOptions extends FetchBytesOptions {}

/**
 * Reads a safetensors file into tensors: a path or file:// URL in Node (streamed from disk), or a URL
 * fetched in browsers and Node, with `onProgress(loadedBytes, totalBytes)` as the bytes arrive.
 *
 * ```js
 * const weights = await loadSafetensors('model-00001-of-00002.safetensors',
 *     {onProgress: (n, total) => console.log(`${n} / ${total} bytes`)});
 * moe.loadWeights(weights, {prefix: 'model.layers.0.mlp'});
 * ```
 */
export async function loadSafetensors(pathOrUrl: string | URL, o: LoadSafetensorsOptions = {}):
    Promise<Map<string, Tensor>> {
  const bytes = await fetchBytes(pathOrUrl, o);
  try {
    return readSafetensors(bytes);
  } catch (e) {
    throw new Error(`${(e as Error).message} (in '${pathOrUrl}')`);
  }
}

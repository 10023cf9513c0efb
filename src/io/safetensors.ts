/**
 * Safetensors reading: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}, then the raw bytes.
 * F32 and I32 become float32 / int32 tensors, I64 an int32 tensor (values outside int32 are an error);
 * BF16, F16, F8_E4M3, U8 and I8 stay as stored, in a PackedTensor (packed_tensor.ts), so a bf16 or fp8
 * checkpoint takes its own bytes on the device. Anything else is rejected by name.
 */
import {Tensor, tensor} from '@tensorflow/tfjs-core';
import {FetchBytesOptions, fetchBytes} from './fetch_bytes';
import {CheckpointTensor, PackedDtype, PackedTensor} from './packed_tensor';

export type SafetensorsDtype = 'F32' | 'I32' | 'I64' | 'F16' | 'BF16' | 'F8_E4M3' | 'U8' | 'I8';
export const SAFETENSORS_DTYPES: readonly SafetensorsDtype[] = ['F32', 'I32', 'I64', 'F16', 'BF16', 'F8_E4M3', 'U8', 'I8'];

const PACKED: Partial<Record<SafetensorsDtype, PackedDtype>> =
    {F16: 'float16', BF16: 'bfloat16', F8_E4M3: 'float8_e4m3fn', U8: 'uint8', I8: 'int8'};

export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  /** F32: float32 values; I32 and I64: int32 values; the packed dtypes: the stored bytes (a copy). */
  values: Float32Array | Int32Array | Uint8Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  entries: Map<string, SafetensorsEntry>;
}

const BYTES: Record<SafetensorsDtype, number> = {F32: 4, I32: 4, I64: 8, F16: 2, BF16: 2, F8_E4M3: 1, U8: 1, I8: 1};

/**
 * The largest header accepted. Real headers are far smaller (a 1000-tensor shard's is ~100 KB, and a file JS can
 * hold has at most a few thousand tensors); without a cap a 100 MB header of empty entries took 17 s and 1.4 GB
 * to reject. At 4 MiB the worst header (330 000 empty entries) is refused in ~0.5-1.1 s and a full valid one
 * (73 000 entries) parses in ~0.5-0.8 s on 2 busy cores.
 */
export const MAX_SAFETENSORS_HEADER_BYTES = 4 * 1024 * 1024;

/**
 * Parses a whole safetensors file into plain typed arrays (no tensors are made). The header is checked as the
 * format requires (and as the reference Rust crate does): a JSON object of unique names, `__metadata__` a
 * string → string map, and data_offsets that tile the data region exactly, in order, with no gap, overlap
 * or unclaimed byte.
 */
export function parseSafetensors(bytes: Uint8Array | ArrayBuffer): SafetensorsFile {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const fail = (why: string): never => { throw new Error(`readSafetensors: ${why}`); };
  if (u8.byteLength < 8) fail(`the file has ${u8.byteLength} bytes, fewer than the 8-byte header length`);
  const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_SAFETENSORS_HEADER_BYTES) {
    fail(`the header claims ${headerLength} bytes, more than the ${MAX_SAFETENSORS_HEADER_BYTES} accepted: is this a ` +
        `safetensors file?`);
  }
  if (8 + headerLength > u8.byteLength) {
    fail(`the header claims ${headerLength} bytes but the file has only ${u8.byteLength - 8} after the length: ` +
        `is it truncated?`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', {fatal: true}).decode(u8.subarray(8, 8 + headerLength));
  } catch (e) {
    return fail(`the header is not valid UTF-8 (${(e as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return fail(`the header is not valid JSON (${(e as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    fail(`the header must be a JSON object {name: {dtype, shape, data_offsets}, ...} but is ` +
        `${parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : `a ${typeof parsed}`}`);
  }
  const header = parsed as Record<string, unknown>;
  // Keys taken once: Object.entries on a header of ~10^6 keys costs a second more than this.
  const names = Object.keys(header);
  const repeated = repeatedTopLevelKey(text, names.length);
  if (repeated != null) fail(`the header names '${repeated}' more than once`);
  const metadata = checkMetadata(header.__metadata__, fail);

  const dataStart = 8 + headerLength;
  const dataLength = u8.byteLength - dataStart;
  const checked: Array<{name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number;
    size: number}> = [];
  for (const name of names) {
    if (name === '__metadata__') continue;
    const info = header[name];
    const {dtype, shape, data_offsets: offsets} = (info !== null && typeof info === 'object' ? info : {}) as
        {dtype: string; shape: number[]; data_offsets: number[]};
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
    checked.push({name, dtype: dtype as SafetensorsDtype, shape, begin, end, size});
  }
  // The tensors must tile the data region: sorted by offset, each begins where the previous ended.
  const sorted = checked.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const t of sorted) {
    if (t.begin !== at) {
      const prev = sorted[sorted.indexOf(t) - 1];
      fail(t.begin > at ?
        `bytes [${at}, ${t.begin}) of the data belong to no tensor (a gap before '${t.name}')` :
        `tensor '${t.name}' [${t.begin}, ${t.end}) overlaps '${prev.name}' [${prev.begin}, ${prev.end})`);
    }
    at = t.end;
  }
  if (at !== dataLength) {
    fail(`bytes [${at}, ${dataLength}) of the data belong to no tensor: the header does not describe the whole file`);
  }

  const entries = new Map<string, SafetensorsEntry>();
  for (const {name, dtype, shape, begin, end, size} of checked) {
    entries.set(name, {dtype, shape, values: decode(u8.subarray(dataStart + begin, dataStart + end), dtype, size, name)});
  }
  return {metadata, entries};
}

/** `__metadata__`: absent, or an object of string values. */
function checkMetadata(value: unknown, fail: (why: string) => never): Record<string, string> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return fail(`'__metadata__' must be an object of strings but is ${JSON.stringify(value)}`);
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') fail(`'__metadata__' must map strings to strings but '${k}' is ${JSON.stringify(v)}`);
  }
  return value as Record<string, string>;
}

/**
 * A key the (valid) JSON object text `text` names twice at its top level, or null. JSON.parse keeps the last
 * of repeated keys silently, so the raw text is scanned: one pass counting top-level keys, and only if the
 * count differs from the parsed object's, a second pass that finds the repeated one.
 */
function repeatedTopLevelKey(text: string, parsedKeys: number): string | null {
  const scan = (onKey: (key: string) => boolean): number => {
    let depth = 0, keys = 0, expectKey = false;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {  // a string: skip to its closing quote
        const start = i + 1;
        let escaped = false;
        for (i++; text.charCodeAt(i) !== 0x22; i++) {
          if (text.charCodeAt(i) === 0x5c) { escaped = true; i++; }
        }
        if (depth === 1 && expectKey) {
          expectKey = false;
          keys++;
          const raw = text.slice(start, i);
          if (onKey(escaped ? JSON.parse(`"${raw}"`) as string : raw)) return keys;
        }
      } else if (c === 0x7b || c === 0x5b) {  // { [
        depth++;
        if (depth === 1) expectKey = true;
      } else if (c === 0x7d || c === 0x5d) {  // } ]
        depth--;
      } else if (c === 0x2c && depth === 1) {  // ,
        expectKey = true;
      }
    }
    return keys;
  };
  if (scan(() => false) === parsedKeys) return null;
  const seen = new Set<string>();
  let repeated: string | null = null;
  scan((key) => {
    if (seen.has(key)) { repeated = key; return true; }
    seen.add(key);
    return false;
  });
  return repeated;
}

/**
 * Parses a safetensors file into tensors keyed by checkpoint name: float32 / int32 tensors, and
 * PackedTensors for the dtypes tfjs lacks (`t.toFloat32()` widens one when you need to).
 */
export function readSafetensors(bytes: Uint8Array | ArrayBuffer): Map<string, CheckpointTensor> {
  const out = new Map<string, CheckpointTensor>();
  for (const [name, e] of parseSafetensors(bytes).entries) {
    const packed = PACKED[e.dtype];
    out.set(name, packed ? PackedTensor.fromBytes(packed, e.shape, e.values as Uint8Array) :
      tensor(e.values as Float32Array | Int32Array, e.shape, e.values instanceof Int32Array ? 'int32' : 'float32'));
  }
  return out;
}

function decode(raw: Uint8Array, dtype: SafetensorsDtype, size: number, name: string):
    Float32Array | Int32Array | Uint8Array {
  // Copy into a fresh buffer: `raw` may be a view at any offset into a larger (or pooled, for a Node Buffer)
  // ArrayBuffer, and tensor data inside a file need not be aligned for a typed-array view.
  const copy = new Uint8Array(raw.byteLength);
  copy.set(raw);
  switch (dtype) {
    case 'F32': return new Float32Array(copy.buffer, 0, size);
    case 'I32': return new Int32Array(copy.buffer, 0, size);
    case 'I64': {
      const wide = new BigInt64Array(copy.buffer, 0, size);
      const out = new Int32Array(size);
      for (let i = 0; i < size; i++) {
        const v = wide[i];
        if (v < -2147483648n || v > 2147483647n) {
          throw new Error(`readSafetensors: tensor '${name}' (I64) holds ${v} at index ${i}, outside int32, which ` +
              `tfjs cannot hold`);
        }
        out[i] = Number(v);
      }
      return out;
    }
    default: return copy;
  }
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
    Promise<Map<string, CheckpointTensor>> {
  const bytes = await fetchBytes(pathOrUrl, o);
  try {
    return readSafetensors(bytes);
  } catch (e) {
    throw new Error(`${(e as Error).message} (in '${pathOrUrl}')`);
  }
}

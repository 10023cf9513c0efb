/** Argument checks shared by the ops. Every message names the op, the argument and what was expected. */
import {DataType, Tensor, TensorLike, Variable, tensor} from '@tensorflow/tfjs-core';

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Converts `x` and checks its rank and dtype; `dims` names the axes, e.g. ['T', 'E']. */
export function tensorArg<R extends Tensor>(x: R | TensorLike, name: string, opName: string, dims: string[],
    dtype: DataType): R {
  if (x == null) throw new Error(`${opName}: '${name}' is required: a ${dtype} tensor of shape [${dims.join(', ')}]`);
  let t: R;
  if (x instanceof Tensor) {
    if (x.isDisposed) throw new Error(`${opName}: '${name}' is a disposed tensor (shape ${shapeStr(x.shape)})`);
    t = x;
  } else {
    // tf.tensor() neither rejects ragged arrays (it pads the shape from the first row) nor non-integers for
    // int32 (it truncates), so nested values are checked here first.
    const {values, shape} = flattenTensorLike(x, name, opName, dtype);
    t = tensor(values, shape, dtype) as R;
  }
  if (t.rank !== dims.length) {
    throw new Error(`${opName}: '${name}' must be a ${dims.length}-D tensor of shape [${dims.join(', ')}] ` +
        `but got shape ${shapeStr(t.shape)}`);
  }
  if (t.dtype !== dtype) {
    throw new Error(`${opName}: '${name}' must have dtype ${dtype} but got ${t.dtype}`);
  }
  return t;
}

/** Nested arrays (or one typed array) of numbers → flat values and shape; ragged or non-numeric input is an error. */
function flattenTensorLike(x: unknown, name: string, opName: string, dtype: DataType):
    {values: number[]; shape: number[]} {
  const values: number[] = [];
  const path: number[] = [];   // the index of the element being walked, printed only in an error
  const at = (i?: number) => (i == null ? path : [...path, i]).map((j) => `[${j}]`).join('') || '[]';
  const fail = (why: string): never => {
    throw new Error(`${opName}: '${name}' must be a Tensor or nested arrays of numbers: ${why}`);
  };
  const isInt32 = (v: number) => Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31;
  const walk = (v: unknown): number[] => {
    if (typeof v === 'number') {
      if (dtype === 'int32' && !isInt32(v)) fail(`${dtype} needs integers but element ${at()} is ${v}`);
      values.push(v);
      return [];
    }
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      const items = v as unknown as ArrayLike<number | bigint>;
      for (let i = 0; i < items.length; i++) {
        const n = items[i];
        if (typeof n !== 'number') fail(`element ${at(i)} is ${typeof n}`);
        if (dtype === 'int32' && !isInt32(n as number)) fail(`${dtype} needs integers but element ${at(i)} is ${n}`);
        values.push(n as number);
      }
      return [items.length];
    }
    if (!Array.isArray(v)) return fail(`element ${at()} is ${v === null ? 'null' : typeof v}`);
    let inner: number[] | null = null;
    for (let i = 0; i < v.length; i++) {
      path.push(i);
      const s = walk(v[i]);
      path.pop();
      if (inner == null) {
        inner = s;
      } else if (s.length !== inner.length || s.some((d, j) => d !== inner![j])) {
        fail(`it is ragged: element ${at(i)} has shape ${shapeStr(s)} but ${at(0)} has ${shapeStr(inner)}`);
      }
    }
    return [v.length, ...(inner ?? [])];
  };
  const shape = walk(x);
  return {values, shape};
}

/** Checks that axis `axis` of `t` has size `size`; `what` says where the size comes from. */
export function checkDim(t: Tensor, axis: number, size: number, name: string, opName: string, dims: string[],
    what: string): void {
  if (t.shape[axis] !== size) {
    throw new Error(`${opName}: '${name}' must have shape [${dims.join(', ')}] with ${dims[axis]} = ${size} ` +
        `(${what}) but got shape ${shapeStr(t.shape)}`);
  }
}

export function intArg(value: unknown, name: string, opName: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${opName}: '${name}' must be an integer in [${min}, ${max}] but got ${String(value)}`);
  }
  return value;
}

export function oneOf<T extends string>(value: unknown, name: string, opName: string, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) {
    throw new Error(`${opName}: '${name}' must be one of ${allowed.map((a) => `'${a}'`).join(', ')} ` +
        `but got ${JSON.stringify(value)}`);
  }
  return value as T;
}

export function finiteArg(value: unknown, name: string, opName: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new Error(`${opName}: '${name}' must be a finite number but got ${String(value)}`);
  }
  return value;
}

/**
 * What is known about an integer tensor's values without reading it: the range [min, max] they lie in, and,
 * for ids made by our routing and EPLB ops, where that range comes from (e.g. "routing over 8 experts").
 * Only unknown tensors cost a read-back; the range, not just "checked", is remembered, so ids checked
 * against 8 experts are not trusted against 4.
 */
interface KnownRange {
  min: number;
  max: number;
  /** Set when the range comes from shapes (never read): a range that does not fit is then an error. */
  source?: string;
}
const knownRanges = new WeakMap<Tensor, KnownRange>();

/** Records that every value of `t` lies in [min, max] because of `source` (e.g. 'routing over 8 experts'). */
export function markRange<T extends Tensor>(t: T, min: number, max: number, source: string): T {
  knownRanges.set(t, {min, max, source});
  return t;
}

/** The range recorded for `t`, if any. */
export function knownRange(t: Tensor): Readonly<KnownRange> | undefined {
  return knownRanges.get(t);
}

/**
 * Checks that every value of `t` lies in [min, max]. A tensor with a recorded range that fits costs nothing;
 * one whose range comes from shapes and does not fit is refused without reading it; anything else is read
 * back once, and its actual range remembered (not for Variables, which can be reassigned).
 */
export function checkRangeOnce(t: Tensor, name: string, opName: string, min: number, max: number,
    expectation: string, advice = ''): void {
  const known = knownRanges.get(t);
  if (known && known.min >= min && known.max <= max) return;
  if (known?.source) {
    throw new Error(`${opName}: '${name}' must hold ${expectation} but comes from ${known.source} ` +
        `(values in [${known.min}, ${known.max}])${advice}`);
  }
  const values = readValues(t, name, opName);
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!(v >= min && v <= max)) throw new Error(`${opName}: '${name}' must hold ${expectation} but element ${i} is ${v}`);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!(t instanceof Variable)) knownRanges.set(t, {min: lo, max: hi});
}

/** A synchronous read of `t` for a check, with an error that says how to avoid it. */
export function readValues(t: Tensor, name: string, opName: string): ArrayLike<number> {
  try {
    return t.dataSync() as ArrayLike<number>;
  } catch (e) {
    throw new Error(`${opName}: cannot check '${name}' on the '${t.constructor.name}' backend without a synchronous ` +
        `read (${(e as Error).message}); pass ids produced by selectExperts/fusedTopK/groupedTopK, or await ` +
        `'${name}'.data() before the call`);
  }
}

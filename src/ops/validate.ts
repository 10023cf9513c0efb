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
    t = x;
  } else {
    try {
      t = tensor(x as TensorLike, undefined, dtype) as R;
    } catch (e) {
      throw new Error(`${opName}: '${name}' must be a Tensor or nested numbers: ${(e as Error).message}`);
    }
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
 * Tensors whose values are known to be valid: ids produced by our routing kernels, and expert maps
 * checked once. Only unknown ids cost a read-back to check their range.
 */
const checkedTensors = new WeakSet<Tensor>();

export function markChecked<T extends Tensor>(t: T): T {
  checkedTensors.add(t);
  return t;
}

/** Reads `t` once to check every value with `isValid`; later calls with the same tensor are free. */
export function checkValuesOnce(t: Tensor, name: string, opName: string, expectation: string,
    isValid: (v: number) => boolean): void {
  if (checkedTensors.has(t)) return;
  let values: ArrayLike<number>;
  try {
    values = t.dataSync() as ArrayLike<number>;
  } catch (e) {
    throw new Error(`${opName}: cannot check '${name}' on the '${t.constructor.name}' backend without a synchronous ` +
        `read (${(e as Error).message}); pass ids produced by selectExperts/fusedTopK/groupedTopK, or await ` +
        `'${name}'.data() before the call`);
  }
  for (let i = 0; i < values.length; i++) {
    if (!isValid(values[i])) {
      throw new Error(`${opName}: '${name}' must hold ${expectation} but element ${i} is ${values[i]}`);
    }
  }
  // A Variable can be reassigned, so only immutable tensors are remembered.
  if (!(t instanceof Variable)) checkedTensors.add(t);
}

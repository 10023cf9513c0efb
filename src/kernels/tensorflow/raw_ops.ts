/**
 * Raw TensorFlow ops through tfjs-node's 'tensorflow' backend (NodeJSKernelBackend), for the kernels
 * in this folder. tfjs-node is an optional peer, so its backend is described here by the few members
 * the kernels use instead of being imported.
 *
 * Every op goes straight to libtensorflow's eager runtime (`executeSingleOutput` /
 * `executeMultipleOutputs`), never through tfjs-node's own kernels: some of those read values back
 * to JavaScript (GatherV2 checks its indices), which a forward pass must not do.
 *
 * dtypes: arithmetic, comparisons and index math run in float32 (integers below 2^24 are exact).
 * int32 appears only where TensorFlow's GPU kernels keep it in device memory: gather indices, TopKV2's
 * indices output, Cast, and the kernels' int32 inputs and outputs. Most int32 arithmetic (AddV2, Mul,
 * FloorMod, Greater, ...) is registered for the GPU with every operand in host memory, i.e. it runs on
 * the CPU; scalars and shapes (TopKV2's k, axes, Reshape's shape) are host-memory by design.
 * int64 and float64 outputs are avoided: tfjs-node maps an int64 output to int32 with a console warning
 * and refuses float64 outputs.
 */
import {KernelBackend, Tensor, TensorInfo, tensor} from '@tensorflow/tfjs-core';

/** An attribute of a TensorFlow op, as tfjs-node's binding takes it. */
export interface OpAttr {
  name: string;
  type: number;
  value: boolean | number | string | number[];
}

/** The members of tfjs-node's TFJSBinding that the kernels use. */
export interface TensorflowBinding {
  TF_FLOAT: number;
  TF_INT32: number;
  TF_BOOL: number;
  TF_ATTR_INT: number;
  TF_ATTR_BOOL: number;
  TF_ATTR_TYPE: number;
  isUsingGpuDevice(): boolean;
}

/** The members of tfjs-node's NodeJSKernelBackend that the kernels use. */
export interface TensorflowBackend extends KernelBackend {
  binding: TensorflowBinding;
  executeSingleOutput(name: string, opAttrs: OpAttr[], inputs: TensorInfo[]): Tensor;
  executeMultipleOutputs(name: string, opAttrs: OpAttr[], inputs: TensorInfo[], numOutputs: number): Tensor[];
}

/** The kernel's backend as tfjs-node's, or an Error saying what the 'tensorflow' backend lacks. */
export function tensorflowBackend(backend: {}, kernelName: string): TensorflowBackend {
  const b = backend as Partial<TensorflowBackend>;
  if (typeof b.executeSingleOutput !== 'function' || typeof b.executeMultipleOutputs !== 'function' ||
      b.binding == null || typeof b.binding.TF_ATTR_TYPE !== 'number') {
    throw new Error(`${kernelName}: the 'tensorflow' backend is not tfjs-node's NodeJSKernelBackend ` +
        `(no executeSingleOutput/executeMultipleOutputs/binding); load @tensorflow/tfjs-node or ` +
        `@tensorflow/tfjs-node-gpu`);
  }
  return b as TensorflowBackend;
}

type Dtype = 'float32' | 'int32' | 'bool';

/**
 * One kernel call's ops. Every tensor made through it (op outputs and constants) is disposed by
 * `run` unless the kernel returns it, so intermediates never leak.
 */
export class RawOps {
  private readonly made: Tensor[] = [];
  private readonly b: TensorflowBinding;

  private constructor(private readonly backend: TensorflowBackend) {
    this.b = backend.binding;
  }

  /** Runs `body` and disposes everything it made except the tensors it returns. */
  static run(backend: TensorflowBackend, body: (ops: RawOps) => TensorInfo[]): Tensor[] {
    const ops = new RawOps(backend);
    let result: Tensor[] = [];
    try {
      // A kernel must return fresh tensors, never one of its inputs.
      result = body(ops).map((t) => ops.made.includes(t as Tensor) ? t as Tensor :
        ops.op('Identity', [ops.type('T', t.dtype as Dtype)], [t]));
      return result;
    } finally {
      const keep = new Set<Tensor>(result);
      for (const t of ops.made) if (!keep.has(t)) t.dispose();
    }
  }

  /**
   * Runs `body` and disposes at once what it made, except its result and shared constants: keeps
   * the peak memory of a loop (e.g. gathered expert weights, chunk by chunk) to one iteration's.
   */
  scoped(body: () => TensorInfo): TensorInfo {
    const start = this.made.length;
    const result = body();
    const shared = new Set<Tensor>(this.scalars.values());
    const kept: Tensor[] = [];
    for (const t of this.made.splice(start)) {
      if (t === result || shared.has(t)) kept.push(t); else t.dispose();
    }
    this.made.push(...kept);
    return result;
  }

  // ---- attributes and constants -----------------------------------------------------------------

  type(name: string, dtype: Dtype): OpAttr {
    const value = dtype === 'float32' ? this.b.TF_FLOAT : dtype === 'int32' ? this.b.TF_INT32 : this.b.TF_BOOL;
    return {name, type: this.b.TF_ATTR_TYPE, value};
  }
  bool(name: string, value: boolean): OpAttr { return {name, type: this.b.TF_ATTR_BOOL, value}; }
  int(name: string, value: number): OpAttr { return {name, type: this.b.TF_ATTR_INT, value}; }

  private readonly scalars = new Map<string, Tensor>();

  /** A constant, uploaded once per kernel call (scalars are shared within the call). */
  constant(values: number | number[], dtype: 'float32' | 'int32' = 'float32'): Tensor {
    const key = typeof values === 'number' ? `${dtype}:${values}` : null;
    const cached = key != null ? this.scalars.get(key) : undefined;
    if (cached) return cached;
    const t = tensor(values, undefined, dtype);
    this.made.push(t);
    if (key != null) this.scalars.set(key, t);
    return t;
  }
  private shape(shape: number[]): Tensor { return this.constant(shape, 'int32'); }
  private axis(axis: number): Tensor { return this.constant(axis, 'int32'); }

  // ---- execution ------------------------------------------------------------------------------

  op(name: string, attrs: OpAttr[], inputs: TensorInfo[]): Tensor {
    const out = this.backend.executeSingleOutput(name, attrs, inputs);
    this.made.push(out);
    return out;
  }
  opN(name: string, attrs: OpAttr[], inputs: TensorInfo[], numOutputs: number): Tensor[] {
    const outs = this.backend.executeMultipleOutputs(name, attrs, inputs, numOutputs);
    this.made.push(...outs);
    return outs;
  }

  private f32(x: TensorInfo | number): TensorInfo { return typeof x === 'number' ? this.constant(x) : x; }
  private unary(name: string, x: TensorInfo): Tensor { return this.op(name, [this.type('T', x.dtype as Dtype)], [x]); }
  private binary(name: string, x: TensorInfo | number, y: TensorInfo | number): Tensor {
    const a = this.f32(x), b = this.f32(y);
    return this.op(name, [this.type('T', a.dtype as Dtype)], [a, b]);
  }

  // ---- elementwise (float32; broadcasting as in TensorFlow) -----------------------------------

  add(x: TensorInfo | number, y: TensorInfo | number): Tensor { return this.binary('AddV2', x, y); }
  sub(x: TensorInfo | number, y: TensorInfo | number): Tensor { return this.binary('Sub', x, y); }
  mul(x: TensorInfo | number, y: TensorInfo | number): Tensor { return this.binary('Mul', x, y); }
  div(x: TensorInfo | number, y: TensorInfo | number): Tensor { return this.binary('RealDiv', x, y); }
  minimum(x: TensorInfo | number, y: TensorInfo | number): Tensor { return this.binary('Minimum', x, y); }
  maximum(x: TensorInfo | number, y: TensorInfo | number): Tensor { return this.binary('Maximum', x, y); }
  less(x: TensorInfo | number, y: TensorInfo | number): Tensor { return this.binary('Less', x, y); }
  lessEqual(x: TensorInfo | number, y: TensorInfo | number): Tensor { return this.binary('LessEqual', x, y); }
  greaterEqual(x: TensorInfo | number, y: TensorInfo | number): Tensor { return this.binary('GreaterEqual', x, y); }
  logicalAnd(x: TensorInfo, y: TensorInfo): Tensor { return this.op('LogicalAnd', [], [x, y]); }
  neg(x: TensorInfo): Tensor { return this.unary('Neg', x); }
  floor(x: TensorInfo): Tensor { return this.unary('Floor', x); }
  ceil(x: TensorInfo): Tensor { return this.unary('Ceil', x); }
  isNan(x: TensorInfo): Tensor { return this.unary('IsNan', x); }
  sigmoid(x: TensorInfo): Tensor { return this.unary('Sigmoid', x); }
  erf(x: TensorInfo): Tensor { return this.unary('Erf', x); }
  softmax(x: TensorInfo): Tensor { return this.unary('Softmax', x); }

  abs(x: TensorInfo): Tensor { return this.unary('Abs', x); }
  /** Round half to even (TensorFlow's Round). */
  round(x: TensorInfo): Tensor { return this.unary('Round', x); }
  equal(x: TensorInfo | number, y: TensorInfo | number): Tensor {
    const a = typeof x === 'number' ? this.constant(x, 'int32') : x;
    const b = typeof y === 'number' ? this.constant(y, a.dtype as 'int32' | 'float32') : y;
    return this.op('Equal', [this.type('T', a.dtype as Dtype), this.bool('incompatible_shape_error', true)], [a, b]);
  }

  // ---- int32 bit operations (packed weights) -------------------------------------------------

  private int32Binary(name: string, x: TensorInfo, y: TensorInfo | number): Tensor {
    return this.op(name, [this.type('T', 'int32')], [x, typeof y === 'number' ? this.constant(y, 'int32') : y]);
  }
  bitwiseAnd(x: TensorInfo, y: TensorInfo | number): Tensor { return this.int32Binary('BitwiseAnd', x, y); }
  bitwiseOr(x: TensorInfo, y: TensorInfo | number): Tensor { return this.int32Binary('BitwiseOr', x, y); }
  /** Arithmetic (sign-extending) shift for int32; callers mask the bits they keep. */
  rightShift(x: TensorInfo, y: TensorInfo | number): Tensor { return this.int32Binary('RightShift', x, y); }
  leftShift(x: TensorInfo, y: TensorInfo | number): Tensor { return this.int32Binary('LeftShift', x, y); }
  addInt(x: TensorInfo, y: TensorInfo | number): Tensor { return this.int32Binary('AddV2', x, y); }
  /** Reinterprets the bits of an int32 / float32 tensor as the other dtype. */
  bitcast(x: TensorInfo, dtype: 'float32' | 'int32'): Tensor {
    return this.op('Bitcast', [this.type('T', x.dtype as Dtype), this.type('type', dtype)], [x]);
  }

  clip(x: TensorInfo, lo: number, hi: number): Tensor {
    return this.op('ClipByValue', [this.type('T', 'float32')], [x, this.constant(lo), this.constant(hi)]);
  }
  /** cond ? x : y, broadcasting. */
  select(cond: TensorInfo, x: TensorInfo | number, y: TensorInfo | number): Tensor {
    const a = this.f32(x), b = this.f32(y);
    return this.op('SelectV2', [this.type('T', a.dtype as Dtype)], [cond, a, b]);
  }
  cast(x: TensorInfo, dtype: Dtype): TensorInfo {
    if (x.dtype === dtype) return x;
    return this.op('Cast', [this.type('SrcT', x.dtype as Dtype), this.type('DstT', dtype), this.bool('Truncate', false)],
        [x]);
  }

  // ---- shapes ---------------------------------------------------------------------------------

  reshape(x: TensorInfo, shape: number[]): Tensor {
    return this.op('Reshape', [this.type('T', x.dtype as Dtype), this.type('Tshape', 'int32')], [x, this.shape(shape)]);
  }
  fill(shape: number[], value: number): Tensor {
    return this.op('Fill', [this.type('T', 'float32'), this.type('index_type', 'int32')],
        [this.shape(shape), this.constant(value)]);
  }
  /** [0, 1, ..., n-1] in float32, made on the device. */
  iota(n: number): Tensor { return this.cumsum(this.fill([n], 1), 0, true); }
  slice(x: TensorInfo, begin: number[], size: number[]): Tensor {
    return this.op('Slice', [this.type('T', x.dtype as Dtype), this.type('Index', 'int32')],
        [x, this.shape(begin), this.shape(size)]);
  }
  split(x: TensorInfo, axis: number, numSplit: number): Tensor[] {
    return this.opN('Split', [this.int('num_split', numSplit), this.type('T', x.dtype as Dtype)],
        [this.axis(axis), x], numSplit);
  }
  concat(xs: TensorInfo[], axis: number): TensorInfo {
    if (xs.length === 1) return xs[0];
    return this.op('ConcatV2', [this.int('N', xs.length), this.type('T', xs[0].dtype as Dtype),
      this.type('Tidx', 'int32')], [...xs, this.axis(axis)]);
  }

  // ---- reductions, scans, sorting, indexing ---------------------------------------------------

  private reduce(name: string, x: TensorInfo, axis: number, keepDims: boolean): Tensor {
    return this.op(name, [this.bool('keep_dims', keepDims), this.type('T', x.dtype as Dtype),
      this.type('Tidx', 'int32')], [x, this.axis(axis)]);
  }
  sum(x: TensorInfo, axis: number, keepDims = false): Tensor { return this.reduce('Sum', x, axis, keepDims); }
  max(x: TensorInfo, axis: number, keepDims = false): Tensor { return this.reduce('Max', x, axis, keepDims); }

  cumsum(x: TensorInfo, axis: number, exclusive: boolean): Tensor {
    return this.op('Cumsum', [this.bool('exclusive', exclusive), this.bool('reverse', false),
      this.type('T', x.dtype as Dtype), this.type('Tidx', 'int32')], [x, this.axis(axis)]);
  }

  /**
   * The k largest along the last axis, in descending order; equal values keep their index order
   * (lower index first) on the CPU kernel and on the GPU's (stable) radix-sort and heap paths.
   */
  topK(x: TensorInfo, k: number): {values: Tensor; indices: Tensor} {
    const [values, indices] = this.opN('TopKV2', [this.bool('sorted', true), this.type('T', 'float32')],
        [x, this.constant(k, 'int32')], 2);
    return {values, indices};
  }

  /** GatherV2 (the raw op: no bounds read-back). Indices must be in range; callers clamp them. */
  gather(params: TensorInfo, indices: TensorInfo, axis: number, batchDims = 0): Tensor {
    return this.op('GatherV2', [this.type('Tparams', params.dtype as Dtype), this.type('Tindices', 'int32'),
      this.type('Taxis', 'int32'), this.int('batch_dims', batchDims)], [params, indices, this.axis(axis)]);
  }
  /** Gathers with float32 indices (exact integers), cast to int32 on the device. */
  gatherAt(params: TensorInfo, indices: TensorInfo, axis: number, batchDims = 0): Tensor {
    return this.gather(params, this.cast(indices, 'int32'), axis, batchDims);
  }

  batchMatMul(x: TensorInfo, y: TensorInfo, adjX: boolean, adjY: boolean): Tensor {
    return this.op('BatchMatMulV2', [this.type('T', 'float32'), this.bool('adj_x', adjX), this.bool('adj_y', adjY)],
        [x, y]);
  }

  /** Sums rows of `data` into `numSegments` segments; `segmentIds` are float32 ids in range. */
  unsortedSegmentSum(data: TensorInfo, segmentIds: TensorInfo, numSegments: number): Tensor {
    return this.op('UnsortedSegmentSum', [this.type('T', 'float32'), this.type('Tindices', 'int32'),
      this.type('Tnumsegments', 'int32')], [data, this.cast(segmentIds, 'int32'), this.constant(numSegments, 'int32')]);
  }

  /** out[indices[i]] = updates[i] over a zero tensor of `shape`; indices are float32 [n, 1], unique. */
  scatterNd(indices: TensorInfo, updates: TensorInfo, shape: number[]): Tensor {
    return this.op('ScatterNd', [this.type('T', 'float32'), this.type('Tindices', 'int32')],
        [this.cast(indices, 'int32'), updates, this.shape(shape)]);
  }

  /** [..., depth] float32 one-hot rows of int32 `indices`. */
  oneHot(indices: TensorInfo, depth: number): Tensor {
    return this.op('OneHot', [this.int('axis', -1), this.type('T', 'float32'), this.type('TI', 'int32')],
        [indices, this.constant(depth, 'int32'), this.constant(1), this.constant(0)]);
  }
}

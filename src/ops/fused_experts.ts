import {Tensor, Tensor1D, Tensor2D, Tensor3D, TensorInfo, TensorLike, engine, op} from '@tensorflow/tfjs-core';
import {Activation, FusedExperts, FusedExpertsAttrs, FusedExpertsInputs, expertPartName, w13ShardName, w2ShardName}
  from '../kernel_names';
import {FLOAT32_FORMAT, WeightFormat, formatBits, formatKey, numGroups, parseFormatKey} from '../quant/format';
import {QuantizedExpertWeights, isQuantizedExpertWeights} from '../quant/expert_weights';
import {checkDim, checkRangeOnce, intArg, oneOf, shapeStr, tensorArg} from './validate';

export interface FusedExpertsOptions {
  /** 'silu' (default) or 'gelu' (exact, erf form) of the gate half, times the up half. */
  activation?: Activation;
  /** Scale the input by the routing weight instead of the output (Llama 4); needs topK = 1. */
  applyRouterWeightOnInput?: boolean;
  /** [globalNumExperts] int32: global id → local expert, -1 where the expert is on another rank. */
  expertMap?: Tensor1D | TensorLike;
  /** E, the range of the ids; -1 or absent: the expertMap's length, else the number of experts in w13. */
  globalNumExperts?: number;
  /**
   * vLLM `use_fp8_w8a8` for e4m3 weights with block scales (`block_shape` = [blockRows, groupSize]): each
   * GEMM input is quantized per token and per `groupSize` inputs to e4m3 (dynamic scales, max|x|/448).
   * Off: the weights-only path (activations stay float32).
   */
  useFp8W8A8?: boolean;
  /**
   * vLLM `use_int8_w8a8` with per-channel weights: int8 weights ('uint8' codes, zero point 128, one scale per
   * output row: groupSize -1), each GEMM input row quantized per token to int8 (scale max|x|/127), int32
   * accumulation, out = acc · xScale · wScale. Off: the weights-only path (activations stay float32).
   */
  useInt8W8A8?: boolean;
}

export const ACTIVATIONS: readonly Activation[] = ['silu', 'gelu', 'swigluoai'];

/** What `fusedExperts` takes for w13 or w2: float32 stacks, or any format of src/quant/format.ts. */
export type ExpertWeightsArg = Tensor3D | Tensor3D[] | QuantizedExpertWeights | QuantizedExpertWeights[];

/** One shard of one projection, checked, in the kernel's terms. */
export interface CheckedProjection {
  data: Tensor;
  scales?: Tensor;
  zeros?: Tensor;
  gIdx?: Tensor;
  bias?: Tensor;
  numExperts: number;
}

/** w13 / w2 as one stack or as consecutive expert ranges, in one format, checked against each other. */
export interface ExpertWeights {
  w13: CheckedProjection[];
  w2: CheckedProjection[];
  format: WeightFormat;
  hasBias: boolean;
  numLocalExperts: number;
  hiddenSize: number;
  intermediateSize: number;
}

function asQuantized(w: Tensor3D | QuantizedExpertWeights, name: string, opName: string): QuantizedExpertWeights {
  if (isQuantizedExpertWeights(w)) return w;
  const t = tensorArg<Tensor3D>(w, name, opName, ['E_local', 'N', 'K'], 'float32');
  return {format: FLOAT32_FORMAT, shape: t.shape, data: t};
}

/**
 * Checks one projection shard against its format (format.ts gives the layout of each tensor). `expect`
 * is [E or null, N, K]: null takes E from the shard.
 */
function checkProjection(q: QuantizedExpertWeights, name: string, opName: string, format: WeightFormat,
    expectN: number | null, expectK: number | null): CheckedProjection {
  const shape = q.shape;
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((d) => Number.isInteger(d) && d > 0)) {
    throw new Error(`${opName}: '${name}.shape' must be [experts, N, K] of positive integers but got ` +
        `${JSON.stringify(shape)}`);
  }
  const [E, N, K] = shape;
  if (expectN != null && N !== expectN) {
    throw new Error(`${opName}: '${name}' has N = ${N} rows but ${expectN} are expected (shape ${shapeStr(shape)})`);
  }
  if (expectK != null && K !== expectK) {
    throw new Error(`${opName}: '${name}' has K = ${K} inputs but ${expectK} are expected (shape ${shapeStr(shape)})`);
  }
  const bits = formatBits(format);
  if (format.code === 'f32') {
    const data = tensorArg<Tensor3D>(q.data as Tensor3D, `${name}.data`, opName, ['E', 'N', 'K'], 'float32');
    if (shapeStr(data.shape) !== shapeStr(shape)) {
      throw new Error(`${opName}: '${name}.data' must have shape ${shapeStr(shape)} but got ${shapeStr(data.shape)}`);
    }
  } else {
    if ((K * bits) % 32 !== 0) {
      throw new Error(`${opName}: '${name}' has K = ${K}, but ${format.code} rows must fill whole 32-bit words ` +
          `(K a multiple of ${32 / bits})`);
    }
    const data = tensorArg<Tensor>(q.data, `${name}.data`, opName, ['E', 'words'], 'int32');
    checkDim(data, 0, E, `${name}.data`, opName, ['E', 'words'], 'experts');
    checkDim(data, 1, N * K * bits / 32, `${name}.data`, opName, ['E', 'words'], `N·K·${bits}/32 packed words`);
  }
  const G = numGroups(format, K);
  const extra = (part: 'scales' | 'zeros' | 'gIdx', needed: boolean, why: string) => {
    if (!needed && q[part] != null) {
      throw new Error(`${opName}: '${name}.${part}' was given but the format ${formatKey(format)} has no ${why}`);
    }
    if (needed && q[part] == null) {
      throw new Error(`${opName}: '${name}.${part}' is required by the format ${formatKey(format)} (${why})`);
    }
  };
  extra('scales', G > 0, 'scales');
  extra('zeros', format.zero === 'tensor', 'zero-point tensor');
  extra('gIdx', format.hasGIdx, 'act-order g_idx');
  const out: CheckedProjection = {data: q.data, numExperts: E};
  if (G > 0) {
    if (format.scaleCode === 'e8m0') {
      out.scales = tensorArg<Tensor>(q.scales!, `${name}.scales`, opName, ['E', 'words'], 'int32');
      checkDim(out.scales, 0, E, `${name}.scales`, opName, ['E', 'words'], 'experts');
      checkDim(out.scales, 1, Math.ceil(N * G / 4), `${name}.scales`, opName, ['E', 'words'],
          `⌈N·G/4⌉ words of E8M0 bytes, G = ${G}`);
    } else {
      const dims = ['E', 'N/blockRows', 'K/groupSize'];
      out.scales = tensorArg<Tensor>(q.scales!, `${name}.scales`, opName, dims, 'float32');
      checkDim(out.scales, 0, E, `${name}.scales`, opName, dims, 'experts');
      checkDim(out.scales, 1, Math.ceil(N / format.blockRows), `${name}.scales`, opName, dims,
          `⌈${N}/${format.blockRows}⌉`);
      checkDim(out.scales, 2, G, `${name}.scales`, opName, dims,
          format.groupSize < 0 ? 'one per row' : `⌈${K}/${format.groupSize}⌉`);
    }
  }
  if (format.zero === 'tensor') {
    const dims = ['E', 'N', 'G'];
    out.zeros = tensorArg<Tensor>(q.zeros!, `${name}.zeros`, opName, dims, 'float32');
    checkDim(out.zeros, 0, E, `${name}.zeros`, opName, dims, 'experts');
    checkDim(out.zeros, 1, N, `${name}.zeros`, opName, dims, 'rows');
    checkDim(out.zeros, 2, G, `${name}.zeros`, opName, dims, 'groups');
  }
  if (format.hasGIdx) {
    out.gIdx = tensorArg<Tensor>(q.gIdx!, `${name}.gIdx`, opName, ['E', 'K'], 'int32');
    checkDim(out.gIdx, 0, E, `${name}.gIdx`, opName, ['E', 'K'], 'experts');
    checkDim(out.gIdx, 1, K, `${name}.gIdx`, opName, ['E', 'K'], 'inputs');
    checkRangeOnce(out.gIdx, `${name}.gIdx`, opName, 0, G - 1, `group ids in [0, ${G})`);
  }
  if (q.bias != null) {
    out.bias = tensorArg<Tensor>(q.bias, `${name}.bias`, opName, ['E', 'N'], 'float32');
    checkDim(out.bias, 0, E, `${name}.bias`, opName, ['E', 'N'], 'experts');
    checkDim(out.bias, 1, N, `${name}.bias`, opName, ['E', 'N'], 'rows');
  }
  return out;
}

/** Float32 stacks checked in their own terms ([E_local, 2I, H] and [E_local, H, I]), naming the mismatched axis. */
function checkFloat32Stacks(w13s: Tensor3D[], w2s: Tensor3D[], name: (p: string, i: number) => string,
    opName: string): void {
  const d13 = ['E_local', '2I', 'H'], d2 = ['E_local', 'H', 'I'];
  const t13 = w13s.map((w, i) => tensorArg<Tensor3D>(w, name('w13', i), opName, d13, 'float32'));
  const [, twoI, H] = t13[0].shape;
  if (twoI % 2 !== 0 || twoI === 0) {
    throw new Error(`${opName}: 'w13' must have an even, non-zero 2I (gate rows then up rows) but got shape ` +
        shapeStr(t13[0].shape));
  }
  const from0 = w13s.length > 1 ? '[0]' : '';
  w2s.forEach((w, i) => {
    const t = tensorArg<Tensor3D>(w, name('w2', i), opName, d2, 'float32');
    checkDim(t13[i], 1, twoI, name('w13', i), opName, d13, `2I of w13${from0}`);
    checkDim(t13[i], 2, H, name('w13', i), opName, d13, `H of w13${from0}`);
    checkDim(t, 0, t13[i].shape[0], name('w2', i), opName, d2, `experts in ${name('w13', i)}`);
    checkDim(t, 1, H, name('w2', i), opName, d2, 'H of w13');
    checkDim(t, 2, twoI / 2, name('w2', i), opName, d2, 'half of 2I in w13');
  });
}

/**
 * Weights already checked, by their first w13 part: a decode loop passes the same weights every call, and
 * checking every shard's shapes and format is most of an op call's host time (issue 13). A hit needs the
 * very same parts, none of them disposed (tensors are immutable in shape and dtype; a Variable's assign keeps
 * both).
 */
const checkedWeights = new WeakMap<object,
    {w13: unknown[]; w2: unknown[]; opName: string; checked: ExpertWeights; tensors: Tensor[]}>();

function checkedTensors(c: ExpertWeights): Tensor[] {
  return [...c.w13, ...c.w2].flatMap((p) => [p.data, p.scales, p.zeros, p.gIdx, p.bias])
    .filter((t): t is Tensor => t != null);
}

/** Whether `w` (a part or an array of parts) holds exactly `parts`, without allocating. */
function sameList(parts: readonly unknown[], w: ExpertWeightsArg): boolean {
  if (!Array.isArray(w)) return parts.length === 1 && parts[0] === w;
  if (w.length !== parts.length) return false;
  for (let i = 0; i < parts.length; i++) if (parts[i] !== w[i]) return false;
  return true;
}

export function expertWeightsArg(w13: ExpertWeightsArg, w2: ExpertWeightsArg, opName: string): ExpertWeights {
  const first: unknown = Array.isArray(w13) ? w13[0] : w13;
  const hit = first != null && typeof first === 'object' ? checkedWeights.get(first) : undefined;
  if (hit && hit.opName === opName && sameList(hit.w13, w13) && sameList(hit.w2, w2)) {
    let live = true;
    for (let i = 0; i < hit.tensors.length; i++) if (hit.tensors[i].isDisposed) live = false;
    if (live) return hit.checked;
  }
  const checked = checkExpertWeights(w13, w2, opName);
  if (first != null && typeof first === 'object') {
    // Copies: the caller's arrays may change (a shard replaced in place) before the next call.
    checkedWeights.set(first, {w13: Array.isArray(w13) ? [...w13] : [w13], w2: Array.isArray(w2) ? [...w2] : [w2],
      opName, checked, tensors: checkedTensors(checked)});
  }
  return checked;
}

function checkExpertWeights(w13: ExpertWeightsArg, w2: ExpertWeightsArg, opName: string): ExpertWeights {
  const w13List = (Array.isArray(w13) ? w13 : [w13]) as Array<Tensor3D | QuantizedExpertWeights>;
  const w2List = (Array.isArray(w2) ? w2 : [w2]) as Array<Tensor3D | QuantizedExpertWeights>;
  if (w13List.length === 0 || w13List.length !== w2List.length) {
    throw new Error(`${opName}: 'w13' and 'w2' must be tensors or equally long non-empty arrays of tensors split by ` +
        `expert range, but got ${w13List.length} and ${w2List.length}`);
  }
  const split = w13List.length > 1;
  const name = (p: string, i: number) => (split ? `${p}[${i}]` : p);
  if ([...w13List, ...w2List].every((w) => !isQuantizedExpertWeights(w))) {
    checkFloat32Stacks(w13List as Tensor3D[], w2List as Tensor3D[], name, opName);
  }
  const q13 = w13List.map((w, i) => asQuantized(w, name('w13', i), opName));
  const q2 = w2List.map((w, i) => asQuantized(w, name('w2', i), opName));
  const format = q13[0].format;
  const key = formatKey(format);  // validates nothing by itself; parse it back to check every field
  try {
    parseFormatKey(key);
  } catch {
    throw new Error(`${opName}: 'w13.format' is not a valid weight format: ${JSON.stringify(format)}`);
  }
  [...q13.map((q, i) => [q, name('w13', i)] as const), ...q2.map((q, i) => [q, name('w2', i)] as const)]
    .forEach(([q, n]) => {
      if (formatKey(q.format) !== key) {
        throw new Error(`${opName}: every part of w13 and w2 must have one format, but '${n}' is ` +
            `${formatKey(q.format)} and 'w13' is ${key}`);
      }
    });
  const [, twoI, H] = q13[0].shape ?? [];
  if (!(twoI % 2 === 0 && twoI > 0)) {
    throw new Error(`${opName}: 'w13' must have an even, non-zero 2I (gate rows then up rows) but got shape ` +
        `${shapeStr(q13[0].shape ?? [])}`);
  }
  const I = twoI / 2;
  const c13 = q13.map((q, i) => checkProjection(q, name('w13', i), opName, format, twoI, H));
  const c2 = q2.map((q, i) => {
    const c = checkProjection(q, name('w2', i), opName, format, H, I);
    if (c.numExperts !== c13[i].numExperts) {
      throw new Error(`${opName}: '${name('w2', i)}' holds ${c.numExperts} experts but '${name('w13', i)}' holds ` +
          `${c13[i].numExperts}`);
    }
    return c;
  });
  const biased = [...c13, ...c2].filter((c) => c.bias != null).length;
  if (biased !== 0 && biased !== c13.length + c2.length) {
    throw new Error(`${opName}: expert biases must be given for every part of w13 and w2 or for none ` +
        `(${biased} of ${c13.length + c2.length} have one)`);
  }
  const numLocalExperts = c13.reduce((n, c) => n + c.numExperts, 0);
  return {w13: c13, w2: c2, format, hasBias: biased > 0, numLocalExperts, hiddenSize: H, intermediateSize: I};
}

/** Checks an expert map once: int32 [E], every value -1 or a local expert. */
export function expertMapArg(expertMap: Tensor1D | TensorLike, numLocalExperts: number, opName: string): Tensor1D {
  const map = tensorArg<Tensor1D>(expertMap, 'expertMap', opName, ['E'], 'int32');
  checkRangeOnce(map, 'expertMap', opName, -1, numLocalExperts - 1,
      `-1 or a local expert id in [0, ${numLocalExperts})`);
  return map;
}

/** The formats int8 w8a8 applies to: int8 as 'uint8' codes with zero 128 and one f32 scale per output row. */
export function isInt8ChannelFormat(f: WeightFormat): boolean {
  return f.code === 'uint8' && f.zero === 128 && f.groupSize === -1 && f.blockRows === 1 && f.scaleCode === 'f32' &&
    !f.hasGIdx;
}

/** Checks `useInt8W8A8` against the weights' format and the other activation option. */
function int8W8A8Arg(o: FusedExpertsOptions, format: WeightFormat, opName: string): boolean {
  if (o.useInt8W8A8 != null && typeof o.useInt8W8A8 !== 'boolean') {
    throw new Error(`${opName}: 'useInt8W8A8' must be a boolean but got ${String(o.useInt8W8A8)}`);
  }
  if (!o.useInt8W8A8) return false;
  if (o.useFp8W8A8) {
    throw new Error(`${opName}: 'useInt8W8A8' and 'useFp8W8A8' exclude each other (activations are quantized to ` +
        `one of int8 or fp8)`);
  }
  if (!isInt8ChannelFormat(format)) {
    throw new Error(`${opName}: 'useInt8W8A8' needs int8 weights with one scale per output row (format code ` +
        `'uint8', zero 128, groupSize -1, blockRows 1, f32 scales, no gIdx, as compressed-tensors int8 channel ` +
        `checkpoints load), but the weights are ${formatKey(format)}`);
  }
  return true;
}

/** A fusedExperts call's kernel inputs (without the routing) and attributes, validated. */
export interface ExpertsCall {
  inputs: {hiddenStates: Tensor2D; expertMap?: Tensor1D; [weightPart: string]: TensorInfo | undefined};
  attrs: FusedExpertsAttrs;
  /** Expert ids must lie in [0, globalNumExperts); `rangeSource` says where that bound comes from. */
  globalNumExperts: number;
  rangeSource: string;
}

/** Validates what fusedExperts takes besides the routing (k: the routing's experts per token). */
export function expertsCallArgs(opName: string, x: Tensor2D, w13: ExpertWeightsArg, w2: ExpertWeightsArg, k: number,
    o: FusedExpertsOptions): ExpertsCall {
  const weights = expertWeightsArg(w13, w2, opName);
  checkDim(x, 1, weights.hiddenSize, 'hiddenStates', opName, ['T', 'H'], 'H of w13');
  const activation = oneOf(o.activation ?? 'silu', 'activation', opName, ACTIVATIONS);
  const applyRouterWeightOnInput = !!o.applyRouterWeightOnInput;
  if (applyRouterWeightOnInput && k !== 1) {
    throw new Error(`${opName}: 'applyRouterWeightOnInput' needs topK = 1 (as in vLLM) but 'topkIds' has k = ${k}`);
  }

  const inputs: ExpertsCall['inputs'] = {hiddenStates: x};
  let globalNumExperts = weights.numLocalExperts;
  if (o.expertMap != null) {
    const map = expertMapArg(o.expertMap, weights.numLocalExperts, opName);
    inputs.expertMap = map;
    globalNumExperts = map.shape[0];
  }
  if (o.globalNumExperts != null && o.globalNumExperts !== -1) {
    intArg(o.globalNumExperts, 'globalNumExperts', opName, 1, 2 ** 31 - 1);
    if (inputs.expertMap && o.globalNumExperts !== globalNumExperts) {
      throw new Error(`${opName}: 'globalNumExperts' = ${o.globalNumExperts} must equal the length of 'expertMap' ` +
          `(${globalNumExperts})`);
    }
    if (!inputs.expertMap && o.globalNumExperts !== weights.numLocalExperts) {
      throw new Error(`${opName}: 'globalNumExperts' = ${o.globalNumExperts} differs from the ` +
          `${weights.numLocalExperts} experts in 'w13'; pass an 'expertMap' for expert parallelism`);
    }
    globalNumExperts = o.globalNumExperts;
  }
  const rangeSource = o.globalNumExperts != null && o.globalNumExperts !== -1 ? `'globalNumExperts'` :
    inputs.expertMap ? `the length of 'expertMap'` : `the experts in 'w13'`;

  const useInt8W8A8 = int8W8A8Arg(o, weights.format, opName);
  const useFp8W8A8 = !!o.useFp8W8A8;
  if (useFp8W8A8 && (weights.format.code !== 'e4m3' || weights.format.groupSize <= 0)) {
    throw new Error(`${opName}: 'useFp8W8A8' needs e4m3 weights with block scales, but the weights are ` +
        formatKey(weights.format));
  }
  for (const [projection, shards] of [['w13', weights.w13], ['w2', weights.w2]] as const) {
    shards.forEach((c, i) => {
      inputs[projection === 'w13' ? w13ShardName(i) : w2ShardName(i)] = c.data;
      if (c.scales) inputs[expertPartName(projection, 'scales', i)] = c.scales;
      if (c.zeros) inputs[expertPartName(projection, 'zeros', i)] = c.zeros;
      if (c.gIdx) inputs[expertPartName(projection, 'gidx', i)] = c.gIdx;
      if (c.bias) inputs[expertPartName(projection, 'bias', i)] = c.bias;
    });
  }
  const attrs: FusedExpertsAttrs = {
    activation, applyRouterWeightOnInput, globalNumExperts, numWeightShards: weights.w13.length,
    intermediateSize: weights.intermediateSize, weightFormat: formatKey(weights.format), hasBias: weights.hasBias,
    activationQuantGroup: useFp8W8A8 ? weights.format.groupSize : 0, useInt8W8A8,
  };
  return {inputs, attrs, globalNumExperts, rangeSource};
}

/**
 * The expert computation (vLLM `fused_experts`): for every token and each of its k (expert, weight)
 * pairs, `w2 · (act(gate) * up)` with `[gate; up] = w13 · x`, summed over the k pairs.
 *
 * ```js
 * const out = fusedExperts(hidden, w13, w2, topkWeights, topkIds);   // [T, H]
 * // weights beyond one binding: pass consecutive expert ranges
 * fusedExperts(hidden, [w13a, w13b], [w2a, w2b], topkWeights, topkIds);
 * ```
 */
function fusedExperts_(hiddenStates: Tensor2D | TensorLike, w13: ExpertWeightsArg, w2: ExpertWeightsArg,
    topkWeights: Tensor2D | TensorLike, topkIds: Tensor2D | TensorLike, o: FusedExpertsOptions = {}): Tensor2D {
  const opName = 'fusedExperts';
  const x = tensorArg<Tensor2D>(hiddenStates, 'hiddenStates', opName, ['T', 'H'], 'float32');
  const [T] = x.shape;
  const w = tensorArg<Tensor2D>(topkWeights, 'topkWeights', opName, ['T', 'k'], 'float32');
  const ids = tensorArg<Tensor2D>(topkIds, 'topkIds', opName, ['T', 'k'], 'int32');
  const call = expertsCallArgs(opName, x, w13, w2, w.shape[1], o);
  checkDim(w, 0, T, 'topkWeights', opName, ['T', 'k'], 'tokens in hiddenStates');
  checkDim(ids, 0, T, 'topkIds', opName, ['T', 'k'], 'tokens in hiddenStates');
  checkDim(ids, 1, w.shape[1], 'topkIds', opName, ['T', 'k'], 'k of topkWeights');
  const G = call.globalNumExperts;
  checkRangeOnce(ids, 'topkIds', opName, 0, G - 1, `expert ids in [0, ${G})`, `; ${G} is ${call.rangeSource}`);
  const inputs: FusedExpertsInputs = {...call.inputs, topkWeights: w, topkIds: ids};
  return engine().runKernel(FusedExperts, inputs as {}, call.attrs as {}) as Tensor2D;
}

export const fusedExperts = op({fusedExperts_});

/**
 * Checkpoint → layer weights (vLLM `FusedMoE.weight_loader`), in two stages with plain data between:
 *
 *   [planExpertLoad]   checkpoint keys from the format module's tensor list and the mapping table; every
 *                      tensor's presence, dtype, shape and liveness, the TP split against the format's
 *                      words, groups and blocks, and (strict) tensors no parameter takes
 *        → ExpertLoadPlan (which tensors, which rows and inputs, for each local expert) or one Error
 *   [materializeExpertLoad]  the module converts each expert's narrowed tensors to format.ts's canonical
 *                      rows on the CPU; the loader stacks them per weight shard and only then makes tensors
 *
 * Nothing is written to the layer until both stages succeed, so a failed load leaves it unchanged.
 *
 * Sharding, with I_tp = I / tpSize and rank r (SEMANTICS.md), for every format:
 *   w1 (gate) [I, H] rows [r·I_tp, (r+1)·I_tp) → w13[e] rows [0, I_tp)
 *   w3 (up)   [I, H] rows [r·I_tp, (r+1)·I_tp) → w13[e] rows [I_tp, 2·I_tp)
 *   w2 (down) [H, I] inputs [r·I_tp, (r+1)·I_tp) → w2[e]
 * Scales, zero points and g_idx follow their rows and inputs (a packed w2 is split on word and group
 * boundaries, or inside one group). Fused 3-D (Llama 4), stored [in, out]: gate_up_proj [E, H, 2I] (gate
 * columns, then up columns) and down_proj [E, I, H]: the same ranges, transposed. gpt-oss's interleaved
 * gate_up rows are split as one range [2r·I_tp, 2(r+1)·I_tp); its down bias is loaded on tp rank 0 only
 * (vLLM), so that the ranks' partial sums add it once.
 */
import {Tensor, Tensor1D, tensor} from '@tensorflow/tfjs-core';
import {CheckpointTensor, PackedTensor} from '../io/packed_tensor';
import {QuantizedExpertWeights} from '../quant/expert_weights';
import {WeightFormat, formatBits, numGroups} from '../quant/format';
import {CheckpointFormat, ConvertedRows, ProjectionRequest, Range, Stored, TensorSpec, floatReader}
  from '../quant/checkpoint/checkpoint_format';
import {QuantizationConfig, checkpointFormat} from '../quant/checkpoint/registry';
import {WeightDtype} from '../quant/checkpoint/unquantized';
import {ExpertLayout, expertLayout, initialPhysicalToLogical} from './expert_placement';

export type ShardId = 'w1' | 'w2' | 'w3';

/** One row of vLLM's `make_expert_params_mapping`: (param_name, weight_name, expert_id, shard_id). */
export type ExpertParamsMapping = readonly [paramName: string, weightName: string, expertId: number, shardId: ShardId];

/**
 * vLLM `FusedMoE.make_expert_params_mapping`: for every physical expert and each of w1, w2, w3, the
 * layer parameter prefix and the checkpoint name fragment of the logical expert it replicates.
 *
 * ```js
 * FusedMoE.makeExpertParamsMapping('w1', 'w2', 'w3', 2)
 * // [['experts.w13_', 'experts.0.w1.', 0, 'w1'], ['experts.w2_', 'experts.0.w2.', 0, 'w2'],
 * //  ['experts.w13_', 'experts.0.w3.', 0, 'w3'], ['experts.w13_', 'experts.1.w1.', 1, 'w1'], ...]
 * ```
 */
export function makeExpertParamsMapping(ckptGateProjName: string, ckptDownProjName: string, ckptUpProjName: string,
    numExperts: number, numRedundantExperts = 0): ExpertParamsMapping[] {
  const physicalToLogical = initialPhysicalToLogical(numExperts, numRedundantExperts);
  const shards: Array<[ShardId, string]> = [['w1', ckptGateProjName], ['w2', ckptDownProjName], ['w3', ckptUpProjName]];
  const rows: ExpertParamsMapping[] = [];
  physicalToLogical.forEach((logical, expertId) => {
    for (const [shardId, weightName] of shards) {
      const paramName = weightName === ckptGateProjName || weightName === ckptUpProjName ? 'experts.w13_' :
        'experts.w2_';
      rows.push([paramName, `experts.${logical}.${weightName}.`, expertId, shardId]);
    }
  });
  return rows;
}

export interface LoadWeightsOptions {
  /** The module path before `experts.`, e.g. 'model.layers.0.block_sparse_moe'; '' for none. */
  prefix?: string;
  /** Per-expert checkpoint names (default 'gate_proj', 'up_proj', 'down_proj'; Mixtral: 'w1', 'w3', 'w2'). */
  ckptGateProjName?: string;
  ckptUpProjName?: string;
  ckptDownProjName?: string;
  /** Fused 3-D name of gate and up (default 'gate_up_proj'); down uses ckptDownProjName. */
  ckptGateUpProjName?: string;
  /** 'per_expert' (2-D tensors per expert) or 'fused_3d'; by default the format's, or for unquantized
   *  checkpoints 'fused_3d' when its gate_up key exists. */
  layout?: 'per_expert' | 'fused_3d';
  /**
   * Default true: tensors under `{prefix}.experts.` that no parameter takes (e.g. experts beyond
   * numExperts, a stray scale) are an error naming them. false ignores them, as PyTorch's
   * `load_state_dict(strict=False)`.
   */
  strict?: boolean;
}

/** The checkpoint names a load options object means, with the defaults applied. */
export function checkpointNames(o: LoadWeightsOptions): {prefix: string; gate: string; up: string; down: string;
    gateUp: string} {
  return {prefix: o.prefix ?? '', gate: o.ckptGateProjName ?? 'gate_proj', up: o.ckptUpProjName ?? 'up_proj',
    down: o.ckptDownProjName ?? 'down_proj', gateUp: o.ckptGateUpProjName ?? 'gate_up_proj'};
}

const key = (prefix: string, rest: string) => (prefix ? `${prefix}.${rest}` : rest);
const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;

/** Where the unquantized layout comes from when not given: the fused gate_up key's presence. */
export function detectLayout(checkpoint: Map<string, CheckpointTensor>, o: LoadWeightsOptions):
    'per_expert' | 'fused_3d' {
  const n = checkpointNames(o);
  return o.layout ?? (checkpoint.has(key(n.prefix, `experts.${n.gateUp}`)) ? 'fused_3d' : 'per_expert');
}

/**
 * The stored dtype of an unquantized checkpoint's experts (of the first expert's gate, or the fused
 * gate_up tensor), so that weightDtype's default keeps what the file holds; float32 when absent.
 */
export function checkpointWeightDtype(checkpoint: Map<string, CheckpointTensor>, o: LoadWeightsOptions):
    'float32' | 'bfloat16' | 'float16' {
  const n = checkpointNames(o);
  const t = detectLayout(checkpoint, o) === 'fused_3d' ? checkpoint.get(key(n.prefix, `experts.${n.gateUp}`)) :
    checkpoint.get(key(n.prefix, `experts.0.${n.gate}.weight`));
  return t && (t.dtype === 'bfloat16' || t.dtype === 'float16') ? t.dtype : 'float32';
}

/** One checkpoint tensor of a part: the tensor and, for a fused 3-D one, the expert's index in it. */
interface SourceTensor {
  key: string;
  tensor: CheckpointTensor;
  expertIndex: number;
}

/** One projection part of one local expert: its tensors by spec suffix and the range to take. */
interface PartSource {
  tensors: Map<string, SourceTensor>;
  req: ProjectionRequest;
  bias: SourceTensor | null;
}

export interface ExpertLoadPlan {
  ckpt: CheckpointFormat;
  /** Per local expert: the w13 parts (gate then up, or one interleaved range) and w2. */
  experts: Array<{w13: PartSource[]; w2: PartSource}>;
  /** w2's bias is zero on tp ranks other than 0 (added once over the ranks). */
  zeroW2Bias: boolean;
  bias: CheckpointTensor | null;
}

/** Why this TP split cannot be held in the format (words, groups, blocks), or nothing. */
function tpSplitProblems(f: WeightFormat, ckpt: CheckpointFormat, I: number, tpSize: number, useFp8W8A8: boolean):
    string[] {
  if (tpSize === 1) return [];
  const Itp = I / tpSize, bits = formatBits(f), problems: string[] = [];
  const what = `tpSize ${tpSize} splits the intermediate size ${I} into ${Itp}`;
  if ((Itp * bits) % 32 !== 0) {
    problems.push(`${what}, which cuts through the 32-bit words of w2 (${32 / bits} ${f.code} codes per word, ` +
        `${ckpt.description})`);
  }
  if (f.groupSize > 0 && Itp % f.groupSize !== 0 && f.groupSize % Itp !== 0) {
    problems.push(`${what}, which cuts through w2's quantization groups of ${f.groupSize} inputs (group size ` +
        `${f.groupSize}, ${ckpt.description}); I / tpSize must be a multiple or a divisor of ${f.groupSize}`);
  }
  if (useFp8W8A8 && f.groupSize > 0 && Itp % f.groupSize !== 0) {
    problems.push(`${what}, but useFp8W8A8 quantizes w2's input in groups of ${f.groupSize}: I / tpSize must be a ` +
        `multiple of ${f.groupSize}`);
  }
  if (f.blockRows > 1 && Itp % f.blockRows !== 0 && !ckpt.interleavedGateUp) {
    problems.push(`${what}, which cuts through the ${f.blockRows}-row scale blocks of w1/w3 (block ` +
        `[${f.blockRows}, ${f.groupSize}], ${ckpt.description}); I / tpSize must be a multiple of ${f.blockRows}`);
  }
  if (f.hasGIdx) {
    problems.push(`${what}, but act-order (desc_act) checkpoints are loaded with tpSize 1 only: w2's inputs of ` +
        `one rank may use every group`);
  }
  return problems;
}

function isLive(t: CheckpointTensor): boolean {
  return !t.isDisposed;
}

/**
 * Finds and checks every checkpoint tensor this rank needs. Experts of other ranks are skipped (vLLM's
 * `expert_map[e] == -1`); anything missing, misshapen, disposed or of the wrong dtype goes into one Error.
 */
export function planExpertLoad(layout: ExpertLayout, checkpoint: Map<string, CheckpointTensor>,
    ckpt: CheckpointFormat, o: LoadWeightsOptions = {}, {useFp8W8A8 = false, hasBias = ckpt.hasBias} = {}):
    ExpertLoadPlan {
  const n = checkpointNames(o);
  const kind = o.layout ?? ckpt.layout;
  if (kind !== 'per_expert' && kind !== 'fused_3d') {
    throw new Error(`FusedMoE.loadWeights: 'layout' must be 'per_expert' or 'fused_3d' but got ${JSON.stringify(kind)}`);
  }
  if (kind !== ckpt.layout) {
    throw new Error(`FusedMoE.loadWeights: 'layout' ${kind} does not fit a ${ckpt.description} checkpoint, which is ` +
        `${ckpt.layout}`);
  }
  const {hiddenSize: H, intermediateSize: I, numLogicalExperts: E, tpSize, tpRank} = layout;
  const Itp = I / tpSize;
  const problems: string[] = tpSplitProblems(ckpt.format, ckpt, I, tpSize, useFp8W8A8);
  const expected = new Set<string>();
  const fused = kind === 'fused_3d';

  /** Checks one tensor against a spec; records a problem and returns false when it does not fit. */
  const check = (k: string, t: CheckpointTensor, spec: TensorSpec, shape: number[]): boolean => {
    if (!isLive(t)) {
      problems.push(`'${k}' was disposed`);
      return false;
    }
    if (!spec.dtypes.includes(t.dtype)) {
      problems.push(`'${k}' has dtype ${t.dtype}; ${ckpt.description} expects ${spec.dtypes.join(' or ')}`);
      return false;
    }
    if (shapeStr(t.shape) !== shapeStr(shape)) {
      problems.push(`'${k}' has shape ${shapeStr(t.shape)} but the layer expects ${shapeStr(shape)}`);
      return false;
    }
    if (spec.values) {
      const v = Array.from((t as Tensor).dataSync());
      if (shapeStr(v) !== shapeStr(spec.values)) {
        problems.push(`'${k}' holds ${shapeStr(v)} but the layer expects ${shapeStr(spec.values)}`);
        return false;
      }
    }
    return true;
  };
  const biasSpec = (N: number): TensorSpec =>
    ({suffix: fused ? '_bias' : '.bias', dtypes: ['float32', 'bfloat16', 'float16'], shape: [N]});

  // The projections: [name, N, K, role] with w13's parts' rows.
  type Projection = {name: string; N: number; K: number; rows: Range[]; cols: Range; shardId: ShardId};
  const w13Parts: Projection[] = fused ?
    (ckpt.interleavedGateUp ?
      [{name: n.gateUp, N: 2 * I, K: H, rows: [{begin: 2 * tpRank * Itp, size: 2 * Itp}], cols: {begin: 0, size: H},
        shardId: 'w1'}] :
      [{name: n.gateUp, N: 2 * I, K: H, rows: [{begin: tpRank * Itp, size: Itp}, {begin: I + tpRank * Itp, size: Itp}],
        cols: {begin: 0, size: H}, shardId: 'w1'}]) :
    [{name: n.gate, N: I, K: H, rows: [{begin: tpRank * Itp, size: Itp}], cols: {begin: 0, size: H}, shardId: 'w1'},
      {name: n.up, N: I, K: H, rows: [{begin: tpRank * Itp, size: Itp}], cols: {begin: 0, size: H}, shardId: 'w3'}];
  const w2Part: Projection = {name: n.down, N: H, K: I, rows: [{begin: 0, size: H}],
    cols: {begin: tpRank * Itp, size: Itp}, shardId: 'w2'};

  const experts: ExpertLoadPlan['experts'] = [];
  const checked = new Map<string, boolean>();
  const sourcesOf = (p: Projection, logical: number, missing: Map<string, Set<number>> | null):
      {tensors: Map<string, SourceTensor>; bias: SourceTensor | null} | null => {
    const base = fused ? key(n.prefix, `experts.${p.name}`) : key(n.prefix, `experts.${logical}.${p.name}`);
    const specs = ckpt.tensors(p.N, p.K);
    if (hasBias) specs.push(biasSpec(p.N));
    const tensors = new Map<string, SourceTensor>();
    let ok = true;
    for (const spec of specs) {
      const k = base + spec.suffix;
      const shape = fused ? [E, ...spec.shape] : spec.shape;
      const t = checkpoint.get(k);
      if (!t) {
        if (spec.optional) continue;
        ok = false;
        const label = `${p.name} (${p.shardId})${spec === specs[0] ? '' : ` ${spec.suffix.replace(/^[._]/, '')}`}`;
        if (fused) {
          if (!checked.has(k)) problems.push(`missing fused 3-D checkpoint tensor '${k}' of shape ${shapeStr(shape)}`);
          checked.set(k, false);
        } else {
          const what = `${label}|${spec.suffix}|${shapeStr(shape)}`;
          if (!missing!.has(what)) missing!.set(what, new Set());
          missing!.get(what)!.add(logical);
        }
        continue;
      }
      // A fused tensor serves every expert: check it once.
      if (!checked.has(k)) checked.set(k, check(k, t, spec, shape));
      if (!checked.get(k)) { ok = false; continue; }
      tensors.set(spec.suffix, {key: k, tensor: t, expertIndex: fused ? logical : -1});
    }
    const biasSuffix = hasBias ? biasSpec(p.N).suffix : null;
    const bias = biasSuffix ? tensors.get(biasSuffix) ?? null : null;
    if (biasSuffix) tensors.delete(biasSuffix);
    return ok ? {tensors, bias} : null;
  };

  // Every key any rank's parameters take (for strict), for all logical experts.
  const allProjections = [...w13Parts, w2Part];
  for (const p of allProjections) {
    const specs = [...ckpt.tensors(p.N, p.K), ...(hasBias ? [biasSpec(p.N)] : [])];
    for (const spec of specs) {
      if (fused) expected.add(key(n.prefix, `experts.${p.name}`) + spec.suffix);
      else for (let e = 0; e < E; e++) expected.add(key(n.prefix, `experts.${e}.${p.name}`) + spec.suffix);
    }
  }

  const missing = new Map<string, Set<number>>();
  for (const physical of layout.localPhysicalExperts) {
    const logical = layout.physicalToLogical[physical];
    const parts: PartSource[] = [];
    let ok = true;
    for (const p of w13Parts) {
      const s = sourcesOf(p, logical, missing);
      if (!s) { ok = false; continue; }
      for (const rows of p.rows) {
        parts.push({tensors: s.tensors, bias: s.bias, req: {N: p.N, K: p.K, rows, cols: p.cols}});
      }
    }
    const d = sourcesOf(w2Part, logical, missing);
    if (!d || !ok) continue;
    experts.push({w13: parts, w2: {tensors: d.tensors, bias: d.bias,
      req: {N: H, K: I, rows: w2Part.rows[0], cols: w2Part.cols}}});
  }
  for (const [what, ids] of missing) {
    const [label, suffix, shape] = what.split('|');
    const name = label.split(' ')[0];
    const list = [...ids].sort((a, b) => a - b);
    problems.push(`missing ${label} for expert${list.length > 1 ? 's' : ''} ${list.join(', ')}: expected e.g. ` +
        `'${key(n.prefix, `experts.${list[0]}.${name}${suffix}`)}' of shape ${shape}`);
  }

  // Act-order: gate and up share one input permutation (vLLM keeps one w13_g_idx per expert).
  if (ckpt.format.hasGIdx && problems.length === 0 && !fused) {
    for (const ex of experts) {
      const [g, u] = ex.w13.map((p) => p.tensors.get('.g_idx')!);
      if (shapeStr(Array.from((g.tensor as Tensor).dataSync())) !== shapeStr(Array.from((u.tensor as Tensor).dataSync()))) {
        problems.push(`'${g.key}' and '${u.key}' differ: gate and up must have equal g_idx (act-order), as vLLM assumes`);
      }
    }
  }

  const biasKey = key(n.prefix, 'gate.e_score_correction_bias');
  const biasTensor = checkpoint.get(biasKey);
  let bias: CheckpointTensor | null = null;
  const biasShape = {suffix: '', dtypes: ['float32', 'bfloat16', 'float16'], shape: [E]};
  if (layout.hasCorrectionBias) {
    if (!biasTensor) problems.push(`missing '${biasKey}' of shape [${E}] (the layer has eScoreCorrectionBias: true)`);
    else if (check(biasKey, biasTensor, biasShape, [E])) bias = biasTensor;
  } else if (biasTensor) {
    problems.push(`the checkpoint has '${biasKey}' but the layer was built without 'eScoreCorrectionBias: true'`);
  }

  if (o.strict ?? true) {
    const under = key(n.prefix, 'experts.');
    const extras = [...checkpoint.keys()].filter((k) => k.startsWith(under) && !expected.has(k));
    if (extras.length > 0) {
      const shown = extras.slice(0, 8).map((k) => `'${k}'`).join(', ');
      problems.push(`${extras.length} tensor${extras.length > 1 ? 's' : ''} under '${under}' that no parameter ` +
          `takes (a ${E}-expert ${ckpt.description} layer): ${shown}${extras.length > 8 ? ', ...' : ''}; pass ` +
          `strict: false to ignore them`);
    }
  }

  if (problems.length > 0) {
    throw new Error(`FusedMoE.loadWeights: the checkpoint does not fit the layer (tpRank ${layout.tpRank}/` +
        `${layout.tpSize}, local experts ${describeRange(layout.localPhysicalExperts)}); nothing was loaded:\n  - ` +
        problems.join('\n  - '));
  }
  return {ckpt, experts, zeroW2Bias: tpRank !== 0, bias};
}

function describeRange(ids: number[]): string {
  return ids.length === 0 ? 'none' : `${ids[0]}..${ids[ids.length - 1]}`;
}

/**
 * What a load produces: per weight shard, w13 and w2 in the canonical layout; the correction bias.
 * `owned`: the tensors made here, which the caller disposes after assigning them.
 */
export interface MaterializedLoad {
  w13: QuantizedExpertWeights[];
  w2: QuantizedExpertWeights[];
  bias: Tensor1D | null;
  owned: Tensor[];
}

/** A checkpoint tensor's stored bytes, read back once per load. */
class StoredBytes {
  private cache = new Map<CheckpointTensor, Uint8Array>();

  get(s: SourceTensor): Stored {
    let all = this.cache.get(s.tensor);
    if (!all) {
      if (s.tensor instanceof PackedTensor) {
        all = s.tensor.bytes();
      } else {
        const v = s.tensor.dataSync() as Float32Array | Int32Array;
        all = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      }
      this.cache.set(s.tensor, all);
    }
    if (s.expertIndex < 0) return {dtype: s.tensor.dtype, shape: s.tensor.shape, bytes: all};
    const per = all.byteLength / s.tensor.shape[0];
    // A fresh, aligned copy: typed-array views of it need 4-byte alignment.
    return {dtype: s.tensor.dtype, shape: s.tensor.shape.slice(1),
      bytes: all.slice(s.expertIndex * per, (s.expertIndex + 1) * per)};
  }
}

/** Concatenates typed arrays of one kind. */
function concatArrays<T extends Float32Array | Int32Array | Uint8Array>(parts: T[]): T {
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = new (parts[0].constructor as new (n: number) => T)(total);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/**
 * Converts this rank's experts (format module, CPU) and makes the shard tensors. Typed arrays are filled
 * first; tensors are made last, so a conversion error leaves nothing on the device. The caller owns the
 * returned tensors.
 */
export function materializeExpertLoad(layout: ExpertLayout, plan: ExpertLoadPlan): MaterializedLoad {
  const {hiddenSize: H, intermediateSize: I, tpSize} = layout;
  const f = plan.ckpt.format, Itp = I / tpSize;
  const bytes = new StoredBytes();
  const convert = (p: PartSource): ConvertedRows & {biasRows?: Float32Array} => {
    const t = new Map<string, Stored>();
    for (const [suffix, s] of p.tensors) t.set(suffix, bytes.get(s));
    const rows: ConvertedRows & {biasRows?: Float32Array} = plan.ckpt.convert(t, p.req);
    if (p.bias) {
      const read = floatReader(bytes.get(p.bias));
      rows.biasRows = Float32Array.from({length: p.req.rows.size}, (_, i) => read(p.req.rows.begin + i));
    }
    return rows;
  };
  type Arrays = {data: Array<Float32Array | Int32Array>; scales: Array<Float32Array | Uint8Array>;
    zeros: Float32Array[]; gIdx: Int32Array[]; bias: Float32Array[]};
  const shards: Array<{w13: Arrays; w2: Arrays; numExperts: number}> = [];
  const empty = (): Arrays => ({data: [], scales: [], zeros: [], gIdx: [], bias: []});
  const add = (a: Arrays, parts: Array<ConvertedRows & {biasRows?: Float32Array}>, N: number, K: number) => {
    a.data.push(parts.length === 1 ? parts[0].data : concatArrays(parts.map((p) => p.data) as Int32Array[]));
    if (parts[0].scales) {
      let s = parts.length === 1 ? parts[0].scales : concatArrays(parts.map((p) => p.scales!) as Float32Array[]);
      if (f.scaleCode === 'e8m0') {
        // Each expert's E8M0 bytes fill whole int32 words (format.ts: int32 [E, ⌈N·G/4⌉]).
        const padded = new Uint8Array(Math.ceil(N * numGroups(f, K) / 4) * 4);
        padded.set(s);
        s = padded;
      }
      a.scales.push(s);
    }
    if (parts[0].zeros) a.zeros.push(concatArrays(parts.map((p) => p.zeros!)));
    if (parts[0].gIdx) a.gIdx.push(parts[0].gIdx);
    if (parts[0].biasRows) a.bias.push(concatArrays(parts.map((p) => p.biasRows!)));
  };
  for (const shard of layout.shards) {
    const s = {w13: empty(), w2: empty(), numExperts: shard.numExperts};
    for (let i = shard.firstLocalExpert; i < shard.firstLocalExpert + shard.numExperts; i++) {
      const ex = plan.experts[i];
      add(s.w13, ex.w13.map(convert), 2 * Itp, H);
      const down = convert(ex.w2);
      if (down.biasRows && plan.zeroW2Bias) down.biasRows.fill(0);
      add(s.w2, [down], H, Itp);
    }
    shards.push(s);
  }

  const made: Tensor[] = [];
  const make = (values: Float32Array | Int32Array, shape: number[], dtype: 'float32' | 'int32') => {
    const t = tensor(values, shape, dtype);
    made.push(t);
    return t;
  };
  try {
    const build = (a: Arrays, E: number, N: number, K: number): QuantizedExpertWeights => {
      const q: QuantizedExpertWeights = {format: f, shape: [E, N, K],
        data: f.code === 'f32' ? make(concatArrays(a.data as Float32Array[]), [E, N, K], 'float32') :
          make(concatArrays(a.data as Int32Array[]), [E, N * K * formatBits(f) / 32], 'int32')};
      const G = numGroups(f, K);
      if (a.scales.length) {
        q.scales = f.scaleCode === 'e8m0' ?
          make(new Int32Array(concatArrays(a.scales as Uint8Array[]).buffer), [E, Math.ceil(N * G / 4)], 'int32') :
          make(concatArrays(a.scales as Float32Array[]), [E, Math.ceil(N / f.blockRows), G], 'float32');
      }
      if (a.zeros.length) q.zeros = make(concatArrays(a.zeros), [E, N, G], 'float32');
      if (a.gIdx.length) q.gIdx = make(concatArrays(a.gIdx), [E, K], 'int32');
      if (a.bias.length) q.bias = make(concatArrays(a.bias), [E, N], 'float32');
      return q;
    };
    const w13 = shards.map((s) => build(s.w13, s.numExperts, 2 * Itp, H));
    const w2 = shards.map((s) => build(s.w2, s.numExperts, H, Itp));
    let bias: Tensor1D | null = null;
    if (plan.bias) {
      // A float32 bias tensor is shared with the checkpoint (the variable keeps its own reference).
      bias = plan.bias instanceof PackedTensor ? plan.bias.toFloat32() as Tensor1D : plan.bias as Tensor1D;
      if (plan.bias instanceof PackedTensor) made.push(bias);
    }
    return {w13, w2, bias, owned: made};
  } catch (e) {
    made.forEach((t) => t.dispose());
    throw e;
  }
}

export interface ReadExpertWeightsOptions extends LoadWeightsOptions {
  numExperts: number;
  hiddenSize: number;
  intermediateSize: number;
  /** HF `quantization_config` (null: unquantized). */
  quantConfig?: QuantizationConfig | null;
  /** Unquantized checkpoints: the device dtype; default the checkpoint's. */
  weightDtype?: WeightDtype | null;
  hasBias?: boolean;
  useFp8W8A8?: boolean;
  tpSize?: number;
  tpRank?: number;
  epSize?: number;
  epRank?: number;
}

/**
 * The expert weights of one rank in the canonical layout, for `fusedExperts` / `fusedMoE` without the
 * layer (the layer's loadWeights does the same and keeps them as its weights). The caller disposes
 * `owned` (every tensor made here).
 *
 * ```js
 * const {w13, w2, owned} = readExpertWeights(readSafetensors(bytes), {numExperts: 8, hiddenSize: 4096,
 *   intermediateSize: 14336, quantConfig: config.quantization_config, prefix: 'model.layers.0.block_sparse_moe',
 *   ckptGateProjName: 'w1', ckptUpProjName: 'w3', ckptDownProjName: 'w2'});
 * const out = fusedMoE(hidden, logits, w13, w2, {topK: 2, renormalize: true});
 * ```
 */
export function readExpertWeights(checkpoint: Map<string, CheckpointTensor>, o: ReadExpertWeightsOptions):
    {w13: QuantizedExpertWeights; w2: QuantizedExpertWeights; owned: Tensor[]; checkpointFormat: CheckpointFormat} {
  const ckpt = checkpointFormat(o.quantConfig ?? null, {weightDtype: o.weightDtype,
    checkpointWeightDtype: checkpointWeightDtype(checkpoint, o), layout: detectLayout(checkpoint, o)});
  const layout = expertLayout({numExperts: o.numExperts, numRedundantExperts: 0, epSize: o.epSize ?? 1,
    epRank: o.epRank ?? 0, hiddenSize: o.hiddenSize, intermediateSize: o.intermediateSize, tpSize: o.tpSize ?? 1,
    tpRank: o.tpRank ?? 0, maxWeightBytes: Number.MAX_SAFE_INTEGER, hasCorrectionBias: false});
  // The router's correction bias is not an expert weight: leave it to the caller.
  const biasKey = key(checkpointNames(o).prefix, 'gate.e_score_correction_bias');
  const experts = new Map([...checkpoint].filter(([k]) => k !== biasKey));
  const plan = planExpertLoad(layout, experts, ckpt, o, {useFp8W8A8: o.useFp8W8A8 ?? ckpt.defaultUseFp8W8A8,
    hasBias: o.hasBias ?? ckpt.hasBias});
  const load = materializeExpertLoad(layout, plan);
  return {w13: load.w13[0], w2: load.w2[0], owned: load.owned, checkpointFormat: ckpt};
}

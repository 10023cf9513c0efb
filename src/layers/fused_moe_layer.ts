/**
 * The `FusedMoE` layer (vLLM `FusedMoE`): a tf.layers.Layer holding one rank's expert weights, that
 * routes tokens and runs the experts with the package's ops.
 *
 *   inputs [hiddenStates [.., H], routerLogits [.., E]]
 *     → [Router: selectExperts (+ EPLB)] → [Experts: fusedExperts over this rank's w13/w2 shards]
 *     → out [.., H]: the full output, or this rank's partial sum when tpSize or epSize > 1
 *
 * Modules: config checks (fused_moe_config.ts) → expert placement (expert_placement.ts) → this layer;
 * checkpoints go through weight_loading.ts; files through src/io.
 */
import {Tensor, Tensor1D, Tensor2D, Variable, backend, keep, reshape, serialization, tensor1d, tensor2d, tidy,
  zeros} from '@tensorflow/tfjs-core';
import {CheckpointTensor, PackedTensor} from '../io/packed_tensor';
import {QuantizedExpertWeights, expertTensorShapes} from '../quant/expert_weights';
import {WeightFormat, formatBytes, formatKey} from '../quant/format';
import {checkpointFormat} from '../quant/checkpoint/registry';
import {releaseWeightState} from '../kernels/weight_state';
import {LayerVariable, Shape, SymbolicTensor, initializers, input, layers} from '@tensorflow/tfjs-layers';
import {determineExpertMap, localExpertRange} from '../ops/expert_map';
import {FusedMoEOptions, fusedMoE} from '../ops/fused_moe';
import {EplbState} from '../ops/select_experts';
import {FusedMoEConfig, ResolvedFusedMoEConfig, resolveFusedMoEConfig, serializableConfig} from './fused_moe_config';
import {ExpertLayout, expertLayout, logicalToPhysical} from './expert_placement';
import {LoadWeightsOptions, ExpertParamsMapping, checkpointWeightDtype, detectLayout, makeExpertParamsMapping,
  materializeExpertLoad, planExpertLoad} from './weight_loading';

type LayerArgs = ConstructorParameters<typeof layers.Layer>[0];
type Kwargs = Parameters<layers.Layer['call']>[1];

/** Without a device limit, weights are split at 1 GiB (a common storage-binding ceiling). */
export const DEFAULT_MAX_WEIGHT_BYTES = 2 ** 30;

/**
 * The largest single weight the current backend can bind: WebGPU's `maxStorageBufferBindingSize`
 * when the active backend exposes its device, else DEFAULT_MAX_WEIGHT_BYTES.
 */
export function deviceMaxWeightBytes(): {bytes: number; source: string} {
  const limits = (backend() as unknown as {device?: {limits?: {maxStorageBufferBindingSize?: number}}})
      .device?.limits;
  const bytes = limits?.maxStorageBufferBindingSize;
  if (typeof bytes === 'number' && bytes > 0) return {bytes, source: 'the device maxStorageBufferBindingSize'};
  return {bytes: DEFAULT_MAX_WEIGHT_BYTES, source: 'the 1 GiB default'};
}

/** All-reduce of a rank's partial output over its tensor- and expert-parallel group (e.g. NCCL, workers). */
export type AllReduceHook = (partial: Tensor, group: {tpRank: number; tpSize: number; epRank: number;
  epSize: number}) => Promise<Tensor>;

export type FusedMoELayerArgs = FusedMoEConfig & LayerArgs & {
  /** Not serialized: the all-reduce that `forwardAsync` awaits when reduceResults and tp or ep > 1. */
  allReduce?: AllReduceHook;
};

/**
 * ```js
 * const moe = new FusedMoE({numExperts: 8, topK: 2, hiddenSize: 4096, intermediateSize: 14336});
 * const out = moe.apply([hidden, routerLogits]);               // builds w13, w2
 * moe.loadWeights(readSafetensors(bytes), {prefix: 'model.layers.0.block_sparse_moe',
 *   ckptGateProjName: 'w1', ckptUpProjName: 'w3', ckptDownProjName: 'w2'});
 * ```
 */
export class FusedMoE extends layers.Layer {
  static className = 'FusedMoE';

  readonly config: ResolvedFusedMoEConfig;
  /** P = numExperts + numRedundantExperts (vLLM `global_num_experts`). */
  readonly globalNumExperts: number;
  readonly localNumExperts: number;
  readonly intermediateSizePerPartition: number;
  private allReduce: AllReduceHook | null;
  private layout: ExpertLayout | null = null;
  private maxWeightBytes: number | null;
  /** Per weight shard, the canonical tensors of w13 and w2 (format.ts) as layer weights. */
  private expertWeights: Array<{w13: ProjectionVariables; w2: ProjectionVariables}> = [];
  /** The device format of the expert weights (for unquantized checkpoints it follows the loaded file). */
  private format: WeightFormat;
  /** The dtype unquantized weights were loaded as, when weightDtype left it to the checkpoint. */
  private loadedWeightDtype: string | null = null;
  /** The name scope of the weights, from build. */
  private weightScope: string | null = null;
  private biasWeight: LayerVariable | null = null;
  private expertLoadWeight: LayerVariable | null = null;
  /** Tensors derived from the config, kept across calls, freed with the weights. */
  private expertMap: Tensor1D | null = null;
  private eplbTables: {logicalToPhysicalMap: Tensor2D; logicalReplicaCount: Tensor1D} | null = null;
  /** Expert weights not yet written by loadWeights, setWeights or a model's weight loading: zeros until then. */
  private unwritten = new Set<LayerVariable>();

  constructor(args: FusedMoELayerArgs) {
    const {allReduce, ...rest} = args ?? ({} as FusedMoELayerArgs);
    super(rest);
    this.config = resolveFusedMoEConfig(rest);
    const c = this.config;
    this.globalNumExperts = c.numExperts + c.numRedundantExperts;
    this.localNumExperts = c.epSize === 1 ? this.globalNumExperts :
      localExpertRange(c.epSize, c.epRank, this.globalNumExperts).count;
    this.intermediateSizePerPartition = c.intermediateSize / c.tpSize;
    this.maxWeightBytes = c.maxWeightBytes;
    this.allReduce = allReduce ?? null;
    this.format = c.checkpointFormat.format;
    this.supportsMasking = false;
  }

  /** vLLM's table of (param name, checkpoint name fragment, physical expert id, shard id). */
  static makeExpertParamsMapping(ckptGateProjName: string, ckptDownProjName: string, ckptUpProjName: string,
      numExperts: number, numRedundantExperts = 0): ExpertParamsMapping[] {
    return makeExpertParamsMapping(ckptGateProjName, ckptDownProjName, ckptUpProjName, numExperts, numRedundantExperts);
  }

  override build(inputShape: Shape | Shape[]): void {
    checkInputShapes(inputShape, this.config);
    const c = this.config;
    const limit = this.maxWeightBytes ?? deviceMaxWeightBytes().bytes;
    this.maxWeightBytes = limit;
    this.layout = expertLayout({
      numExperts: c.numExperts, numRedundantExperts: c.numRedundantExperts, epSize: c.epSize, epRank: c.epRank,
      hiddenSize: c.hiddenSize, intermediateSize: c.intermediateSize, tpSize: c.tpSize, tpRank: c.tpRank,
      maxWeightBytes: limit, hasCorrectionBias: c.eScoreCorrectionBias,
      w13BytesPerExpert: formatBytes({...this.format, groupSize: 0, zero: 0, hasGIdx: false}, 1,
          2 * this.intermediateSizePerPartition, c.hiddenSize),
    });
    this.addExpertWeights(this.format);
    if (c.eScoreCorrectionBias) {
      // Not trained by gradients (DeepSeek-V3 adjusts it by load, outside backprop), as vLLM's buffer.
      this.biasWeight = this.addWeight('e_score_correction_bias', [c.numExperts], 'float32', initializers.zeros(),
          undefined, false);
    }
    if (c.enableEplb) {
      // vLLM `expert_load_view`: (token, slot) pairs per physical expert, counted on the rank that holds it.
      this.expertLoadWeight = this.addWeight('expert_load', [this.globalNumExperts], 'int32', initializers.zeros(),
          undefined, false);
      const table = logicalToPhysical(this.layout.physicalToLogical, c.numExperts);
      this.eplbTables = {
        logicalToPhysicalMap: keep(tensor2d(table.map, [c.numExperts, table.maxReplicas], 'int32')),
        logicalReplicaCount: keep(tensor1d(table.replicaCount, 'int32')),
      };
    }
    for (const v of [...this.expertVariables(), ...(this.biasWeight ? [this.biasWeight] : [])]) this.trackWrites(v);
    const {expertMap} = determineExpertMap(c.epSize, c.epRank, this.globalNumExperts);
    this.expertMap = expertMap ? keep(expertMap) : null;
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const [hidden] = checkInputShapes(inputShape, this.config);
    return hidden.slice();
  }

  /**
   * Synchronous forward: this rank's output. With tpSize or epSize > 1 that is a partial sum, even when
   * `reduceResults` is set; `forwardAsync` then all-reduces it through the `allReduce` hook.
   */
  override call(inputs: Tensor | Tensor[], kwargs: Kwargs): Tensor {
    if (this.unwritten.size > 0) {
      throw new Error(`FusedMoE '${this.name}': its weights are not loaded (${[...this.unwritten].map((v) => v.name)
          .join(', ')} still hold their initial zeros); call loadWeights(checkpoint, options), setWeights, or load a ` +
          `saved model before applying it`);
    }
    return tidy(() => {
      this.invokeCallHook(inputs, kwargs);
      const [hidden, logits] = checkInputs(inputs, this.config);
      const lead = hidden.shape.slice(0, -1);
      const out = fusedMoE(reshape(hidden, [-1, this.config.hiddenSize]) as Tensor2D,
          reshape(logits, [-1, this.config.numExperts]) as Tensor2D,
          this.expertWeights.map((w) => this.readProjection(w.w13, 'w13')),
          this.expertWeights.map((w) => this.readProjection(w.w2, 'w2')), this.forwardOptions());
      return lead.length === 1 ? out : reshape(out, [...lead, this.config.hiddenSize]);
    });
  }

  /** True when this rank's output is a partial sum that `reduceResults` asks to all-reduce. */
  get needsAllReduce(): boolean {
    return this.config.reduceResults && (this.config.tpSize > 1 || this.config.epSize > 1);
  }

  setAllReduce(hook: AllReduceHook | null): void {
    this.allReduce = hook;
  }

  /**
   * Forward plus vLLM's `reduce_results`: when it is set and tp or ep > 1, awaits the `allReduce` hook
   * on this rank's partial output and returns the reduced tensor. Without the hook that case throws
   * rather than return a partial sum silently.
   */
  async forwardAsync(hiddenStates: Tensor, routerLogits: Tensor): Promise<Tensor> {
    if (this.needsAllReduce && this.allReduce == null) {
      throw new Error(`FusedMoE '${this.name}': reduceResults is set with tpSize ${this.config.tpSize} and epSize ` +
          `${this.config.epSize}, but no 'allReduce' hook was given (constructor arg or setAllReduce)`);
    }
    const partial = this.apply([hiddenStates, routerLogits]) as Tensor;
    if (!this.needsAllReduce) return partial;
    const c = this.config;
    let reduced: Tensor;
    try {
      reduced = await this.allReduce!(partial, {tpRank: c.tpRank, tpSize: c.tpSize, epRank: c.epRank, epSize: c.epSize});
    } catch (e) {
      partial.dispose();
      throw e;
    }
    // The hook may return the partial itself (reduced in place) or a new tensor; then the partial is ours to free.
    if (reduced !== partial) partial.dispose();
    return reduced;
  }

  /**
   * vLLM `weight_loader` for a whole layer: global → local experts (others skipped), TP narrowing of
   * weights, scales, zero points and g_idx, fused 3-D checkpoints, expert biases and the correction bias,
   * in the format the layer's `quantConfig` names (src/quant/checkpoint). Checks everything first; on any
   * problem it throws one Error naming each key with the expected and found shapes, and leaves the
   * weights unchanged. The checkpoint is not disposed (the caller owns it) and no copy of it stays on
   * the device.
   */
  loadWeights(weights: CheckpointWeights, options: LoadWeightsOptions = {}): void {
    this.ensureBuilt();
    const c = this.config;
    const checkpoint = checkpointMap(weights);
    const ckpt = checkpointFormat(c.quantConfig, {weightDtype: c.weightDtype,
      checkpointWeightDtype: checkpointWeightDtype(checkpoint, options), layout: detectLayout(checkpoint, options)});
    const plan = planExpertLoad(this.layout!, checkpoint, ckpt, options,
        {useFp8W8A8: c.useFp8W8A8, hasBias: c.hasBias});
    const load = materializeExpertLoad(this.layout!, plan);
    // Write phase: every new tensor exists with the shape and dtype of its weight, so nothing below
    // can fail half-way.
    try {
      if (formatKey(ckpt.format) !== formatKey(this.format)) {
        // An unquantized checkpoint in a dtype the layer was not built for (weightDtype left to the file):
        // the loaded tensors become the new weights, under the same names.
        this.removeExpertWeights();
        this.format = ckpt.format;
        this.addExpertWeights(this.format, load);
      } else {
        this.expertWeights.forEach((v, i) => {
          writeProjection(v.w13, load.w13[i]);
          writeProjection(v.w2, load.w2[i]);
        });
      }
      this.loadedWeightDtype = ckpt.weightDtype ?? null;
      if (load.bias) this.biasWeight!.write(load.bias);
    } finally {
      load.owned.forEach((t) => t.dispose());
    }
  }

  /**
   * EPLB: the live per-physical-expert load counter (int32 [P], vLLM `expert_load_view`), or null
   * without enableEplb. Each forward adds its (token, slot) pairs; read it, then `resetExpertLoad()`.
   */
  get expertLoad(): Tensor1D | null {
    return this.expertLoadWeight ? this.expertLoadWeight.read() as Tensor1D : null;
  }

  /** Zeroes the EPLB load counter (e.g. at the start of a rebalancing window). */
  resetExpertLoad(): void {
    if (!this.expertLoadWeight) throw new Error(`FusedMoE '${this.name}': resetExpertLoad needs enableEplb: true`);
    const zero = zeros([this.globalNumExperts], 'int32');
    this.expertLoadWeight.write(zero);
    zero.dispose();
  }

  /** EPLB: logical → physical replica table [E, maxReplicas] and replica counts [E]. */
  get eplbState(): {logicalToPhysicalMap: Tensor2D; logicalReplicaCount: Tensor1D} | null {
    return this.eplbTables;
  }

  /** The placement of this rank's experts and weight shards (plain data), once built. */
  get expertLayout(): ExpertLayout | null {
    return this.layout;
  }

  override getConfig(): serialization.ConfigDict {
    const base = super.getConfig();
    const config = serializableConfig(this.config, this.maxWeightBytes);
    // The dtype the weights were loaded in, so that a reload builds the same weights.
    if (config.weightDtype == null && this.loadedWeightDtype != null) config.weightDtype = this.loadedWeightDtype;
    return {...base, ...config};
  }

  /** The facts of vLLM's `FusedMoE.extra_repr`, in its words. */
  extraRepr(): string {
    const c = this.config;
    const py = (b: boolean) => (b ? 'True' : 'False');
    let s = `global_num_experts=${this.globalNumExperts}, local_num_experts=${this.localNumExperts}, ` +
      `top_k=${c.topK}, intermediate_size_per_partition=${this.intermediateSizePerPartition}, tp_size=${c.tpSize},\n` +
      `ep_size=${c.epSize}, reduce_results=${py(c.reduceResults)}, renormalize=${py(c.renormalize)}, ` +
      `use_grouped_topk=${py(c.useGroupedTopk)}`;
    if (c.useGroupedTopk) s += `, num_expert_group=${c.numExpertGroup}, topk_group=${c.topkGroup}`;
    s += `, scoring_func='${c.scoringFunc}', activation='${c.activation}'`;
    return s;
  }

  /** As PyTorch prints the module: `FusedMoE(` + extra_repr indented + `)`. */
  override toString(): string {
    return `FusedMoE(\n  ${this.extraRepr().split('\n').join('\n  ')}\n)`;
  }

  protected override disposeWeights(): number {
    // Backends' state bound to these weights (webgpu's dispatch plans) goes with them, not at a later sweep.
    const bound = this.weights.map((w) => w.read().dataId);
    if (this.expertMap) bound.push(this.expertMap.dataId);
    if (this.eplbTables) bound.push(this.eplbTables.logicalToPhysicalMap.dataId, this.eplbTables.logicalReplicaCount.dataId);
    releaseWeightState(bound);
    this.expertMap?.dispose();
    this.expertMap = null;
    if (this.eplbTables) {
      this.eplbTables.logicalToPhysicalMap.dispose();
      this.eplbTables.logicalReplicaCount.dispose();
      this.eplbTables = null;
    }
    return super.disposeWeights();
  }

  /**
   * Notes when `v` is first written. Every way weights arrive (loadWeights, setWeights, LayersModel.loadWeights
   * and tf.loadLayersModel, which use batchSetValue) goes through LayerVariable.write.
   */
  private trackWrites(v: LayerVariable): void {
    this.unwritten.add(v);
    const write = v.write.bind(v);
    v.write = (value: Tensor) => {
      const written = write(value);
      this.unwritten.delete(v);
      return written;
    };
  }

  /**
   * Adds each weight shard's canonical tensors as layer weights: 'w13' / 'w2' (the data) and, as the
   * format needs, 'w13_scales', 'w13_zeros', 'w13_g_idx', 'w13_bias' (likewise w2), suffixed '_i' when
   * split by expert range. Only float32 data is trainable. Zeros until loaded; with `loaded`, those
   * tensors become the weights (a format change at load; addWeight would refuse the names again).
   */
  private addExpertWeights(format: WeightFormat, loaded?: {w13: QuantizedExpertWeights[]; w2: QuantizedExpertWeights[]}):
      void {
    const c = this.config, H = c.hiddenSize, Itp = this.intermediateSizePerPartition;
    const one = this.layout!.shards.length === 1;
    this.expertWeights = this.layout!.shards.map((s, i) => {
      const add = (projection: 'w13' | 'w2', N: number, K: number): ProjectionVariables => {
        const shapes = expertTensorShapes(format, s.numExperts, N, K, c.hasBias);
        const name = (part: string) => `${projection}${part}${one ? '' : `_${i}`}`;
        const value = loaded?.[projection][i];
        const make = (weightName: string, sh: {shape: number[]; dtype: 'float32' | 'int32'}, trainable: boolean,
            t: Tensor | undefined) => {
          if (!t) return this.addWeight(weightName, sh.shape, sh.dtype, initializers.zeros(), undefined, trainable);
          const w = new LayerVariable(t, sh.dtype, `${this.weightScope}${weightName}`, trainable);
          if (trainable) this.trainableWeights = [...this.trainableWeights, w];
          else this.nonTrainableWeights = [...this.nonTrainableWeights, w];
          return w;
        };
        const v: ProjectionVariables = {data: make(name(''), shapes.data, format.code === 'f32', value?.data)};
        if (!loaded && this.weightScope == null) {
          // The layer's name scope as tfjs-layers applied it at build ('fused_mo_e_FusedMoE1/').
          this.weightScope = v.data.originalName.slice(0, -name('').length);
        }
        for (const [part, suffix] of [['scales', '_scales'], ['zeros', '_zeros'], ['gIdx', '_g_idx'],
          ['bias', '_bias']] as const) {
          const sh = shapes[part];
          if (sh) v[part] = make(name(suffix), sh, false, value?.[part]);
        }
        return v;
      };
      const w13 = add('w13', 2 * Itp, H);
      return {w13, w2: add('w2', H, Itp)};
    });
  }

  /** Every expert weight variable (data, scales, zeros, g_idx, biases of each shard). */
  private expertVariables(): LayerVariable[] {
    const all: LayerVariable[] = [];
    for (const {w13, w2} of this.expertWeights) {
      for (const v of [w13, w2]) for (const w of Object.values(v)) if (w) all.push(w);
    }
    return all;
  }

  /** Frees and forgets the expert weights (before adding them again in another format). */
  private removeExpertWeights(): void {
    const old = new Set<LayerVariable>(this.expertVariables());
    old.forEach((w) => {
      w.dispose();
      this.unwritten.delete(w);
    });
    this.trainableWeights = this.trainableWeights.filter((w) => !old.has(w));
    this.nonTrainableWeights = this.nonTrainableWeights.filter((w) => !old.has(w));
    this.expertWeights = [];
  }

  private readProjection(v: ProjectionVariables, projection: 'w13' | 'w2'): QuantizedExpertWeights {
    const c = this.config, Itp = this.intermediateSizePerPartition;
    const data = v.data.read();
    const E = data.shape[0];
    const q: QuantizedExpertWeights = {format: this.format, data,
      shape: projection === 'w13' ? [E, 2 * Itp, c.hiddenSize] : [E, c.hiddenSize, Itp]};
    if (v.scales) q.scales = v.scales.read();
    if (v.zeros) q.zeros = v.zeros.read();
    if (v.gIdx) q.gIdx = v.gIdx.read();
    if (v.bias) q.bias = v.bias.read();
    return q;
  }

  /** Builds through a symbolic apply, so weight names get the layer's scope as in a model. */
  private ensureBuilt(): void {
    if (this.built) return;
    const c = this.config;
    this.apply([input({batchShape: [null, c.hiddenSize]}), input({batchShape: [null, c.numExperts]})] as
        SymbolicTensor[]);
  }

  private forwardOptions(): FusedMoEOptions {
    const c = this.config;
    const o: FusedMoEOptions = {
      topK: c.topK, renormalize: c.renormalize, useGroupedTopk: c.useGroupedTopk,
      numExpertGroup: c.numExpertGroup ?? undefined, topkGroup: c.topkGroup ?? undefined,
      scoringFunc: c.scoringFunc, routedScalingFactor: c.routedScalingFactor,
      customRoutingFunction: c.customRoutingFunction ?? undefined, activation: c.activation,
      applyRouterWeightOnInput: c.applyRouterWeightOnInput, globalNumExperts: this.globalNumExperts,
      useFp8W8A8: c.useFp8W8A8, useInt8W8A8: c.useInt8W8A8,
    };
    if (this.biasWeight) o.eScoreCorrectionBias = this.biasWeight.read() as Tensor1D;
    if (this.expertMap) o.expertMap = this.expertMap;
    if (this.eplbTables) {
      // LayerVariable.read() is the tf.Variable itself, which selectExperts increments in place.
      const eplb: EplbState = {...this.eplbTables, expertLoad: this.expertLoadWeight!.read() as Variable};
      o.eplb = eplb;
    }
    return o;
  }
}


/** What `loadWeights` takes: what `readSafetensors` returns, any iterable of pairs, or a NamedTensorMap. */
export type CheckpointWeights = Map<string, CheckpointTensor> | Iterable<[string, CheckpointTensor]> |
    {[name: string]: CheckpointTensor};

/** One projection's layer weights: the data and what the format adds. */
interface ProjectionVariables {
  data: LayerVariable;
  scales?: LayerVariable;
  zeros?: LayerVariable;
  gIdx?: LayerVariable;
  bias?: LayerVariable;
}

function writeProjection(v: ProjectionVariables, q: QuantizedExpertWeights): void {
  v.data.write(q.data);
  if (v.scales) v.scales.write(q.scales!);
  if (v.zeros) v.zeros.write(q.zeros!);
  if (v.gIdx) v.gIdx.write(q.gIdx!);
  if (v.bias) v.bias.write(q.bias!);
}

/** The checkpoint as a Map of tensors and packed tensors, every entry checked to be one. */
function checkpointMap(weights: CheckpointWeights): Map<string, CheckpointTensor> {
  if (weights == null || typeof weights !== 'object') {
    throw new Error(`FusedMoE.loadWeights: 'weights' must be a Map, an iterable of [name, Tensor] pairs or an object ` +
        `of tensors but got ${String(weights)}`);
  }
  const entries = Symbol.iterator in weights ? [...(weights as Iterable<[string, CheckpointTensor]>)] :
    Object.entries(weights as {[name: string]: CheckpointTensor});
  const checkpoint = new Map<string, CheckpointTensor>();
  for (const entry of entries) {
    if (!Array.isArray(entry) || typeof entry[0] !== 'string' ||
        !(entry[1] instanceof Tensor || entry[1] instanceof PackedTensor)) {
      throw new Error(`FusedMoE.loadWeights: every entry of 'weights' must be [name: string, Tensor] but got ` +
          `${Array.isArray(entry) ? `['${String(entry[0])}', ${String(entry[1])}]` : String(entry)}`);
    }
    checkpoint.set(entry[0], entry[1]);
  }
  return checkpoint;
}

function shapeStr(s: ReadonlyArray<number | null>): string {
  return `[${s.map((d) => (d == null ? 'null' : d)).join(', ')}]`;
}

/** [hiddenStates shape, routerLogits shape], checked against H and E where known. */
function checkInputShapes(inputShape: Shape | Shape[], c: ResolvedFusedMoEConfig): [Shape, Shape] {
  const shapes = inputShape as Shape[];
  if (!Array.isArray(shapes) || shapes.length !== 2 || !Array.isArray(shapes[0])) {
    throw new Error(`FusedMoE: inputs must be [hiddenStates [T, ${c.hiddenSize}], routerLogits [T, ` +
        `${c.numExperts}]] but got shapes ${JSON.stringify(inputShape)}`);
  }
  const [hidden, logits] = shapes;
  const fail = (what: string, dims: string, got: Shape) => {
    throw new Error(`FusedMoE: '${what}' must have shape ${dims} but got ${shapeStr(got)}`);
  };
  if (hidden.length < 2 || (hidden[hidden.length - 1] != null && hidden[hidden.length - 1] !== c.hiddenSize)) {
    fail('hiddenStates', `[T, ${c.hiddenSize}] (hiddenSize)`, hidden);
  }
  if (logits.length !== hidden.length ||
      (logits[logits.length - 1] != null && logits[logits.length - 1] !== c.numExperts)) {
    fail('routerLogits', `[T, ${c.numExperts}] (numExperts; same rank as hiddenStates)`, logits);
  }
  return [hidden, logits];
}

function checkInputs(inputs: Tensor | Tensor[], c: ResolvedFusedMoEConfig): [Tensor, Tensor] {
  if (!Array.isArray(inputs) || inputs.length !== 2) {
    throw new Error(`FusedMoE: call() takes [hiddenStates, routerLogits] but got ` +
        `${Array.isArray(inputs) ? `${inputs.length} tensors` : 'one tensor'}`);
  }
  inputs.forEach((t, i) => {
    if (!(t instanceof Tensor) || t.isDisposed) {
      throw new Error(`FusedMoE: '${i === 0 ? 'hiddenStates' : 'routerLogits'}' must be a live Tensor but is ` +
          `${t instanceof Tensor ? 'a disposed tensor' : String(t)}`);
    }
  });
  checkInputShapes([inputs[0].shape, inputs[1].shape], c);
  for (let d = 0; d < inputs[0].rank - 1; d++) {
    if (inputs[0].shape[d] !== inputs[1].shape[d]) {
      throw new Error(`FusedMoE: 'routerLogits' shape ${shapeStr(inputs[1].shape)} must have the same tokens as ` +
          `'hiddenStates' ${shapeStr(inputs[0].shape)}`);
    }
  }
  return [inputs[0], inputs[1]];
}

serialization.registerClass(FusedMoE);

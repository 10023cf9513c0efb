/**
 * The FusedMoE layer's configuration: vLLM `FusedMoE.__init__`'s arguments in camelCase, their
 * defaults, and every check vLLM asserts (and a few it leaves to the kernels), made at construction.
 */
import type {serialization} from '@tensorflow/tfjs-core';
import {Activation, ScoringFunc} from '../kernel_names';
import {ACTIVATIONS, isInt8ChannelFormat} from '../ops/fused_experts';
import {SCORING_FUNCS} from '../ops/fused_topk';
import {BUILTIN_ROUTINGS, BuiltinRouting, CustomRoutingFunction} from '../ops/select_experts';
import {finiteArg, intArg, oneOf} from '../ops/validate';
import {CheckpointFormat} from '../quant/checkpoint/checkpoint_format';
import {QuantizationConfig, checkpointFormat} from '../quant/checkpoint/registry';
import {WEIGHT_DTYPES, WeightDtype} from '../quant/checkpoint/unquantized';

export interface FusedMoEConfig {
  /** E, the logical (checkpoint) experts. */
  numExperts: number;
  topK: number;
  hiddenSize: number;
  /** The full intermediate size I; each tensor-parallel rank holds I / tpSize. */
  intermediateSize: number;
  /** Default true, as in vLLM. */
  renormalize?: boolean;
  useGroupedTopk?: boolean;
  numExpertGroup?: number | null;
  topkGroup?: number | null;
  scoringFunc?: ScoringFunc;
  routedScalingFactor?: number;
  activation?: Activation;
  applyRouterWeightOnInput?: boolean;
  /** A built-in routing by name ('llama4'), which serializes, or a function, which does not. */
  customRoutingFunction?: CustomRoutingFunction | BuiltinRouting | null;
  /** The layer owns an [E] correction-bias weight (DeepSeek-V3), loaded from `<prefix>.gate.e_score_correction_bias`. */
  eScoreCorrectionBias?: boolean;
  tpSize?: number;
  tpRank?: number;
  epSize?: number;
  epRank?: number;
  /** EPLB replicas beyond the E logical experts (needs enableEplb). */
  numRedundantExperts?: number;
  enableEplb?: boolean;
  /** vLLM `reduce_results`: all-reduce the partial output over the tp/ep group (see `forwardAsync`). */
  reduceResults?: boolean;
  /**
   * The largest weight tensor, in bytes; w13 and w2 are split by expert range beyond it. Default: the
   * webgpu device's maxStorageBufferBindingSize when the active backend has one, else 1 GiB.
   */
  maxWeightBytes?: number | null;
  /**
   * The checkpoint's HF `quantization_config` (config.json's object, unmodified; null = unquantized).
   * Supported: fp8 (block), gptq, awq, compressed-tensors (pack-quantized), mxfp4 (src/quant/checkpoint).
   */
  quantConfig?: QuantizationConfig | string | null;
  /**
   * Unquantized checkpoints: the device dtype of the expert weights; null (default) keeps what the
   * checkpoint stores (BF16/F16 stay 2 bytes, packed in int32 words).
   */
  weightDtype?: WeightDtype | null;
  /** vLLM `has_bias`: expert biases w13_bias [E, 2I], w2_bias [E, H]; default: what the format carries (gpt-oss). */
  hasBias?: boolean;
  /** vLLM `use_fp8_w8a8` for block-fp8 checkpoints; default: the config's activation_scheme 'dynamic'. */
  useFp8W8A8?: boolean;
  /** vLLM `use_int8_w8a8` for int8 channel checkpoints; default: compressed-tensors W8A8 (dynamic token activations). */
  useInt8W8A8?: boolean;
}

export interface ResolvedFusedMoEConfig {
  numExperts: number;
  topK: number;
  hiddenSize: number;
  intermediateSize: number;
  renormalize: boolean;
  useGroupedTopk: boolean;
  numExpertGroup: number | null;
  topkGroup: number | null;
  scoringFunc: ScoringFunc;
  routedScalingFactor: number;
  activation: Activation;
  applyRouterWeightOnInput: boolean;
  customRoutingFunction: CustomRoutingFunction | BuiltinRouting | null;
  eScoreCorrectionBias: boolean;
  tpSize: number;
  tpRank: number;
  epSize: number;
  epRank: number;
  numRedundantExperts: number;
  enableEplb: boolean;
  reduceResults: boolean;
  maxWeightBytes: number | null;
  quantConfig: QuantizationConfig | null;
  weightDtype: WeightDtype | null;
  hasBias: boolean;
  useFp8W8A8: boolean;
  useInt8W8A8: boolean;
  /** The checkpoint module (before load, for unquantized checkpoints with weightDtype null: float32). */
  checkpointFormat: CheckpointFormat;
}

const MAX_INT = 2 ** 31 - 1;
const NAME = 'FusedMoE';

function boolArg(value: unknown, name: string, fallback: boolean): boolean {
  if (value == null) return fallback;
  if (typeof value !== 'boolean') throw new Error(`${NAME}: '${name}' must be a boolean but got ${String(value)}`);
  return value;
}

/** Applies vLLM's defaults and checks every field; errors name the field and what it must be. */
export function resolveFusedMoEConfig(args: FusedMoEConfig): ResolvedFusedMoEConfig {
  if (args == null) throw new Error(`${NAME}: a config {numExperts, topK, hiddenSize, intermediateSize, ...} is required`);
  const numExperts = intArg(args.numExperts, 'numExperts', NAME, 1, MAX_INT);
  const topK = intArg(args.topK, 'topK', NAME, 1, numExperts);
  const hiddenSize = intArg(args.hiddenSize, 'hiddenSize', NAME, 1, MAX_INT);
  const intermediateSize = intArg(args.intermediateSize, 'intermediateSize', NAME, 1, MAX_INT);
  const tpSize = intArg(args.tpSize ?? 1, 'tpSize', NAME, 1, MAX_INT);
  const tpRank = intArg(args.tpRank ?? 0, 'tpRank', NAME, 0, tpSize - 1);
  if (intermediateSize % tpSize !== 0) {
    throw new Error(`${NAME}: 'intermediateSize' = ${intermediateSize} must be divisible by 'tpSize' = ${tpSize}`);
  }
  const numRedundantExperts = intArg(args.numRedundantExperts ?? 0, 'numRedundantExperts', NAME, 0, MAX_INT);
  const enableEplb = boolArg(args.enableEplb, 'enableEplb', false);
  if (numRedundantExperts > 0 && !enableEplb) {
    throw new Error(`${NAME}: 'numRedundantExperts' = ${numRedundantExperts} needs 'enableEplb: true' (redundant ` +
        `experts are only supported with EPLB)`);
  }
  const physical = numExperts + numRedundantExperts;
  const epSize = intArg(args.epSize ?? 1, 'epSize', NAME, 1, physical);
  const epRank = intArg(args.epRank ?? 0, 'epRank', NAME, 0, epSize - 1);
  if (enableEplb && epSize > 1 && physical % epSize !== 0) {
    throw new Error(`${NAME}: with EPLB the ${physical} physical experts (numExperts + numRedundantExperts) must ` +
        `divide evenly over 'epSize' = ${epSize}`);
  }

  const useGroupedTopk = boolArg(args.useGroupedTopk, 'useGroupedTopk', false);
  let numExpertGroup: number | null = null;
  let topkGroup: number | null = null;
  if (useGroupedTopk) {
    if (args.numExpertGroup == null || args.topkGroup == null) {
      throw new Error(`${NAME}: 'useGroupedTopk' needs 'numExpertGroup' and 'topkGroup'`);
    }
    numExpertGroup = intArg(args.numExpertGroup, 'numExpertGroup', NAME, 1, numExperts);
    if (numExperts % numExpertGroup !== 0) {
      throw new Error(`${NAME}: 'numExperts' = ${numExperts} must divide evenly into 'numExpertGroup' = ` +
          `${numExpertGroup} groups`);
    }
    topkGroup = intArg(args.topkGroup, 'topkGroup', NAME, 1, numExpertGroup);
    const kept = topkGroup * (numExperts / numExpertGroup);
    if (topK > kept) {
      throw new Error(`${NAME}: 'topK' = ${topK} is more than the ${kept} experts in the 'topkGroup' = ${topkGroup} ` +
          `kept groups`);
    }
  }
  const scoringFunc = oneOf(args.scoringFunc ?? 'softmax', 'scoringFunc', NAME, SCORING_FUNCS);
  const weightDtype = args.weightDtype == null ? null : oneOf(args.weightDtype, 'weightDtype', NAME, WEIGHT_DTYPES);
  const quantConfig = typeof args.quantConfig === 'string' ? decodeQuantConfig(args.quantConfig) :
    args.quantConfig ?? null;
  let ckpt: CheckpointFormat;
  try {
    ckpt = checkpointFormat(quantConfig, {weightDtype});
  } catch (e) {
    throw new Error(`${NAME}: ${(e as Error).message}`);
  }
  const activation = oneOf(args.activation ?? ckpt.activation ?? 'silu', 'activation', NAME, ACTIVATIONS);
  if (ckpt.activation != null && activation !== ckpt.activation) {
    throw new Error(`${NAME}: a ${ckpt.description} checkpoint (gate/up rows interleaved) needs activation ` +
        `'${ckpt.activation}' but got '${activation}'`);
  }
  const hasBias = boolArg(args.hasBias, 'hasBias', ckpt.hasBias);
  const useFp8W8A8 = boolArg(args.useFp8W8A8, 'useFp8W8A8', ckpt.defaultUseFp8W8A8);
  if (useFp8W8A8 && !(ckpt.format.code === 'e4m3' && ckpt.format.groupSize > 0)) {
    throw new Error(`${NAME}: 'useFp8W8A8' needs a block-fp8 checkpoint (quant_method 'fp8' with ` +
        `weight_block_size) but the layer's weights are ${ckpt.description}`);
  }
  const useInt8W8A8 = boolArg(args.useInt8W8A8, 'useInt8W8A8', ckpt.defaultUseInt8W8A8);
  if (useInt8W8A8 && !isInt8ChannelFormat(ckpt.format)) {
    throw new Error(`${NAME}: 'useInt8W8A8' needs an int8 channel checkpoint (compressed-tensors 8-bit 'channel' ` +
        `weights) but the layer's weights are ${ckpt.description}`);
  }
  if (useInt8W8A8 && useFp8W8A8) {
    throw new Error(`${NAME}: 'useInt8W8A8' and 'useFp8W8A8' exclude each other`);
  }
  const routedScalingFactor = finiteArg(args.routedScalingFactor ?? 1, 'routedScalingFactor', NAME);
  const applyRouterWeightOnInput = boolArg(args.applyRouterWeightOnInput, 'applyRouterWeightOnInput', false);
  if (applyRouterWeightOnInput && topK !== 1) {
    throw new Error(`${NAME}: 'applyRouterWeightOnInput' needs 'topK' = 1 (as in vLLM) but got ${topK}`);
  }
  const custom = args.customRoutingFunction ?? null;
  if (custom != null && typeof custom !== 'function') oneOf(custom, 'customRoutingFunction', NAME, BUILTIN_ROUTINGS);
  if (custom != null && useGroupedTopk) {
    throw new Error(`${NAME}: 'customRoutingFunction' and 'useGroupedTopk' exclude each other (grouped top-k ` +
        `would silently win)`);
  }
  const maxWeightBytes = args.maxWeightBytes == null ? null :
    intArg(args.maxWeightBytes, 'maxWeightBytes', NAME, 1, Number.MAX_SAFE_INTEGER);
  return {
    numExperts, topK, hiddenSize, intermediateSize, renormalize: boolArg(args.renormalize, 'renormalize', true),
    useGroupedTopk, numExpertGroup, topkGroup, scoringFunc, routedScalingFactor, activation, applyRouterWeightOnInput,
    customRoutingFunction: custom, eScoreCorrectionBias: boolArg(args.eScoreCorrectionBias, 'eScoreCorrectionBias',
        false),
    tpSize, tpRank, epSize, epRank, numRedundantExperts, enableEplb,
    reduceResults: boolArg(args.reduceResults, 'reduceResults', false), maxWeightBytes,
    quantConfig, weightDtype, hasBias, useFp8W8A8, useInt8W8A8, checkpointFormat: ckpt,
  };
}

/** The JSON form (getConfig). A routing function cannot be serialized: that throws, naming the way out. */
export function serializableConfig(c: ResolvedFusedMoEConfig, maxWeightBytes: number | null):
    serialization.ConfigDict {
  if (typeof c.customRoutingFunction === 'function') {
    throw new Error(`${NAME}: a 'customRoutingFunction' given as a function cannot be serialized; use a built-in ` +
        `name (${BUILTIN_ROUTINGS.map((r) => `'${r}'`).join(', ')})`);
  }
  return {
    numExperts: c.numExperts, topK: c.topK, hiddenSize: c.hiddenSize, intermediateSize: c.intermediateSize,
    renormalize: c.renormalize, useGroupedTopk: c.useGroupedTopk, numExpertGroup: c.numExpertGroup,
    topkGroup: c.topkGroup, scoringFunc: c.scoringFunc, routedScalingFactor: c.routedScalingFactor,
    activation: c.activation, applyRouterWeightOnInput: c.applyRouterWeightOnInput,
    customRoutingFunction: c.customRoutingFunction, eScoreCorrectionBias: c.eScoreCorrectionBias,
    tpSize: c.tpSize, tpRank: c.tpRank, epSize: c.epSize, epRank: c.epRank,
    numRedundantExperts: c.numRedundantExperts, enableEplb: c.enableEplb, reduceResults: c.reduceResults,
    // The split that was built, so that a reload finds the same weight names.
    maxWeightBytes,
    quantConfig: c.quantConfig == null ? null : encodeQuantConfig(c.quantConfig),
    weightDtype: c.weightDtype, hasBias: c.hasBias, useFp8W8A8: c.useFp8W8A8, useInt8W8A8: c.useInt8W8A8,
  };
}

/**
 * `quantConfig` in a saved config: its JSON with '_' and capitals written as \u escapes. tfjs-layers'
 * model.save / loadLayersModel rewrite every key and every string of a layer config (snake_case ↔
 * camelCase: 'quant_method' would come back 'quantMethod', 'gptq_v2' 'gptqV2'); the escaped string has
 * neither, so it survives the round trip exactly, and the constructor takes it back.
 */
export function encodeQuantConfig(q: QuantizationConfig): string {
  return JSON.stringify(q).replace(/[_A-Z]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function decodeQuantConfig(s: string): QuantizationConfig {
  try {
    return JSON.parse(s);
  } catch (e) {
    throw new Error(`${NAME}: 'quantConfig' given as a string must be JSON (as getConfig writes it): ` +
        `${(e as Error).message}`);
  }
}

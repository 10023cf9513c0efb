/**
 * The registry of checkpoint formats: HF `quant_method` → module. The layer and the loader ask here and
 * never branch on the format themselves.
 */
import {AwqFormat} from './awq';
import {CheckpointFormat, QuantConfigError} from './checkpoint_format';
import {CompressedTensorsFormat} from './compressed_tensors';
import {Fp8BlockFormat} from './fp8';
import {GptqFormat} from './gptq';
import {Mxfp4Format} from './mxfp4';
import {UnquantizedFormat, WEIGHT_DTYPES, WeightDtype} from './unquantized';

/** HF `quantization_config` as config.json carries it (snake_case, unmodified). */
export type QuantizationConfig = {quant_method: string; [field: string]: unknown};

const QUANT_METHODS: Record<string, (cfg: Record<string, unknown>) => CheckpointFormat> = {
  'fp8': Fp8BlockFormat.parse,
  'gptq': GptqFormat.parse,
  'awq': AwqFormat.parse,
  'compressed-tensors': CompressedTensorsFormat.parse,
  'mxfp4': Mxfp4Format.parse,
};
export const SUPPORTED_QUANT_METHODS = Object.keys(QUANT_METHODS);

export interface CheckpointFormatOptions {
  /** Unquantized checkpoints: the device dtype; null = the checkpoint's own (`checkpointWeightDtype`). */
  weightDtype?: WeightDtype | null;
  /** Unquantized checkpoints: what the file stores (known at load; float32 before). */
  checkpointWeightDtype?: WeightDtype;
  /** Unquantized checkpoints: per-expert 2-D tensors or Llama 4's fused 3-D ones. */
  layout?: 'per_expert' | 'fused_3d';
}

/**
 * The module for a `quantization_config` (null or absent: unquantized). Throws a QuantConfigError that
 * names the supported methods and settings.
 */
export function checkpointFormat(quantConfig: QuantizationConfig | null | undefined,
    o: CheckpointFormatOptions = {}): CheckpointFormat {
  if (quantConfig == null) {
    return new UnquantizedFormat(o.weightDtype ?? o.checkpointWeightDtype ?? 'float32', o.layout ?? 'per_expert');
  }
  if (typeof quantConfig !== 'object' || Array.isArray(quantConfig)) {
    throw new QuantConfigError(`quantization_config must be the object of the model's config.json (or null) but got ` +
        `${JSON.stringify(quantConfig)}`);
  }
  const method = quantConfig.quant_method;
  const parse = typeof method === 'string' ? QUANT_METHODS[method] : undefined;
  if (!parse) {
    throw new QuantConfigError(`quantization_config: quant_method ${JSON.stringify(method)} is not supported; ` +
        `supported: ${SUPPORTED_QUANT_METHODS.map((m) => `'${m}'`).join(', ')} (or null for unquantized F32/BF16/F16)`);
  }
  if (o.weightDtype != null) {
    throw new QuantConfigError(`'weightDtype' applies to unquantized checkpoints; a ${method} checkpoint keeps its ` +
        `own quantized format`);
  }
  return parse(quantConfig);
}

export function isWeightDtype(v: unknown): v is WeightDtype {
  return WEIGHT_DTYPES.includes(v as WeightDtype);
}

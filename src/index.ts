/**
 * tfjs-fused-moe: vLLM's fused mixture-of-experts layer for TensorFlow.js.
 *
 *   [Router] selectExperts (fusedTopK | groupedTopK | custom, + EPLB)
 *       → topkWeights, topkIds
 *   [Experts] fusedExperts (permute → w13 GEMM + act → w2 GEMM → combine)
 *       → out [T, H]
 *
 * Importing the package registers the cpu reference kernels. The webgpu and tensorflow kernels
 * register from their own entry points (`tfjs-fused-moe/webgpu`, `tfjs-fused-moe/node`).
 */
import {registerCpuKernels} from './kernels/cpu/register';

export * from './kernel_names';
export {fusedTopK, FusedTopKOptions, RoutingResult} from './ops/fused_topk';
export {groupedTopK, GroupedTopKOptions} from './ops/grouped_topk';
export {selectExperts, SelectExpertsOptions, CustomRoutingFunction, BuiltinRouting, EplbState}
  from './ops/select_experts';
export {fusedExperts, FusedExpertsOptions} from './ops/fused_experts';
export {fusedMoE, FusedMoEOptions} from './ops/fused_moe';
export {determineExpertMap, localExpertRange} from './ops/expert_map';
export {routingImpl, RoutingConfig} from './kernels/cpu/routing_impl';
export {fusedExpertsImpl, FusedExpertsProblem, ExpertShard} from './kernels/cpu/fused_experts_impl';
export {eplbMapIdsImpl, expertLoadImpl} from './kernels/cpu/eplb_impl';

export {parseSafetensors, readSafetensors, SafetensorsEntry, SafetensorsFile, SafetensorsDtype} from './io/safetensors';

registerCpuKernels();

export {FusedMoE, FusedMoELayerArgs, AllReduceHook, deviceMaxWeightBytes, DEFAULT_MAX_WEIGHT_BYTES}
  from './layers/fused_moe_layer';
export {FusedMoEConfig, ResolvedFusedMoEConfig} from './layers/fused_moe_config';
export {ExpertLayout, WeightShard, initialPhysicalToLogical, logicalToPhysical} from './layers/expert_placement';
export {makeExpertParamsMapping, ExpertParamsMapping, LoadWeightsOptions, ShardId, readExpertWeights,
  ReadExpertWeightsOptions} from './layers/weight_loading';
export {checkpointFormat, QuantizationConfig, SUPPORTED_QUANT_METHODS, CheckpointFormatOptions}
  from './quant/checkpoint/registry';
export {CheckpointFormat, TensorSpec, ConvertedRows, ProjectionRequest, QuantConfigError}
  from './quant/checkpoint/checkpoint_format';
export {WeightDtype} from './quant/checkpoint/unquantized';
export {loadSafetensors, LoadSafetensorsOptions} from './io/safetensors';
export {PackedTensor, PackedDtype, CheckpointTensor, isPackedTensor, disposeCheckpointTensors} from './io/packed_tensor';
export {WeightFormat, WeightCode, WEIGHT_CODES, FLOAT32_FORMAT, formatKey, parseFormatKey, formatBytes} from './quant/format';
export {QuantizedExpertWeights, isQuantizedExpertWeights, expertTensorShapes, ExpertTensorShapes} from './quant/expert_weights';
export {fetchBytes, FetchBytesOptions, OnBytesProgress} from './io/fetch_bytes';
export {loadTfjsWeights, decodeTfjsWeights, LoadTfjsWeightsOptions} from './io/tfjs_weights';
export {registerGraphModelOps, ConverterLike, GraphNodeLike, FUSED_MOE_GRAPH_OP} from './layers/graph_model_ops';

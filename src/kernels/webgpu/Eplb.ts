import {KernelConfig, TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {EplbMapIds, EplbMapIdsInputs, ExpertLoad, ExpertLoadAttrs, ExpertLoadInputs} from '../../kernel_names';
import {webgpuCapabilities} from './capabilities';
import {EplbMapIdsProgram} from './eplb_map_ids_webgpu';
import {EXPERT_LOAD_LANES, ExpertLoadProgram} from './expert_load_webgpu';

export const eplbMapIdsConfig: KernelConfig = {
  kernelName: EplbMapIds,
  backendName: 'webgpu',
  kernelFunc: ({inputs, backend}): TensorInfo => {
    const {topkIds, logicalToPhysicalMap, logicalReplicaCount} = inputs as EplbMapIdsInputs;
    const [T, k] = topkIds.shape;
    return (backend as WebGPUBackend).runWebGPUProgram(new EplbMapIdsProgram(T, k),
        [topkIds, logicalToPhysicalMap, logicalReplicaCount], 'int32');
  },
};

export const expertLoadConfig: KernelConfig = {
  kernelName: ExpertLoad,
  backendName: 'webgpu',
  kernelFunc: ({inputs, attrs, backend: b}): TensorInfo => {
    const backend = b as WebGPUBackend;
    const {topkIds, expertMap} = inputs as ExpertLoadInputs;
    const {numExperts} = attrs as unknown as ExpertLoadAttrs;
    const lanes = Math.min(EXPERT_LOAD_LANES, webgpuCapabilities(backend).maxComputeInvocationsPerWorkgroup);
    const program = new ExpertLoadProgram(numExperts, expertMap != null, lanes);
    return backend.runWebGPUProgram(program, expertMap ? [topkIds, expertMap] : [topkIds], 'int32');
  },
};

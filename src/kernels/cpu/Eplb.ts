import {KernelConfig, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {EplbMapIds, EplbMapIdsInputs, ExpertLoad, ExpertLoadAttrs, ExpertLoadInputs} from '../../kernel_names';
import {eplbMapIdsImpl, expertLoadImpl} from './eplb_impl';

export const eplbMapIdsConfig: KernelConfig = {
  kernelName: EplbMapIds,
  backendName: 'cpu',
  kernelFunc: ({inputs, backend: b}): TensorInfo => {
    const backend = b as MathBackendCPU;
    const {topkIds, logicalToPhysicalMap, logicalReplicaCount} = inputs as EplbMapIdsInputs;
    const [T, k] = topkIds.shape;
    const ids = eplbMapIdsImpl(backend.readSync(topkIds.dataId) as Int32Array, T, k,
        backend.readSync(logicalToPhysicalMap.dataId) as Int32Array, logicalToPhysicalMap.shape[1],
        backend.readSync(logicalReplicaCount.dataId) as Int32Array);
    return backend.makeTensorInfo([T, k], 'int32', ids);
  },
};

export const expertLoadConfig: KernelConfig = {
  kernelName: ExpertLoad,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend: b}): TensorInfo => {
    const backend = b as MathBackendCPU;
    const {topkIds, expertMap} = inputs as ExpertLoadInputs;
    const {numExperts} = attrs as unknown as ExpertLoadAttrs;
    const load = expertLoadImpl(backend.readSync(topkIds.dataId) as Int32Array, numExperts,
        expertMap ? backend.readSync(expertMap.dataId) as Int32Array : null);
    return backend.makeTensorInfo([numExperts], 'int32', load);
  },
};

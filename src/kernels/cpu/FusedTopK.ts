import {KernelConfig, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {FusedTopK, FusedTopKAttrs, FusedTopKInputs, GroupedTopK, GroupedTopKAttrs} from '../../kernel_names';
import {routingImpl} from './routing_impl';

function routing(numExpertGroup: number, topkGroup: number, inputs: FusedTopKInputs, attrs: FusedTopKAttrs,
    backend: MathBackendCPU): TensorInfo[] {
  const {gatingOutput, eScoreCorrectionBias} = inputs;
  const [T, E] = gatingOutput.shape;
  const logits = backend.readSync(gatingOutput.dataId) as Float32Array;
  const bias = eScoreCorrectionBias ? backend.readSync(eScoreCorrectionBias.dataId) as Float32Array : null;
  const {weights, ids} = routingImpl(logits, T, E, bias, {...attrs, numExpertGroup, topkGroup});
  return [
    backend.makeTensorInfo([T, attrs.topK], 'float32', weights),
    backend.makeTensorInfo([T, attrs.topK], 'int32', ids),
  ];
}

export const fusedTopKConfig: KernelConfig = {
  kernelName: FusedTopK,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend: b}) =>
    routing(1, 1, inputs as FusedTopKInputs, attrs as unknown as FusedTopKAttrs, b as MathBackendCPU),
};

export const groupedTopKConfig: KernelConfig = {
  kernelName: GroupedTopK,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend: b}) => {
    const backend = b as MathBackendCPU;
    const a = attrs as unknown as GroupedTopKAttrs;
    return routing(a.numExpertGroup, a.topkGroup, inputs as FusedTopKInputs, a, backend);
  },
};

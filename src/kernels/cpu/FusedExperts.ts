import {KernelConfig, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {expertWeightShards, FusedExperts, FusedExpertsAttrs, FusedExpertsInputs} from '../../kernel_names';
import {fusedExpertsImpl} from './fused_experts_impl';

export const fusedExpertsConfig: KernelConfig = {
  kernelName: FusedExperts,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend: b}): TensorInfo => {
    const backend = b as MathBackendCPU;
    const ins = inputs as FusedExpertsInputs;
    const a = attrs as unknown as FusedExpertsAttrs;
    const {w13, w2} = expertWeightShards(ins, a);
    const [T, H] = ins.hiddenStates.shape;
    const read = (t: TensorInfo) => backend.readSync(t.dataId) as Float32Array | Int32Array;
    const out = fusedExpertsImpl({
      hidden: read(ins.hiddenStates),
      topkWeights: read(ins.topkWeights),
      topkIds: read(ins.topkIds),
      expertMap: ins.expertMap ? read(ins.expertMap) : null,
      shards: w13.map((w, i) => ({w13: read(w), w2: read(w2[i]), numExperts: w.shape[0]})),
      numTokens: T,
      topK: ins.topkIds.shape[1],
      hiddenSize: H,
      intermediateSize: w2[0].shape[2],
      globalNumExperts: a.globalNumExperts,
      activation: a.activation,
      applyRouterWeightOnInput: a.applyRouterWeightOnInput,
    });
    return backend.makeTensorInfo([T, H], 'float32', out);
  },
};

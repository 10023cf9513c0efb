import {KernelConfig, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import {ExpertProjectionShard, FusedExperts, FusedExpertsAttrs, FusedExpertsInputs, expertProjectionShards}
  from '../../kernel_names';
import {parseFormatKey} from '../../quant/format';
import {dequantizeImpl} from './dequantize_impl';
import {fusedExpertsImpl} from './fused_experts_impl';
import {fusedExpertsInt8Impl} from './int8_w8a8_impl';

export const fusedExpertsConfig: KernelConfig = {
  kernelName: FusedExperts,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend: b}): TensorInfo => {
    const backend = b as MathBackendCPU;
    const ins = inputs as FusedExpertsInputs;
    const a = attrs as unknown as FusedExpertsAttrs;
    const format = parseFormatKey(a.weightFormat);
    const {w13, w2} = expertProjectionShards(ins, a);
    const [T, H] = ins.hiddenStates.shape;
    const read = (t: TensorInfo) => backend.readSync(t.dataId) as Float32Array | Int32Array;
    // Logical [E, N, K] of each shard: w13 [E, 2I, H], w2 [E, H, I]; the data's shape says E.
    const I = a.intermediateSize;
    const common = {
      hidden: read(ins.hiddenStates), topkWeights: read(ins.topkWeights), topkIds: read(ins.topkIds),
      expertMap: ins.expertMap ? read(ins.expertMap) : null, numTokens: T, topK: ins.topkIds.shape[1],
      hiddenSize: H, intermediateSize: I, globalNumExperts: a.globalNumExperts, activation: a.activation,
      applyRouterWeightOnInput: a.applyRouterWeightOnInput,
    };
    if (a.useInt8W8A8) {
      // The integer computation on the codes themselves (int8_w8a8_impl.ts), never a dequantized copy.
      const out = fusedExpertsInt8Impl({...common, shards: w13.map((s, i) => ({
        w13: read(s.data), w2: read(w2[i].data), w13Scales: read(s.scales!), w2Scales: read(w2[i].scales!),
        numExperts: s.data.shape[0], w13Bias: s.bias && read(s.bias), w2Bias: w2[i].bias && read(w2[i].bias!),
      }))});
      return backend.makeTensorInfo([T, H], 'float32', out);
    }
    const dequantize = (s: ExpertProjectionShard, rows: number, cols: number) => dequantizeImpl({
      format, numExperts: s.data.shape[0], rows, cols, data: read(s.data),
      scales: s.scales && read(s.scales), zeros: s.zeros && read(s.zeros), gIdx: s.gidx && read(s.gidx),
    });
    const out = fusedExpertsImpl({
      ...common,
      shards: w13.map((s, i) => ({
        w13: dequantize(s, 2 * I, H), w2: dequantize(w2[i], H, I), numExperts: s.data.shape[0],
        w13Bias: s.bias && read(s.bias), w2Bias: w2[i].bias && read(w2[i].bias!),
      })),
      activationQuantGroup: a.activationQuantGroup,
    });
    return backend.makeTensorInfo([T, H], 'float32', out);
  },
};

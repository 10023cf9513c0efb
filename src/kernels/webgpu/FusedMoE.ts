/**
 * webgpu kernel for FusedMoE (kernel_names.ts): the routing programs, then the expert programs, as one
 * kernel call, so that a decode call replays one dispatch plan (dispatch_plan.ts): one command encoder,
 * one compute pass, one submit, the routing's weights and ids in the plan's scratch buffers.
 */
import {KernelConfig, TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {FusedExpertsInputs, FusedMoE, FusedMoEAttrs, FusedMoEInputs} from '../../kernel_names';
import {runPlanned} from './dispatch_plan';
import {expertsAttrsKey, issueFusedExperts} from './FusedExperts';
import {issueRouting} from './FusedTopK';

/** The inputs that change from call to call; the weights, scales, biases and expert map are bound to a plan. */
const FUSED_MOE_PER_CALL: readonly string[] = ['hiddenStates', 'gatingOutput'];

export const fusedMoEConfig: KernelConfig = {
  kernelName: FusedMoE,
  backendName: 'webgpu',
  kernelFunc: ({inputs, attrs, backend: b}) => {
    const backend = b as WebGPUBackend;
    const ins = inputs as FusedMoEInputs;
    const a = attrs as unknown as FusedMoEAttrs;
    return runPlanned(backend, {kernel: FusedMoE, attrsKey: expertsAttrsKey(a), inputs: ins,
      perCall: FUSED_MOE_PER_CALL, numTokens: ins.hiddenStates.shape[0]}, (issuer) => {
      const {gatingOutput, eScoreCorrectionBias, ...experts} = ins;
      const [topkWeights, topkIds] = issueRouting(a.numExpertGroup, a.topkGroup,
          eScoreCorrectionBias ? {gatingOutput, eScoreCorrectionBias} : {gatingOutput}, a, backend, issuer);
      try {
        return issueFusedExperts(backend, issuer, {...experts, topkWeights, topkIds} as FusedExpertsInputs, a);
      } finally {
        issuer.disposeData(topkWeights.dataId);
        issuer.disposeData(topkIds.dataId);
      }
    }) as TensorInfo;
  },
};

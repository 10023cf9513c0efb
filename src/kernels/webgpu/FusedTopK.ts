import {KernelConfig, TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {FusedTopK, FusedTopKAttrs, FusedTopKInputs, GroupedTopK, GroupedTopKAttrs} from '../../kernel_names';
import {webgpuCapabilities} from './capabilities';
import {ProgramIssuer, runPlanned} from './dispatch_plan';
import {RoutingProgram, routingTreeLanes} from './routing_webgpu';
import {RoutingUnpackProgram} from './routing_unpack_webgpu';

/** Workgroup memory RoutingProgram declares: scores (and choices when grouped) per expert, weights per slot. */
function routingSharedBytes(numExperts: number, topK: number, grouped: boolean): number {
  return numExperts * (grouped ? 8 : 4) + topK * 4 + 3 * 256 * 4 + 64;
}

/**
 * One routing dispatch writing weights and ids where the device allows a second writable binding, else
 * packed rows and two small dispatches that split them; issued through `issuer` (the backend, or a
 * dispatch-plan recorder).
 */
export function issueRouting(numExpertGroup: number, topkGroup: number, inputs: FusedTopKInputs,
    attrs: FusedTopKAttrs, backend: WebGPUBackend, issuer: ProgramIssuer = backend): TensorInfo[] {
  const {gatingOutput, eScoreCorrectionBias} = inputs;
  const [T, E] = gatingOutput.shape;
  const caps = webgpuCapabilities(backend);
  const sharedBytes = routingSharedBytes(E, attrs.topK, numExpertGroup > 1);
  if (sharedBytes > caps.maxComputeWorkgroupStorageSize) {
    throw new Error(`webgpu routing: 'gatingOutput' has E = ${E} experts, whose per-row scores need ${sharedBytes} ` +
        `bytes of workgroup memory; this device allows ${caps.maxComputeWorkgroupStorageSize}`);
  }
  // A workgroup of one subgroup needs the subgroup size fixed and known.
  const subgroupSize = caps.subgroups && caps.subgroupSize > 0 &&
      caps.subgroupSize <= caps.maxComputeInvocationsPerWorkgroup ? caps.subgroupSize : 0;
  const program = new RoutingProgram({
    numTokens: T, numExperts: E, topK: attrs.topK, numExpertGroup, topkGroup,
    scoringFunc: attrs.scoringFunc, renormalize: attrs.renormalize, routedScalingFactor: attrs.routedScalingFactor,
    hasBias: eScoreCorrectionBias != null, subgroupSize,
    treeLanes: routingTreeLanes(E, caps.maxComputeInvocationsPerWorkgroup), idsInput: caps.writableInputs,
  });
  const logitsAndBias = eScoreCorrectionBias ? [gatingOutput, eScoreCorrectionBias] : [gatingOutput];
  if (caps.writableInputs) {
    const ids = issuer.makeTensorInfo([T, attrs.topK], 'int32');
    return [issuer.runWebGPUProgram(program, [...logitsAndBias, ids], 'float32'), ids];
  }
  const packed = issuer.runWebGPUProgram(program, logitsAndBias, 'int32');
  const weights = issuer.runWebGPUProgram(new RoutingUnpackProgram(T, attrs.topK, 'weights'), [packed], 'float32');
  const ids = issuer.runWebGPUProgram(new RoutingUnpackProgram(T, attrs.topK, 'ids'), [packed], 'int32');
  issuer.disposeData(packed.dataId);
  return [weights, ids];
}

/** The routing kernels through a dispatch plan: the logits change per call, a correction bias is bound. */
function planned(numExpertGroup: number, topkGroup: number, inputs: FusedTopKInputs, attrs: FusedTopKAttrs,
    backend: WebGPUBackend): TensorInfo[] {
  return runPlanned(backend, {kernel: numExpertGroup > 1 ? GroupedTopK : FusedTopK, attrsKey: JSON.stringify(attrs),
    inputs, perCall: ['gatingOutput'], numTokens: inputs.gatingOutput.shape[0]},
  (issuer) => issueRouting(numExpertGroup, topkGroup, inputs, attrs, backend, issuer)) as TensorInfo[];
}

export const fusedTopKConfig: KernelConfig = {
  kernelName: FusedTopK,
  backendName: 'webgpu',
  kernelFunc: ({inputs, attrs, backend}) =>
    planned(1, 1, inputs as FusedTopKInputs, attrs as unknown as FusedTopKAttrs, backend as WebGPUBackend),
};

export const groupedTopKConfig: KernelConfig = {
  kernelName: GroupedTopK,
  backendName: 'webgpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const a = attrs as unknown as GroupedTopKAttrs;
    return planned(a.numExpertGroup, a.topkGroup, inputs as FusedTopKInputs, a, backend as WebGPUBackend);
  },
};

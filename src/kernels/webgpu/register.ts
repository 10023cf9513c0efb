import {KernelConfig, registerKernel} from '@tensorflow/tfjs-core';
import {eplbMapIdsConfig, expertLoadConfig} from './Eplb';
import {fusedExpertsConfig} from './FusedExperts';
import {fusedTopKConfig, groupedTopKConfig} from './FusedTopK';
import {fusedMoEConfig} from './FusedMoE';
import {releasePlansBinding} from './dispatch_plan';
import {releaseTensorCoreWeightCopies} from './tensor_core_weights';
import {registerWeightStateReleaser} from '../weight_state';

const webgpuKernels: KernelConfig[] = [
  fusedTopKConfig,
  groupedTopKConfig,
  fusedExpertsConfig,
  fusedMoEConfig,
  eplbMapIdsConfig,
  expertLoadConfig,
];

export function registerWebGPUKernels(): void {
  for (const config of webgpuKernels) registerKernel(config);
  registerWeightStateReleaser(releasePlansBinding);
  registerWeightStateReleaser(releaseTensorCoreWeightCopies);
}

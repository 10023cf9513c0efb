import {KernelConfig, registerKernel} from '@tensorflow/tfjs-core';
import {eplbMapIdsConfig, expertLoadConfig} from './Eplb';
import {fusedExpertsConfig} from './FusedExperts';
import {fusedTopKConfig, groupedTopKConfig} from './FusedTopK';
import {fusedMoEConfig} from './FusedMoE';

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
}

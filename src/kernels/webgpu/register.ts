import {KernelConfig, registerKernel} from '@tensorflow/tfjs-core';
import {eplbMapIdsConfig, expertLoadConfig} from './Eplb';
import {fusedExpertsConfig} from './FusedExperts';
import {fusedTopKConfig, groupedTopKConfig} from './FusedTopK';

const webgpuKernels: KernelConfig[] = [
  fusedTopKConfig,
  groupedTopKConfig,
  fusedExpertsConfig,
  eplbMapIdsConfig,
  expertLoadConfig,
];

export function registerWebGPUKernels(): void {
  for (const config of webgpuKernels) registerKernel(config);
}

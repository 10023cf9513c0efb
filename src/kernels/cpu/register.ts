import {KernelConfig, registerKernel} from '@tensorflow/tfjs-core';
import {eplbMapIdsConfig, expertLoadConfig} from './Eplb';
import {fusedExpertsConfig} from './FusedExperts';
import {fusedTopKConfig, groupedTopKConfig} from './FusedTopK';

const cpuKernels: KernelConfig[] =
    [fusedTopKConfig, groupedTopKConfig, fusedExpertsConfig, eplbMapIdsConfig, expertLoadConfig];

export function registerCpuKernels(): void {
  for (const config of cpuKernels) registerKernel(config);
}

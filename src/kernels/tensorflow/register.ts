import {KernelConfig, getKernel, registerKernel} from '@tensorflow/tfjs-core';
import {eplbMapIdsConfig, expertLoadConfig} from './Eplb';
import {fusedExpertsConfig} from './FusedExperts';
import {fusedTopKConfig, groupedTopKConfig} from './FusedTopK';

const tensorflowKernels: KernelConfig[] =
    [fusedTopKConfig, groupedTopKConfig, fusedExpertsConfig, eplbMapIdsConfig, expertLoadConfig];

/**
 * Registers the kernels for backend 'tensorflow', the one name that tfjs-node and tfjs-node-gpu both
 * register; the backend itself may load before or after. Calling it again does nothing.
 */
export function registerTensorflowKernels(): void {
  for (const config of tensorflowKernels) {
    if (getKernel(config.kernelName, config.backendName) == null) registerKernel(config);
  }
}

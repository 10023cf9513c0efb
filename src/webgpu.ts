/**
 * tfjs-fused-moe/webgpu: this package's kernels for tfjs's `webgpu` backend.
 *
 * Importing it registers the WGSL kernels and, where WebGPU exists and no 'webgpu' backend has
 * started yet, replaces tfjs-backend-webgpu's backend factory with one whose device also has the
 * 'subgroups' feature when the adapter offers it (see kernels/webgpu/device.ts). Use
 * `webgpuCapabilities(backend)` to see what the device gives the kernels and why a path is off.
 *
 * ```js
 * import '@tensorflow/tfjs-backend-webgpu';
 * import {fusedMoE} from 'tfjs-fused-moe';
 * import 'tfjs-fused-moe/webgpu';
 * await tf.setBackend('webgpu');
 * ```
 */
import {registerWebGPUKernels} from './kernels/webgpu/register';
import {registerWebGPUBackendWithSubgroups} from './kernels/webgpu/device';

export {SUBGROUPS_FLAG, TENSOR_CORES_FLAG, webgpuCapabilities} from './kernels/webgpu/capabilities';
export type {SubgroupMatrixConfig, WebGPUCapabilities} from './kernels/webgpu/capabilities';
export {chooseGemmKernel} from './kernels/webgpu/FusedExperts';
export {DEFAULT_TENSOR_CORE_VARIANT, TENSOR_CORE_VARIANTS, setTensorCoreVariant} from './kernels/webgpu/tensor_core_plan';
export type {TensorCoreChoice, TensorCoreVariant} from './kernels/webgpu/tensor_core_plan';
export {PLAN_MAX_TOKENS, dispatchPlanStats, releaseDispatchPlans, setDispatchPlansEnabled}
  from './kernels/webgpu/dispatch_plan';
export type {DispatchPlanStats} from './kernels/webgpu/dispatch_plan';
export {createWebGPUBackend, registerWebGPUBackendWithSubgroups} from './kernels/webgpu/device';
export {registerWebGPUKernels};

registerWebGPUKernels();
registerWebGPUBackendWithSubgroups();

/**
 * What the device under a tfjs `webgpu` backend offers this package's kernels, and why a fast path
 * is off (STYLE: say why a path is not taken). Kernels ask `webgpuCapabilities(backend)` and put the
 * answer's fields that change their WGSL into their shader keys.
 *
 * Subgroups need three things: the adapter offers the `subgroups` feature, the device was created
 * with it (tfjs-backend-webgpu's own factory never asks for it; `createWebGPUBackend` in
 * ./device.ts does), and `enable subgroups;` can reach the top of the shader module, which tfjs's
 * program compiler fills with its own declarations first (./device.ts hoists the directive).
 */
import {env} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';

/**
 * tfjs flag: set it false (`tf.env().set(SUBGROUPS_FLAG, false)`) to make every kernel take its
 * workgroup-memory path; the tests do, so that the fallback is covered on devices with subgroups.
 */
export const SUBGROUPS_FLAG = 'MOE_WEBGPU_SUBGROUPS';
env().registerFlag(SUBGROUPS_FLAG, () => true);

export interface WebGPUCapabilities {
  /** Kernels may write `enable subgroups;` in their WGSL and use the subgroup builtins. */
  subgroups: boolean;
  /**
   * The device's subgroup size when it is fixed (the adapter's subgroupMinSize = subgroupMaxSize,
   * e.g. 32 on NVIDIA, 4 on SwiftShader), else 0. A kernel may size a workgroup to exactly one
   * subgroup only when this is nonzero.
   */
  subgroupSize: number;
  /** Bytes one storage binding may cover: weights larger than this must be split across tensors. */
  maxStorageBufferBindingSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupStorageSize: number;
  /** Why `subgroups` is false ('' when it is true). */
  reason: string;
}

/** Subgroup sizes of the devices made by `createWebGPUBackend` with the feature and the directive hoist. */
const subgroupDevices = new WeakMap<GPUDevice, {minSize: number; maxSize: number}>();

/** Called by ./device.ts once a device has the `subgroups` feature and hoists `enable` directives. */
export function markSubgroupDevice(device: GPUDevice, minSize: number, maxSize: number): void {
  subgroupDevices.set(device, {minSize, maxSize});
}

export function webgpuCapabilities(backend: WebGPUBackend): WebGPUCapabilities {
  const device = backend.device;
  const limits = {
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
  };
  const off = (reason: string): WebGPUCapabilities => ({subgroups: false, subgroupSize: 0, ...limits, reason});

  if (!env().getBool(SUBGROUPS_FLAG)) return off(`disabled by the tfjs flag ${SUBGROUPS_FLAG}`);
  const sizes = subgroupDevices.get(device);
  if (sizes == null) {
    return off(device.features.has('subgroups') ?
      'the device has the subgroups feature but was not created by createWebGPUBackend, so ' +
        '`enable subgroups;` cannot be placed before tfjs\'s shader header' :
      'the webgpu backend\'s device was created without the \'subgroups\' feature (the adapter lacks it, or ' +
        'the backend came from tfjs-backend-webgpu\'s own factory; import tfjs-fused-moe/webgpu before the ' +
        'backend starts, or call registerWebGPUBackendWithSubgroups())');
  }
  const fixed = sizes.minSize > 0 && sizes.minSize === sizes.maxSize;
  return {subgroups: true, subgroupSize: fixed ? sizes.minSize : 0, ...limits, reason: ''};
}

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
import {TC_WORKGROUP_BYTES} from './experts_gemm_tc_webgpu';

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
  /**
   * Storage buffers one program may bind (inputs and output): the adapter's limit on devices made by
   * `createWebGPUBackend`, WebGPU's default 8 on others. Weight formats with more tensors per shard need more.
   */
  maxStorageBuffersPerShaderStage: number;
  /**
   * Programs may mark an input `// moe-storage-rw NAME` and write it (./device.ts declares it read_write):
   * true on devices made by `createWebGPUBackend`, whatever their features.
   */
  writableInputs: boolean;
  /** Why `subgroups` is false ('' when it is true). */
  reason: string;
  /** Kernels may write `enable f16;` (the device has `shader-f16`). */
  shaderF16: boolean;
  /** The subgroup-matrix shapes and types the adapter lists (empty without the feature). */
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
  /** Whether the f16 tensor-core prefill GEMM can run here, and why not ('' when it can). */
  tensorCoreF16: boolean;
  tensorCoreReason: string;
}

/** One entry of GPUAdapterInfo.subgroupMatrixConfigs (Dawn's chromium-experimental-subgroup-matrix). */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/**
 * tfjs flag: set it true to run the prefill GEMMs on f16 tensor cores where the device reaches them.
 * Off by default because it changes the numerics: operands rounded to f16 (f32 accumulation), where the
 * float32 path keeps float32 throughout; a layer whose activations exceed f16's range (65504) would overflow.
 * Where it is on, the default variant (tensor_core_plan.ts DEFAULT_TENSOR_CORE_VARIANT) runs 3.9-6.5× faster than
 * the float32 tiles on the H200 at M = 4096 (2026-12-05, GPU time, pipelined-64: Qwen3 2.51 vs 12.3 ms, DeepSeek-V3
 * TP8 3.86 vs 15.0, Mixtral 13.9 vs 90.9; bench/results/2026-12-05-h200-table-after-trip-count.log); on an H100
 * since, grouped-64x256 5.7-7.7× (Qwen3 2.14 vs 12.2 ms, DeepSeek-V3 TP8 3.45 vs 15.1, Mixtral 11.75 vs 90.6;
 * bench/results/2026-12-06-h100-grouped-trimmed-ab.log).
 */
export const TENSOR_CORES_FLAG = 'MOE_WEBGPU_TENSOR_CORES';
env().registerFlag(TENSOR_CORES_FLAG, () => false);



interface DeviceFeatures {
  minSize: number;
  maxSize: number;
  shaderF16: boolean;
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
}

/** Subgroup sizes of the devices made by `createWebGPUBackend` with the feature and the directive hoist. */
const subgroupDevices = new WeakMap<GPUDevice, DeviceFeatures>();

/** Devices whose shader modules pass through ./device.ts's rewriting wrapper. */
const rewritingDevices = new WeakSet<GPUDevice>();

/** Called by ./device.ts for every device it makes (its createShaderModule rewrites marked bindings). */
export function markShaderRewritingDevice(device: GPUDevice): void {
  rewritingDevices.add(device);
}

/** Called by ./device.ts once a device has the `subgroups` feature and hoists `enable` directives. */
export function markSubgroupDevice(device: GPUDevice, minSize: number, maxSize: number, shaderF16 = false,
    subgroupMatrixConfigs: SubgroupMatrixConfig[] = []): void {
  subgroupDevices.set(device, {minSize, maxSize, shaderF16, subgroupMatrixConfigs});
}

export function webgpuCapabilities(backend: WebGPUBackend): WebGPUCapabilities {
  const device = backend.device;
  const limits = {
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
    maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
    writableInputs: rewritingDevices.has(device),
  };
  const off = (reason: string): WebGPUCapabilities => ({subgroups: false, subgroupSize: 0, ...limits, reason,
    shaderF16: false, subgroupMatrixConfigs: [], tensorCoreF16: false,
    tensorCoreReason: `the tensor-core GEMM needs subgroups, which are off: ${reason}`});

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
  const subgroupSize = fixed ? sizes.minSize : 0;
  const f16Config = sizes.subgroupMatrixConfigs.some((c) => c.componentType === 'f16' &&
      c.resultComponentType === 'f32' && c.M === 16 && c.N === 16 && c.K === 16);
  const whyNot = !env().getBool(TENSOR_CORES_FLAG) ? `off unless the tfjs flag ${TENSOR_CORES_FLAG} is set: f16 operands ` +
      'change the numerics (2.9-5.4x faster prefill on the H200, 2026-12-03)' :
    !sizes.shaderF16 ? 'the device has no shader-f16 (Dawn on NVIDIA Vulkan: toggle vulkan_enable_f16_on_nvidia; ' +
      'Chrome: --enable-unsafe-webgpu)' :
    sizes.subgroupMatrixConfigs.length === 0 ? 'the device has no chromium-experimental-subgroup-matrix (Dawn: ' +
      'toggle allow_unsafe_apis; Chrome: --enable-features=WebGPUExperimentalFeatures or chrome://flags ' +
      '#enable-webgpu-developer-features)' :
    !f16Config ? `no f16×f16→f32 16×16×16 subgroup-matrix config among ${JSON.stringify(sizes.subgroupMatrixConfigs)}` :
    subgroupSize !== 32 ? `the kernel is laid out for subgroups of 32 and this device's size is ` +
      `${subgroupSize || `${sizes.minSize}..${sizes.maxSize}`}` :
    limits.maxComputeWorkgroupStorageSize < TC_WORKGROUP_BYTES ? `it needs ${TC_WORKGROUP_BYTES} ` +
      `bytes of workgroup memory and the device allows ${limits.maxComputeWorkgroupStorageSize}` : '';
  return {subgroups: true, subgroupSize, ...limits, reason: '', shaderF16: sizes.shaderF16,
    subgroupMatrixConfigs: sizes.subgroupMatrixConfigs, tensorCoreF16: whyNot === '', tensorCoreReason: whyNot};
}

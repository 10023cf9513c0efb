/**
 * WebGPU in Node for the benchmark, through the tests' setup (test/setup_webgpu_node.ts: Dawn from the
 * npm package `webgpu` as navigator.gpu, then tfjs-backend-webgpu, then tfjs-fused-moe/webgpu), with
 * Dawn's timestamp quantization off (added to MOE_DAWN_FLAGS): by default Dawn rounds timestamp-query
 * values down to multiples of 65.536 µs (a guard against timing attacks in browsers), which would make
 * every per-kernel time below ~100 µs meaningless. The Vulkan driver is the machine's (the NVIDIA one
 * on the GPU machine, whose .gpu/run.sh sets VK_DRIVER_FILES); where none is named and Debian's
 * chromium provides SwiftShader, that one, so that `npm run bench` works here as is (a functional run
 * only).
 */
import * as fs from 'fs';
import {getKernel} from '@tensorflow/tfjs-core';
import {FusedExperts} from '../src/kernel_names';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
/** Dawn's toggle (dawn/native/Toggles.cpp) that rounds timestamps to 2^16 ns. */
const TIMESTAMP_QUANTIZATION = 'timestamp_quantization';

export interface WebGPUSetup {
  /** 'SwiftShader (software Vulkan)' or the Vulkan driver named by the environment. */
  vulkan: string;
  /** Why this package's webgpu kernels are not there ('' when they are). */
  oursMissing: string;
  /** MOE_DAWN_FLAGS as Dawn got them. */
  dawnFlags: string;
}

/** Loads WebGPU and this package's webgpu kernels; says which Vulkan driver runs them and with which Dawn flags. */
export function setupWebGPUNode(): WebGPUSetup {
  let vulkan = process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES ?? 'the Vulkan loader\'s default';
  if (process.env.VK_DRIVER_FILES == null && process.env.VK_ICD_FILENAMES == null && fs.existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  if (process.env.VK_ICD_FILENAMES === SWIFTSHADER_ICD) vulkan = 'SwiftShader (software Vulkan)';
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const flags = process.env.MOE_DAWN_FLAGS ?? '';
  if (!flags.includes(TIMESTAMP_QUANTIZATION)) {
    process.env.MOE_DAWN_FLAGS = `${flags} disable-dawn-features=${TIMESTAMP_QUANTIZATION}`.trim();
  }
  require('../test/setup_webgpu_node');
  const oursMissing = getKernel(FusedExperts, 'webgpu') == null ?
    `no 'webgpu' kernel registered for ${FusedExperts} after loading src/webgpu.ts` : '';
  return {vulkan, oursMissing, dawnFlags: process.env.MOE_DAWN_FLAGS!};
}

/** Lets the process exit: Dawn keeps Node alive while navigator.gpu is referenced. */
export function releaseWebGPU(): void {
  const nav = (globalThis as {navigator?: {gpu?: unknown}}).navigator;
  if (nav) delete nav.gpu;
}

/**
 * Runs `f` with the device's validation and out-of-memory errors captured: Dawn reports those
 * asynchronously and tfjs does not look, so a failed kernel would otherwise be timed as if it ran.
 */
export async function withGpuErrors<T>(device: GPUDevice, f: () => Promise<T>): Promise<T> {
  device.pushErrorScope('validation');
  device.pushErrorScope('out-of-memory');
  let result: T | undefined;
  let thrown: unknown = null;
  try {
    result = await f();
  } catch (e) {
    thrown = e;
  }
  const oom = await device.popErrorScope();
  const invalid = await device.popErrorScope();
  const error = oom ?? invalid;
  if (error) throw new Error(`GPU ${oom ? 'out of memory' : 'validation error'}: ${error.message.split('\n')[0]}`);
  if (thrown) throw thrown;
  return result as T;
}

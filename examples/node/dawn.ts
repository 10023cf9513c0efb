/**
 * WebGPU in Node through Dawn (npm package `webgpu`), for the examples.
 *
 * tfjs-backend-webgpu looks for `navigator.gpu` when it is imported, so this must run first:
 *   1. ask Dawn for an adapter as the machine is (a real GPU through its Vulkan/Metal/D3D driver);
 *   2. only if there is none, point the Vulkan loader at SwiftShader, the software Vulkan that
 *      Debian's chromium ships, and ask again (slow, but it runs the same WGSL);
 *   3. install `navigator.gpu` and the GPU* constants (GPUBufferUsage, ...) as globals.
 * It returns what it found, or why there is no adapter, so callers can say which one they run on.
 */
import * as fs from 'fs';

/** Debian chromium's SwiftShader ICD; override with MOE_SWIFTSHADER_ICD. */
export const SWIFTSHADER_ICD = process.env.MOE_SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';

export interface DawnAdapter {
  /** e.g. "nvidia hopper (NVIDIA H200)" or "google swiftshader (SwiftShader driver 5.0.0)". */
  description: string;
  /** True for a software adapter (SwiftShader, llvmpipe): correct, but no speed to judge. */
  software: boolean;
}

export type DawnResult = {adapter: DawnAdapter} | {adapter: null; reason: string};

interface DawnModule {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}

export async function installDawnWebGPU(): Promise<DawnResult> {
  let dawn: DawnModule;
  try {
    dawn = await import('webgpu') as unknown as DawnModule;
  } catch (e) {
    return {adapter: null, reason: `the npm package 'webgpu' (Dawn) could not be loaded: ${(e as Error).message}`};
  }
  // Dawn's Vulkan loader complains on stderr without it; any writable directory will do.
  process.env.XDG_RUNTIME_DIR ??= '/tmp';

  let gpu = dawn.create([]);
  let adapter = await gpu.requestAdapter({powerPreference: 'high-performance'});
  if (adapter == null && process.env.VK_ICD_FILENAMES == null && fs.existsSync(SWIFTSHADER_ICD)) {
    // The loader reads VK_ICD_FILENAMES when an instance is created, so a second instance sees it.
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    gpu = dawn.create([]);
    adapter = await gpu.requestAdapter({powerPreference: 'high-performance'});
  }
  if (adapter == null) {
    return {adapter: null, reason: `Dawn found no GPU adapter, and no SwiftShader ICD at ${SWIFTSHADER_ICD} ` +
        `(apt-get install chromium, or set VK_ICD_FILENAMES)`};
  }
  const info = adapter.info as GPUAdapterInfo & {isFallbackAdapter?: boolean};
  const software = info.isFallbackAdapter === true || /swiftshader|llvmpipe|lavapipe/i.test(
      `${info.architecture} ${info.device} ${info.description}`);
  const description = `${info.vendor} ${info.architecture}` + (info.description ? ` (${info.description})` : '');

  Object.assign(globalThis, dawn.globals);
  Object.defineProperty(globalThis, 'navigator', {value: {gpu}, configurable: true, writable: true});
  return {adapter: {description, software}};
}

/**
 * Imported first by the tensor-core device checks (gpu_check_tc.ts, gpu_check_int8.ts): Dawn as navigator.gpu
 * with the toggles that expose shader-f16 and subgroup matrices on NVIDIA (allow_unsafe_apis,
 * vulkan_enable_f16_on_nvidia) and timestamp quantization off, then tfjs-backend-webgpu and this package's
 * webgpu kernels. Where no Vulkan driver is named and Debian's chromium provides SwiftShader, that one.
 */
import * as fs from 'fs';
import {tensorCoreDawnToggles} from './dawn_toggles';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (process.env.VK_DRIVER_FILES == null && process.env.VK_ICD_FILENAMES == null && fs.existsSync(SWIFTSHADER_ICD)) {
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
}
// eslint-disable-next-line @typescript-eslint/no-var-requires
const {create, globals} = require('webgpu');
Object.assign(globalThis, globals);
Object.defineProperty(globalThis, 'navigator', {configurable: true, writable: true,
  value: {gpu: create(tensorCoreDawnToggles())}});
require('@tensorflow/tfjs-backend-webgpu');
require('../src/webgpu');

/**
 * What Dawn says while compiling this package's tensor-core, f16 and dot4 programs: errors (reported beside the
 * failing case), and warnings, which fail the device checks: until 2026-12-05 the deprecated subgroup-matrix
 * load/store form made Tint print one per call, hundreds a run, without anything failing.
 */
export const shaderMessages = {errors: [] as string[], warnings: new Map<string, number>()};

/** Collects shaderMessages from every program `device` compiles that uses those features. */
export function watchShaderMessages(device: GPUDevice): void {
  const createShaderModule = device.createShaderModule.bind(device);
  device.createShaderModule = (d: GPUShaderModuleDescriptor) => {
    const module = createShaderModule(d);
    if (/subgroup_matrix|pack2x16float|dot4I8Packed/.test(d.code)) {
      module.getCompilationInfo?.().then((info) => {
        for (const m of info.messages) {
          const text = `${m.lineNum}:${m.linePos} ${m.message}`;
          if (m.type === 'error') shaderMessages.errors.push(text);
          if (m.type === 'warning') shaderMessages.warnings.set(m.message, (shaderMessages.warnings.get(m.message) ?? 0) + 1);
        }
      }).catch(() => undefined);
    }
    return module;
  };
}

/** Reports the warnings collected (each distinct message once, with its count); true when there were none. */
export function noShaderWarnings(report: (line: string) => void): boolean {
  const {warnings} = shaderMessages;
  const total = [...warnings.values()].reduce((a, b) => a + b, 0);
  report(total === 0 ? 'shader warnings: none' : `shader warnings: ${total} (FAIL), ` +
    [...warnings].map(([m, n]) => `${n} × ${m}`).join('; '));
  return total === 0;
}

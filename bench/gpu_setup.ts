/**
 * Imported first by the device entries: Dawn becomes navigator.gpu before tfjs-backend-webgpu loads
 * (as bench/webgpu_node.ts does), with Dawn's timestamp quantization off: by default Dawn rounds
 * timestamp-query values to multiples of 65.5 µs, too coarse for decode kernels of 30-300 µs.
 */
import * as fs from 'fs';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
let vulkan = process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES ?? 'the system Vulkan loader\'s default';
if (process.env.VK_DRIVER_FILES == null && process.env.VK_ICD_FILENAMES == null && fs.existsSync(SWIFTSHADER_ICD)) {
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  vulkan = 'SwiftShader (software Vulkan)';
}
process.env.XDG_RUNTIME_DIR ??= '/tmp';
// eslint-disable-next-line @typescript-eslint/no-var-requires
const {create, globals} = require('webgpu');
Object.assign(globalThis, globals);
Object.defineProperty(globalThis, 'navigator', {configurable: true, writable: true,
  value: {gpu: create(['enable-dawn-features=allow_unsafe_apis', 'disable-dawn-features=timestamp_quantization'])}});
require('@tensorflow/tfjs-backend-webgpu');
let oursMissing = '';
try {
  require('../src/webgpu');
} catch (e) {
  oursMissing = `this package's webgpu kernels did not load (src/webgpu.ts): ${(e as Error).message.split('\n')[0]}`;
}

export const webgpuSetup = {vulkan, oursMissing};

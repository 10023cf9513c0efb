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

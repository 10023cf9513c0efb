/**
 * Node setup for the 'webgpu' backend (required by setup_node.ts when MOE_BACKENDS names it):
 * Dawn from the npm package `webgpu` becomes `navigator.gpu` before tfjs-backend-webgpu loads,
 * since tfjs decides at import time whether WebGPU exists. Without a GPU, Dawn runs on SwiftShader's
 * Vulkan: `npm run test:webgpu` sets VK_ICD_FILENAMES and XDG_RUNTIME_DIR for that; on a machine
 * with a GPU, leave them unset and Dawn takes the real adapter.
 */
/* eslint-disable @typescript-eslint/no-var-requires */
const {create, globals} = require('webgpu') as {create: (flags: string[]) => GPU; globals: object};

// tfjs uses the WebGPU globals (GPUBufferUsage, GPUBuffer for instanceof, ...) as a browser has them.
Object.assign(globalThis, globals);
// MOE_DAWN_FLAGS: Dawn instance flags, space-separated; the H200 benchmark passes
// 'enable-dawn-features=allow_unsafe_apis disable-dawn-features=timestamp_quantization', since Dawn otherwise
// rounds timestamp-query values to multiples of 65.5 µs (too coarse for 30-400 µs decode kernels).
const dawnFlags = (process.env.MOE_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean);
Object.defineProperty(globalThis, 'navigator', {value: {gpu: create(dawnFlags)}, configurable: true, writable: true});

require('@tensorflow/tfjs-backend-webgpu');
require('../src/webgpu');

/**
 * A tfjs `webgpu` backend whose device has the `subgroups` feature when the adapter offers it.
 *
 * tfjs-backend-webgpu 4.22 registers a factory that never requests 'subgroups', and its program
 * compiler (webgpu_program.js `makeShader`) starts every module with its own structs and bindings,
 * while WGSL requires `enable subgroups;` before any declaration. Rather than fork the compiler, we
 * create the device ourselves (same adapter options, features and limits as tfjs's `base.ts`, plus
 * 'subgroups'), and wrap that one device's `createShaderModule` so that `enable`/`requires`
 * directives found anywhere in the code move to its top. Programs then simply begin their
 * `getUserCode()` with `enable subgroups;`. The wrapper touches only devices made here, works for
 * any tfjs header, and test/webgpu_device.test.ts checks it against the installed tfjs.
 *
 * The same wrapper gives the tensor-core GEMMs f16 storage operands: tfjs has no f16 dtype and declares
 * every input from its dtype (`var<storage, read> x16: array<i32>;`), while subgroupMatrixLoad needs a
 * pointer to array<f16>. A program that marks a binding with `// moe-storage-f16 NAME` gets that
 * declaration rewritten to array<f16> (same buffer, same binding: the 'auto' layout does not see element
 * types); a marker whose declaration is not found throws, so a tfjs change fails loudly. `// moe-storage-f16-blocks
 * NAME` declares it as 16 × 16 blocks, array<array<f16, 256>>, and `// moe-storage-i32-blocks NAME` as 512-byte
 * blocks of i8 in words, array<array<i32, 128>>, for loads through block pointers (`&x16[block]` at offset 0);
 * tfjs's getters for that input (`fn getX16(..) -> f32 { return f32(x16[..]); }`), which no block program calls
 * and which do not compile on an array of arrays, are dropped.
 *
 * And a second writable binding: tfjs declares every input `read`, and a program has one output. A program
 * that marks an input `// moe-storage-rw NAME` gets it declared `read_write` and writes it (routing writes
 * its ids there, its weights to the output: one dispatch instead of a packed output and two splits). The
 * wrapper is on every device made here; kernels ask `webgpuCapabilities(backend).writableInputs` first.
 *
 * And uniform ids: tfjs's entry point copies workgroup_id into a module-scope variable, which Tint's uniformity
 * analysis takes as non-uniform, and passes no subgroup ids. A program marked `// moe-main-ids` declares
 * `fn main(wid: vec3<u32>, sid: u32, lane: u32)` and gets workgroup_id, subgroup_id and
 * subgroup_invocation_id as arguments: uniform where they are, so subgroup-matrix offsets may derive from them.
 * One that declares `fn main(wid: vec3<u32>, sid: u32, lane: u32, li: u32, nwg: vec3<u32>)` also gets
 * local_invocation_index and num_workgroups, so that a tile found from the launch grid by every invocation is
 * uniform too (no workgroup variable and barrier to share it).
 */
import {engine, env, registerBackend, removeBackend} from '@tensorflow/tfjs-core';
import {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {SubgroupMatrixConfig, markShaderRewritingDevice, markSubgroupDevice} from './capabilities';

// @webgpu/types 0.1.38 predates these features' names.
const SUBGROUPS = 'subgroups' as GPUFeatureName;
const SHADER_F16 = 'shader-f16' as GPUFeatureName;
const SUBGROUP_MATRIX = 'chromium-experimental-subgroup-matrix' as GPUFeatureName;

/** GPUAdapterInfo's subgroup sizes (Chrome 131+, Dawn), newer than @webgpu/types 0.1.38. */
interface SubgroupSizes {
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
}

/**
 * Moves WGSL global directives (`enable ...;`, `requires ...;`, `diagnostic(...);`) to the start of the
 * module, once each.
 */
export function hoistDirectives(code: string): string {
  const directives: string[] = [];
  const body = code.replace(/^[ \t]*(?:(?:enable|requires)[ \t][^;\n]*|diagnostic[ \t]*\([^;\n]*\));[ \t]*$/gm, (directive) => {
    directives.push(directive.trim());
    return '';
  });
  if (directives.length === 0) return code;
  return `${[...new Set(directives)].join('\n')}\n${body}`;
}

/** Elements of a 512-byte block, by element type. */
const BLOCK_ELEMENTS = {f16: 256, i32: 128};

/**
 * Rewrites the declaration of every binding marked `// moe-storage-f16 NAME` to `array<f16>`, and of every one
 * marked `// moe-storage-f16-blocks NAME` or `// moe-storage-i32-blocks NAME` to an array of 512-byte blocks
 * without its tfjs getters (see above). Code without markers is returned unchanged.
 */
export function declareStorageElements(code: string): string {
  const marked = [...code.matchAll(/^[ \t]*\/\/ moe-storage-(f16|i32-blocks|f16-blocks) ([A-Za-z_][A-Za-z0-9_]*)[ \t]*$/gm)];
  let out = code;
  for (const [, kind, name] of new Map(marked.map((m) => [m[2], m])).values()) {
    const [type, blocks] = kind.split('-') as ['f16' | 'i32', string | undefined];
    const decl = new RegExp(`(var<storage,\\s*read>\\s+${name}\\s*:\\s*array<)[^;]*>;`);
    if (!decl.test(out)) {
      throw new Error(`declareStorageElements: no 'var<storage, read> ${name}: array<...>;' declaration in the shader ` +
          '(has tfjs-backend-webgpu changed how it declares inputs?)');
    }
    out = out.replace(decl, blocks ? `$1array<${type}, ${BLOCK_ELEMENTS[type]}>>;` : '$1f16>;');
    if (blocks) out = dropGetters(out, name);
  }
  return out;
}

/** Removes the functions `fn getName...(...) {...}` whose bodies index `name[` (tfjs's per-input getters). */
function dropGetters(code: string, name: string): string {
  const head = new RegExp(`fn get${name[0].toUpperCase()}${name.slice(1)}\\w*\\s*\\(`, 'g');
  let out = code;
  for (let m = head.exec(out); m != null; m = head.exec(out)) {
    let end = out.indexOf('{', m.index);
    for (let depth = 0; end < out.length; end++) {
      if (out[end] === '{') depth++;
      else if (out[end] === '}' && --depth === 0) break;
    }
    if (!out.slice(m.index, end).includes(`${name}[`)) continue;
    out = out.slice(0, m.index) + out.slice(end + 1);
    head.lastIndex = m.index;
  }
  return out;
}

/**
 * Rewrites the declaration of every input marked `// moe-storage-rw NAME` from `read` to `read_write`
 * (see above). Code without markers is returned unchanged.
 */
export function declareWritableStorage(code: string): string {
  const names = [...code.matchAll(/^[ \t]*\/\/ moe-storage-rw ([A-Za-z_][A-Za-z0-9_]*)[ \t]*$/gm)].map((m) => m[1]);
  let out = code;
  for (const name of new Set(names)) {
    const decl = new RegExp(`var<storage,\\s*read>(\\s+${name}\\s*:)`);
    if (!decl.test(out)) {
      throw new Error(`declareWritableStorage: no 'var<storage, read> ${name}: ...;' declaration in the shader ` +
          '(has tfjs-backend-webgpu changed how it declares inputs?)');
    }
    out = out.replace(decl, 'var<storage, read_write>$1');
  }
  return out;
}

/** Passes workgroup and subgroup ids to main() in programs marked `// moe-main-ids` (see above). */
export function passMainIds(code: string): string {
  if (!/^[ \t]*\/\/ moe-main-ids[ \t]*$/m.test(code)) return code;
  // Five parameters, by their types (an emulation may rename them): the ids, local_invocation_index, num_workgroups.
  const allIds = /\bfn main\(\s*\w+\s*:\s*vec3<u32>\s*,(?:\s*\w+\s*:\s*u32\s*,){3}\s*\w+\s*:\s*vec3<u32>\s*\)/.test(code);
  const params = /(@builtin\(num_workgroups\)\s*NumWorkgroups\s*:\s*vec3<u32>)\s*\)\s*\{/;
  const call = /\bmain\(\);/;
  if (!params.test(code) || !call.test(code)) {
    throw new Error('passMainIds: tfjs\'s entry point (its num_workgroups parameter and the main(); call) was not ' +
        'found (has tfjs-backend-webgpu changed its shader header?)');
  }
  return code.replace(params, '$1, @builtin(subgroup_id) SubgroupId : u32, ' +
      '@builtin(subgroup_invocation_id) SubgroupInvocationId : u32) {')
    .replace(call, `main(WorkgroupId, SubgroupId, SubgroupInvocationId${allIds ? ', LocalIndex, NumWorkgroups' : ''});`);
}

/** Every rewrite above, in the order the device made here applies them to each shader it compiles. */
export function rewriteShader(code: string): string {
  return hoistDirectives(passMainIds(declareWritableStorage(declareStorageElements(code))));
}

/** Creates a WebGPUBackend as tfjs's own factory does, adding the 'subgroups' feature when offered. */
export async function createWebGPUBackend(): Promise<WebGPUBackend> {
  if (typeof navigator === 'undefined' || navigator.gpu == null) {
    throw new Error('createWebGPUBackend: WebGPU is not available (navigator.gpu is undefined)');
  }
  const adapter = await navigator.gpu.requestAdapter(
      {powerPreference: env().getBool('WEBGPU_USE_LOW_POWER_GPU') ? 'low-power' : 'high-performance'});
  if (adapter == null) throw new Error('createWebGPUBackend: navigator.gpu.requestAdapter() found no adapter');

  // shader-f16 and subgroup matrices feed the tensor-core prefill GEMM (Dawn offers them behind toggles).
  const wanted: GPUFeatureName[] = ['timestamp-query', 'bgra8unorm-storage', SUBGROUPS, SHADER_F16, SUBGROUP_MATRIX];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      // WebGPU's default is 8: a shard with a zero tensor, act-order gIdx and biases needs 9 in one program,
      // and the decode GEMVs bind every shard at once where they fit (one dispatch instead of one per shard).
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  });
  const info = adapter.info;
  const createShaderModule = device.createShaderModule.bind(device);
  device.createShaderModule = (descriptor: GPUShaderModuleDescriptor) => createShaderModule(
      {...descriptor, code: rewriteShader(descriptor.code)});
  markShaderRewritingDevice(device);
  if (device.features.has(SUBGROUPS)) {
    const sizes = info as GPUAdapterInfo & SubgroupSizes;
    markSubgroupDevice(device, sizes.subgroupMinSize ?? 0, sizes.subgroupMaxSize ?? 0,
        device.features.has(SHADER_F16), device.features.has(SUBGROUP_MATRIX) ?
          // Dawn's config objects keep their fields on the prototype: copy them into plain data.
          ((info as GPUAdapterInfo & {subgroupMatrixConfigs?: SubgroupMatrixConfig[]}).subgroupMatrixConfigs ?? [])
            .map((c) => ({componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N,
              K: c.K})) : []);
  }
  return new WebGPUBackend(device, info);
}

/**
 * Replaces tfjs-backend-webgpu's factory for 'webgpu' with `createWebGPUBackend`, through tfjs's
 * public registry. Returns false (and changes nothing) where WebGPU is absent or a 'webgpu'
 * backend is already running: its device cannot gain a feature after the fact.
 * tfjs-fused-moe/webgpu calls this when imported.
 */
export function registerWebGPUBackendWithSubgroups(priority = 3): boolean {
  if (typeof navigator === 'undefined' || navigator.gpu == null) return false;
  // `engine().registry` holds started backends (tf.findBackend would start one).
  if ('webgpu' in engine().registry || engine().backendName === 'webgpu') return false;
  try {
    removeBackend('webgpu');
  } catch {
    // Not registered yet (tfjs-backend-webgpu found no navigator.gpu when it loaded): nothing to replace.
  }
  return registerBackend('webgpu', createWebGPUBackend, priority);
}

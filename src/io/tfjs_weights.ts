/**
 * Weights from the tfjs converter's format: a model.json whose `weightsManifest` lists groups of
 * shards (`group1-shard1of2.bin`, ...) and the weights packed in them, in order. Decoding (including
 * the converter's uint8/uint16/float16 quantization) is tfjs-core's own `io.decodeWeights`.
 *
 *   model.json {weightsManifest: [{paths: [shard, ...], weights: [{name, shape, dtype, quantization?}, ...]}]}
 *     → each group's shards, concatenated → io.decodeWeights → Map name → Tensor
 */
import {Tensor, dispose, io, tidy} from '@tensorflow/tfjs-core';
import {FetchBytesOptions, fetchBytes} from './fetch_bytes';

const BYTES_PER_DTYPE: Record<string, number> = {float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2};

/** Bytes a manifest entry occupies in its shard, or null when it cannot be known (strings). */
function entryBytes(w: io.WeightsManifestEntry): number | null {
  const size = w.shape.reduce((a, b) => a * b, 1);
  const dtype = w.quantization?.dtype ?? w.dtype;
  const per = BYTES_PER_DTYPE[dtype];
  return per == null ? null : size * per;
}

/**
 * Checks a manifest's structure before anything is fetched or decoded: an array of groups, each with string
 * `paths` and `weights` entries {name, shape, dtype}, every name once (io.decodeWeights returns an object, so
 * a repeated name would silently keep one tensor and leak the other).
 */
function checkManifest(manifest: unknown, fail: (why: string) => never): io.WeightsManifestConfig {
  if (!Array.isArray(manifest)) return fail(`'weightsManifest' must be an array of {paths, weights} groups`);
  const names = new Map<string, number>();
  manifest.forEach((group: unknown, g) => {
    const {paths, weights} = (group !== null && typeof group === 'object' ? group : {}) as
        {paths?: unknown; weights?: unknown};
    if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string')) {
      fail(`group ${g} of 'weightsManifest' must have 'paths', an array of shard file names, but has ` +
          `${JSON.stringify(paths)}`);
    }
    if (!Array.isArray(weights)) {
      fail(`group ${g} of 'weightsManifest' must have 'weights', an array of {name, shape, dtype}, but has ` +
          `${JSON.stringify(weights)}`);
    }
    (weights as unknown[]).forEach((w, i) => {
      const {name, shape, dtype} = (w !== null && typeof w === 'object' ? w : {}) as
          {name?: unknown; shape?: unknown; dtype?: unknown};
      if (typeof name !== 'string' || typeof dtype !== 'string' || !Array.isArray(shape) ||
          !shape.every((d) => Number.isInteger(d) && d >= 0)) {
        fail(`group ${g} weight ${i} must be {name, shape: [non-negative integers], dtype} but is ${JSON.stringify(w)}`);
      }
      const first = names.get(name as string);
      if (first != null) {
        fail(`weight '${name}' appears twice in the manifest (group ${first}${first === g ? ', twice' : ` and group ${g}`})`);
      }
      names.set(name as string, g);
    });
  });
  return manifest as io.WeightsManifestConfig;
}

/** Decodes shards already in memory: `shards[g]` holds group g's shard buffers, in the manifest's order. */
export function decodeTfjsWeights(manifest: io.WeightsManifestConfig, shards: ArrayBuffer[][]): Map<string, Tensor> {
  const fail = (why: string): never => { throw new Error(`decodeTfjsWeights: ${why}`); };
  checkManifest(manifest, fail);
  if (!Array.isArray(shards) || shards.length !== manifest.length) {
    fail(`the manifest has ${manifest.length} groups but ${Array.isArray(shards) ? shards.length : String(shards)} ` +
        `were given`);
  }
  const out = new Map<string, Tensor>();
  try {
    manifest.forEach((group, g) => {
      if (!Array.isArray(shards[g]) || shards[g].length !== group.paths.length) {
        fail(`group ${g} lists ${group.paths.length} shards (${group.paths.join(', ')}) but ` +
            `${Array.isArray(shards[g]) ? shards[g].length : 'none'} were given`);
      }
      const data = io.concatenateArrayBuffers(shards[g]);
      let expected = 0;
      for (const w of group.weights) {
        const n = entryBytes(w);
        expected = n == null || expected < 0 ? -1 : expected + n;
      }
      if (expected >= 0 && data.byteLength < expected) {
        fail(`group ${g} (${group.paths.join(', ')}) holds ${data.byteLength} bytes but its weights need ${expected}: ` +
            `a shard is truncated or missing`);
      }
      // Names are unique (checkManifest), so every decoded tensor lands in `out` and is freed on failure; tidy
      // frees a group's tensors if decodeWeights throws part-way.
      for (const [name, t] of Object.entries(tidy(() => io.decodeWeights(data, group.weights)))) out.set(name, t);
    });
  } catch (e) {
    dispose([...out.values()]);
    throw e;
  }
  return out;
}

export interface LoadTfjsWeightsOptions extends FetchBytesOptions {
  /**
   * Let a local model.json name shards outside its own directory (absolute paths, `..`, file:// or http(s)
   * URLs). Off by default, so a model.json from elsewhere cannot make Node read other local files.
   */
  allowPathsOutsideManifestDir?: boolean;
}

interface NodePath {
  resolve(...parts: string[]): string;
  dirname(p: string): string;
  relative(from: string, to: string): string;
  isAbsolute(p: string): boolean;
}

function nodePathModules(): {path: NodePath; url: typeof import('url')} | null {
  const proc = (globalThis as {process?: {versions?: {node?: string}; getBuiltinModule?: (n: string) => unknown}}).process;
  if (!proc?.versions?.node || typeof proc.getBuiltinModule !== 'function') return null;
  return {path: proc.getBuiltinModule('path') as NodePath, url: proc.getBuiltinModule('url') as typeof import('url')};
}

const hasScheme = (s: string) => /^[a-z][a-z0-9+.-]*:/i.test(s);

/**
 * Where a shard named in a manifest is read from, refusing what the manifest may not name:
 *   - a remote model.json (http(s), or any URL in a browser): the shard resolved against it as a URL, at the
 *     manifest's own origin only (as tfjs's http handler, which only ever prefixes the manifest's directory);
 *   - a local model.json (a path or file:// URL in Node): a file inside the manifest's own directory, unless
 *     `allowOutside`.
 */
function resolveShard(modelJson: string, shard: string, allowOutside: boolean): string {
  const refuse = (resolved: string, rule: string): never => {
    throw new Error(`loadTfjsWeights: shard '${shard}' of '${modelJson}' resolves to '${resolved}', ${rule}`);
  };
  const node = nodePathModules();
  const local = node != null && !/^(https?|blob|data):/i.test(modelJson);
  if (!local) {
    const base = (globalThis as {location?: {href?: string}}).location?.href;
    let manifestUrl: URL, url: URL;
    try {
      manifestUrl = new URL(modelJson, base);
      url = new URL(shard, manifestUrl);
    } catch (e) {
      return refuse(shard, `which is no URL relative to the manifest (${(e as Error).message})`);
    }
    if (url.origin !== manifestUrl.origin || url.origin === 'null') {
      refuse(url.toString(), `outside the manifest's origin ${manifestUrl.origin}: a remote model.json may only ` +
          `name shards at its own origin`);
    }
    return url.toString();
  }
  const {path, url} = node!;
  const manifestPath = /^file:/i.test(modelJson) ? url.fileURLToPath(modelJson) : modelJson;
  const dir = path.dirname(path.resolve(manifestPath));
  if (allowOutside) {
    if (hasScheme(shard) && !/^[a-z]:[\\/]/i.test(shard)) return shard;   // a URL (not a Windows drive path)
    return path.resolve(dir, shard);
  }
  if (hasScheme(shard) && !/^[a-z]:[\\/]/i.test(shard)) {
    refuse(shard, `a URL, outside the manifest's directory ${dir}: a local model.json may only name files inside ` +
        `its own directory (pass allowPathsOutsideManifestDir: true to allow it)`);
  }
  const resolved = path.resolve(dir, shard);
  const rel = path.relative(dir, resolved);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    refuse(resolved, `outside the manifest's directory ${dir}: a local model.json may only name files inside its ` +
        `own directory (pass allowPathsOutsideManifestDir: true to allow it)`);
  }
  return resolved;
}

/**
 * Loads the weights of a tfjs converter model (model.json + shards) by path (Node) or URL, with
 * `onProgress(loadedBytes, totalBytes)` over all shards. Shards are read from the manifest's own directory
 * (local) or origin (remote) only; see `allowPathsOutsideManifestDir`.
 *
 * ```js
 * const weights = await loadTfjsWeights('https://example.com/moe/model.json');
 * moe.loadWeights(weights, {prefix: 'model.layers.0.mlp'});
 * ```
 */
export async function loadTfjsWeights(modelJsonPathOrUrl: string | URL, o: LoadTfjsWeightsOptions = {}):
    Promise<Map<string, Tensor>> {
  const modelJson = modelJsonPathOrUrl.toString();
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(await fetchBytes(modelJson, {fetchFunc: o.fetchFunc})));
  } catch (e) {
    throw new Error(`loadTfjsWeights: cannot read '${modelJson}' as JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error(`loadTfjsWeights: '${modelJson}' must hold a JSON object with a 'weightsManifest' but holds ` +
        `${json === null ? 'null' : Array.isArray(json) ? 'an array' : `a ${typeof json}`}`);
  }
  const manifest = checkManifest((json as {weightsManifest?: unknown}).weightsManifest, (why) => {
    throw new Error(`loadTfjsWeights: '${modelJson}': ${why}`);
  });
  // Every shard's location is checked before any is read.
  const locations = manifest.map((group) =>
    group.paths.map((p) => resolveShard(modelJson, p, !!o.allowPathsOutsideManifestDir)));
  let total: number | null = 0;
  for (const group of manifest) {
    for (const w of group.weights) {
      const n = entryBytes(w);
      total = n == null || total == null ? null : total + n;
    }
  }
  let done = 0;
  const shards: ArrayBuffer[][] = [];
  for (const group of locations) {
    const buffers: ArrayBuffer[] = [];
    for (const location of group) {
      const bytes = await fetchBytes(location, {
        fetchFunc: o.fetchFunc, onProgress: (loaded) => o.onProgress?.(done + loaded, total),
      });
      done += bytes.byteLength;
      buffers.push(bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ?
        bytes.buffer as ArrayBuffer : bytes.slice().buffer);
    }
    shards.push(buffers);
  }
  try {
    return decodeTfjsWeights(manifest, shards);
  } catch (e) {
    throw new Error(`${(e as Error).message} (model '${modelJson}')`);
  }
}

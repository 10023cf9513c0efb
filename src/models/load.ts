/**
 * A Hugging Face model folder or URL → a CausalLM: config.json, then either model.safetensors.index.json
 * and its shards or a single model.safetensors, read with the package's fetchBytes / readSafetensors
 * (files on disk in Node, fetch elsewhere).
 */
import {Tensor} from '@tensorflow/tfjs-core';
import {fetchBytes} from '../io/fetch_bytes';
import {readSafetensors} from '../io/safetensors';
import {CheckpointTensor} from '../io/packed_tensor';
import {CausalLM} from './causal_lm';
import {parseCausalLMConfig} from './config';

export interface LoadProgress {
  /** The file being read, relative to the folder. */
  file: string;
  /** Its place among the weight files (config and index count as 0 of fileCount). */
  fileIndex: number;
  fileCount: number;
  loadedBytes: number;
  /** The file's size, or null when the server does not say. */
  totalBytes: number | null;
}

export interface LoadCausalLMOptions {
  onProgress?: (p: LoadProgress) => void;
  /** The fetch to use for URLs (default: globalThis.fetch). */
  fetchFunc?: typeof fetch;
}

const INDEX = 'model.safetensors.index.json';
const SINGLE = 'model.safetensors';

/** `name` inside the folder `base` (a path, or an absolute or relative URL). */
function inFolder(base: string, name: string): string {
  return `${base.replace(/\/+$/, '')}/${name}`;
}

/**
 * Loads a Qwen3-MoE or Mixtral causal LM from a Hugging Face folder (a path in Node) or URL.
 *
 * ```js
 * const lm = await loadCausalLM('https://huggingface.co/<org>/<model>/resolve/main',
 *     {onProgress: (p) => console.log(p.file, p.loadedBytes, p.totalBytes)});
 * const newIds = await lm.generate(promptIds, {maxNewTokens: 32});
 * lm.dispose();
 * ```
 */
export async function loadCausalLM(folderOrUrl: string | URL, options: LoadCausalLMOptions = {}): Promise<CausalLM> {
  if (folderOrUrl == null || (typeof folderOrUrl !== 'string' && !(folderOrUrl instanceof URL)) ||
      folderOrUrl.toString() === '') {
    throw new Error(`loadCausalLM: 'folderOrUrl' must be a folder path or URL but got ${String(folderOrUrl)}`);
  }
  if (options.onProgress != null && typeof options.onProgress !== 'function') {
    throw new Error(`loadCausalLM: 'onProgress' must be a function but got ${String(options.onProgress)}`);
  }
  const base = folderOrUrl.toString();
  const read = (file: string, fileIndex: number, fileCount: number) => fetchBytes(inFolder(base, file), {
    fetchFunc: options.fetchFunc,
    onProgress: options.onProgress &&
      ((loadedBytes, totalBytes) => options.onProgress!({file, fileIndex, fileCount, loadedBytes, totalBytes})),
  });
  const json = async (file: string) => {
    const text = new TextDecoder().decode(await read(file, 0, 0));
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new Error(`loadCausalLM: '${inFolder(base, file)}' is not valid JSON (${(e as Error).message})`);
    }
  };
  const config = parseCausalLMConfig(await json('config.json'));
  const files = await weightFiles(base, json);

  const checkpoint = new Map<string, CheckpointTensor>();
  let lm: CausalLM | null = null;
  try {
    for (const [i, file] of files.entries()) {
      let bytes: Uint8Array;
      try {
        bytes = await read(file, i + 1, files.length);
      } catch (e) {
        if (file !== SINGLE) throw e;
        throw new Error(`loadCausalLM: '${base}' has neither ${INDEX} nor a readable ${SINGLE}: ${(e as Error).message}`);
      }
      let tensors: Map<string, CheckpointTensor>;
      try {
        tensors = readSafetensors(bytes);
      } catch (e) {
        throw new Error(`${(e as Error).message} (in '${inFolder(base, file)}')`);
      }
      for (const [k, t] of tensors) {
        checkpoint.get(k)?.dispose();
        checkpoint.set(k, t);
      }
    }
    lm = new CausalLM(config);
    lm.loadWeights(checkpoint);
    return lm;
  } catch (e) {
    lm?.dispose();
    throw e;
  } finally {
    for (const t of checkpoint.values()) t.dispose();
  }
}

/** The shard files the index names (in order of first use), or the single model.safetensors. */
async function weightFiles(base: string, json: (file: string) => Promise<unknown>): Promise<string[]> {
  let index: unknown;
  try {
    index = await json(INDEX);
  } catch (indexError) {
    // No index: a single-file checkpoint, whose absence is then the error to report.
    if (/not valid JSON/.test((indexError as Error).message)) throw indexError;
    return [SINGLE];
  }
  const map = (index as {weight_map?: unknown})?.weight_map;
  if (map == null || typeof map !== 'object' || Object.values(map).some((f) => typeof f !== 'string')) {
    throw new Error(`loadCausalLM: '${inFolder(base, INDEX)}' must have a 'weight_map' of tensor name → shard file`);
  }
  return [...new Set(Object.values(map as Record<string, string>))];
}

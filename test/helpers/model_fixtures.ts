/**
 * The tiny causal-LM fixtures (test/fixtures/models/<name>/, copied from the shared set): a Hugging Face
 * folder written by transformers' save_pretrained, plus what transformers computed with it
 * (expected.json: prompt and greedy ids; expected.safetensors: prompt and full-sequence logits).
 * In Node the folder is a path; under karma it is served at /base/test/fixtures/models/<name>.
 */
import {parseSafetensors} from '../../src/io/safetensors';

export const MODEL_FIXTURES = ['qwen3moe-tiny', 'mixtral-tiny-sharded'] as const;

export interface ModelExpected {
  promptIds: number[];
  newTokens: number[];
  fullSequenceIds: number[];
  /** [1, prompt, V] and [1, prompt + new, V]. */
  logits: {values: Float32Array; shape: number[]};
  fullSequenceLogits: {values: Float32Array; shape: number[]};
}

declare const __karma__: unknown;

/** Where loadCausalLM finds the fixture folder. */
export function modelFixtureDir(name: string): string {
  if (typeof __karma__ !== 'undefined') return `/base/test/fixtures/models/${name}`;
  const path = require('path') as typeof import('path');
  return path.join(__dirname, '..', 'fixtures', 'models', name);
}

async function readFixtureFile(name: string, file: string): Promise<Uint8Array> {
  if (typeof __karma__ !== 'undefined') {
    const res = await fetch(`${modelFixtureDir(name)}/${file}`);
    if (!res.ok) throw new Error(`model fixture ${name}/${file}: HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  }
  const fs = require('fs') as typeof import('fs');
  const path = require('path') as typeof import('path');
  return new Uint8Array(fs.readFileSync(path.join(modelFixtureDir(name), file)));
}

export async function readModelFixtureJson(name: string, file: string): Promise<Record<string, unknown>> {
  return JSON.parse(new TextDecoder().decode(await readFixtureFile(name, file)));
}

export async function loadModelExpected(name: string): Promise<ModelExpected> {
  const json = await readModelFixtureJson(name, 'expected.json') as {prompt_ids: number[]; new_tokens: number[];
    full_sequence_ids: number[]};
  const {entries} = parseSafetensors(await readFixtureFile(name, 'expected.safetensors'));
  const get = (key: string) => {
    const e = entries.get(key);
    if (!e) throw new Error(`model fixture ${name}: expected.safetensors has no '${key}'`);
    return {values: e.values as Float32Array, shape: e.shape};
  };
  return {promptIds: json.prompt_ids, newTokens: json.new_tokens, fullSequenceIds: json.full_sequence_ids,
    logits: get('logits'), fullSequenceLogits: get('full_sequence_logits')};
}

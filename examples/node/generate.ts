/**
 * Text generation with `tfjs-fused-moe/models`: load a Qwen3-MoE or Mixtral folder (or URL), then
 * stream new token ids. The model works on token ids; a tokenizer turns text into ids and back.
 *
 *   npx tsx examples/node/generate.ts test/fixtures/models/qwen3moe-tiny        # ids only (tiny random model)
 *   npx tsx examples/node/generate.ts <folder> --tokenizer <hub id or folder> --prompt "Hello"
 *
 * With --tokenizer, the tokenizer of `@huggingface/transformers` is used. It is not a dependency of
 * this package: `npm i @huggingface/transformers` to try it. Without it the prompt is given as ids
 * (`--ids 1,2,3`) and the output printed as ids.
 */
import * as tf from '@tensorflow/tfjs-core';
// A named import so that bundlers keep tfjs-backend-cpu's registration (see demo.ts).
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import {loadCausalLM} from '../../src/models';

/** The part of transformers.js' tokenizer we use. */
interface Tokenizer {
  encode(text: string): number[];
  decode(ids: number[], options?: {skip_special_tokens?: boolean}): string;
}

async function loadTokenizer(name: string): Promise<Tokenizer> {
  // A real import() at run time: the package is optional (never resolved at build time), and it is
  // ES-module only, while tsc's CommonJS output would turn a plain import() into require().
  const importModule = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<unknown>;
  let transformers: {AutoTokenizer: {from_pretrained(name: string): Promise<Tokenizer>}};
  try {
    transformers = await importModule('@huggingface/transformers') as typeof transformers;
  } catch {
    throw new Error(`--tokenizer needs @huggingface/transformers: npm i @huggingface/transformers`);
  }
  return transformers.AutoTokenizer.from_pretrained(name);
}

function arg(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const folder = argv[0];
  if (!folder || folder.startsWith('--')) {
    console.log('usage: generate.ts <model folder or URL> [--tokenizer NAME --prompt TEXT | --ids 1,2,3] ' +
        '[--max-new-tokens N] [--temperature T --top-p P --seed S]');
    process.exit(1);
  }
  await tf.setBackend('cpu');
  console.log(`tfjs ${tf.version_core}, backend cpu ${version_cpu}`);
  const tokenizerName = arg(argv, '--tokenizer');
  const tokenizer = tokenizerName ? await loadTokenizer(tokenizerName) : null;

  const lm = await loadCausalLM(folder, {onProgress: (p) => {
    if (p.totalBytes != null && p.loadedBytes === p.totalBytes) console.log(`read ${p.file} (${p.totalBytes} bytes)`);
  }});
  console.log(`${lm.config.modelType}: ${lm.config.numHiddenLayers} layers, ${lm.config.numExperts} experts, ` +
      `top-${lm.config.numExpertsPerTok}, vocab ${lm.config.vocabSize}`);

  const promptIds = tokenizer ? tokenizer.encode(arg(argv, '--prompt') ?? 'Hello') :
    (arg(argv, '--ids') ?? '1,2,3').split(',').map(Number);
  const temperature = arg(argv, '--temperature');
  const newIds: number[] = [];
  await lm.generate(promptIds, {
    maxNewTokens: Number(arg(argv, '--max-new-tokens') ?? 24),
    ...(temperature ? {temperature: Number(temperature), topP: Number(arg(argv, '--top-p') ?? 1),
      seed: Number(arg(argv, '--seed') ?? 0)} : {}),
    onToken: (id, {index, ms}) => {
      newIds.push(id);
      // Decoding the whole tail each time keeps multi-token characters intact.
      const text = tokenizer ? JSON.stringify(tokenizer.decode(newIds, {skip_special_tokens: true})) : '';
      console.log(`${index === 0 ? 'prefill+1' : `token ${index + 1}`}: id ${id} in ${ms.toFixed(1)} ms ${text}`);
    },
  });
  lm.dispose();
  console.log(`new ids: ${newIds.join(', ')}; tensors left: ${tf.memory().numTensors}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

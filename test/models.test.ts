/**
 * tfjs-fused-moe/models against transformers: the tiny Qwen3-MoE and (sharded) Mixtral fixtures loaded
 * from their Hugging Face folders, on every backend under test. Expected numbers are transformers'
 * (prompt logits, full-sequence logits, 24 greedy tokens), never this code's.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {expect} from 'chai';
import {CausalLM, loadCausalLM, parseCausalLMConfig} from '../src/models';
import {readSafetensors} from '../src/io/safetensors';
import type {CheckpointTensor} from '../src/io/packed_tensor';
import {expectClose} from './helpers/compare';
import {describeBackends, expectNoLeaks, saveArtifacts} from './helpers/env';
import {MODEL_FIXTURES, ModelExpected, loadModelExpected, modelFixtureDir, readModelFixtureJson}
  from './helpers/model_fixtures';

/**
 * Leak check length: 100 tokens (two KV blocks) where a step is cheap; on webgpu (SwiftShader in CI,
 * about 0.6 s per FusedMoE call even at these tiny shapes) 6, enough for a per-step leak to show.
 */
const LEAK_STEPS: Record<string, number> = {cpu: 100, tensorflow: 100, webgpu: 6};

declare const __karma__: unknown;
const IN_NODE = typeof __karma__ === 'undefined';

const ids2d = (ids: number[]) => tf.tensor2d([ids], [1, ids.length], 'int32');

async function logitsOf(run: () => Promise<tf.Tensor> | tf.Tensor): Promise<Float32Array> {
  const t = await run();
  try {
    return await t.data() as Float32Array;
  } finally {
    t.dispose();
  }
}

describeBackends('causal LMs match transformers', (backend) => {
  for (const name of MODEL_FIXTURES) {
    describe(name, () => {
      let lm: CausalLM;
      let expected: ModelExpected;
      const progress: Array<{file: string; loadedBytes: number; totalBytes: number | null}> = [];

      before(async () => {
        expected = await loadModelExpected(name);
        lm = await loadCausalLM(modelFixtureDir(name), {onProgress: (p) => progress.push(p)});
      });
      after(() => lm?.dispose());

      it('reports loading progress for every weight file, ending at its size where known', async () => {
        const index = name.includes('sharded') ?
          await readModelFixtureJson(name, 'model.safetensors.index.json') as {weight_map: Record<string, string>} : null;
        const files = index ? [...new Set(Object.values(index.weight_map))] : ['model.safetensors'];
        for (const file of files) {
          const last = progress.filter((p) => p.file === file).pop();
          expect(last, `progress of ${file}`).to.not.equal(undefined);
          expect(last!.loadedBytes).to.be.greaterThan(0);
          // null where the server does not say (karma's sends no content-length).
          if (last!.totalBytes != null) expect(last!.loadedBytes).to.equal(last!.totalBytes);
        }
      });

      it('prompt logits [1, T, V] within 1e-4·max|logit| + 1e-5 of transformers\'', async () => {
        const ids = ids2d(expected.promptIds);
        const logits = await lm.forward(ids);
        expect(logits.shape).to.deep.equal(expected.logits.shape);
        expect(logits.dtype).to.equal('float32');
        expectClose(await logitsOf(() => logits), expected.logits.values, `${name} prompt logits`);
        ids.dispose();
      });

      it('greedy generation gives transformers\' 24 new tokens, streamed through onToken', async () => {
        const streamed: number[] = [];
        const out = await lm.generate(expected.promptIds, {maxNewTokens: expected.newTokens.length,
          onToken: (id, info) => {
            expect(info.index).to.equal(streamed.length);
            expect(info.ms).to.be.at.least(0);
            streamed.push(id);
          }});
        expect(out).to.deep.equal(expected.newTokens);
        expect(streamed).to.deep.equal(expected.newTokens);
      });

      it('incremental decode with a KV cache gives the full-sequence logits', async () => {
        const full = expected.fullSequenceLogits;
        const P = expected.promptIds.length, total = expected.fullSequenceIds.length;
        const cache = lm.createCache();
        const got = new Float32Array(full.values.length);
        const V = full.shape[2];
        try {
          const prompt = ids2d(expected.promptIds);
          got.set(await logitsOf(() => lm.forward(prompt, {cache})), 0);
          prompt.dispose();
          for (let t = P; t < total; t++) {
            const step = ids2d([expected.fullSequenceIds[t]]);
            got.set(await logitsOf(() => lm.forward(step, {cache})), t * V);
            step.dispose();
          }
          expect(cache.length).to.equal(total);
        } finally {
          cache.dispose();
        }
        expectClose(got, full.values, `${name} cached decode vs full_sequence_logits`);
        // And one forward over the whole sequence without a cache.
        const all = ids2d(expected.fullSequenceIds);
        expectClose(await logitsOf(() => lm.forward(all)), full.values, `${name} full forward`);
        all.dispose();
      });

      it('as a tf.LayersModel: transformers\' logits, and identical ones after save / loadLayersModel', async () => {
        const ids = ids2d(expected.promptIds);
        const before = await logitsOf(() => lm.layersModel.predict(ids) as tf.Tensor);
        expectClose(before, expected.logits.values, `${name} LayersModel logits`);
        const artifacts = await saveArtifacts(lm.layersModel);
        const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
        try {
          const moeLayers = loaded.layers.filter((l) => l.getClassName() === 'FusedMoE');
          expect(moeLayers.length).to.equal(lm.config.feedForward.filter((f) => f === 'moe').length);
          const after = await logitsOf(() => loaded.predict(ids) as tf.Tensor);
          expect(Array.from(after)).to.deep.equal(Array.from(before));
        } finally {
          loaded.dispose();
          ids.dispose();
        }
      });

      it(`leaks no tensors over ${LEAK_STEPS[backend] ?? 6} generated tokens`, async () => {
        const steps = LEAK_STEPS[backend] ?? 6;
        const during: number[] = [];
        await expectNoLeaks(async () => {
          const out = await lm.generate(expected.promptIds, {maxNewTokens: steps,
            onToken: () => during.push(tf.memory().numTensors)});
          expect(out.length).to.equal(steps);
        });
        // While decoding, only the KV cache is held: the count is the same after every step.
        expect(new Set(during.slice(1)).size, `tensor counts during decoding: ${during.join(',')}`).to.equal(1);
      });

      // Sampling runs on the host after one logits read-back: one backend covers it.
      if (backend === 'cpu') {
        it('sampling: topK 1 is greedy; a seed repeats its draw', async () => {
          const n = 6;
          expect(await lm.generate(expected.promptIds, {maxNewTokens: n, temperature: 0.7, topK: 1, seed: 3}))
              .to.deep.equal(expected.newTokens.slice(0, n));
          const a = await lm.generate(expected.promptIds, {maxNewTokens: n, temperature: 1.5, topP: 0.9, seed: 11});
          const b = await lm.generate(expected.promptIds, {maxNewTokens: n, temperature: 1.5, topP: 0.9, seed: 11});
          expect(a).to.deep.equal(b);
        });
      }
    });
  }
});

describe('causal LM configs', () => {
  let qwen: Record<string, unknown>;
  let mixtral: Record<string, unknown>;
  before(async () => {
    qwen = await readModelFixtureJson('qwen3moe-tiny', 'config.json');
    mixtral = await readModelFixtureJson('mixtral-tiny-sharded', 'config.json');
  });

  it('reads the fixtures\' layer plan: Qwen3 layer 1 dense (mlp_only_layers), Mixtral all MoE', () => {
    const q = parseCausalLMConfig(qwen);
    expect(q.feedForward).to.deep.equal(['moe', 'dense', 'moe']);
    expect([q.numExperts, q.numExpertsPerTok, q.moeIntermediateSize, q.intermediateSize, q.headDim, q.normTopkProb])
        .to.deep.equal([8, 2, 48, 160, 32, true]);
    const m = parseCausalLMConfig(mixtral);
    expect(m.feedForward).to.deep.equal(['moe', 'moe']);
    expect([m.numExperts, m.headDim, m.ropeTheta, m.normTopkProb]).to.deep.equal([6, 24, 1e6, true]);
  });

  it('reads transformers 4.x names (num_experts, rope_theta, rope_scaling null) as the 5.x ones', () => {
    const {num_local_experts: E, rope_parameters: rope, ...rest} = qwen as {num_local_experts: number;
      rope_parameters: {rope_theta: number}};
    expect(parseCausalLMConfig({...rest, num_experts: E, rope_theta: rope.rope_theta, rope_scaling: null}))
        .to.deep.equal(parseCausalLMConfig(qwen));
  });

  it('decoder_sparse_step 2 makes every second layer sparse', () => {
    expect(parseCausalLMConfig({...qwen, decoder_sparse_step: 2, mlp_only_layers: [], num_hidden_layers: 4}).feedForward)
        .to.deep.equal(['dense', 'moe', 'dense', 'moe']);
  });

  const bad: Array<[string, () => Record<string, unknown>, RegExp]> = [
    ['an unknown model_type', () => ({...qwen, model_type: 'llama'}),
      /'model_type' = "llama" is not supported; supported are qwen3_moe, mixtral/],
    ['YaRN rope_scaling (4.x)', () => ({...qwen, rope_parameters: undefined, rope_scaling: {type: 'yarn', factor: 4}}),
      /'rope_scaling.rope_type' = "yarn" is not supported/],
    ['llama3 rope_parameters (5.x)', () => ({...mixtral, rope_parameters: {rope_type: 'llama3', rope_theta: 1e4}}),
      /'rope_parameters.rope_type' = "llama3" is not supported/],
    ['an active Mixtral sliding window', () => ({...mixtral, sliding_window: 64}),
      /'sliding_window' = 64 is set and active/],
    ['Qwen3 use_sliding_window', () => ({...qwen, use_sliding_window: true, sliding_window: 64}), /'sliding_window'/],
    ['num_experts and num_local_experts that disagree', () => ({...qwen, num_experts: 4}),
      /'num_local_experts' = 8 disagrees with 'num_experts' = 4/],
    ['no expert count', () => ({...qwen, num_local_experts: undefined}), /'num_local_experts' is missing/],
    ['gelu experts', () => ({...mixtral, hidden_act: 'gelu'}), /'hidden_act' = "gelu" is not supported/],
    ['attention bias', () => ({...qwen, attention_bias: true}), /'attention_bias' is true/],
    ['heads that kv heads do not divide', () => ({...qwen, num_key_value_heads: 3}),
      /'num_key_value_heads' = 3 must divide 'num_attention_heads' = 4/],
    ['top-k above the experts', () => ({...qwen, num_experts_per_tok: 9}), /'num_experts_per_tok' = 9 is more than the 8/],
    ['a non-integer vocab_size', () => ({...qwen, vocab_size: 3.5}), /'vocab_size' must be an integer >= 1 but got 3.5/],
  ];
  for (const [what, config, message] of bad) {
    it(`rejects ${what}`, () => expect(() => parseCausalLMConfig(config())).to.throw(message));
  }

  it('accepts an inactive sliding window (Qwen3 without use_sliding_window; Mixtral window ≥ max positions)', () => {
    expect(() => parseCausalLMConfig({...qwen, sliding_window: 64, use_sliding_window: false})).to.not.throw();
    expect(() => parseCausalLMConfig({...mixtral, sliding_window: 256})).to.not.throw();
  });
});

describe('causal LM errors and weights', () => {
  let lm: CausalLM;
  let previousBackend: string;
  // Checks made on the host: the cpu backend covers them (the backends' numbers are tested above).
  before(async () => {
    previousBackend = tf.getBackend();
    await tf.setBackend('cpu');
    lm = await loadCausalLM(modelFixtureDir('qwen3moe-tiny'));
  });
  after(async () => {
    lm?.dispose();
    await tf.setBackend(previousBackend);
  });

  it('forward rejects ids that are not int32 [B, T] in the vocabulary', async () => {
    const cases: Array<[tf.Tensor, RegExp]> = [
      [tf.tensor2d([[1, 2]], [1, 2], 'float32'), /'ids' must be an int32 Tensor \[B, T\] .* but got float32 shape \[1, 2\]/],
      [tf.tensor1d([1, 2], 'int32'), /'ids' must be an int32 Tensor \[B, T\] .* shape \[2\]/],
      [tf.tensor2d([[1, 384]], [1, 2], 'int32'), /'ids' must be in \[0, 383\] \(vocab_size\) but got 384/],
    ];
    for (const [ids, message] of cases) {
      let error: Error | null = null;
      await lm.forward(ids).catch((e) => (error = e));
      expect(error, String(message)).to.be.instanceOf(Error);
      expect(error!.message).to.match(message);
      ids.dispose();
    }
  });

  it('generate rejects bad prompts and options, naming them', async () => {
    const cases: Array<[number[], object, RegExp]> = [
      [[], {maxNewTokens: 1}, /'promptIds' must be a non-empty array/],
      [[1, -1], {maxNewTokens: 1}, /'promptIds' must hold integers in \[0, 383\] but got -1/],
      [[1], {maxNewTokens: -1}, /'maxNewTokens' must be an integer >= 0 but got -1/],
      [[1], {maxNewTokens: 1, temperature: -1}, /'temperature' must be a number >= 0/],
      [[1], {maxNewTokens: 1, temperature: 1, topP: 0}, /'topP' must be in \(0, 1\] but got 0/],
      [[1], {maxNewTokens: 1, temperature: 1, topK: 0}, /'topK' must be an integer >= 1 but got 0/],
      [[1], {maxNewTokens: 1, topK: 5}, /set 'temperature' > 0/],
      [[1], {maxNewTokens: 1, temperature: 1, seed: 0.5}, /'seed' must be an integer/],
    ];
    for (const [prompt, options, message] of cases) {
      await expectNoLeaks(async () => {
        let error: Error | null = null;
        await lm.generate(prompt, options as never).catch((e) => (error = e));
        expect(error, String(message)).to.be.instanceOf(Error);
        expect(error!.message).to.match(message);
      });
    }
  });

  it('stops at a stop token', async () => {
    const {newTokens, promptIds} = await loadModelExpected('qwen3moe-tiny');
    expect(await lm.generate(promptIds, {maxNewTokens: 24, stopTokenIds: [newTokens[3]]}))
        .to.deep.equal(newTokens.slice(0, 4));
  });

  // Needs a folder on disk (Node); the browser reaches the same code path through fetch.
  if (IN_NODE) it('a folder without weights names both files it looked for', async () => {
    const os = require('os') as typeof import('os');
    const fs = require('fs') as typeof import('fs');
    const path = require('path') as typeof import('path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-lm-'));
    try {
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(await readModelFixtureJson('qwen3moe-tiny',
          'config.json')));
      let error: Error | null = null;
      await loadCausalLM(dir).catch((e) => (error = e));
      expect(error!.message).to.match(/has neither model.safetensors.index.json nor a readable model.safetensors/);
    } finally {
      fs.rmSync(dir, {recursive: true, force: true});
    }
  });

  describe('from a checkpoint map', () => {
    let checkpoint: Map<string, CheckpointTensor>;
    let config: Record<string, unknown>;
    before(async () => {
      const fs = IN_NODE ? require('fs') as typeof import('fs') : null;
      const file = `${modelFixtureDir('qwen3moe-tiny')}/model.safetensors`;
      const bytes = fs ? new Uint8Array(fs.readFileSync(file)) : new Uint8Array(await (await fetch(file)).arrayBuffer());
      checkpoint = readSafetensors(bytes);
      config = await readModelFixtureJson('qwen3moe-tiny', 'config.json');
    });
    after(() => checkpoint.forEach((t) => t.dispose()));

    it('missing and mis-shaped tensors are all listed in one error', () => {
      const model = new CausalLM(parseCausalLMConfig(config));
      try {
        const broken = new Map(checkpoint);
        broken.delete('model.norm.weight');
        broken.set('model.layers.0.self_attn.q_proj.weight', checkpoint.get('model.layers.0.self_attn.k_proj.weight')!);
        expect(() => model.loadWeights(broken)).to.throw(new RegExp(`'model.layers.0.self_attn.q_proj.weight' has ` +
            `shape \\[64, 96\\] but the config needs \\[128, 96\\]; 'model.norm.weight' is missing`));
      } finally {
        model.dispose();
      }
    });

    it('tie_word_embeddings: the head is embed_tokens, lm_head.weight not needed', async () => {
      const model = new CausalLM(parseCausalLMConfig({...config, tie_word_embeddings: true}));
      try {
        const untied = new Map(checkpoint);
        untied.delete('lm_head.weight');
        model.loadWeights(untied);
        const head = model.layersModel.getLayer('lm_head').getWeights()[0];
        expect(Array.from(await head.data())).to.deep.equal(
            Array.from(await (checkpoint.get('model.embed_tokens.weight') as tf.Tensor).data()));
      } finally {
        model.dispose();
      }
    });

    it('the constructor wants a parsed config', () => {
      expect(() => new CausalLM(config as never)).to.throw(/'config' must be what parseCausalLMConfig\(config.json\) returns/);
    });

    it('a disposed model says so', async () => {
      const model = new CausalLM(parseCausalLMConfig(config));
      model.dispose();
      let error: Error | null = null;
      await model.generate([1], {maxNewTokens: 1}).catch((e) => (error = e));
      expect(error!.message).to.match(/CausalLM: the model was disposed/);
    });
  });
});

/**
 * Quantized and half-precision checkpoints (test/fixtures/quant, real HF formats with float64 expected
 * outputs): through the ops (readExpertWeights + fusedMoE) and through the layer under TP / EP, the
 * device bytes against the checkpoint's, and the refusals (bad scales, packed shapes, zero points,
 * configs, extras, disposed tensors) that leave the layer unchanged.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {expect} from 'chai';
import {CheckpointTensor, FusedMoE, FusedMoELayerArgs, LoadWeightsOptions, PackedTensor, QuantizationConfig,
  disposeCheckpointTensors, fusedMoE, readExpertWeights, readSafetensors} from '../src';
import {expectClose} from './helpers/compare';
import {describeBackends, expectNoLeaks} from './helpers/env';
import {Fixture, FixtureConfig, entry, fixtureOptions, loadFixture} from './helpers/fixtures';
import {fixtureInputs, ranks} from './layer_helpers';

interface QuantFixtureConfig extends FixtureConfig {
  quantization_config: QuantizationConfig | null;
  weight_bytes_checkpoint: number;
  expert_bias?: boolean;
}

/** Each fixture, and the TP sizes its format can be split by (I = 128: fp8's 128-row blocks refuse tp 2). */
const QUANT_FIXTURES: Array<{name: string; tp2: boolean}> = [
  {name: 'qwen3moe-bf16', tp2: true}, {name: 'deepseekv3-fp8', tp2: false},
  {name: 'qwen2moe-gptq-int4', tp2: true}, {name: 'mixtral-awq-int4', tp2: true},
  {name: 'qwen3moe-ct-w4a16', tp2: true}, {name: 'qwen3moe-ct-w8a16', tp2: true}, {name: 'gptoss-mxfp4', tp2: true},
];

const cfgOf = (fx: Fixture) => fx.config as QuantFixtureConfig;

function quantLayerConfig(fx: Fixture, extra: Partial<FusedMoELayerArgs> = {}): FusedMoELayerArgs {
  const c = cfgOf(fx);
  return {
    numExperts: c.num_experts, topK: c.top_k, hiddenSize: c.hidden_size, intermediateSize: c.intermediate_size,
    renormalize: c.renormalize, useGroupedTopk: c.use_grouped_topk, numExpertGroup: c.num_expert_group,
    topkGroup: c.topk_group, scoringFunc: c.scoring_func, routedScalingFactor: c.routed_scaling_factor,
    activation: c.activation, eScoreCorrectionBias: c.family === 'deepseekv3', quantConfig: c.quantization_config,
    ...extra,
  };
}

function quantLoadOptions(fx: Fixture, extra: Partial<LoadWeightsOptions> = {}): LoadWeightsOptions {
  const c = cfgOf(fx);
  if (c.checkpoint_layout === 'fused_3d') return {prefix: c.checkpoint_prefix, ...extra};
  const [gate, up, down] = c.expert_names;
  return {prefix: c.checkpoint_prefix, ckptGateProjName: gate, ckptUpProjName: up, ckptDownProjName: down, ...extra};
}

/** The expected output a run should match: fp8 with w8a8 (vLLM's default for 'dynamic') has its own. */
function expected(fx: Fixture, useFp8W8A8: boolean): Float32Array {
  return entry(fx, useFp8W8A8 ? 'expected.output_w8a8' : 'expected.output').values as Float32Array;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Runs every rank of tp × ep and sums the partial outputs. */
async function shardedQuantOutput(fx: Fixture, ckpt: Map<string, CheckpointTensor>, tp: number, ep: number,
    extra: Partial<FusedMoELayerArgs> = {}): Promise<Float32Array> {
  const {hidden, logits} = fixtureInputs(fx);
  const c = cfgOf(fx);
  const sum = new Float32Array(c.tokens * c.hidden_size);
  try {
    for (const rank of ranks(tp, ep)) {
      const layer = new FusedMoE(quantLayerConfig(fx, {...rank, ...extra}));
      try {
        layer.loadWeights(ckpt, quantLoadOptions(fx));
        const out = layer.apply([hidden, logits]) as tf.Tensor;
        const v = await out.data();
        for (let i = 0; i < sum.length; i++) sum[i] += v[i];
        out.dispose();
      } finally {
        layer.dispose();
      }
    }
  } finally {
    tf.dispose([hidden, logits]);
  }
  return sum;
}

const layerBytes = (layer: FusedMoE) =>
  layer.weights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1) * 4, 0);

describeBackends('quantized checkpoints', () => {
  for (const {name, tp2} of QUANT_FIXTURES) {
    describe(name, () => {
      let fx: Fixture;
      let ckpt: Map<string, CheckpointTensor>;
      before(async () => {
        fx = await loadFixture(`quant/${name}`);
        ckpt = readSafetensors(fx.bytes);
      });
      after(() => disposeCheckpointTensors(ckpt.values()));

      const w8a8Modes = name.includes('fp8') ? [true, false] : [false];
      for (const useFp8W8A8 of w8a8Modes) {
        const mode = name.includes('fp8') ? (useFp8W8A8 ? ' (useFp8W8A8)' : ' (weights-only)') : '';
        it(`ops: readExpertWeights + fusedMoE match expected.output${useFp8W8A8 ? '_w8a8' : ''}${mode}`, async () => {
          const c = cfgOf(fx);
          await expectNoLeaks(async () => {
            const {w13, w2, owned} = readExpertWeights(ckpt, {numExperts: c.num_experts, hiddenSize: c.hidden_size,
              intermediateSize: c.intermediate_size, quantConfig: c.quantization_config, useFp8W8A8,
              ...quantLoadOptions(fx)});
            const {hidden, logits} = fixtureInputs(fx);
            const bias = ckpt.get(`${c.checkpoint_prefix}.gate.e_score_correction_bias`) as tf.Tensor1D | undefined;
            const out = fusedMoE(hidden, logits, w13, w2, {...fixtureOptions(c), useFp8W8A8,
              eScoreCorrectionBias: bias});
            const got = await out.data();
            const want = expected(fx, useFp8W8A8);
            console.log(`      ${name}${mode} ops: max |diff| ${maxAbsDiff(got, want).toExponential(2)}`);
            expectClose(got, want, `${name} ops`);
            tf.dispose([hidden, logits, out, ...owned]);
          });
        });
      }

      const shardings = [{tp: 1, ep: 1}, {tp: 2, ep: 1}, {tp: 1, ep: 2}, {tp: 2, ep: 2}];
      for (const {tp, ep} of shardings) {
        if (tp > 1 && !tp2) continue;
        it(`layer tp=${tp} × ep=${ep}: the ranks' partial outputs sum to the expected output`, async () => {
          await expectNoLeaks(async () => {
            const sum = await shardedQuantOutput(fx, ckpt, tp, ep);
            const want = expected(fx, name.includes('fp8'));
            console.log(`      ${name} layer tp=${tp} ep=${ep}: max |diff| ${maxAbsDiff(sum, want).toExponential(2)}`);
            expectClose(sum, want, `${name} tp=${tp} ep=${ep}`);
          });
        });
      }
      if (!tp2) {
        it('layer tp=2 is refused: I / tpSize = 64 cuts the 128-row fp8 blocks (vLLM refuses it too)', async () => {
          await expectNoLeaks(() => {
            const layer = new FusedMoE(quantLayerConfig(fx, {tpSize: 2, tpRank: 1}));
            expect(() => layer.loadWeights(ckpt, quantLoadOptions(fx))).to.throw(
                /tpSize 2 splits the intermediate size 128 into 64, which cuts through the 128-row scale blocks .*block \[128, 128\]/);
            layer.dispose();
          });
        });
        it('fp8 weights-only (useFp8W8A8: false) through the layer matches expected.output', async () => {
          await expectNoLeaks(async () => {
            const sum = await shardedQuantOutput(fx, ckpt, 1, 2, {useFp8W8A8: false});
            expectClose(sum, expected(fx, false), `${name} weights-only`);
          });
        });
      }

      it('memory: layer weights ≤ 1.1× the checkpoint\'s expert bytes, and nothing else stays on the device',
          async () => {
            const c = cfgOf(fx);
            const own = readSafetensors(fx.bytes);
            const before = tf.memory().numBytes - [...own.values()].reduce((n, t) =>
              n + (t instanceof PackedTensor ? t.words.size * 4 : t.size * 4), 0);
            const layer = new FusedMoE(quantLayerConfig(fx));
            layer.loadWeights(own, quantLoadOptions(fx));
            disposeCheckpointTensors(own.values());
            const after = tf.memory().numBytes;
            const bytes = layerBytes(layer);
            const ratio = bytes / c.weight_bytes_checkpoint;
            console.log(`      ${name}: layer weights ${bytes} B / checkpoint experts ${c.weight_bytes_checkpoint} B = ` +
                `${ratio.toFixed(3)}; device delta ${after - before} B`);
            expect(ratio).to.be.at.most(1.1);
            // The correction bias, when there is one, is a layer weight too (64 bytes here).
            expect(after - before).to.equal(bytes);
            layer.dispose();
          });

      it('save / load: fromConfig(getConfig()) and model.save round-trip quantConfig, outputs identical', async () => {
        const layer = new FusedMoE(quantLayerConfig(fx));
        layer.loadWeights(ckpt, quantLoadOptions(fx));
        const config = layer.getConfig();
        expect(JSON.parse(config.quantConfig as string)).to.deep.equal(cfgOf(fx).quantization_config);
        const copy = new FusedMoE(config as unknown as FusedMoELayerArgs);
        expect(copy.getConfig()).to.deep.equal(config);
        const c = cfgOf(fx);
        const hiddenIn = tfl.input({shape: [c.hidden_size]}), logitsIn = tfl.input({shape: [c.num_experts]});
        const model = tfl.model({inputs: [hiddenIn, logitsIn], outputs: layer.apply([hiddenIn, logitsIn]) as tfl.SymbolicTensor});
        let artifacts: tf.io.ModelArtifacts | undefined;
        await model.save(tf.io.withSaveHandler(async (a) => {
          artifacts = a;
          return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
        }));
        const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts!));
        const reloaded = loaded.layers.find((l) => l instanceof FusedMoE) as FusedMoE;
        expect(reloaded.getConfig()).to.deep.equal(layer.getConfig());
        const {hidden, logits} = fixtureInputs(fx);
        const a = model.predict([hidden, logits]) as tf.Tensor, b = loaded.predict([hidden, logits]) as tf.Tensor;
        expect(Array.from(await b.data())).to.deep.equal(Array.from(await a.data()));
        tf.dispose([hidden, logits, a, b]);
        model.dispose();
        loaded.dispose();
      });
    });
  }
});

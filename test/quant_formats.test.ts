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
import {describeBackends, expectNoLeaks, saveArtifacts} from './helpers/env';
import {Fixture, FixtureConfig, entry, fixtureOptions, loadFixture} from './helpers/fixtures';
import {fixtureInputs, ranks} from './layer_helpers';

interface QuantFixtureConfig extends FixtureConfig {
  quantization_config: QuantizationConfig | null;
  weight_bytes_checkpoint: number;
  expert_bias?: boolean;
}

/**
 * Each fixture, and whether tp 2 (I / tp = 64) loads or is refused, with the refusal's reason: fp8's 128-row
 * blocks (vLLM refuses it too), act-order's w2 groups. The last two come from make_gptq_extra_fixtures.py.
 */
const QUANT_FIXTURES: Array<{name: string; tp2: true | RegExp}> = [
  {name: 'qwen3moe-bf16', tp2: true},
  {name: 'deepseekv3-fp8', tp2: /tpSize 2 splits the intermediate size 128 into 64, which cuts through the 128-row scale blocks .*block \[128, 128\]/},
  {name: 'qwen2moe-gptq-int4', tp2: true}, {name: 'mixtral-awq-int4', tp2: true},
  {name: 'qwen3moe-ct-w4a16', tp2: true}, {name: 'qwen3moe-ct-w8a16', tp2: true}, {name: 'gptoss-mxfp4', tp2: true},
  {name: 'qwen2moe-gptq-int4-actorder-asym', tp2: /act-order \(desc_act\) checkpoints are loaded with tpSize 1 only/},
  {name: 'qwen2moe-gptq-int8-asym', tp2: true},
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
        if (tp > 1 && tp2 !== true) continue;
        it(`layer tp=${tp} × ep=${ep}: the ranks' partial outputs sum to the expected output`, async () => {
          await expectNoLeaks(async () => {
            const sum = await shardedQuantOutput(fx, ckpt, tp, ep);
            const want = expected(fx, name.includes('fp8'));
            console.log(`      ${name} layer tp=${tp} ep=${ep}: max |diff| ${maxAbsDiff(sum, want).toExponential(2)}`);
            expectClose(sum, want, `${name} tp=${tp} ep=${ep}`);
          });
        });
      }
      if (tp2 !== true) {
        it(`layer tp=2 is refused, saying why (${tp2.source.slice(0, 40)}...)`, async () => {
          const layer = new FusedMoE(quantLayerConfig(fx, {tpSize: 2, tpRank: 1}));
          layer.apply([tfl.input({shape: [cfgOf(fx).hidden_size]}), tfl.input({shape: [cfgOf(fx).num_experts]})]);
          await expectNoLeaks(() => {
            expect(() => layer.loadWeights(ckpt, quantLoadOptions(fx))).to.throw(tp2);
          });
          layer.dispose();
        });
      }
      if (name.includes('fp8')) {
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

      it('splits the canonical tensors by expert range under maxWeightBytes and still matches', async () => {
        const c = cfgOf(fx);
        const probe = new FusedMoE(quantLayerConfig(fx));
        probe.apply([tfl.input({shape: [c.hidden_size]}), tfl.input({shape: [c.num_experts]})]);
        // w13 data bytes of 3 experts in this format (the split is by the data, scales ride along).
        const w13 = probe.weights.find((w) => w.name.endsWith('/w13'))!;
        const perExpert = w13.shape.slice(1).reduce((a: number, b) => a * b!, 1) * 4;
        probe.dispose();
        await expectNoLeaks(async () => {
          const layer = new FusedMoE(quantLayerConfig(fx, {maxWeightBytes: 3 * perExpert}));
          layer.loadWeights(ckpt, quantLoadOptions(fx));
          expect(layer.expertLayout!.shards.length).to.equal(Math.ceil(c.num_experts / 3));
          // originalName: what save / load match by (a weight re-made at load may get a uniquified .name).
          expect(layer.weights.map((w) => w.originalName)).to.include(
              `${layer.name}/w2_${layer.expertLayout!.shards.length - 1}`);
          const {hidden, logits} = fixtureInputs(fx);
          const out = layer.apply([hidden, logits]) as tf.Tensor;
          expectClose(await out.data(), expected(fx, name.includes('fp8')), `${name} split weights`);
          tf.dispose([hidden, logits, out]);
          layer.dispose();
        });
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
        const artifacts = await saveArtifacts(model);
        const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
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

/** Every weight's values, to check that a refused load changed nothing. */
async function weightValues(layer: FusedMoE): Promise<Array<Float32Array | Int32Array>> {
  return Promise.all(layer.weights.map(async (w) => (await w.read().data()) as Float32Array | Int32Array));
}

describeBackends('quantized checkpoints: refusals leave the layer unchanged', () => {
  const fixtures = new Map<string, {fx: Fixture; ckpt: Map<string, CheckpointTensor>}>();
  before(async () => {
    for (const name of ['qwen2moe-gptq-int4', 'mixtral-awq-int4', 'deepseekv3-fp8', 'qwen3moe-ct-w4a16',
      'qwen3moe-bf16', 'gptoss-mxfp4']) {
      const fx = await loadFixture(`quant/${name}`);
      fixtures.set(name, {fx, ckpt: readSafetensors(fx.bytes)});
    }
  });
  after(() => fixtures.forEach(({ckpt}) => disposeCheckpointTensors(ckpt.values())));

  /** Loads `name` properly, then tries `bad`: the error must match, and weights and output stay. */
  async function expectRefused(name: string, edit: (m: Map<string, CheckpointTensor>, p: string) => tf.Tensor[],
      message: RegExp, o: {layer?: Partial<FusedMoELayerArgs>; load?: Partial<LoadWeightsOptions>} = {}) {
    const {fx, ckpt} = fixtures.get(name)!;
    const layer = new FusedMoE(quantLayerConfig(fx, o.layer));
    layer.loadWeights(ckpt, quantLoadOptions(fx));
    const before_ = await weightValues(layer);
    const bad = new Map(ckpt);
    const made = edit(bad, cfgOf(fx).checkpoint_prefix);
    await expectNoLeaks(() => {
      expect(() => layer.loadWeights(bad, quantLoadOptions(fx, o.load))).to.throw(message);
    });
    const after_ = await weightValues(layer);
    after_.forEach((w, i) => expect(w, `weight ${layer.weights[i].name} changed`).to.deep.equal(before_[i]));
    tf.dispose(made);
    layer.dispose();
  }

  it('GPTQ scales of the wrong shape: names the key, expected and found shapes', () => expectRefused(
      'qwen2moe-gptq-int4', (m, p) => {
        const t = tf.zeros([3, 128], 'int32');
        m.set(`${p}.experts.3.gate_proj.scales`, PackedTensor.fromBytes('float16', [3, 128], new Uint8Array(768)));
        return [t];
      }, /'model\.layers\.0\.mlp\.experts\.3\.gate_proj\.scales' has shape \[3, 128\] but the layer expects \[2, 128\]/));

  it('fp8 scales of the wrong dtype: names the dtype and what the format takes', () => expectRefused(
      'deepseekv3-fp8', (m, p) => {
        const t = tf.zeros([1, 2], 'int32');
        m.set(`${p}.experts.0.down_proj.weight_scale_inv`, t);
        return [t];
      }, /experts\.0\.down_proj\.weight_scale_inv' has dtype int32; fp8 e4m3 block \[128, 128\] expects float32/));

  it('AWQ packed weights of the wrong shape', () => expectRefused('mixtral-awq-int4', (m, p) => {
    const t = tf.zeros([256, 15], 'int32');
    m.set(`${p}.experts.1.w3.qweight`, t);
    return [t];
  }, /experts\.1\.w3\.qweight' has shape \[256, 15\] but the layer expects \[256, 16\]/));

  it('AWQ without its zero points: lists the experts and the key', () => expectRefused('mixtral-awq-int4', (m, p) => {
    m.delete(`${p}.experts.2.w2.qzeros`);
    m.delete(`${p}.experts.5.w2.qzeros`);
    return [];
  }, /missing w2 \(w2\) qzeros for experts 2, 5: expected e\.g\. 'model\.layers\.0\.block_sparse_moe\.experts\.2\.w2\.qzeros' of shape \[1, 32\]/));

  it('compressed-tensors weight_shape that disagrees with the layer', () => expectRefused('qwen3moe-ct-w4a16', (m, p) => {
    const t = tf.tensor1d([128, 255], 'int32');
    m.set(`${p}.experts.0.up_proj.weight_shape`, t);
    return [t];
  }, /experts\.0\.up_proj\.weight_shape' holds \[128, 255\] but the layer expects \[128, 256\]/));

  it('mxfp4 blocks of another expert count', () => expectRefused('gptoss-mxfp4', (m, p) => {
    m.set(`${p}.experts.down_proj_blocks`, PackedTensor.fromBytes('uint8', [7, 256, 4, 16], new Uint8Array(7 * 256 * 64)));
    return [];
  }, /experts\.down_proj_blocks' has shape \[7, 256, 4, 16\] but the layer expects \[8, 256, 4, 16\]/));

  it('a disposed checkpoint tensor is refused in validation, before anything is written', async () => {
    const {fx} = fixtures.get('qwen3moe-bf16')!;
    const own = readSafetensors(fx.bytes);
    const layer = new FusedMoE(quantLayerConfig(fx));
    layer.loadWeights(own, quantLoadOptions(fx));
    const before_ = await weightValues(layer);
    own.get(`${cfgOf(fx).checkpoint_prefix}.experts.7.down_proj.weight`)!.dispose();
    expect(() => layer.loadWeights(own, quantLoadOptions(fx))).to.throw(
        /'model\.layers\.0\.mlp\.experts\.7\.down_proj\.weight' was disposed/);
    (await weightValues(layer)).forEach((w, i) => expect(w).to.deep.equal(before_[i]));
    // A float32 tensor too (the old path overflowed the stack after writing w13 and w2).
    const f32 = new Map(own);
    const gate = tf.zeros([128, 256]);
    f32.set(`${cfgOf(fx).checkpoint_prefix}.experts.7.down_proj.weight`, own.get(`${cfgOf(fx).checkpoint_prefix}.experts.6.down_proj.weight`)!);
    f32.set(`${cfgOf(fx).checkpoint_prefix}.experts.1.gate_proj.weight`, gate);
    gate.dispose();
    expect(() => layer.loadWeights(f32, quantLoadOptions(fx))).to.throw(/experts\.1\.gate_proj\.weight' was disposed/);
    (await weightValues(layer)).forEach((w, i) => expect(w).to.deep.equal(before_[i]));
    layer.dispose();
    disposeCheckpointTensors(own.values());
  });

  it('experts beyond numExperts (16-expert checkpoint, 8-expert layer): refused by default, strict: false loads', async () => {
    const {fx, ckpt} = fixtures.get('qwen3moe-ct-w4a16')!;
    const layer = new FusedMoE(quantLayerConfig(fx, {numExperts: 8}));
    layer.apply([tfl.input({shape: [256]}), tfl.input({shape: [8]})]);
    const zeros = await weightValues(layer);
    await expectNoLeaks(() => {
      // 8 experts × 3 projections × (weight_packed, weight_scale, weight_shape).
      expect(() => layer.loadWeights(ckpt, quantLoadOptions(fx))).to.throw(new RegExp(
          `72 tensors under 'model\\.layers\\.0\\.mlp\\.experts\\.' that no parameter takes \\(a 8-expert .*\\): ` +
          `'model\\.layers\\.0\\.mlp\\.experts\\.10\\.down_proj\\.weight_shape'.*pass strict: false`));
    });
    (await weightValues(layer)).forEach((w, i) => expect(w).to.deep.equal(zeros[i]));
    layer.loadWeights(ckpt, quantLoadOptions(fx, {strict: false}));
    expect((await weightValues(layer))[0].some((v) => v !== 0)).to.equal(true);
    layer.dispose();
  });

  it('a stray tensor under the prefix is named; strict: false ignores it', async () => {
    await expectRefused('qwen3moe-bf16', (m, p) => {
      const t = tf.zeros([128, 1]);
      m.set(`${p}.experts.0.gate_proj.weight_scale`, t);
      return [t];
    }, /1 tensor under 'model\.layers\.0\.mlp\.experts\.' that no parameter takes .*: 'model\.layers\.0\.mlp\.experts\.0\.gate_proj\.weight_scale'/);
    const {fx, ckpt} = fixtures.get('qwen3moe-bf16')!;
    const extra = new Map(ckpt);
    const t = tf.zeros([128, 1]);
    extra.set(`${cfgOf(fx).checkpoint_prefix}.experts.0.gate_proj.weight_scale`, t);
    const layer = new FusedMoE(quantLayerConfig(fx));
    layer.loadWeights(extra, quantLoadOptions(fx, {strict: false}));
    layer.dispose();
    t.dispose();
  });

  it('GPTQ act-order: g_idx is kept per expert and matches; gate and up with different g_idx are refused', async () => {
    const {fx, ckpt} = fixtures.get('qwen2moe-gptq-int4')!;
    const actOrder = {layer: {quantConfig: {...cfgOf(fx).quantization_config!, desc_act: true}}};
    const layer = new FusedMoE(quantLayerConfig(fx, actOrder.layer));
    layer.loadWeights(ckpt, quantLoadOptions(fx));
    expect(layer.weights.map((w) => w.name)).to.include.members([`${layer.name}/w13_g_idx`, `${layer.name}/w2_g_idx`]);
    const {hidden, logits} = fixtureInputs(fx);
    const out = layer.apply([hidden, logits]) as tf.Tensor;
    expectClose(await out.data(), expected(fx, false), 'gptq act-order');
    tf.dispose([hidden, logits, out]);
    layer.dispose();
    await expectRefused('qwen2moe-gptq-int4', (m, p) => {
      const g = Int32Array.from({length: 256}, (_, k) => 1 - Math.floor(k / 128));
      const t = tf.tensor1d(g, 'int32');
      m.set(`${p}.experts.4.up_proj.g_idx`, t);
      return [t];
    }, /experts\.4\.gate_proj\.g_idx' and '.*experts\.4\.up_proj\.g_idx' differ: gate and up must have equal g_idx/,
    actOrder);
    const tp = new FusedMoE(quantLayerConfig(fx, {...actOrder.layer, tpSize: 2}));
    expect(() => tp.loadWeights(ckpt, quantLoadOptions(fx))).to.throw(/act-order \(desc_act\) checkpoints are loaded with tpSize 1 only/);
    tp.dispose();
  });

  it('a TP split through packed words is refused, naming the codes per word', async () => {
    const {fx, ckpt} = fixtures.get('qwen2moe-gptq-int4')!;
    const layer = new FusedMoE(quantLayerConfig(fx, {tpSize: 32, tpRank: 3}));
    layer.apply([tfl.input({shape: [256]}), tfl.input({shape: [12]})]);
    await expectNoLeaks(() => {
      expect(() => layer.loadWeights(ckpt, quantLoadOptions(fx))).to.throw(
          /tpSize 32 splits the intermediate size 128 into 4, which cuts through the 32-bit words of w2 \(8 uint4 codes per word/);
    });
    layer.dispose();
  });

  describe('unsupported quantization configs: a clear error at construction', () => {
    const base = {numExperts: 8, topK: 2, hiddenSize: 256, intermediateSize: 128};
    const cases: Array<[string, unknown, RegExp]> = [
      ['an unknown method', {quant_method: 'bitsandbytes'},
        /quant_method "bitsandbytes" is not supported; supported: 'fp8', 'gptq', 'awq', 'compressed-tensors', 'mxfp4'/],
      ['GPTQ 3-bit', {quant_method: 'gptq', bits: 3, group_size: 128}, /gptq 'bits' = 3 is not supported; supported: 4, 8/],
      ['AWQ GEMV', {quant_method: 'awq', bits: 4, group_size: 128, version: 'gemv'}, /awq 'version' = "gemv" is not supported; supported: "gemm"/],
      ['static fp8', {quant_method: 'fp8', activation_scheme: 'static', weight_block_size: [128, 128]},
        /fp8 'activation_scheme' = "static" is not supported; supported: "dynamic"/],
      ['per-tensor fp8', {quant_method: 'fp8', activation_scheme: 'dynamic'}, /fp8 needs 'weight_block_size'/],
      ['compressed-tensors asymmetric', {quant_method: 'compressed-tensors', format: 'pack-quantized', config_groups:
        {g: {targets: ['Linear'], weights: {num_bits: 4, strategy: 'group', group_size: 128, symmetric: false, type: 'int'}}}},
      /weights 'symmetric' = false is not supported; supported: true/],
      ['compressed-tensors float-quantized', {quant_method: 'compressed-tensors', format: 'float-quantized', config_groups:
        {g: {targets: ['Linear'], weights: {num_bits: 8, strategy: 'channel', symmetric: true, type: 'float'}}}},
      /format "float-quantized" is not supported; supported: "pack-quantized", "int-quantized"/],
      ['compressed-tensors int8 W8A8 with static activations', {quant_method: 'compressed-tensors',
        format: 'int-quantized', config_groups: {g: {targets: ['Linear'], weights: {num_bits: 8, strategy: 'channel',
          symmetric: true, type: 'int'}, input_activations: {num_bits: 8, type: 'int', strategy: 'tensor',
          dynamic: false, symmetric: true}}}},
      /input_activations 'strategy' = "tensor" is not supported/],
      ['weightDtype with a quantized config', {quant_method: 'mxfp4'}, /'weightDtype' applies to unquantized checkpoints/],
    ];
    for (const [what, quantConfig, message] of cases) {
      it(what, () => expect(() => new FusedMoE({...base, quantConfig: quantConfig as QuantizationConfig,
        weightDtype: what.startsWith('weightDtype') ? 'float16' : undefined})).to.throw(message));
    }
    it('mxfp4 with another activation; useFp8W8A8 without fp8 weights', () => {
      expect(() => new FusedMoE({...base, quantConfig: {quant_method: 'mxfp4'}, activation: 'silu'})).to.throw(
          /needs activation 'swigluoai' but got 'silu'/);
      expect(() => new FusedMoE({...base, useFp8W8A8: true})).to.throw(/'useFp8W8A8' needs a block-fp8 checkpoint/);
    });
  });
});

describeBackends('unquantized checkpoints: weightDtype', () => {
  let fx: Fixture;
  let ckpt: Map<string, CheckpointTensor>;
  before(async () => {
    fx = await loadFixture('quant/qwen3moe-bf16');
    ckpt = readSafetensors(fx.bytes);
  });
  after(() => disposeCheckpointTensors(ckpt.values()));

  for (const [weightDtype, ratio] of [[null, 1], ['bfloat16', 1], ['float16', 1], ['float32', 2]] as const) {
    it(`weightDtype ${weightDtype ?? 'default (the checkpoint\'s)'}: ${ratio}× the checkpoint's bytes, matches`, async () => {
      await expectNoLeaks(async () => {
        const layer = new FusedMoE(quantLayerConfig(fx, {weightDtype}));
        layer.apply([tfl.input({shape: [256]}), tfl.input({shape: [8]})]);   // built before the load
        layer.loadWeights(ckpt, quantLoadOptions(fx));
        expect(layerBytes(layer) / cfgOf(fx).weight_bytes_checkpoint).to.equal(ratio);
        expect(layer.getConfig().weightDtype).to.equal(weightDtype ?? 'bfloat16');
        const {hidden, logits} = fixtureInputs(fx);
        const out = layer.apply([hidden, logits]) as tf.Tensor;
        expectClose(await out.data(), expected(fx, false), `bf16 as ${weightDtype}`);
        tf.dispose([hidden, logits, out]);
        layer.dispose();
      });
    });
  }
});

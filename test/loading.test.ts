/** Checkpoint IO (safetensors, tfjs weight manifests) and loadWeights' refusals, on every backend. */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import {pathToFileURL} from 'url';
import {FusedMoE, PackedTensor, disposeCheckpointTensors, loadSafetensors, loadTfjsWeights, readSafetensors} from '../src';
import {expectClose} from './helpers/compare';
import {describeBackends, expectNoLeaks} from './helpers/env';
import {Fixture, entry, loadFixture, readFloatCheckpoint} from './helpers/fixtures';
import {fixtureInputs, layerConfig, loadOptions} from './layer_helpers';

/** A safetensors file from raw entries (the test's own encoder, independent of the reader). */
function encodeSafetensors(entries: Array<{name: string; dtype: string; shape: number[]; bytes: Uint8Array}>):
    Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const e of entries) {
    header[e.name] = {dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.byteLength]};
    offset += e.bytes.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let at = 8 + json.byteLength;
  for (const e of entries) {
    out.set(e.bytes, at);
    at += e.bytes.byteLength;
  }
  return out;
}

const u16 = (values: number[]) => new Uint8Array(new Uint16Array(values).buffer);

async function runLayer(layer: FusedMoE, fx: Fixture): Promise<Float32Array> {
  const {hidden, logits} = fixtureInputs(fx);
  const out = layer.apply([hidden, logits]) as tf.Tensor;
  const values = await out.data() as Float32Array;
  tf.dispose([hidden, logits, out]);
  return values;
}

async function weightValues(layer: FusedMoE): Promise<Float32Array[]> {
  return Promise.all(layer.weights.map(async (w) => Float32Array.from(await w.read().data())));
}

/** Serves `files` (name → bytes) on 127.0.0.1; returns the base URL and a close function. */
async function serve(files: Record<string, Uint8Array>): Promise<{base: string; close: () => Promise<void>}> {
  const server = http.createServer((req, res) => {
    const body = files[(req.url ?? '/').slice(1)];
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {'content-length': body.byteLength, 'content-type': 'application/octet-stream'});
    // Two writes, so that the reader sees more than one chunk.
    const half = Math.floor(body.byteLength / 2);
    res.write(body.subarray(0, half));
    setTimeout(() => res.end(body.subarray(half)), 5);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const {port} = server.address() as {port: number};
  return {base: `http://127.0.0.1:${port}/`, close: () => new Promise((resolve) => server.close(() => resolve()))};
}

describeBackends('checkpoint loading', () => {
  let mixtral: Fixture;
  let tmp: string;
  before(async () => {
    mixtral = await loadFixture('mixtral-t37');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-loading-'));
  });
  after(() => fs.rmSync(tmp, {recursive: true, force: true}));

  describe('safetensors', () => {
    it('decodes F32 and I32 (and I64) to tensors, keeps F16, BF16, F8_E4M3, U8, I8 packed with exact values', async () => {
      const bytes = encodeSafetensors([
        {name: 'f32', dtype: 'F32', shape: [2], bytes: new Uint8Array(new Float32Array([0.1, -3]).buffer)},
        {name: 'f16', dtype: 'F16', shape: [2, 2], bytes: u16([0x3e00, 0xc000, 0x0001, 0x7bff])},
        {name: 'f16inf', dtype: 'F16', shape: [1], bytes: u16([0xfc00])},
        {name: 'bf16', dtype: 'BF16', shape: [3], bytes: u16([0x3fc0, 0xc000, 0x4049])},
        // e4m3: 1.0, -448 (max), 2^-9 (min subnormal), 0.1015625 (0x1d)
        {name: 'f8', dtype: 'F8_E4M3', shape: [4], bytes: new Uint8Array([0x38, 0xfe, 0x01, 0x1d])},
        {name: 'u8', dtype: 'U8', shape: [3], bytes: new Uint8Array([0, 128, 255])},
        {name: 'i8', dtype: 'I8', shape: [3], bytes: new Uint8Array([0, 128, 255])},
        {name: 'i32', dtype: 'I32', shape: [2], bytes: new Uint8Array(new Int32Array([7, -8]).buffer)},
        {name: 'i64', dtype: 'I64', shape: [2], bytes: new Uint8Array(new BigInt64Array([256n, -3n]).buffer)},
      ]);
      await expectNoLeaks(async () => {
        const m = readSafetensors(bytes);
        const widened = async (k: string) => {
          const t = m.get(k)!;
          expect(t).to.be.instanceOf(PackedTensor);
          const w = (t as PackedTensor).toFloat32();
          const v = Array.from(await w.data());
          w.dispose();
          return v;
        };
        expect(m.get('f16')!.shape).to.deep.equal([2, 2]);
        expect((m.get('f16') as PackedTensor).dtype).to.equal('float16');
        expect((m.get('f16') as PackedTensor).words.shape).to.deep.equal([2]);
        expect(Array.from(await (m.get('f32') as tf.Tensor).data())).to.deep.equal([Math.fround(0.1), -3]);
        expect(await widened('f16')).to.deep.equal([1.5, -2, 2 ** -24, 65504]);
        expect(await widened('f16inf')).to.deep.equal([-Infinity]);
        expect(await widened('bf16')).to.deep.equal([1.5, -2, 3.140625]);
        expect(await widened('f8')).to.deep.equal([1, -448, 2 ** -9, 0.1015625]);
        expect(await widened('u8')).to.deep.equal([0, 128, 255]);
        expect(await widened('i8')).to.deep.equal([0, -128, -1]);
        expect(m.get('i32')!.dtype).to.equal('int32');
        expect(Array.from(await (m.get('i32') as tf.Tensor).data())).to.deep.equal([7, -8]);
        expect(Array.from(await (m.get('i64') as tf.Tensor).data())).to.deep.equal([256, -3]);
        disposeCheckpointTensors(m.values());
      });
    });

    it('decodes a Node Buffer that is a view into a larger pool at its own offset', async () => {
      // fs.readFileSync returns such views; decoding from offset 0 of the pool read other data of the process.
      const file = encodeSafetensors([
        {name: 'f32', dtype: 'F32', shape: [3], bytes: new Uint8Array(new Float32Array([5.5, -2.25, 0.125]).buffer)},
        {name: 'bf16', dtype: 'BF16', shape: [1], bytes: u16([0x3fc0])},
      ]);
      for (const offset of [0, 1, 3, 8, 13]) {
        const pool = new Uint8Array(offset + file.byteLength + 7).fill(0x7f);
        pool.set(file, offset);
        const view = Buffer.from(pool.buffer, offset, file.byteLength);
        const m = readSafetensors(view);
        expect(Array.from(await (m.get('f32') as tf.Tensor).data()), `offset ${offset}`).to.deep.equal([5.5, -2.25, 0.125]);
        const b = (m.get('bf16') as PackedTensor).toFloat32();
        expect(Array.from(await b.data())).to.deep.equal([1.5]);
        b.dispose();
        disposeCheckpointTensors(m.values());
      }
    });

    it('rejects I64 values outside int32, naming the tensor', () => {
      const bytes = encodeSafetensors([{name: 'big', dtype: 'I64', shape: [1],
        bytes: new Uint8Array(new BigInt64Array([2n ** 40n]).buffer)}]);
      expect(() => readSafetensors(bytes)).to.throw(/'big' \(I64\) holds 1099511627776 .*outside int32/);
    });

    it('rejects an unknown dtype, naming the tensor and the dtype, and makes no tensors', async () => {
      const bytes = encodeSafetensors([
        {name: 'ok', dtype: 'F32', shape: [1], bytes: new Uint8Array(4)},
        {name: 'model.experts.0.w1.weight', dtype: 'F64', shape: [1], bytes: new Uint8Array(8)},
      ]);
      await expectNoLeaks(() => {
        expect(() => readSafetensors(bytes)).to.throw(/'model\.experts\.0\.w1\.weight' has dtype F64; supported are F32/);
      });
    });

    it('rejects a truncated file, in the data and in the header', async () => {
      await expectNoLeaks(() => {
        expect(() => readSafetensors(mixtral.bytes.subarray(0, mixtral.bytes.byteLength - 10)))
            .to.throw(/truncated/);
        expect(() => readSafetensors(mixtral.bytes.subarray(0, 100))).to.throw(/truncated/);
        expect(() => readSafetensors(mixtral.bytes.subarray(0, 5))).to.throw(/fewer than the 8-byte header/);
      });
    });

    it('loadSafetensors reads a path and a file:// URL with progress up to the file size', async () => {
      const file = path.join(tmp, 'mixtral.safetensors');
      fs.writeFileSync(file, mixtral.bytes);
      for (const source of [file, pathToFileURL(file).toString()]) {
        const progress: Array<[number, number | null]> = [];
        const m = await loadSafetensors(source, {onProgress: (n, total) => progress.push([n, total])});
        expect(progress[progress.length - 1]).to.deep.equal([mixtral.bytes.byteLength, mixtral.bytes.byteLength]);
        for (let i = 1; i < progress.length; i++) expect(progress[i][0]).to.be.at.least(progress[i - 1][0]);
        expect([...m.keys()].sort()).to.deep.equal([...mixtral.entries.keys()].sort());
        expectClose(await (m.get('expected.output') as tf.Tensor).data(), entry(mixtral, 'expected.output').values, 'read back');
        disposeCheckpointTensors(m.values());
      }
      await loadSafetensors(path.join(tmp, 'absent.safetensors')).then(
          () => expect.fail('no error'), (e: Error) => expect(e.message).to.match(/cannot read .*absent\.safetensors/));
      fs.writeFileSync(path.join(tmp, 'cut.safetensors'), mixtral.bytes.subarray(0, 4000));
      await loadSafetensors(path.join(tmp, 'cut.safetensors')).then(
          () => expect.fail('no error'), (e: Error) => expect(e.message).to.match(/truncated.*cut\.safetensors/));
    });

    it('loadSafetensors fetches over http, reporting progress from the response body stream', async () => {
      const server = await serve({'m.safetensors': mixtral.bytes});
      try {
        const progress: Array<[number, number | null]> = [];
        const m = await loadSafetensors(`${server.base}m.safetensors`, {onProgress: (n, t) => progress.push([n, t])});
        expect(progress.length).to.be.at.least(3);
        expect(progress[progress.length - 1]).to.deep.equal([mixtral.bytes.byteLength, mixtral.bytes.byteLength]);
        const layer = new FusedMoE(layerConfig(mixtral.config));
        layer.loadWeights(m, loadOptions(mixtral.config));
        expectClose(await runLayer(layer, mixtral), entry(mixtral, 'expected.output').values, 'over http');
        layer.dispose();
        disposeCheckpointTensors(m.values());
        await loadSafetensors(`${server.base}nothing`).then(
            () => expect.fail('no error'), (e: Error) => expect(e.message).to.match(/HTTP 404/));
      } finally {
        await server.close();
      }
    });
  });

  describe('tfjs converter weights (model.json + shards)', () => {
    let dir: string;
    before(async () => {
      // The expert weights under their checkpoint names, encoded by tfjs itself and cut into two shards.
      dir = path.join(tmp, 'tfjs');
      fs.mkdirSync(dir);
      const all = readFloatCheckpoint(mixtral.bytes);
      const experts: tf.NamedTensorMap = {};
      for (const [k, t] of all) if (k.includes('.experts.')) experts[k] = t;
      const {data, specs} = await tf.io.encodeWeights(experts);
      const bytes = new Uint8Array(data as ArrayBuffer);
      const cut = Math.floor(bytes.byteLength / 3);
      fs.writeFileSync(path.join(dir, 'group1-shard1of2.bin'), bytes.subarray(0, cut));
      fs.writeFileSync(path.join(dir, 'group1-shard2of2.bin'), bytes.subarray(cut));
      fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({
        format: 'layers-model', weightsManifest: [{paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'], weights: specs}],
      }));
      disposeCheckpointTensors(all.values());
    });

    it('loads through io.decodeWeights into a layer that reproduces the fixture, with progress', async () => {
      await expectNoLeaks(async () => {
        const progress: number[] = [];
        const m = await loadTfjsWeights(path.join(dir, 'model.json'), {onProgress: (n) => progress.push(n)});
        const total = fs.statSync(path.join(dir, 'group1-shard1of2.bin')).size +
          fs.statSync(path.join(dir, 'group1-shard2of2.bin')).size;
        expect(progress[progress.length - 1]).to.equal(total);
        const layer = new FusedMoE(layerConfig(mixtral.config));
        layer.loadWeights(m, loadOptions(mixtral.config));
        expectClose(await runLayer(layer, mixtral), entry(mixtral, 'expected.output').values, 'tfjs manifest');
        layer.dispose();
        disposeCheckpointTensors(m.values());
      });
    });

    it('loads the same over http', async () => {
      const files: Record<string, Uint8Array> = {};
      for (const f of fs.readdirSync(dir)) files[`moe/${f}`] = new Uint8Array(fs.readFileSync(path.join(dir, f)));
      const server = await serve(files);
      try {
        const m = await loadTfjsWeights(`${server.base}moe/model.json`);
        expect(m.size).to.equal(8 * 3);
        disposeCheckpointTensors(m.values());
      } finally {
        await server.close();
      }
    });

    it('reports a truncated shard', async () => {
      const bad = path.join(tmp, 'tfjs-cut');
      fs.mkdirSync(bad);
      fs.copyFileSync(path.join(dir, 'model.json'), path.join(bad, 'model.json'));
      fs.copyFileSync(path.join(dir, 'group1-shard1of2.bin'), path.join(bad, 'group1-shard1of2.bin'));
      fs.writeFileSync(path.join(bad, 'group1-shard2of2.bin'), new Uint8Array(100));
      await expectNoLeaks(async () => {
        await loadTfjsWeights(path.join(bad, 'model.json')).then(
            () => expect.fail('no error'), (e: Error) => expect(e.message).to.match(/truncated or missing/));
      });
    });
  });

  describe('bad checkpoints: a clear error, and the layer unchanged', () => {
    let layer: FusedMoE;
    let good: Map<string, tf.Tensor>;
    let before_: Float32Array[];
    const prefix = () => mixtral.config.checkpoint_prefix;
    beforeEach(async () => {
      good = readFloatCheckpoint(mixtral.bytes);
      layer = new FusedMoE(layerConfig(mixtral.config));
      layer.loadWeights(good, loadOptions(mixtral.config));
      before_ = await weightValues(layer);
    });
    afterEach(() => {
      layer.dispose();
      disposeCheckpointTensors(good.values());
    });

    async function expectRefused(checkpoint: Map<string, tf.Tensor>, message: RegExp, cfg = loadOptions(mixtral.config)) {
      await expectNoLeaks(() => {
        expect(() => layer.loadWeights(checkpoint, cfg)).to.throw(message);
      });
      const after = await weightValues(layer);
      after.forEach((w, i) => expect(w, `weight ${layer.weights[i].name} changed`).to.deep.equal(before_[i]));
      expectClose(await runLayer(layer, mixtral), entry(mixtral, 'expected.output').values, 'still loaded');
    }

    it('a missing expert: lists the experts and an expected key', async () => {
      const bad = new Map(good);
      for (const w of ['w1', 'w2', 'w3']) bad.delete(`${prefix()}.experts.5.${w}.weight`);
      bad.delete(`${prefix()}.experts.6.w2.weight`);
      await expectRefused(bad, /missing w2 \(w2\) for experts 5, 6: expected e\.g\. 'model\.layers\.0\.block_sparse_moe\.experts\.5\.w2\.weight' of shape \[64, 96\]/);
      await expectRefused(bad, /missing w1 \(w1\) for expert 5:/);
    });

    it('a wrong shape: names the key, the expected and the found shape', async () => {
      const bad = new Map(good);
      const wrong = tf.zeros([95, 64]);
      bad.set(`${prefix()}.experts.2.w3.weight`, wrong);
      await expectRefused(bad, /'model\.layers\.0\.block_sparse_moe\.experts\.2\.w3\.weight' has shape \[95, 64\] but the layer expects \[96, 64\]/);
      wrong.dispose();
    });

    it('an integer weight: names the dtype', async () => {
      const bad = new Map(good);
      const ints = tf.zeros([64, 96], 'int32');
      bad.set(`${prefix()}.experts.0.w2.weight`, ints);
      await expectRefused(bad, /experts\.0\.w2\.weight' has dtype int32/);
      ints.dispose();
    });

    it('wrong checkpoint names (another family): every expert missing, with the key it looked for', async () => {
      await expectRefused(good, /missing gate_proj \(w1\) for experts 0, 1, 2, 3, 4, 5, 6, 7: expected e\.g\. '.*experts\.0\.gate_proj\.weight'/,
          {prefix: prefix()});
    });

    it('a correction bias the layer was not built for', async () => {
      const bad = new Map(good);
      const bias = tf.zeros([8]);
      bad.set(`${prefix()}.gate.e_score_correction_bias`, bias);
      await expectRefused(bad, /has 'model\.layers\.0\.block_sparse_moe\.gate\.e_score_correction_bias' but the layer was built without 'eScoreCorrectionBias: true'/);
      bias.dispose();
    });
  });

  describe('fused 3-D and bias checkpoints', () => {
    it('Llama 4: a wrong fused shape or a missing down_proj is refused, naming the key', async () => {
      const fx = await loadFixture('llama4-t13');
      const ckpt = readSafetensors(fx.bytes);
      const p = fx.config.checkpoint_prefix;
      const layer = new FusedMoE(layerConfig(fx.config));
      const bad = new Map(ckpt);
      const wrong = tf.zeros([8, 112, 64]);
      bad.set(`${p}.experts.gate_up_proj`, wrong);
      bad.delete(`${p}.experts.down_proj`);
      const attempt = () => {
        try {
          layer.loadWeights(bad, loadOptions(fx.config));
        } catch (e) {
          return (e as Error).message;
        }
        return '';
      };
      attempt();  // the first attempt builds the layer's (zero) weights
      await expectNoLeaks(() => {
        const message = attempt();
        expect(message).to.match(/experts\.gate_up_proj' has shape \[8, 112, 64\] but the layer expects \[8, 64, 112\]/);
        expect(message).to.match(/missing fused 3-D checkpoint tensor '.*experts\.down_proj' of shape \[8, 56, 64\]/);
      });
      wrong.dispose();
      const weights = await weightValues(layer);
      weights.forEach((w) => expect(w.every((v) => v === 0), 'weights stay as built').to.equal(true));
      layer.loadWeights(ckpt, loadOptions(fx.config));
      expectClose(await runLayer(layer, fx), entry(fx, 'expected.output').values, 'llama4 after the refusal');
      layer.dispose();
      disposeCheckpointTensors(ckpt.values());
    });

    it('DeepSeek-V3: the correction bias is loaded, and required', async () => {
      const fx = await loadFixture('deepseekv3-t41');
      const ckpt = readSafetensors(fx.bytes);
      const biasKey = `${fx.config.checkpoint_prefix}.gate.e_score_correction_bias`;
      const layer = new FusedMoE(layerConfig(fx.config));
      const noBias = new Map(ckpt);
      noBias.delete(biasKey);
      expect(() => layer.loadWeights(noBias, loadOptions(fx.config))).to.throw(
          /missing 'model\.layers\.0\.mlp\.gate\.e_score_correction_bias' of shape \[32\]/);
      layer.loadWeights(ckpt, loadOptions(fx.config));
      const bias = layer.weights.find((w) => w.name.endsWith('e_score_correction_bias'))!;
      expect(Array.from(await bias.read().data())).to.deep.equal(Array.from(entry(fx, biasKey).values));
      expectClose(await runLayer(layer, fx), entry(fx, 'expected.output').values, 'deepseek with bias');
      layer.dispose();
      disposeCheckpointTensors(ckpt.values());
    });

    it('an expert-parallel rank needs only its own experts', async () => {
      const ckpt = readSafetensors(mixtral.bytes);
      const p = mixtral.config.checkpoint_prefix;
      const onlyFirstHalf = new Map([...ckpt].filter(([k]) => !/\.experts\.[4-7]\./.test(k)));
      const rank0 = new FusedMoE(layerConfig(mixtral.config, {epSize: 2, epRank: 0}));
      rank0.loadWeights(onlyFirstHalf, loadOptions(mixtral.config));
      const rank1 = new FusedMoE(layerConfig(mixtral.config, {epSize: 2, epRank: 1}));
      expect(() => rank1.loadWeights(onlyFirstHalf, loadOptions(mixtral.config))).to.throw(
          new RegExp(`missing w1 \\(w1\\) for experts 4, 5, 6, 7: expected e\\.g\\. '${p.replace(/\./g, '\\.')}\\.experts\\.4\\.w1\\.weight'`));
      rank0.dispose();
      rank1.dispose();
      disposeCheckpointTensors(ckpt.values());
    });
  });
});

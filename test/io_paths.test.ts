/**
 * Where loadTfjsWeights may read shards from: a remote model.json only at its own origin, a local one only
 * inside its own directory (unless the caller opts in). And the loaders' errors for what cannot be read: a
 * model.json that is null or lacks weights, a fetch that fails. Node only (files, a server on 127.0.0.1).
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import {pathToFileURL} from 'url';
import {loadSafetensors, loadTfjsWeights} from '../src';
import {expectNoLeaks} from './helpers/env';

const f32 = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);
const manifest = (paths: string[]) => JSON.stringify({weightsManifest: [{paths,
  weights: paths.map((_, i) => ({name: `w${i}`, shape: [1], dtype: 'float32'}))}]});

/** Serves `files` (URL path → bytes) on 127.0.0.1 and records every requested path. */
async function serve(files: Map<string, Uint8Array>) {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const body = files.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {'content-length': body.byteLength}).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const {port} = server.address() as {port: number};
  return {origin: `http://127.0.0.1:${port}`, port, requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))};
}

async function values(m: Map<string, tf.Tensor>): Promise<number[]> {
  const out: number[] = [];
  for (const t of m.values()) out.push(...Array.from(await t.data()));
  tf.dispose([...m.values()]);
  return out;
}

async function rejects(p: Promise<unknown>, message: RegExp): Promise<void> {
  await p.then(() => expect.fail(`no error (expected ${message})`), (e: Error) => expect(e.message).to.match(message));
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe('loadTfjsWeights: where shards may come from', () => {
  let tmp: string, dir: string, secret: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-paths-'));
    dir = path.join(tmp, 'model');
    fs.mkdirSync(dir);
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.writeFileSync(path.join(dir, 'shard.bin'), f32([1.5]));
    fs.writeFileSync(path.join(dir, 'sub', 'deep.bin'), f32([2.5]));
    secret = path.join(tmp, 'secret.bin');
    fs.writeFileSync(secret, f32([-99]));
  });
  after(() => fs.rmSync(tmp, {recursive: true, force: true}));

  describe('a remote model.json: shards at its own origin only', () => {
    let server: Awaited<ReturnType<typeof serve>>;
    const files = new Map<string, Uint8Array>();
    before(async () => {
      server = await serve(files);
      files.set('/moe/shard.bin', f32([3.25]));
      files.set('/other/shard.bin', f32([4.75]));
      // The secret's local path, served with other bytes: a same-origin absolute path is fetched, not read from disk.
      files.set(encodeURI(secret), f32([5.5]));
    });
    after(() => server.close());
    beforeEach(() => { server.requests.length = 0; });
    const load = (paths: string[]) => {
      files.set('/moe/model.json', new TextEncoder().encode(manifest(paths)));
      return loadTfjsWeights(`${server.origin}/moe/model.json`);
    };

    it('reads relative and same-origin shards from the server', async () => {
      expect(await values(await load(['shard.bin', '../other/shard.bin', `${server.origin}/moe/shard.bin`])))
          .to.deep.equal([3.25, 4.75, 3.25]);
    });

    it('fetches an absolute path from the server, never from the local disk', async () => {
      expect(await values(await load([secret]))).to.deep.equal([5.5]);
      expect(server.requests).to.deep.equal(['/moe/model.json', encodeURI(secret)]);
    });

    const refused: Array<[string, () => string, (origin: string) => string]> = [
      ['a file:// URL', () => pathToFileURL(secret).toString(), () => pathToFileURL(secret).toString()],
      ['another origin (host)', () => `http://localhost:${server.port}/moe/shard.bin`,
        () => `http://localhost:${server.port}/moe/shard.bin`],
      ['another origin (protocol-relative)', () => '//example.invalid/shard.bin', () => 'http://example.invalid/shard.bin'],
      ['a data: URL', () => 'data:application/octet-stream;base64,AAAAAA==',
        () => 'data:application/octet-stream;base64,AAAAAA=='],
    ];
    for (const [what, shard, resolved] of refused) {
      it(`refuses ${what}, before reading any shard`, async () => {
        await expectNoLeaks(async () => {
          await rejects(load(['shard.bin', shard()]), new RegExp(`^loadTfjsWeights: shard '${esc(shard())}' of ` +
            `'${esc(server.origin)}/moe/model.json' resolves to '${esc(resolved(server.origin))}', outside the ` +
            `manifest's origin ${esc(server.origin)}: a remote model.json may only name shards at its own origin$`));
        });
        expect(server.requests).to.deep.equal(['/moe/model.json']);
      });
    }
  });

  describe('a local model.json: files inside its own directory only, unless allowed', () => {
    const write = (paths: string[]) => {
      fs.writeFileSync(path.join(dir, 'model.json'), manifest(paths));
      return path.join(dir, 'model.json');
    };

    it('reads files in its directory and below, by path and by file:// URL', async () => {
      const json = write(['shard.bin', 'sub/deep.bin', './sub/../shard.bin']);
      expect(await values(await loadTfjsWeights(json))).to.deep.equal([1.5, 2.5, 1.5]);
      expect(await values(await loadTfjsWeights(pathToFileURL(json)))).to.deep.equal([1.5, 2.5, 1.5]);
    });

    const outside = (shard: () => string, resolved: () => string): [() => string, () => RegExp] => [shard, () =>
      new RegExp(`^loadTfjsWeights: shard '${esc(shard())}' of '.*model\\.json' resolves to '${esc(resolved())}', ` +
        `.*outside the manifest's directory ${esc(dir)}: a local model.json may only name files inside its own ` +
        `directory \\(pass allowPathsOutsideManifestDir: true to allow it\\)$`)];
    const refused: Array<[string, [() => string, () => RegExp]]> = [
      ['a relative path out of the directory', outside(() => '../secret.bin', () => secret)],
      ['an absolute path', outside(() => secret, () => secret)],
      ['a file:// URL', outside(() => pathToFileURL(secret).toString(), () => pathToFileURL(secret).toString())],
      ['an http URL', outside(() => 'http://127.0.0.1:9/shard.bin', () => 'http://127.0.0.1:9/shard.bin')],
    ];
    for (const [what, [shard, message]] of refused) {
      const remote = what.includes('http');
      it(`refuses ${what}${remote ? '' : '; reads it with allowPathsOutsideManifestDir'}`, async () => {
        const json = write(['shard.bin', shard()]);
        await expectNoLeaks(async () => {
          await rejects(loadTfjsWeights(json), message());
          await rejects(loadTfjsWeights(pathToFileURL(json)), message());
        });
        if (!remote) {
          expect(await values(await loadTfjsWeights(json, {allowPathsOutsideManifestDir: true})))
              .to.deep.equal([1.5, -99]);
        }
      });
    }
  });
});

describe('loaders: what cannot be read is named', () => {
  let tmp: string;
  let server: Awaited<ReturnType<typeof serve>>;
  const files = new Map<string, Uint8Array>();
  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-io-'));
    server = await serve(files);
  });
  after(async () => {
    fs.rmSync(tmp, {recursive: true, force: true});
    await server.close();
  });

  for (const [what, body, message] of [
    ['that is null', 'null', /must hold a JSON object with a 'weightsManifest' but holds null/],
    ['that is an array', '[]', /must hold a JSON object with a 'weightsManifest' but holds an array/],
    ['with a group without weights', '{"weightsManifest":[{"paths":["a.bin"]}]}',
      /group 0 of 'weightsManifest' must have 'weights', an array of \{name, shape, dtype\}, but has undefined/],
    ['without a weightsManifest', '{"format":"layers-model"}', /'weightsManifest' must be an array of \{paths, weights\} groups/],
  ] as Array<[string, string, RegExp]>) {
    it(`a model.json ${what}: names the file, locally and over http`, async () => {
      const file = path.join(tmp, 'model.json');
      fs.writeFileSync(file, body);
      files.set('/model.json', new TextEncoder().encode(body));
      await rejects(loadTfjsWeights(file), new RegExp(`^loadTfjsWeights: '${esc(file)}'.*${message.source}`));
      await rejects(loadTfjsWeights(`${server.origin}/model.json`),
          new RegExp(`^loadTfjsWeights: '${esc(server.origin)}/model\\.json'.*${message.source}`));
    });
  }

  it('a fetch that fails names the URL and the reason', async () => {
    // A port that was just free: nothing listens there.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const {port} = probe.address() as {port: number};
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const url = `http://127.0.0.1:${port}/m.safetensors`;
    await rejects(loadSafetensors(url), new RegExp(`^cannot fetch '${esc(url)}': fetch failed \\(.*ECONNREFUSED`));
    await rejects(loadTfjsWeights(`http://127.0.0.1:${port}/model.json`),
        new RegExp(`^loadTfjsWeights: cannot read 'http://127\\.0\\.0\\.1:${port}/model\\.json' as JSON: cannot fetch ` +
          `'http://127\\.0\\.0\\.1:${port}/model\\.json': fetch failed`));
    const thrower = (() => Promise.reject(new TypeError('network down'))) as unknown as typeof fetch;
    await rejects(loadSafetensors('https://example.invalid/m.safetensors', {fetchFunc: thrower}),
        /^cannot fetch 'https:\/\/example\.invalid\/m\.safetensors': network down/);
  });

  it('a safetensors file whose header is null names the file', async () => {
    const json = new TextEncoder().encode('null');
    const bytes = new Uint8Array(8 + json.byteLength);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(json.byteLength), true);
    bytes.set(json, 8);
    const file = path.join(tmp, 'null.safetensors');
    fs.writeFileSync(file, bytes);
    await rejects(loadSafetensors(file), new RegExp(`^readSafetensors: the header must be a JSON object .* but is null ` +
      `\\(in '${esc(file)}'\\)$`));
  });
});

/**
 * Checkpoint headers checked as their formats require: safetensors (as the reference Rust crate does: an
 * object of unique names, string metadata, data_offsets tiling the data exactly, a bounded header size) and
 * tfjs weight manifests (structure, unique names). Every refusal names what is wrong and makes no tensor.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {decodeTfjsWeights, readSafetensors} from '../src';
import {MAX_SAFETENSORS_HEADER_BYTES, parseSafetensors} from '../src/io/safetensors';
import {expectNoLeaks} from './helpers/env';

/** A safetensors file from header text as written (repeated keys and all) and the data bytes. */
function rawFile(header: string, dataBytes: number): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.byteLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  for (let i = 0; i < dataBytes; i++) out[8 + json.byteLength + i] = i + 1;
  return out;
}

/** A U8 entry of `n` bytes at `begin`. */
const u8 = (begin: number, n: number) => `{"dtype":"U8","shape":[${n}],"data_offsets":[${begin},${begin + n}]}`;

describe('safetensors headers', () => {
  // Parsing needs no backend, but the leak checks count tensors on one (the browser has none ready yet).
  before(() => tf.ready());
  const refused: Array<[string, string, number, RegExp]> = [
    ['overlapping data_offsets', `{"a":${u8(0, 8)},"b":${u8(4, 8)}}`, 12,
      /readSafetensors: tensor 'b' \[4, 12\) overlaps 'a' \[0, 8\)/],
    ['two tensors on the same bytes', `{"a":${u8(0, 4)},"b":${u8(0, 4)}}`, 4,
      /readSafetensors: tensor 'b' \[0, 4\) overlaps 'a' \[0, 4\)/],
    ['a gap before the first tensor', `{"a":${u8(4, 4)}}`, 8,
      /readSafetensors: bytes \[0, 4\) of the data belong to no tensor \(a gap before 'a'\)/],
    ['a gap between tensors', `{"b":${u8(6, 2)},"a":${u8(0, 4)}}`, 8,
      /readSafetensors: bytes \[4, 6\) of the data belong to no tensor \(a gap before 'b'\)/],
    ['unclaimed trailing bytes', `{"a":${u8(0, 4)}}`, 9,
      /readSafetensors: bytes \[4, 9\) of the data belong to no tensor: the header does not describe the whole file/],
    ['data but no tensors', `{}`, 3, /bytes \[0, 3\) of the data belong to no tensor/],
    ['a repeated name (JSON.parse would keep the last)', `{"a":${u8(0, 4)},"a":${u8(4, 4)}}`, 8,
      /readSafetensors: the header names 'a' more than once/],
    ['a repeated name written with an escape', `{"ab":${u8(0, 4)},"\\u0061b":${u8(4, 4)}}`, 8,
      /readSafetensors: the header names 'ab' more than once/],
    ['a header that is null', 'null', 0, /readSafetensors: the header must be a JSON object .* but is null/],
    ['a header that is an array', `[${u8(0, 4)}]`, 4, /the header must be a JSON object .* but is an array/],
    ['a header that is a number', '42', 0, /the header must be a JSON object .* but is a number/],
    ['a header that is a string', '"a"', 0, /the header must be a JSON object .* but is a string/],
    ['__metadata__ that is not an object', `{"__metadata__":["x"],"a":${u8(0, 4)}}`, 4,
      /'__metadata__' must be an object of strings but is \["x"\]/],
    ['__metadata__ with a non-string value', `{"__metadata__":{"format":"pt","n":3},"a":${u8(0, 4)}}`, 4,
      /'__metadata__' must map strings to strings but 'n' is 3/],
    ['an entry that is null', `{"a":null}`, 0, /tensor 'a' has a malformed header entry null/],
    ['a header that is not UTF-8', '{"\xff":1}', 0, /the header is not valid UTF-8/],
  ];
  for (const [what, header, dataBytes, message] of refused) {
    it(`refuses ${what}, making no tensor`, async () => {
      const bytes = what.includes('UTF-8') ?
        (() => { const f = rawFile('{"x":1}', 0); f[10] = 0xff; return f; })() : rawFile(header, dataBytes);
      await expectNoLeaks(() => {
        expect(() => readSafetensors(bytes)).to.throw(Error, message);
      });
    });
  }

  it('accepts offsets that tile the data out of header order, zero-size tensors, string metadata and keys that ' +
      'only look repeated inside strings', () => {
    const header = `{"__metadata__":{"note":"\\",\\"b\\":{"},"b":${u8(4, 2)},"e":${u8(4, 0)},"a":${u8(0, 4)},` +
      `"z":{"dtype":"F32","shape":[0,3],"data_offsets":[6,6]}}`;
    const {metadata, entries} = parseSafetensors(rawFile(header, 6));
    expect(metadata).to.deep.equal({note: '","b":{'});
    expect([...entries.keys()]).to.deep.equal(['b', 'e', 'a', 'z']);
    expect(Array.from(entries.get('a')!.values)).to.deep.equal([1, 2, 3, 4]);
    expect(Array.from(entries.get('b')!.values)).to.deep.equal([5, 6]);
    expect(entries.get('e')!.values.length).to.equal(0);
    expect(entries.get('z')!.shape).to.deep.equal([0, 3]);
  });

  it(`refuses a header longer than ${MAX_SAFETENSORS_HEADER_BYTES} bytes before reading it`, () => {
    const bytes = new Uint8Array(16);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(MAX_SAFETENSORS_HEADER_BYTES + 1), true);
    expect(() => readSafetensors(bytes)).to.throw(Error,
        new RegExp(`the header claims ${MAX_SAFETENSORS_HEADER_BYTES + 1} bytes, more than the ` +
          `${MAX_SAFETENSORS_HEADER_BYTES} accepted`));
  });

  /** A header of exactly the largest size accepted, filled with `entry(i)`, then spaces. */
  function fullHeader(entry: (i: number) => string): {bytes: Uint8Array; count: number} {
    const parts: string[] = [];
    let length = 2, count = 0;
    for (;;) {
      const p = entry(count);
      if (length + p.length + 1 > MAX_SAFETENSORS_HEADER_BYTES) break;
      parts.push(p);
      length += p.length + 1;
      count++;
    }
    const text = `{${parts.join(',')}}`;
    return {bytes: rawFile(text + ' '.repeat(MAX_SAFETENSORS_HEADER_BYTES - text.length), 0), count};
  }

  it('parses (or refuses) a header of the largest size accepted in under 2 s', function() {
    this.timeout(20000);
    // ~330 000 empty entries: the worst case for JSON.parse and the checks, refused at the first entry.
    const empty = fullHeader((i) => `"k${i}":{}`);
    let t0 = performance.now();
    expect(() => parseSafetensors(empty.bytes)).to.throw(/tensor 'k0' has a malformed header entry \{\}/);
    const refuseMs = performance.now() - t0;
    // ~73 000 valid zero-size entries: accepted.
    const valid = fullHeader((i) => `"k${i}":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`);
    t0 = performance.now();
    expect(parseSafetensors(valid.bytes).entries.size).to.equal(valid.count);
    const acceptMs = performance.now() - t0;
    this.test!.title += ` (refused in ${refuseMs.toFixed(0)} ms, accepted in ${acceptMs.toFixed(0)} ms)`;
    expect({refuseMs: refuseMs < 2000, acceptMs: acceptMs < 2000},
        `refused in ${refuseMs.toFixed(0)} ms, accepted in ${acceptMs.toFixed(0)} ms`)
        .to.deep.equal({refuseMs: true, acceptMs: true});
  });
});

describe('tfjs weight manifests', () => {
  before(() => tf.ready());
  const f32 = (values: number[]) => new Float32Array(values).buffer as ArrayBuffer;
  const spec = (name: string, n: number) => ({name, shape: [n], dtype: 'float32' as const});

  it('decodes a two-group manifest to the values written', async () => {
    const m = decodeTfjsWeights([{paths: ['a.bin'], weights: [spec('a', 2), spec('b', 1)]},
      {paths: ['c.bin'], weights: [spec('c', 1)]}], [[f32([1, 2, 3])], [f32([4])]]);
    expect(Array.from(await m.get('a')!.data())).to.deep.equal([1, 2]);
    expect(Array.from(await m.get('b')!.data())).to.deep.equal([3]);
    expect(Array.from(await m.get('c')!.data())).to.deep.equal([4]);
    tf.dispose([...m.values()]);
  });

  const refused: Array<[string, unknown, ArrayBuffer[][], RegExp]> = [
    ['a name repeated inside one group', [{paths: ['a.bin'], weights: [spec('a', 1), spec('a', 1)]}],
      [[f32([1, 2])]], /decodeTfjsWeights: weight 'a' appears twice in the manifest \(group 0, twice\)/],
    ['a name repeated across groups', [{paths: ['a.bin'], weights: [spec('a', 1)]},
      {paths: ['b.bin'], weights: [spec('b', 1), spec('a', 1)]}], [[f32([1])], [f32([2, 3])]],
    /weight 'a' appears twice in the manifest \(group 0 and group 1\)/],
    ['a group without weights', [{paths: ['a.bin']}], [[f32([1])]],
      /group 0 of 'weightsManifest' must have 'weights', an array of \{name, shape, dtype\}, but has undefined/],
    ['a group without paths', [{weights: [spec('a', 1)]}], [[f32([1])]],
      /group 0 of 'weightsManifest' must have 'paths', an array of shard file names, but has undefined/],
    ['a null group', [null], [[]], /group 0 of 'weightsManifest' must have 'paths'/],
    ['a weight without a shape', [{paths: ['a.bin'], weights: [{name: 'a', dtype: 'float32'}]}], [[f32([1])]],
      /group 0 weight 0 must be \{name, shape: \[non-negative integers\], dtype\} but is \{"name":"a","dtype":"float32"\}/],
    ['a manifest that is null', null, [], /'weightsManifest' must be an array of \{paths, weights\} groups/],
  ];
  for (const [what, manifest, shards, message] of refused) {
    it(`refuses ${what}, leaking no tensor`, async () => {
      await expectNoLeaks(() => {
        expect(() => decodeTfjsWeights(manifest as tf.io.WeightsManifestConfig, shards)).to.throw(Error, message);
      });
    });
  }
});

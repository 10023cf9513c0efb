/**
 * `npm start`'s contract: it prints the backend, the routing, the latency and the check, exits 0 when
 * every layer matches its checkpoint's expected output, and exits 1 when one does not (here: a copy of
 * a fixture whose expected.output has one value changed). Runs on cpu, to be quick.
 */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {expect} from 'chai';
import {parseSafetensors} from '../../src';

const ROOT = path.join(__dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');

function demo(args: string[]): {status: number | null; stdout: string; stderr: string} {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'),
    path.join(ROOT, 'examples', 'node', 'demo.ts'), ...args], {cwd: ROOT, encoding: 'utf8', timeout: 120000});
  return {status: r.status, stdout: r.stdout, stderr: r.stderr};
}

/** The fixture's bytes with expected.output[0] shifted by `delta` (the file is otherwise untouched). */
function withWrongExpectation(name: string, delta: number): Uint8Array {
  const bytes = new Uint8Array(fs.readFileSync(path.join(FIXTURES, `${name}.safetensors`)));
  const view = new DataView(bytes.buffer);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const at = 8 + headerLength + header['expected.output'].data_offsets[0];
  view.setFloat32(at, view.getFloat32(at, true) + delta, true);
  return bytes;
}

describe('npm start (examples/node/demo.ts)', function() {
  this.timeout(300000);

  it('runs the Mixtral- and DeepSeek-V3-style layers, prints what it computed, and exits 0', () => {
    const r = demo(['--backend', 'cpu']);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/backend: cpu/);
    expect(r.stdout).to.match(/mixtral-t37: Mixtral-style, 8 experts, top-2 softmax/);
    expect(r.stdout).to.match(/deepseekv3-t41: DeepSeek-V3-style, 32 experts, grouped top-4/);
    expect(r.stdout).to.match(/FusedMoE\(\n\s+global_num_experts=8, local_num_experts=8, top_k=2/);
    expect(r.stdout).to.match(/tokens per expert \(37 tokens × top-2 = 74 assignments\)/);
    expect(r.stdout).to.match(/e0:13 +e1:12 +e2:10 +e3:10 +e4:11 +e5:6 +e6:6 +e7:6/);
    expect(r.stdout.match(/latency: first call [\d.]+ ms/g)).to.have.length(2);
    expect(r.stdout.match(/→ OK/g)).to.have.length(2);
    expect(r.stdout).to.match(/all 2 layers match their expected output on cpu/);
  });

  it('exits 1 and says FAILED when the output differs from expected.output', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-demo-'));
    try {
      // Past the tolerance (1e-4·max|expected| + 1e-5) by far, but a plausible number.
      const wrong = withWrongExpectation('mixtral-t1', 0.5);
      expect(parseSafetensors(wrong).entries.get('expected.output')).to.not.equal(undefined);
      fs.writeFileSync(path.join(dir, 'mixtral-t1.safetensors'), wrong);
      const r = demo(['--backend', 'cpu', '--fixtures', dir, 'mixtral-t1']);
      expect(r.status).to.equal(1);
      expect(r.stdout).to.match(/→ FAILED/);
      expect(r.stdout).to.match(/1 of 1 layers FAILED on cpu/);
    } finally {
      fs.rmSync(dir, {recursive: true, force: true});
    }
  });

  it('exits 1 with a clear message when the fixtures are not where it looks', () => {
    const r = demo(['--backend', 'cpu', '--fixtures', path.join(os.tmpdir(), 'no-such-dir'), 'mixtral-t1']);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/no checkpoint .*no-such-dir\/mixtral-t1\.safetensors: pass --fixtures DIR/);
  });
});

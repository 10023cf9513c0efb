/**
 * Where the host time of a decode call goes (issue 13): host µs per call (the call returns with its work
 * queued; no waiting), the WebGPU API calls one call makes (counted by wrapping the device's and the
 * queue's methods), and, under `node --cpu-prof`, the JS profile. Runs on any WebGPU adapter (SwiftShader
 * here: the JS side is the same as on a GPU; the absolute times are this machine's).
 *   npx tsx bench/host_profile.ts [--calls 300]
 */
import {setupWebGPUNode} from './webgpu_node';
setupWebGPUNode();
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {fusedMoE, fusedTopK} from '../src';

const args = process.argv.slice(2);
const calls = Number(args[args.indexOf('--calls') + 1] ?? 300) || 300;

/** Wraps every method of `o` to count its calls under `prefix`. */
function countCalls(o: object, prefix: string, counts: Map<string, number>): void {
  let proto = Object.getPrototypeOf(o);
  const seen = new Set<string>();
  while (proto && proto !== Object.prototype) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      const d = Object.getOwnPropertyDescriptor(proto, name);
      if (seen.has(name) || name === 'constructor' || !d || typeof d.value !== 'function') continue;
      seen.add(name);
      // The current value: the device may carry its own wrapper (device.ts hoists WGSL directives).
      const f = (o as Record<string, unknown>)[name] as (...a: unknown[]) => unknown;
      (o as Record<string, unknown>)[name] = function(this: unknown, ...a: unknown[]) {
        counts.set(`${prefix}.${name}`, (counts.get(`${prefix}.${name}`) ?? 0) + 1);
        const r = f.apply(this, a);
        // Encoders and passes made by the device: count their methods too.
        if (r && typeof r === 'object' && /create(Command|Compute)|begin/.test(name) && !(r as {__counted?: boolean}).__counted) {
          (r as {__counted?: boolean}).__counted = true;
          countCalls(r as object, name.replace(/^create|^begin/, ''), counts);
        }
        return r;
      };
    }
    proto = Object.getPrototypeOf(proto);
  }
}

async function measure(name: string, f: () => tf.Tensor | tf.Tensor[], b: WebGPUBackend, counts: Map<string, number>) {
  for (let i = 0; i < 20; i++) tf.dispose(f());
  await b.queue.onSubmittedWorkDone();
  counts.clear();
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) tf.dispose(f());
  const hostUs = (performance.now() - t0) * 1000 / calls;
  await b.queue.onSubmittedWorkDone();
  const perCall = [...counts].map(([k, v]) => [k, v / calls] as const).filter(([, v]) => v >= 0.5)
    .sort((a, c) => c[1] - a[1]);
  const total = perCall.reduce((s, [, v]) => s + v, 0);
  console.log(`${name}: host ${hostUs.toFixed(1)} µs per call, ${total.toFixed(1)} WebGPU API calls per call`);
  console.log('  ' + perCall.map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', '));
}

/** Top self-time JS functions while `f` runs (the inspector's CPU profiler, in process). */
async function profileTop(f: () => Promise<void>, top = 12): Promise<string> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const {Session} = require('inspector') as typeof import('inspector');
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) => new Promise<any>((resolve, reject) =>
    session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', {interval: 50});
  await post('Profiler.start');
  await f();
  const {profile} = await post('Profiler.stop');
  session.disconnect();
  const self = new Map<string, number>();
  const byId = new Map<number, {callFrame: {functionName: string; url: string; lineNumber: number}}>();
  for (const n of profile.nodes) byId.set(n.id, n);
  profile.samples.forEach((id: number, i: number) => {
    const cf = byId.get(id)!.callFrame;
    const key = `${cf.functionName || '(anonymous)'} ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + profile.timeDeltas[i]);
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([k, v]) => `    ${(100 * v / total).toFixed(1)}% ${k}`).join('\n');
}

async function main() {
  await tf.setBackend('webgpu');
  const b = tf.backend() as WebGPUBackend;
  const counts = new Map<string, number>();
  countCalls(b.device, 'device', counts);
  countCalls(b.queue, 'queue', counts);
  const a = tf.randomUniform([16, 16]) as tf.Tensor2D;
  await measure('tf.matMul 16×16', () => tf.matMul(a, a), b, counts);
  await measure('five chained tf.add in a tidy', () => tf.tidy(() => {
    let y = a;
    for (let i = 0; i < 5; i++) y = tf.add(y, a);
    return y;
  }), b, counts);
  const E = 128, k = 8, H = 64, I = 32;
  const logits1 = tf.randomNormal([1, E]) as tf.Tensor2D;
  await measure('fusedTopK T=1 E=128 k=8', () => {
    const r = fusedTopK(logits1, k, true);
    return [r.topkWeights, r.topkIds];
  }, b, counts);
  const w13 = tf.randomNormal([E, 2 * I, H], 0, 0.1) as tf.Tensor3D;
  const w2 = tf.randomNormal([E, H, I], 0, 0.1) as tf.Tensor3D;
  for (const T of [1, 16]) {
    const x = tf.randomNormal([T, H]) as tf.Tensor2D;
    const logits = tf.randomNormal([T, E]) as tf.Tensor2D;
    await measure(`fusedMoE T=${T} E=128 k=8 H=64 I=32`, () => fusedMoE(x, logits, w13, w2, {topK: k, renormalize: true}),
        b, counts);
  }
  const x1 = tf.randomNormal([1, H]) as tf.Tensor2D;
  const l1 = tf.randomNormal([1, E]) as tf.Tensor2D;
  console.log('JS self time while issuing fusedMoE T=1 (top functions):');
  console.log(await profileTop(async () => {
    for (let i = 0; i < calls; i++) tf.dispose(fusedMoE(x1, l1, w13, w2, {topK: k, renormalize: true}));
    await b.queue.onSubmittedWorkDone();
  }));
  process.exit(0);
}
main().catch((e) => { console.error(e); process.exit(1); });

/**
 * The JS side of a replayed decode call (issue 13), on small weights so that the GPU work (SwiftShader here)
 * stays small: host µs per fusedMoE call, T = 1, plans warm, for the Qwen3-like routing (E = 128, k = 8,
 * softmax, renormalize) and the DeepSeek-V3-like one (E = 256, k = 8, 8 groups / 4 kept, sigmoid +
 * correction bias, routed scaling 2.5). Quantiles over `--reps` × `--calls` calls timed in batches of 100.
 * Nothing is submitted: the GPU work (slow on SwiftShader, and run on the same few cores) would otherwise
 * be timed too. tfjs's encoder is finished and dropped instead of submitted (its bookkeeping as in a submit),
 * so what is timed is the JS and the native encoding calls. The outputs are garbage; nothing reads them.
 * --stub-pass: compute passes are JS no-ops, so that only the JS (tfjs's and ours) is timed.
 *   npx tsx bench/host_js.ts [--calls 2000] [--reps 10] [--profile] [--stub-pass]
 */
import {setupWebGPUNode} from './webgpu_node';
setupWebGPUNode();
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {FusedMoEOptions, fusedMoE} from '../src';
import {dispatchPlanStats} from '../src/kernels/webgpu/dispatch_plan';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const calls = Number(arg('calls', '2000'));  // per rep, in batches of 100
const reps = Number(arg('reps', '10'));

let stubPass = (_on: boolean) => {};

async function main() {
  await tf.setBackend('webgpu');
  const b = tf.backend() as WebGPUBackend;
  tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', 1e9);
  if (args.includes('--stub-pass')) {
    // JS alone: every compute pass (tfjs's and the plans') records nothing; its calls are JS no-ops. Only
    // for timing warm replays (the warm-up call records the plan with real passes first, see below).
    const begin = GPUCommandEncoder.prototype.beginComputePass;
    const stub = {setPipeline() {}, setBindGroup() {}, dispatchWorkgroups() {}, end() {}};
    stubPass = (on: boolean) => {
      GPUCommandEncoder.prototype.beginComputePass = on ?
        function() { return stub as unknown as GPUComputePassEncoder; } : begin;
    };
  }
  const done = async () => {
    b.ensureCommandEncoderReady();
    b.endComputePassEncoder();
    const submit = b.queue.submit;
    b.queue.submit = () => undefined;
    try {
      b.submitQueue();
    } finally {
      b.queue.submit = submit;
    }
    await b.queue.onSubmittedWorkDone();
  };
  const H = 64, I = 32;
  const shapes: Array<{name: string; E: number; o: (bias: tf.Tensor1D) => FusedMoEOptions}> = [
    {name: 'qwen3-like E=128 k=8 softmax renorm', E: 128, o: () => ({topK: 8, renormalize: true})},
    {name: 'dsv3-like E=256 k=8 grouped 8/4 sigmoid+bias x2.5', E: 256, o: (bias) => ({topK: 8, renormalize: true,
      useGroupedTopk: true, numExpertGroup: 8, topkGroup: 4, scoringFunc: 'sigmoid', eScoreCorrectionBias: bias,
      routedScalingFactor: 2.5})},
  ];
  for (const s of shapes) {
    const w13 = tf.randomNormal([s.E, 2 * I, H], 0, 0.1) as tf.Tensor3D;
    const w2 = tf.randomNormal([s.E, H, I], 0, 0.1) as tf.Tensor3D;
    const x = tf.randomNormal([1, H]) as tf.Tensor2D;
    const logits = tf.randomNormal([1, s.E]) as tf.Tensor2D;
    const bias = tf.randomNormal([s.E]) as tf.Tensor1D;
    const o = s.o(bias);
    stubPass(false);
    fusedMoE(x, logits, w13, w2, o).dispose();  // records the plan
    await done();
    stubPass(true);
    for (let i = 0; i < 200; i++) fusedMoE(x, logits, w13, w2, o).dispose();
    await done();
    // Batches of 100 calls, the encoder dropped (untimed) between them so that it stays small.
    const per: number[] = [];
    for (let r = 0; r < reps; r++) {
      for (let j = 0; j < calls / 100; j++) {
        const t0 = performance.now();
        for (let i = 0; i < 100; i++) fusedMoE(x, logits, w13, w2, o).dispose();
        per.push((performance.now() - t0) * 10);
        await done();
      }
    }
    const sorted = [...per].sort((a, c) => a - c);
    const q = (f: number) => sorted[Math.floor(f * (sorted.length - 1))].toFixed(2);
    console.log(`${s.name}: median ${q(0.5)} µs/call (p10 ${q(0.1)}, p25 ${q(0.25)}, p75 ${q(0.75)}; ` +
        `${per.length} batches of 100)`);
    if (args.includes('--profile')) {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const {Session} = require('inspector') as typeof import('inspector');
      const session = new Session();
      session.connect();
      const post = (method: string, params?: object) => new Promise<any>((resolve, reject) =>
        session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', {interval: 20});
      await post('Profiler.start');
      for (let r = 0; r < 4; r++) {
        for (let i = 0; i < calls; i++) fusedMoE(x, logits, w13, w2, o).dispose();
        await done();
      }
      const {profile} = await post('Profiler.stop');
      session.disconnect();
      const self = new Map<string, number>();
      const byId = new Map<number, any>();
      for (const n of profile.nodes) byId.set(n.id, n);
      profile.samples.forEach((id: number, i: number) => {
        const cf = byId.get(id)!.callFrame;
        const key = `${cf.functionName || '(anonymous)'} ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`;
        self.set(key, (self.get(key) ?? 0) + profile.timeDeltas[i]);
      });
      const total = [...self.values()].reduce((a, c) => a + c, 0);
      const us = (v: number) => `${(v / (4 * calls)).toFixed(2)} µs`;
      console.log('  self time per call:');
      console.log([...self].sort((a, c) => c[1] - a[1]).slice(0, 25)
        .map(([k, v]) => `    ${us(v)} ${(100 * v / total).toFixed(1)}% ${k}`).join('\n'));
      // Inclusive time per function (each sample counted once per function on its stack).
      const parent = new Map<number, number>();
      for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
      const incl = new Map<string, number>();
      profile.samples.forEach((id: number, i: number) => {
        const seen = new Set<string>();
        for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
          const cf = byId.get(n)!.callFrame;
          if (!cf.url.includes('/src/') && !cf.url.includes('tf-core') && !cf.url.includes('tf-backend')) continue;
          const key = `${cf.functionName || '(anonymous)'} ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`;
          if (!seen.has(key)) incl.set(key, (incl.get(key) ?? 0) + profile.timeDeltas[i]);
          seen.add(key);
        }
      });
      console.log('  inclusive time per call (package and tfjs functions):');
      console.log([...incl].sort((a, c) => c[1] - a[1]).slice(0, 25)
        .map(([k, v]) => `    ${us(v)} ${k}`).join('\n'));
    }
    tf.dispose([w13, w2, x, logits, bias]);
  }
  console.log('plans:', JSON.stringify(dispatchPlanStats(b)));
  process.exit(0);
}
main().catch((e) => { console.error(e); process.exit(1); });

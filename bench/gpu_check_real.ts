/**
 * Device entry: fusedExperts / fusedMoE at the real benchmark shapes against the float64 cpu reference,
 * for a few tokens (the reference only needs the selected experts, regenerated on the host from the GPU
 * fill's hash), and the webgpu routing and the naive tfjs routing against the host reference routing.
 *   bash .gpu/run.sh .gpu/gpu_check_real.mjs [--shapes dsv3tp8,mixtral] [--tokens 1,16]
 */
import {webgpuSetup} from './gpu_setup';
import * as tf from '@tensorflow/tfjs-core';
import {fusedExperts, fusedExpertsImpl, fusedMoE, routingImpl, selectExperts} from '../src';
import {ExpertsPath, setFusedExpertsPath} from '../src/kernels/webgpu/FusedExperts';
import {uniformHostValue} from './fill_uniform_webgpu';
import {naiveRouting} from './naive_tfjs';
import {SEEDS, makeExpertWeights, moeOptions, routingConfig, uniformHostValues, w13Scale, w2Scale} from './problem';
import {MoEShape, SHAPES} from './shapes';

const args = process.argv.slice(2);
const arg = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};

function idSetsDiffer(a: ArrayLike<number>, b: ArrayLike<number>, k: number): number {
  let rows = 0;
  for (let r = 0; r < a.length / k; r++) {
    const x = Array.from(a).slice(r * k, r * k + k).sort((p, q) => p - q).join();
    const y = Array.from(b).slice(r * k, r * k + k).sort((p, q) => p - q).join();
    if (x !== y) rows++;
  }
  return rows;
}

async function checkShape(s: MoEShape, tokens: number[]): Promise<void> {
  const w = makeExpertWeights(s);
  for (const M of tokens) {
    const logits = uniformHostValues(M * s.E, 3000 + M, 4);
    const biasHost = s.routing.kind === 'grouped' ? uniformHostValues(s.E, 4000, 0.1) : null;
    const ref = routingImpl(logits, M, s.E, biasHost, routingConfig(s.routing, s.k));
    const hiddenHost = uniformHostValues(M * s.H, 5000 + M, 1);
    const hidden = tf.tensor2d(hiddenHost, [M, s.H]);
    const lt = tf.tensor2d(logits, [M, s.E]);
    const bias = biasHost ? tf.tensor1d(biasHost) : null;

    // Host reference over only the selected experts, their weights regenerated from the fill's hash.
    const used = [...new Set(ref.ids)].sort((a, b) => a - b);
    const local = new Int32Array(s.E).fill(-1);
    used.forEach((e, i) => { local[e] = i; });
    const w13h = new Float32Array(used.length * 2 * s.I * s.H);
    const w2h = new Float32Array(used.length * s.H * s.I);
    used.forEach((e, i) => {
      // Global indices into the [E, 2I, H] / [E, H, I] stacks: the fill's values do not depend on the shards.
      const n13 = 2 * s.I * s.H, n2 = s.H * s.I;
      for (let j = 0; j < n13; j++) w13h[i * n13 + j] = uniformHostValue(e * n13 + j, SEEDS.w13, w13Scale(s));
      for (let j = 0; j < n2; j++) w2h[i * n2 + j] = uniformHostValue(e * n2 + j, SEEDS.w2, w2Scale(s));
    });
    const expected = fusedExpertsImpl({hidden: hiddenHost, topkWeights: ref.weights, topkIds: ref.ids, expertMap: local,
      shards: [{w13: w13h, w2: w2h, numExperts: used.length}], numTokens: M, topK: s.k, hiddenSize: s.H,
      intermediateSize: s.I, globalNumExperts: s.E, activation: 'silu', applyRouterWeightOnInput: false});
    let maxAbs = 0;
    expected.forEach((v) => { maxAbs = Math.max(maxAbs, Math.abs(v)); });
    const tol = 1e-4 * maxAbs + 1e-5;
    const err = async (t: tf.Tensor) => {
      const v = await t.data();
      let m = 0;
      for (let i = 0; i < v.length; i++) { const d = Math.abs(v[i] - expected[i]); if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d; }
      t.dispose();
      return `${m.toExponential(2)} ${m <= tol ? 'PASS' : 'FAIL'}`;
    };

    const topkW = tf.tensor2d(ref.weights, [M, s.k]);
    const topkIds = tf.tensor2d(ref.ids, [M, s.k], 'int32');
    for (const p of ['decode', 'decode-grouped', 'prefill'] as ExpertsPath[]) {
      setFusedExpertsPath(p);
      console.log(`${s.name} M=${M} fusedExperts ${p} (host routing) vs reference: ${await err(fusedExperts(hidden, w.w13, w.w2, topkW, topkIds))}`);
    }
    setFusedExpertsPath(null);
    const ours = selectExperts(hidden, lt, moeOptions(s, bias));
    const naive = naiveRouting(lt, bias, s.routing, s.k);
    console.log(`${s.name} M=${M} routing rows whose id set differs from the host reference: ours ` +
        `${idSetsDiffer(await ours.topkIds.data(), ref.ids, s.k)}, naive tfjs ${idSetsDiffer(await naive.ids.data(), ref.ids, s.k)} (of ${M})`);
    console.log(`${s.name} M=${M} fusedMoE vs reference: ${await err(fusedMoE(hidden, lt, w.w13, w.w2, moeOptions(s, bias)))}`);
    tf.dispose([hidden, lt, topkW, topkIds, ours.topkIds, ours.topkWeights, naive.ids, naive.weights, ...(bias ? [bias] : [])]);
  }
  tf.dispose([...w.w13, ...w.w2]);
}

async function main() {
  if (webgpuSetup.oursMissing) throw new Error(webgpuSetup.oursMissing);
  await tf.setBackend('webgpu');
  for (const name of arg('shapes', 'dsv3tp8,qwen3').split(',')) {
    await checkShape(SHAPES[name] as MoEShape, arg('tokens', '1,16').split(',').map(Number));
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });

/**
 * A Mixtral-8x7B-shaped MoE layer (8 experts, top-2, H 4096, I 14336, float32: 5.6 GB of expert
 * weights) on the GPU from Node, through Dawn (npm `webgpu`) and tfjs's webgpu backend.
 *
 * w13 alone is 3.76 GB, more than one storage binding may cover (`maxStorageBufferBindingSize`,
 * 2-4 GiB on today's GPUs), so the layer splits w13 and w2 by expert range into several tensors, each
 * under the device's limit, and the kernels bind them side by side.
 *
 *   npx tsx examples/node/mixtral_webgpu.ts                 # full shape on a GPU; 1/32 scale on SwiftShader
 *   npx tsx examples/node/mixtral_webgpu.ts --scale 4 --tokens 16 --max-weight-bytes 100000000
 *   # on the H200: ../shared/gpu/pack.sh examples/node/mixtral_webgpu.ts; bash .gpu/run.sh .gpu/mixtral_webgpu.mjs
 *
 * No Mixtral checkpoint ships with the repo (it would be 90 GB), so the weights are seeded random
 * numbers under Mixtral's checkpoint names, loaded through the layer's own `loadWeights`. The router
 * is the block's gate matmul. The last output is checked against the cpu reference
 * (routingImpl + fusedExpertsImpl) on the same router logits; exit status 1 if it differs.
 */
import * as tf from '@tensorflow/tfjs-core';
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import {FusedMoE, deviceMaxWeightBytes, fusedExpertsImpl, routingImpl} from '../../src';
import {compareToExpected} from '../common/checkpoint_layer';
import {installDawnWebGPU} from './dawn';

const MIXTRAL = {numExperts: 8, topK: 2, hiddenSize: 4096, intermediateSize: 14336};
const PREFIX = 'model.layers.0.block_sparse_moe';

function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Seeded uniform numbers in [-scale, scale) (xorshift32): the same weights on every run. */
function seeded(seed: number): (n: number, scale: number) => Float32Array {
  let s = seed >>> 0 || 1;
  return (n, scale) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      out[i] = (s / 2147483648 - 1) * scale;
    }
    return out;
  };
}

const gib = (bytes: number) => bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` :
  `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function main(): Promise<number> {
  const dawn = await installDawnWebGPU();
  if (dawn.adapter == null) throw new Error(`no WebGPU adapter: ${dawn.reason}`);
  await import('@tensorflow/tfjs-backend-webgpu');
  await import('../../src/webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs could not start its webgpu backend');

  // SwiftShader runs the same WGSL on the CPU, far too slowly for 5.6 GB: scale each dimension down.
  const scale = Number(option('scale') ?? (dawn.adapter.software ? 32 : 1));
  const E = MIXTRAL.numExperts, k = MIXTRAL.topK;
  const H = MIXTRAL.hiddenSize / scale, I = MIXTRAL.intermediateSize / scale;
  const T = Number(option('tokens') ?? (dawn.adapter.software ? 4 : 16));
  const device = deviceMaxWeightBytes();
  const maxWeightBytes = Number(option('max-weight-bytes') ?? (dawn.adapter.software ?
    // Force a split even at the small scale, to show the same path a GPU takes at full size.
    3 * 2 * I * H * 4 : device.bytes));
  console.log(`tfjs-core ${tf.version_core} (cpu ${version_cpu}) · webgpu via Dawn, adapter ${dawn.adapter.description}` +
      (dawn.adapter.software ? ' [software: running at 1/' + scale + ' scale]' : ''));
  console.log(`Mixtral-8x7B MoE layer${scale === 1 ? '' : ` at 1/${scale} scale`}: E=${E} top-${k} H=${H} I=${I}, ` +
      `float32 expert weights ${gib(3 * E * I * H * 4)}`);

  // The checkpoint, under Mixtral's names: experts.<e>.w1 (gate) / w3 (up) [I, H], w2 (down) [H, I].
  const rand = seeded(8);
  const w13PerExpert: Float32Array[] = [];
  const w2PerExpert: Float32Array[] = [];
  const checkpoint = new Map<string, tf.Tensor>();
  for (let e = 0; e < E; e++) {
    const w13 = rand(2 * I * H, 1 / Math.sqrt(H));
    const w2 = rand(H * I, 1 / Math.sqrt(I));
    w13PerExpert.push(w13);
    w2PerExpert.push(w2);
    checkpoint.set(`${PREFIX}.experts.${e}.w1.weight`, tf.tensor2d(w13.subarray(0, I * H), [I, H]));
    checkpoint.set(`${PREFIX}.experts.${e}.w3.weight`, tf.tensor2d(w13.subarray(I * H), [I, H]));
    checkpoint.set(`${PREFIX}.experts.${e}.w2.weight`, tf.tensor2d(w2, [H, I]));
  }
  const gateWeight = tf.tensor2d(rand(E * H, 1 / Math.sqrt(H)), [E, H]);

  const layer = new FusedMoE({...MIXTRAL, hiddenSize: H, intermediateSize: I, renormalize: true, maxWeightBytes});
  let start = performance.now();
  layer.loadWeights(checkpoint, {prefix: PREFIX, ckptGateProjName: 'w1', ckptUpProjName: 'w3', ckptDownProjName: 'w2'});
  tf.dispose([...checkpoint.values()]);
  const shards = layer.expertLayout!.shards;
  console.log(`loaded through FusedMoE.loadWeights in ${(performance.now() - start).toFixed(0)} ms`);
  console.log(`weights split across bindings: ${shards.length} w13 tensors (` +
      shards.map((s) => `[${s.numExperts}, ${2 * I}, ${H}] ${gib(s.numExperts * 2 * I * H * 4)}`).join(', ') +
      `) and as many w2, each under ${gib(maxWeightBytes)} ` +
      `(${option('max-weight-bytes') || dawn.adapter.software ? 'set by this example' : device.source})`);

  const hiddenAll = rand(T * H, 1);
  let failed = false;
  for (const tokens of [1, T]) {
    const hidden = tf.tensor2d(hiddenAll.subarray(0, tokens * H), [tokens, H]);
    // Mixtral's router: logits = hidden · gateᵀ.
    const logits = tf.matMul(hidden, gateWeight, false, true) as tf.Tensor2D;
    const times: number[] = [];
    let output: Float32Array | null = null;
    for (let call = 0; call < 4; call++) {
      start = performance.now();
      const out = layer.apply([hidden, logits]) as tf.Tensor2D;
      output = await out.data() as Float32Array;
      times.push(performance.now() - start);
      out.dispose();
    }
    const logitValues = await logits.data();
    const routed = routingImpl(logitValues, tokens, E, null,
        {topK: k, renormalize: true, scoringFunc: 'softmax', routedScalingFactor: 1, numExpertGroup: 1, topkGroup: 1});
    const reference = fusedExpertsImpl({hidden: hiddenAll.subarray(0, tokens * H), topkWeights: routed.weights,
      topkIds: routed.ids, expertMap: null, numTokens: tokens, topK: k, hiddenSize: H, intermediateSize: I,
      globalNumExperts: E, activation: 'silu', applyRouterWeightOnInput: false,
      shards: w13PerExpert.map((w13, e) => ({w13, w2: w2PerExpert[e], numExperts: 1}))});
    const {maxError, tolerance} = compareToExpected(output!, reference);
    const ok = maxError <= tolerance;
    failed ||= !ok;
    const counts = new Array<number>(E).fill(0);
    for (const id of routed.ids) counts[id]++;
    console.log(`T=${tokens}: first call ${times[0].toFixed(1)} ms, then median ${median(times.slice(1)).toFixed(2)} ms` +
        ` · tokens per expert ${counts.join(' ')} · max |out - cpu reference| ${maxError.toExponential(2)} ` +
        `(tolerance ${tolerance.toExponential(2)}) → ${ok ? 'OK' : 'FAILED'}`);
    tf.dispose([hidden, logits]);
  }
  layer.dispose();
  gateWeight.dispose();
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exit(1);
});

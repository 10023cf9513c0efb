/**
 * The tensors of one benchmark problem on the current backend: expert weights split by expert range
 * (each w13 tensor within one storage binding), then per token count the hidden states, router
 * logits and (DeepSeek) correction bias. Weights are filled on the device (FillUniformProgram) so
 * that gigabytes of them cost no host time; logits are made on the host because the host also
 * routes them to count the experts a call must read.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import type {FusedMoEOptions} from '../src';
import {routingImpl} from '../src';
import {FillUniformProgram, uniformHostValue} from './fill_uniform_webgpu';
import {BenchShape, MoEShape, Routing, shardExpertCounts} from './shapes';

/**
 * A float32 tensor of uniform values in [-scale, scale), the same on every backend and run and in
 * bench/torch_anchor.py; element i is the hash of (offset + i, seed).
 */
export function uniformTensor(shape: number[], seed: number, scale: number, offset = 0): tf.Tensor {
  if (tf.getBackend() === 'webgpu') {
    const b = tf.backend() as WebGPUBackend;
    const info = b.runWebGPUProgram(new FillUniformProgram(shape), [], 'float32',
        [{type: 'int32', data: [seed]}, {type: 'float32', data: [scale]}, {type: 'int32', data: [offset]}]);
    return tf.engine().makeTensorFromTensorInfo(info);
  }
  return tf.tensor(uniformHostValues(tf.util.sizeFromShape(shape), seed, scale, offset), shape, 'float32');
}

export function uniformHostValues(n: number, seed: number, scale: number, offset = 0): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = uniformHostValue(offset + i, seed, scale);
  return v;
}

/** Seeds and scales of the generated inputs (bench/torch_anchor.py uses the same). */
export const SEEDS = {w13: 1000, w2: 2000, logits: 3000, bias: 4000, hidden: 5000};
export const LOGIT_SCALE = 4;
export const BIAS_SCALE = 0.1;
export const w13Scale = (s: MoEShape) => Math.sqrt(3 / s.H);
export const w2Scale = (s: MoEShape) => Math.sqrt(3 / s.I);

/**
 * FNV-1a (32-bit, hex) over the selected expert ids, each token's k ids sorted ascending, tokens in
 * order: bench/torch_anchor.py's `ids_checksum`, so the report can say both sides routed alike.
 */
export function idsChecksum(ids: ArrayLike<number>, k: number): string {
  let h = 0x811c9dc5;
  const row: number[] = new Array(k);
  for (let t = 0; t < ids.length / k; t++) {
    for (let j = 0; j < k; j++) row[j] = ids[t * k + j];
    row.sort((a, b) => a - b);
    for (const v of row) h = Math.imul((h ^ v) >>> 0, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

export interface ExpertWeightShards {
  w13: tf.Tensor3D[];
  w2: tf.Tensor3D[];
}

/** Storage-binding limit of the current backend's device (no limit on cpu). */
export function maxBindingBytes(): number {
  return tf.getBackend() === 'webgpu' ?
    (tf.backend() as WebGPUBackend).device.limits.maxStorageBufferBindingSize : Number.MAX_SAFE_INTEGER;
}

/**
 * w13 [E_i, 2I, H] and w2 [E_i, H, I] per consecutive expert range; scaled so activations stay O(1).
 * Values are those of the whole [E, 2I, H] / [E, H, I] stacks (a shard starts at its first expert's
 * offset), so they do not depend on the device's binding limit and torch_anchor.py makes the same ones.
 */
export function makeExpertWeights(s: MoEShape): ExpertWeightShards {
  const counts = shardExpertCounts(s, maxBindingBytes());
  const firsts = counts.map((_, i) => counts.slice(0, i).reduce((a, b) => a + b, 0));
  return {
    w13: counts.map((n, i) => uniformTensor([n, 2 * s.I, s.H], SEEDS.w13, w13Scale(s),
        firsts[i] * 2 * s.I * s.H) as tf.Tensor3D),
    w2: counts.map((n, i) => uniformTensor([n, s.H, s.I], SEEDS.w2, w2Scale(s), firsts[i] * s.H * s.I) as tf.Tensor3D),
  };
}

export interface TokenInputs {
  /** [M, H] for MoE problems; routing-alone problems have none. */
  hidden: tf.Tensor2D | null;
  logits: tf.Tensor2D;
  /** DeepSeek's e_score_correction_bias [E], for grouped routing. */
  bias: tf.Tensor1D | null;
  logitsHost: Float32Array;
  biasHost: Float32Array | null;
  /** How many distinct experts the routing of these tokens selects (from the host reference). */
  distinctExperts: number;
  /** The host reference routing (routingImpl) of these logits. */
  routed: {weights: Float32Array; ids: Int32Array};
}

/** The router logits and bias of M tokens on the host, and their reference routing (routingImpl). */
export function hostRouting(s: BenchShape, M: number) {
  const logitsHost = uniformHostValues(M * s.E, SEEDS.logits + M, LOGIT_SCALE);
  const biasHost = s.routing.kind === 'grouped' ? uniformHostValues(s.E, SEEDS.bias, BIAS_SCALE) : null;
  const routed = routingImpl(logitsHost, M, s.E, biasHost, routingConfig(s.routing, s.k));
  return {logitsHost, biasHost, routed};
}

export function makeTokenInputs(s: BenchShape, M: number): TokenInputs {
  const {logitsHost, biasHost, routed} = hostRouting(s, M);
  return {
    hidden: s.kind === 'moe' ? uniformTensor([M, s.H], SEEDS.hidden + M, 1) as tf.Tensor2D : null,
    logits: onDevice(tf.tensor2d(logitsHost, [M, s.E])),
    bias: biasHost ? onDevice(tf.tensor1d(biasHost)) : null,
    logitsHost,
    biasHost,
    distinctExperts: new Set(routed.ids).size,
    routed,
  };
}

/**
 * Uploads a host-made tensor now. In a model the router logits come out of a GPU matmul; left on the
 * host, small ones would make tfjs-backend-webgpu run the naive way's first ops on the CPU
 * (WEBGPU_CPU_FORWARD) and ours pay the upload inside its first timed call.
 */
function onDevice<T extends tf.Tensor>(t: T): T {
  if (tf.getBackend() === 'webgpu') (tf.backend() as WebGPUBackend).uploadToGPU(t.dataId);
  return t;
}

export function disposeInputs(x: TokenInputs): void {
  x.hidden?.dispose();
  x.logits.dispose();
  x.bias?.dispose();
}

export function routingConfig(r: Routing, k: number) {
  return r.kind === 'grouped' ?
    {topK: k, renormalize: r.renormalize, scoringFunc: r.scoringFunc, routedScalingFactor: r.routedScalingFactor,
      numExpertGroup: r.numExpertGroup, topkGroup: r.topkGroup} :
    {topK: k, renormalize: r.renormalize, scoringFunc: r.scoringFunc, routedScalingFactor: 1,
      numExpertGroup: 1, topkGroup: 1};
}

/** The fusedMoE / selectExperts options of a shape's routing. */
export function moeOptions(s: BenchShape, bias: tf.Tensor1D | null): FusedMoEOptions {
  const r = s.routing;
  if (r.kind === 'topk') return {topK: s.k, renormalize: r.renormalize, scoringFunc: r.scoringFunc};
  return {
    topK: s.k, renormalize: r.renormalize, useGroupedTopk: true, numExpertGroup: r.numExpertGroup,
    topkGroup: r.topkGroup, scoringFunc: r.scoringFunc, eScoreCorrectionBias: bias ?? undefined,
    routedScalingFactor: r.routedScalingFactor,
  };
}

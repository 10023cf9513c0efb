/**
 * The f16 copies of weight shards that the tensor-core GEMMs read (tensor_core_plan.ts, source 'copy':
 * any format other than plain f16, and every shard for the blocked and pipelined variants), made once per
 * shard and layout and kept between calls, as vLLM repacks weights once after loading
 * (`process_weights_after_loading`) rather than per forward.
 *
 * Made per call, the copy cost what the faster GEMMs saved: 2 bytes written per weight and the source read
 * again, ~2 ms for a float32 Mixtral layer on the H200, where its whole M = 256 prefill takes 2.3 ms with the
 * copy kept (bench/results/2026-12-03-h200-tensor-core-check-pipelined.log).
 *
 * Weight state (../weight_state.ts): a copy is keyed by its source tensors' data ids and checked against
 * their tfjs records and GPU buffers on every hit, so a disposed or replaced source makes it stale; stale
 * copies are disposed at the next miss, and `releaseWeightState` (layer.dispose()) disposes those of the
 * given weights at once. The copies are tfjs tensors of the backend, so `tf.memory()` counts them.
 *
 * The price is memory: 2 bytes per weight (int4 weights take 0.5), for every layer that ran a prefill. The
 * tfjs flag TENSOR_CORE_WEIGHT_CACHE_FLAG off makes the copy per call instead.
 */
import {engine, env} from '@tensorflow/tfjs-core';
import type {DataId, TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {KeptTensor, keptTensorGone} from './dispatch_plan';

export const TENSOR_CORE_WEIGHT_CACHE_FLAG = 'MOE_WEBGPU_TENSOR_CORE_WEIGHT_CACHE';
env().registerFlag(TENSOR_CORE_WEIGHT_CACHE_FLAG, () => true);

interface WeightCopy {
  /** Stage, layout and format: everything but the sources that decides the copy's bytes. */
  key: string;
  copy: TensorInfo;
  sources: KeptTensor[];
}

const caches = new WeakMap<WebGPUBackend, Map<DataId, WeightCopy[]>>();

function isStale(backend: WebGPUBackend, c: WeightCopy): boolean {
  return c.sources.some((s) => keptTensorGone(backend, s));
}

function drop(backend: WebGPUBackend, cache: Map<DataId, WeightCopy[]>, first: DataId, c: WeightCopy): void {
  const list = cache.get(first)!;
  list.splice(list.indexOf(c), 1);
  if (list.length === 0) cache.delete(first);
  backend.disposeData(c.copy.dataId, true);
}

function sweep(backend: WebGPUBackend, cache: Map<DataId, WeightCopy[]>): void {
  for (const [first, list] of [...cache]) {
    for (const c of [...list]) if (isStale(backend, c)) drop(backend, cache, first, c);
  }
}

/**
 * The copy of `sources` (the shard's data first, then its scales, zeros, gidx) under `key`: the kept one,
 * or one that `make` writes into `out` (issued on the backend itself, so that a dispatch plan recording this
 * call binds the copy as it binds the weights instead of replaying its program).
 */
export function tensorCoreWeightCopy(backend: WebGPUBackend, sources: TensorInfo[], key: string,
    shape: number[], make: (out: TensorInfo) => void): {copy: TensorInfo; kept: boolean} {
  if (!env().getBool(TENSOR_CORE_WEIGHT_CACHE_FLAG)) {
    const copy = backend.makeTensorInfo(shape, 'int32');
    make(copy);
    return {copy, kept: false};
  }
  let cache = caches.get(backend);
  if (!cache) caches.set(backend, cache = new Map());
  const first = sources[0].dataId;
  const hit = cache.get(first)?.find((c) => c.key === key && c.sources.length === sources.length &&
      c.sources.every((s, i) => s.dataId === sources[i].dataId));
  if (hit && !isStale(backend, hit)) return {copy: hit.copy, kept: true};
  sweep(backend, cache);
  const copy = backend.makeTensorInfo(shape, 'int32');
  make(copy);
  const entry: WeightCopy = {key, copy, sources: sources.map((t) => {
    const data = backend.tensorMap.get(t.dataId)!;
    return {dataId: t.dataId, data, buffer: data.resource};
  })};
  if (!cache.has(first)) cache.set(first, []);
  cache.get(first)!.push(entry);
  return {copy, kept: true};
}

/** Copies kept by `backend`, after disposing the stale ones (tests, benchmarks). */
export function tensorCoreWeightCopies(backend: WebGPUBackend): number {
  const cache = caches.get(backend);
  if (!cache) return 0;
  sweep(backend, cache);
  let n = 0;
  for (const list of cache.values()) n += list.length;
  return n;
}

/** For ../weight_state.ts: disposes the copies made from any of these data ids, on every started backend. */
export function releaseTensorCoreWeightCopies(dataIds: DataId[]): void {
  const ids = new Set(dataIds);
  for (const b of Object.values(engine().registry)) {
    const backend = b as WebGPUBackend;
    const cache = caches.get(backend);
    if (!cache) continue;
    for (const [first, list] of [...cache]) {
      for (const c of [...list]) if (c.sources.some((s) => ids.has(s.dataId))) drop(backend, cache, first, c);
    }
  }
}

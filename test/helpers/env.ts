/**
 * One test suite, every backend: `describeBackends` runs a block once per backend under test.
 * Node reads the list from MOE_BACKENDS (set by the npm scripts; see setup_node.ts), the browser
 * from karma's client config. A listed backend that cannot start fails the run: nothing is skipped.
 */
import * as tf from '@tensorflow/tfjs-core';

declare const __karma__: {config: {args: string[]}} | undefined;

export function backendsUnderTest(): string[] {
  let list: string | undefined;
  if (typeof process !== 'undefined' && process.env && process.env.MOE_BACKENDS) list = process.env.MOE_BACKENDS;
  if (typeof __karma__ !== 'undefined') list = __karma__.config.args.find((a) => a.startsWith('backends='))?.slice(9);
  return (list ?? 'cpu').split(',').map((s) => s.trim()).filter(Boolean);
}

export function describeBackends(title: string, fn: (backend: string) => void, cpuNote = ''): void {
  for (const backend of backendsUnderTest()) {
    describe(`${title} [${backend}${backend === 'cpu' ? cpuNote : ''}]`, function() {
      // SwiftShader and first-time shader compiles are slow.
      this.timeout(120000);
      before(async () => {
        if (!(await tf.setBackend(backend))) throw new Error(`backend '${backend}' could not be initialized`);
        await tf.ready();
      });
      fn(backend);
    });
  }
}

/**
 * describeBackends for suites whose expected values come from the cpu reference (routingImpl,
 * fusedExpertsImpl): on cpu the kernel under test is that reference, so the title says the run checks the
 * reference against itself (only the op wrappers and the properties asserted beside it are tested there).
 */
export function describeAgainstReference(title: string, fn: (backend: string) => void): void {
  describeBackends(title, fn, ': the reference compared with itself');
}

/** Runs `fn` and checks that every tensor it made, except those it returns in `keep`, was disposed. */
export async function expectNoLeaks(fn: () => Promise<void> | void): Promise<void> {
  const before = tf.memory().numTensors;
  await fn();
  const after = tf.memory().numTensors;
  if (after !== before) throw new Error(`leaked ${after - before} tensor(s): ${before} before, ${after} after`);
}

/**
 * Runs `call` on the webgpu backend and waits for its GPU work, counting every read-back the while:
 * backend.read / readSync and GPUBuffer.mapAsync. Returns the output with the counts.
 */
export async function countReadBacks(call: () => tf.Tensor): Promise<{out: tf.Tensor; reads: number; maps: number}> {
  const b = tf.backend() as unknown as {read: (...a: unknown[]) => unknown; readSync: (...a: unknown[]) => unknown};
  const proto = (globalThis as unknown as {GPUBuffer: {prototype: {mapAsync: (...a: unknown[]) => unknown}}})
      .GPUBuffer.prototype;
  const original = {read: b.read, readSync: b.readSync, mapAsync: proto.mapAsync};
  let reads = 0;
  let maps = 0;
  b.read = function(...a: unknown[]) { reads++; return original.read.apply(this, a); };
  b.readSync = function(...a: unknown[]) { reads++; return original.readSync.apply(this, a); };
  proto.mapAsync = function(...a: unknown[]) { maps++; return original.mapAsync.apply(this, a); };
  try {
    const out = call();
    const backendImpl = tf.backend() as unknown as {ensureCommandEncoderReady: () => void;
      endComputePassEncoder: () => void; submitQueue: () => void; queue: GPUQueue};
    backendImpl.ensureCommandEncoderReady();
    backendImpl.endComputePassEncoder();
    backendImpl.submitQueue();
    await backendImpl.queue.onSubmittedWorkDone();
    return {out, reads, maps};
  } finally {
    b.read = original.read;
    b.readSync = original.readSync;
    proto.mapAsync = original.mapAsync;
  }
}

/** What `model.save` writes, kept in memory (for `tf.loadLayersModel(tf.io.fromMemory(artifacts))`). */
export async function saveArtifacts(model: {save(handler: tf.io.IOHandler): Promise<unknown>}):
    Promise<tf.io.ModelArtifacts> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }));
  return artifacts!;
}

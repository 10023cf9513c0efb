/**
 * State that a backend derives from weight tensors and keeps between calls: webgpu's dispatch plans hold
 * scratch and uniform buffers that `tf.memory()` counts. A backend sweeps such state lazily (at its next
 * call that misses); a layer disposing its weights calls `releaseWeightState` so that the buffers go with
 * the weights, and `tf.memory()` after `layer.dispose()` is what it was before the layer was built.
 */
import type {DataId} from '@tensorflow/tfjs-core';

type Releaser = (dataIds: DataId[]) => void;
const releasers: Releaser[] = [];

/** Called by a backend's kernel module once, when it registers its kernels. */
export function registerWeightStateReleaser(release: Releaser): void {
  if (!releasers.includes(release)) releasers.push(release);
}

/** Drops whatever any backend keeps that binds one of these data ids (before they are disposed). */
export function releaseWeightState(dataIds: DataId[]): void {
  if (dataIds.length === 0) return;
  for (const release of releasers) release(dataIds);
}

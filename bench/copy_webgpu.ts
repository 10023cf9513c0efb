/**
 * The achievable memory bandwidth of the device: GPUCommandEncoder.copyBufferToBuffer of one large
 * buffer into another, several copies per submit, wall time to onSubmittedWorkDone. Bandwidth
 * counts the bytes read plus the bytes written (2 × size / time), as PyTorch's copy anchor does.
 */
import {median} from './timing';
import {withGpuErrors} from './webgpu_node';

export interface CopyResult {
  bytes: number;
  /** Median time of one copy, µs. */
  us: number;
  gbps: number;
  copiesPerSubmit: number;
  reps: number;
}

/** Copies `requestedBytes` (at most maxBufferSize; halved down to 64 MiB while the device runs out of memory). */
export async function copyBandwidth(device: GPUDevice, requestedBytes: number, reps: number):
    Promise<CopyResult> {
  let bytes = Math.floor(Math.min(requestedBytes, device.limits.maxBufferSize) / 4) * 4;
  for (;;) {
    try {
      return await withGpuErrors(device, () => copyOnce(device, bytes, reps));
    } catch (e) {
      if (!/out of memory/.test((e as Error).message) || bytes / 2 < 64 * 2 ** 20) throw e;
      bytes /= 2;
    }
  }
}

async function copyOnce(device: GPUDevice, bytes: number, reps: number): Promise<CopyResult> {
  const usage = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const src = device.createBuffer({size: bytes, usage});
  const dst = device.createBuffer({size: bytes, usage});
  const batch = async (copies: number) => {
    const encoder = device.createCommandEncoder();
    for (let i = 0; i < copies; i++) encoder.copyBufferToBuffer(src, 0, dst, 0, bytes);
    const t0 = performance.now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    return (performance.now() - t0) * 1000 / copies;
  };
  try {
    // The first copy also pays for the buffers' lazy zero-initialization.
    await batch(1);
    const one = await batch(1);
    // Enough copies per submit that the submit's own latency (tens of µs) is under 1%.
    const copiesPerSubmit = Math.max(1, Math.min(20, Math.ceil(20000 / one)));
    const times: number[] = [];
    for (let r = 0; r < reps; r++) times.push(await batch(copiesPerSubmit));
    const us = median(times);
    return {bytes, us, gbps: 2 * bytes / (us * 1e3), copiesPerSubmit, reps};
  } finally {
    src.destroy();
    dst.destroy();
  }
}

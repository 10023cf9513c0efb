/**
 * Fills a float32 tensor with uniform values in [-scale, scale) on the GPU, so that gigabytes of
 * benchmark weights need no host-side random numbers and no upload. The value of element i is a
 * hash of (offset + i, seed) (Chris Wellons' lowbias32), identical on every run; `uniformHostValue`
 * computes the same numbers on the host for the parity checks, and bench/torch_anchor.py's `hash_uniform`
 * the same in torch (24 random bits → [0, 1), times the scale in float64, rounded once to float32: the
 * float32 product here is that same single rounding). Weights use the index into the whole [E, N, K]
 * stack (the offset of a shard's first expert), so a shard layout never changes a value.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {webgpu_util} from '@tensorflow/tfjs-backend-webgpu';

export class FillUniformProgram implements WebGPUProgram {
  variableNames: string[] = [];
  outputShape: number[];
  shaderKey = 'moeBenchFillUniform';
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  uniforms = 'seed : i32, scale : f32, offset : i32,';
  workgroupSize: [number, number, number] = [256, 1, 1];
  size = true;

  constructor(shape: number[]) {
    this.outputShape = shape;
    this.dispatchLayout = webgpu_util.flatDispatchLayout(shape);
    this.dispatch = webgpu_util.computeDispatch(this.dispatchLayout, shape, this.workgroupSize);
  }

  getUserCode(): string {
    return `
      fn lowbias32(v : u32) -> u32 {
        var h = v;
        h = h ^ (h >> 16u);
        h = h * 0x7feb352du;
        h = h ^ (h >> 15u);
        h = h * 0x846ca68bu;
        h = h ^ (h >> 16u);
        return h;
      }
      fn main(index : i32) {
        if (index < uniforms.size) {
          let h = lowbias32(u32(index + uniforms.offset) ^ lowbias32(bitcast<u32>(uniforms.seed)));
          // 24 random bits → [0, 1) exactly representable in float32.
          let u = f32(h >> 8u) / 16777216.0;
          setOutputAtIndex(index, (2.0 * u - 1.0) * uniforms.scale);
        }
      }
    `;
  }
}

export function lowbias32(v: number): number {
  let h = v >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** The value FillUniformProgram writes at flat index i (the host fill for the cpu backend). */
export function uniformHostValue(i: number, seed: number, scale: number): number {
  const h = lowbias32((i ^ lowbias32(seed)) >>> 0);
  return Math.fround((2 * ((h >>> 8) / 16777216) - 1) * Math.fround(scale));
}

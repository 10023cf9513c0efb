/**
 * Splits RoutingProgram's packed rows [T, 2K] int32 (K ids, then K weights' float bits) into the
 * weights [T, K] float32 or the ids [T, K] int32: a tfjs WebGPU program writes a single output.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {webgpu_util} from '@tensorflow/tfjs-backend-webgpu';

export type RoutingPart = 'weights' | 'ids';

export class RoutingUnpackProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  variableNames = ['packed'];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;
  private readonly topK: number;
  private readonly part: RoutingPart;

  constructor(numTokens: number, topK: number, part: RoutingPart) {
    this.topK = topK;
    this.part = part;
    this.outputShape = [numTokens, topK];
    this.dispatchLayout = webgpu_util.flatDispatchLayout(this.outputShape);
    this.dispatch = webgpu_util.computeDispatch(this.dispatchLayout, this.outputShape, this.workgroupSize);
    this.shaderKey = `moeRoutingUnpack_${topK}_${part}`;
  }

  getUserCode(): string {
    const K = this.topK;
    return `
fn main(index: i32) {
  if (index < uniforms.size) {
    let row = index / ${K};
    let packedIndex = row * ${2 * K} + ${this.part === 'weights' ? K : 0} + (index - row * ${K});
    result[index] = ${this.part === 'weights' ? 'bitcast<f32>(packed[packedIndex])' : 'packed[packedIndex]'};
  }
}
`;
  }
}

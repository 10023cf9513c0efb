/**
 * EPLB logical → physical ids, one thread per (token, slot): replica (token mod replicaCount[id])
 * of logicalToPhysicalMap[id] (../cpu/eplb_impl.ts). Shapes come from tfjs's uniforms, so one
 * pipeline serves every T, k, E and replica count.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {webgpu_util} from '@tensorflow/tfjs-backend-webgpu';

export class EplbMapIdsProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey = 'moeEplbMapIds';
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  // topkIds [T, k] logical ids; map [E, maxReplicas]; replicaCount [E]
  variableNames = ['topkIds', 'map', 'replicaCount'];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;

  constructor(numTokens: number, topK: number) {
    this.outputShape = [numTokens, topK];
    this.dispatchLayout = webgpu_util.flatDispatchLayout(this.outputShape);
    this.dispatch = webgpu_util.computeDispatch(this.dispatchLayout, this.outputShape, this.workgroupSize);
  }

  getUserCode(): string {
    return `
fn main(index: i32) {
  if (index < uniforms.size) {
    let token = index / uniforms.topkIdsShape.y;
    let logical = topkIds[index];
    let replica = token % max(1, replicaCount[logical]);
    result[index] = map[logical * uniforms.mapShape.y + replica];
  }
}
`;
  }
}

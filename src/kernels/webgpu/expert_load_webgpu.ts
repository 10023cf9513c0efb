/**
 * Tokens per expert: load[e] = #{(t, j) : topkIds[t, j] = e, and expertMap[e] >= 0 if a map is
 * given} (../cpu/eplb_impl.ts), int32. Each workgroup owns CHUNK consecutive experts, counts every
 * id into a workgroup-memory histogram with int32 atomics, and writes its counts: one dispatch,
 * no pre-zeroed output, and the same counts whatever the order of the atomics.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';

export const EXPERT_LOAD_LANES = 256;

export class ExpertLoadProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = {x: [0]};
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number];
  private readonly chunk: number;
  private readonly hasExpertMap: boolean;

  constructor(numExperts: number, hasExpertMap: boolean, lanes: number) {
    this.outputShape = [numExperts];
    this.hasExpertMap = hasExpertMap;
    // topkIds [T, k] physical ids; expertMap [P] global → local (-1: not on this rank)
    this.variableNames = hasExpertMap ? ['topkIds', 'expertMap'] : ['topkIds'];
    this.chunk = Math.min(numExperts, 4096);
    this.workgroupSize = [lanes, 1, 1];
    this.dispatch = [Math.ceil(numExperts / this.chunk), 1, 1];
    this.shaderKey = `moeExpertLoad_${this.chunk}_${lanes}_${hasExpertMap ? 'map' : 'nomap'}`;
  }

  getUserCode(): string {
    const lanes = this.workgroupSize[0];
    return `
const CHUNK = ${this.chunk};
const LANES = ${lanes};
var<workgroup> counts: array<atomic<i32>, CHUNK>;

fn main(index: i32) {
  let lane = i32(localIndex);
  let numExperts = uniforms.outShape;
  let first = i32(workgroupId.x) * CHUNK;
  let numIds = uniforms.topkIdsShape.x * uniforms.topkIdsShape.y;
  for (var c0 = 0; c0 < CHUNK; c0 += LANES) {
    if (c0 + lane < CHUNK) { atomicStore(&counts[c0 + lane], 0); }
  }
  workgroupBarrier();
  for (var i0 = 0; i0 < numIds; i0 += LANES) {
    let i = i0 + lane;
    if (i < numIds) {
      let e = topkIds[i];
      if (e >= first && e < first + CHUNK && e < numExperts${this.hasExpertMap ? ' && expertMap[e] >= 0' : ''}) {
        atomicAdd(&counts[e - first], 1);
      }
    }
  }
  workgroupBarrier();
  for (var c0 = 0; c0 < CHUNK; c0 += LANES) {
    let c = c0 + lane;
    if (c < CHUNK && first + c < numExperts) { result[first + c] = atomicLoad(&counts[c]); }
  }
}
`;
  }
}

/**
 * Groups the (token, slot) pairs by local expert, on the GPU (the analogue of vLLM's
 * `moe_align_block_size`), so the GEMMs can give each workgroup a tile of rows of one expert.
 *
 * Pair p = t·k + j is token t's slot j. Every expert's segment is padded to a multiple of the GEMM's
 * row tile `blockRows`, and pairs that no local expert holds (expertMap -1) are dropped. Example with
 * k = 2, 3 local experts, blockRows = 4:
 *
 *   topkIds  = [[2, 0], [0, 1], [2, 1], [0, 2]]   → pairs 0..7 go to experts 2 0 0 1 2 1 0 2
 *   counts   = [3, 2, 3]       padded = [4, 4, 4]
 *   offsets  = [0, 4, 8, 12]   (exclusive prefix sum of padded counts; offsets[E] = rows in use)
 *   sorted   = [1 2 6 -1 | 3 5 -1 -1 | 0 4 7 -1]   (-1 = padding row, read as zeros)
 *
 * Within one expert the order of pairs comes from atomics and may vary between runs; it does not
 * change the output, since each row of a GEMM is computed on its own, with a fixed summation order.
 *
 * Output (int32): [0, E_local] the offsets, then `maxPaddedRows` entries of `sorted` (only the first
 * offsets[E_local] are written), then with `positions` each pair's row in `sorted` (-1 for a pair whose
 * expert this rank does not hold): for the example, positions = [8, 0, 1, 4, 9, 5, 2, 10]. The w2 GEMM that
 * writes y in sorted order (experts_gemm_tc_storage_webgpu.ts) and its combine read rows through it.
 * One workgroup does it all: counting in workgroup atomics, a prefix sum and a scatter; T·k is at most a few
 * tens of thousands.
 */
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {EXPERTS_WORKGROUP, localExpertSnippet} from './experts_wgsl';

/** Local experts the align program can count in workgroup memory (two u32 arrays of this length). */
export const ALIGN_MAX_LOCAL_EXPERTS = 2048;

export interface ExpertsAlignConfig {
  numLocalExperts: number;
  globalNumExperts: number;
  hasExpertMap: boolean;
  blockRows: number;
  /** Also write each pair's sorted row (the trailing section above). */
  positions?: boolean;
  /** The workgroup's invocations (alignLanes; default EXPERTS_WORKGROUP). */
  lanes?: number;
}

/** The most invocations the align program takes: each walks the pairs with a quarter of 256's loads in a row. */
const ALIGN_MAX_LANES = 1024;

const lanesByDevice = new WeakMap<GPUDevice, number>();

/**
 * The align program's invocations on this device: its one workgroup waits on each invocation's chain of loads
 * and atomics, so as many as the device allows up to ALIGN_MAX_LANES (WebGPU's default limit is 256). On an H100,
 * 1024 against 256: 0.057 against 0.070 ms for Qwen3's 32768 pairs, 0.015 against 0.020 for Mixtral's 8192
 * (bench/results/2026-12-06-h100-align-lanes.log). Kept per device: it is asked on every call, decode included.
 */
export function alignLanes(backend: WebGPUBackend): number {
  const device = backend.device;
  let lanes = lanesByDevice.get(device);
  if (lanes == null) {
    lanes = Math.min(ALIGN_MAX_LANES, device.limits.maxComputeInvocationsPerWorkgroup,
        device.limits.maxComputeWorkgroupSizeX);
    lanesByDevice.set(device, lanes);
  }
  return lanes;
}

/** Rows the sorted list may need: every pair, plus up to blockRows - 1 padding rows per used expert. */
export function maxPaddedRows(numPairs: number, numLocalExperts: number, blockRows: number): number {
  return numPairs + Math.min(numLocalExperts, numPairs) * (blockRows - 1);
}

export class ExpertsAlignProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]; y: number[]};
  dispatch: [number, number, number] = [1, 1, 1];
  variableNames: string[];
  workgroupSize: [number, number, number];
  private readonly c: ExpertsAlignConfig;

  constructor(c: ExpertsAlignConfig, numPairs: number) {
    this.c = c;
    this.workgroupSize = [c.lanes ?? EXPERTS_WORKGROUP, 1, 1];
    this.outputShape = [c.numLocalExperts + 1 + maxPaddedRows(numPairs, c.numLocalExperts, c.blockRows) +
      (c.positions ? numPairs : 0)];
    this.dispatchLayout = {x: [0], y: [1]};  // not flat: main() takes no index
    this.variableNames = c.hasExpertMap ? ['topkIds', 'expertMap'] : ['topkIds'];
    this.shaderKey = `moeExpertsAlign_${c.numLocalExperts}_${c.globalNumExperts}_${c.hasExpertMap}_${c.blockRows}_` +
        `${c.positions ?? false}_${this.workgroupSize[0]}`;
  }

  getUserCode(): string {
    const E = this.c.numLocalExperts;
    const BM = this.c.blockRows;
    const W = this.workgroupSize[0];
    const U = 8;
    return `
      ${localExpertSnippet(this.c.hasExpertMap, this.c.globalNumExperts, E)}
      var<workgroup> counts : array<atomic<u32>, ${E}>;
      var<workgroup> offsets : array<u32, ${E + 1}>;

      // The local experts of pairs p0, p0 + ${W}, .. (${U} of them, -1 past the end), their loads issued together:
      // one storage latency per ${U} pairs, not per pair (the counting and the scatter loop over them).
      fn localIds(p0 : u32, numPairs : u32) -> array<i32, ${U}> {
        var ids : array<i32, ${U}>;
        for (var j = 0u; j < ${U}u; j++) {
          let p = p0 + j * ${W}u;
          ids[j] = select(-1, localExpertOf(topkIds[min(p, numPairs - 1u)]), p < numPairs);
        }
        return ids;
      }

      // result: [E+1] offsets, then sorted pair ids. topkIds: [T, k] i32. expertMap: [E_global] i32.
      fn main() {
        let tid = localIndex;
        let numPairs = u32(uniforms.topkIdsShape.x * uniforms.topkIdsShape.y);
        for (var e = tid; e < ${E}u; e += ${W}u) { atomicStore(&counts[e], 0u); }
        workgroupBarrier();
        for (var p0 = tid; p0 < numPairs; p0 += ${U * W}u) {
          let ids = localIds(p0, numPairs);
          for (var j = 0u; j < ${U}u; j++) {
            if (ids[j] >= 0) { atomicAdd(&counts[u32(ids[j])], 1u); }
          }
        }
        workgroupBarrier();
        if (tid == 0u) {
          var rows = 0u;
          for (var e = 0u; e < ${E}u; e++) {
            offsets[e] = rows;
            rows += (atomicLoad(&counts[e]) + ${BM - 1}u) / ${BM}u * ${BM}u;
            atomicStore(&counts[e], 0u);  // reused as the scatter cursor
          }
          offsets[${E}] = rows;
        }
        workgroupBarrier();
        for (var e = tid; e <= ${E}u; e += ${W}u) { result[e] = i32(offsets[e]); }
        let usedRows = offsets[${E}];
        for (var r = tid; r < usedRows; r += ${W}u) { result[${E + 1}u + r] = -1; }
        storageBarrier();
        workgroupBarrier();
        for (var p0 = tid; p0 < numPairs; p0 += ${U * W}u) {
          let ids = localIds(p0, numPairs);
          for (var j = 0u; j < ${U}u; j++) {
            let p = p0 + j * ${W}u;
            if (ids[j] >= 0) {
              let slot = atomicAdd(&counts[u32(ids[j])], 1u);
              result[${E + 1}u + offsets[u32(ids[j])] + slot] = i32(p);
              ${this.c.positions ? `result[u32(uniforms.outShape) - numPairs + p] = i32(offsets[u32(ids[j])] + slot);` : ''}
            }${this.c.positions ? ` else if (p < numPairs) {
              result[u32(uniforms.outShape) - numPairs + p] = -1;
            }` : ''}
          }
        }
      }
    `;
  }
}

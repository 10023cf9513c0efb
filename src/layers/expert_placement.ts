/**
 * Where each expert lives: physical experts (logical experts plus EPLB's redundant replicas), the
 * rank that holds each, and the weight tensors ("shards" by expert range) that hold them.
 * Plain numbers only; the layer turns them into tensors and the loader into checkpoint keys.
 *
 * Example, E = 4 logical experts, 2 redundant, epSize = 2 (vLLM's initial EPLB placement):
 *   physicalToLogical   = [0, 1, 2, 3, 0, 1]        (replica p ≥ E copies logical p - E, mod E)
 *   logicalToPhysical   = [[0, 4], [1, 5], [2, -1], [3, -1]],  replicaCount = [2, 2, 1, 1]
 *   rank 0 holds physical [0, 3), rank 1 holds [3, 6)   (determineExpertMap over P = 6)
 */
import {localExpertRange} from '../ops/expert_map';

/** vLLM `EplbState.build_initial_global_physical_to_logical_map`: redundant replicas cycle through 0..E-1. */
export function initialPhysicalToLogical(numExperts: number, numRedundantExperts: number): number[] {
  const map: number[] = [];
  for (let p = 0; p < numExperts; p++) map.push(p);
  for (let r = 0; r < numRedundantExperts; r++) map.push(r % numExperts);
  return map;
}

export interface LogicalToPhysical {
  /** [E, maxReplicas] row-major, -1 padded: the physical replicas of each logical expert, ascending. */
  map: Int32Array;
  maxReplicas: number;
  /** [E]: how many entries of each row are replicas. */
  replicaCount: Int32Array;
}

/** Inverts physical → logical into the [E, maxReplicas] table and replica counts that selectExperts takes. */
export function logicalToPhysical(physicalToLogical: readonly number[], numExperts: number): LogicalToPhysical {
  const replicas: number[][] = Array.from({length: numExperts}, () => []);
  physicalToLogical.forEach((logical, physical) => replicas[logical].push(physical));
  const maxReplicas = Math.max(1, ...replicas.map((r) => r.length));
  const map = new Int32Array(numExperts * maxReplicas).fill(-1);
  const replicaCount = new Int32Array(numExperts);
  replicas.forEach((r, e) => {
    replicaCount[e] = r.length;
    r.forEach((p, i) => { map[e * maxReplicas + i] = p; });
  });
  return {map, maxReplicas, replicaCount};
}

/** Consecutive local experts held by one w13 tensor and one w2 tensor. */
export interface WeightShard {
  firstLocalExpert: number;
  numExperts: number;
}

/**
 * Splits `numLocalExperts` into the fewest consecutive ranges whose w13 data ([n, 2·I_tp, H] in the device
 * format, the larger of the two tensors) fits in `maxWeightBytes`. Throws, saying why, when one expert alone does not fit.
 */
export function splitByExpertRange(numLocalExperts: number, bytesPerExpert: number, maxWeightBytes: number):
    WeightShard[] {
  const perShard = Math.floor(maxWeightBytes / bytesPerExpert);
  if (perShard < 1) {
    throw new Error(`FusedMoE: one expert's w13 takes ${bytesPerExpert} bytes, more than 'maxWeightBytes' = ` +
        `${maxWeightBytes} (the device's storage-binding limit); shard the intermediate size with a larger 'tpSize'`);
  }
  const shards: WeightShard[] = [];
  for (let first = 0; first < numLocalExperts; first += perShard) {
    shards.push({firstLocalExpert: first, numExperts: Math.min(perShard, numLocalExperts - first)});
  }
  return shards;
}

/** Everything the loader and the layer need to know about one rank's experts, as plain data. */
export interface ExpertLayout {
  numLogicalExperts: number;
  numPhysicalExperts: number;
  /** [P]: the logical expert each physical expert replicates. */
  physicalToLogical: number[];
  /** The physical ids this rank holds, in local order. */
  localPhysicalExperts: number[];
  hiddenSize: number;
  /** The full intermediate size I of the checkpoint. */
  intermediateSize: number;
  tpSize: number;
  tpRank: number;
  shards: WeightShard[];
  hasCorrectionBias: boolean;
}

export function expertLayout(o: {
  numExperts: number; numRedundantExperts: number; epSize: number; epRank: number; hiddenSize: number;
  intermediateSize: number; tpSize: number; tpRank: number; maxWeightBytes: number; hasCorrectionBias: boolean;
  /** Bytes of one expert's w13 data in the device format (default float32). */
  w13BytesPerExpert?: number;
}): ExpertLayout {
  const physicalToLogical = initialPhysicalToLogical(o.numExperts, o.numRedundantExperts);
  const P = physicalToLogical.length;
  const {first, count} = o.epSize === 1 ? {first: 0, count: P} : localExpertRange(o.epSize, o.epRank, P);
  const localPhysicalExperts = Array.from({length: count}, (_, i) => first + i);
  const intermediateSizePerPartition = o.intermediateSize / o.tpSize;
  const shards = splitByExpertRange(count, o.w13BytesPerExpert ?? 2 * intermediateSizePerPartition * o.hiddenSize * 4,
      o.maxWeightBytes);
  return {
    numLogicalExperts: o.numExperts, numPhysicalExperts: P, physicalToLogical, localPhysicalExperts,
    hiddenSize: o.hiddenSize, intermediateSize: o.intermediateSize, tpSize: o.tpSize, tpRank: o.tpRank, shards,
    hasCorrectionBias: o.hasCorrectionBias,
  };
}

/**
 * EPLB references (vLLM `select_experts` with `enable_eplb`).
 *
 * Example, E = 2 logical experts, expert 1 replicated on physical experts 1 and 2:
 *   logicalToPhysicalMap = [[0, -1], [1, 2]], logicalReplicaCount = [1, 2]
 *   ids [[1], [1], [0]]  →  token 0: replica 0 % 2 → 1;  token 1: 1 % 2 → 2;  token 2: → 0
 *   physical ids [[1], [2], [0]], load over 3 physical experts [1, 1, 1]
 */

/** Logical → physical ids: replica (token mod replicaCount[id]) of logicalToPhysicalMap[id]. */
export function eplbMapIdsImpl(ids: ArrayLike<number>, numTokens: number, topK: number,
    logicalToPhysicalMap: ArrayLike<number>, maxReplicas: number, replicaCount: ArrayLike<number>): Int32Array {
  const out = new Int32Array(numTokens * topK);
  for (let t = 0; t < numTokens; t++) {
    for (let j = 0; j < topK; j++) {
      const logical = ids[t * topK + j];
      const replica = t % Math.max(1, replicaCount[logical]);
      out[t * topK + j] = logicalToPhysicalMap[logical * maxReplicas + replica];
    }
  }
  return out;
}

/** Number of (token, slot) pairs per expert; ids outside [0, numExperts) or mapped to -1 are not counted. */
export function expertLoadImpl(ids: ArrayLike<number>, numExperts: number, expertMap: ArrayLike<number> | null):
    Int32Array {
  const load = new Int32Array(numExperts);
  for (let i = 0; i < ids.length; i++) {
    const e = ids[i];
    if (e >= 0 && e < numExperts && (!expertMap || expertMap[e] >= 0)) load[e]++;
  }
  return load;
}

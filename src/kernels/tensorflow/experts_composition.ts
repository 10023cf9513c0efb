/**
 * Which composition of TensorFlow ops computes FusedExperts for a given problem, and why.
 *
 * TensorFlow has no grouped (per-expert) GEMM, so every composition that skips unselected experts
 * copies expert weights with GatherV2 before a BatchMatMulV2: the cost to compare is the number of
 * expert weight sets (w13 and w2 of one expert) gathered per call.
 *
 *   decode   one weight set per (token, slot) pair, N = T·k of them; each pair is a 1-row matmul.
 *            No sorting. Best while N is small next to the experts held.
 *   prefill  pairs sorted by expert (TopKV2 as a stable sort) and packed into blocks of B rows, each
 *            block one expert; one weight set per block. Without reading the counts back, the
 *            number of blocks is bounded statically: Σ_e ceil(count_e / B) <= floor(N / B) + E_local.
 *            Costs a sort of N keys and at most E_local·(B - 1) padding rows.
 *
 * Example, N = 74 pairs (Mixtral, T = 37, k = 2) over E_local = 8 experts: B = 8 (74 / 8 ≈ 9 rows per
 * expert, rounded down to a power of two), blocks <= floor(74 / 8) + 8 = 17, so prefill gathers
 * 17 weight sets where decode would gather 74.
 */
import {env} from '@tensorflow/tfjs-core';

/** Rows per block at most; larger blocks only add padding once the matmuls are efficient. */
export const MAX_BLOCK_ROWS = 64;

/**
 * tf.env() flag: the bytes of expert weights gathered at once (a chunk of blocks), 256 MiB unless
 * set. It bounds the peak memory of a call; lower it on a small GPU.
 */
export const MAX_GATHERED_BYTES_FLAG = 'MOE_TENSORFLOW_MAX_GATHERED_BYTES';
env().registerFlag(MAX_GATHERED_BYTES_FLAG, () => 256 * 1024 * 1024);

export interface ExpertsComposition {
  kind: 'decode' | 'prefill';
  /** Rows per block: 1 for decode. */
  blockRows: number;
  /** Blocks per weight shard (one gathered weight set each). */
  blocksPerShard: number[];
  /** Blocks whose weights are gathered together. */
  blocksPerChunk: number;
  reason: string;
}

function floorPow2(x: number): number {
  return x < 1 ? 1 : 2 ** Math.floor(Math.log2(x));
}

/**
 * @param numPairs N = T·k
 * @param shardExperts experts in each weight shard (w13_0, w13_1, ...)
 * @param expertWeightBytes bytes of one expert's w13 and w2 (3·I·H·4)
 */
export function chooseExpertsComposition(numPairs: number, shardExperts: number[], expertWeightBytes: number):
    ExpertsComposition {
  const N = numPairs;
  const numLocal = shardExperts.reduce((a, b) => a + b, 0);
  const blocksPerChunk = Math.max(1, Math.floor(env().getNumber(MAX_GATHERED_BYTES_FLAG) / expertWeightBytes));
  const B = Math.min(MAX_BLOCK_ROWS, floorPow2(N / numLocal));
  // Each shard runs over all N pairs (pairs of other shards are masked), so both costs add up per shard.
  const decodeSets = N * shardExperts.length;
  const prefillBlocks = shardExperts.map((e) => Math.floor(N / B) + Math.min(e, N));
  const prefillSets = prefillBlocks.reduce((a, b) => a + b, 0);
  if (B === 1 || decodeSets <= prefillSets) {
    return {kind: 'decode', blockRows: 1, blocksPerShard: shardExperts.map(() => N), blocksPerChunk,
      reason: `decode: ${N} (token, slot) pairs gather ${decodeSets} expert weight sets, no more than the ` +
        `${prefillSets} blocks${B > 1 ? ` of ${B} rows` : ''} that sorting by expert would gather`};
  }
  return {kind: 'prefill', blockRows: B, blocksPerShard: prefillBlocks, blocksPerChunk,
    reason: `prefill: ${N} (token, slot) pairs sorted by expert into <= ${prefillSets} blocks of ${B} rows ` +
      `gather ${prefillSets} expert weight sets instead of ${decodeSets}`};
}

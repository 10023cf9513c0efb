import {Tensor1D, tensor1d} from '@tensorflow/tfjs-core';
import {markRange} from './validate';

/**
 * vLLM `determine_expert_map` (the seed's placement): rank r holds experts
 * [r·⌊E/ep⌋, (r+1)·⌊E/ep⌋), and the last rank also takes the remainder.
 *
 * Example, E = 8, epSize = 3: ranks hold 2, 2 and 4 experts; rank 1's map is
 *   [-1, -1, 0, 1, -1, -1, -1, -1]
 *
 * Returns the number of local experts and the int32 [E] map (null when epSize is 1).
 */
export function determineExpertMap(epSize: number, epRank: number, globalNumExperts: number):
    {numLocalExperts: number; expertMap: Tensor1D | null} {
  const fn = 'determineExpertMap';
  if (!Number.isInteger(epSize) || epSize < 1) throw new Error(`${fn}: 'epSize' must be an integer >= 1 but got ${epSize}`);
  if (!Number.isInteger(epRank) || epRank < 0 || epRank >= epSize) {
    throw new Error(`${fn}: 'epRank' must be an integer in [0, ${epSize - 1}] but got ${epRank}`);
  }
  if (!Number.isInteger(globalNumExperts) || globalNumExperts < epSize) {
    throw new Error(`${fn}: 'globalNumExperts' must be an integer >= epSize (${epSize}) but got ${globalNumExperts}`);
  }
  if (epSize === 1) return {numLocalExperts: globalNumExperts, expertMap: null};
  const {first, count} = localExpertRange(epSize, epRank, globalNumExperts);
  const map = new Int32Array(globalNumExperts).fill(-1);
  for (let i = 0; i < count; i++) map[first + i] = i;
  // Values -1 (other ranks' experts, when there are any) to count - 1.
  const min = count === globalNumExperts ? 0 : -1;
  return {numLocalExperts: count,
    expertMap: markRange(tensor1d(map, 'int32'), min, count - 1, `determineExpertMap for ${count} local experts`)};
}

/** The global ids [first, first + count) that rank `epRank` holds under the seed's placement. */
export function localExpertRange(epSize: number, epRank: number, globalNumExperts: number):
    {first: number; count: number} {
  const base = Math.floor(globalNumExperts / epSize);
  const first = epRank * base;
  const count = epRank === epSize - 1 ? globalNumExperts - first : base;
  return {first, count};
}

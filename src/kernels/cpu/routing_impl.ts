/**
 * The routing reference: softmax/sigmoid scoring, optional correction bias, group-limited
 * selection and top-k. Plain loops, written for clarity; every other backend is tested against it.
 *
 * Per token row of E logits (SEMANTICS.md, "Routing"):
 *   scores = softmax(x) or sigmoid(x)               (NaN → -FLT_MAX, ±Inf → ±FLT_MAX first)
 *   choice = scores + bias  if a bias is given, else the logits themselves
 *            (both scorings are monotonic, and logits keep ties apart that rounded scores merge)
 *   groups: score = top-2 sum (bias) or max of choice; keep the topkGroup best groups
 *   ids    = the topK best experts by choice among kept groups, ties to the lower id
 *   w      = scores[ids];  renormalize: w /= (Σw + 1e-20);  w *= routedScalingFactor
 *   row sorted by weight descending, ties to the lower id
 */
import {sanitizeLogit, sigmoid} from '../../math';
import type {ScoringFunc} from '../../kernel_names';

export interface RoutingConfig {
  topK: number;
  renormalize: boolean;
  scoringFunc: ScoringFunc;
  routedScalingFactor: number;
  /** 1 for plain (ungrouped) top-k. */
  numExpertGroup: number;
  topkGroup: number;
}

export function routingImpl(logits: ArrayLike<number>, numTokens: number, numExperts: number,
    bias: ArrayLike<number> | null, cfg: RoutingConfig): {weights: Float32Array; ids: Int32Array} {
  const {topK, numExpertGroup, topkGroup} = cfg;
  const E = numExperts;
  const groupSize = E / numExpertGroup;
  const weights = new Float32Array(numTokens * topK);
  const ids = new Int32Array(numTokens * topK);
  const x = new Float64Array(E);
  const scores = new Float64Array(E);
  const choice = new Float64Array(E);
  const kept = new Uint8Array(E);

  for (let t = 0; t < numTokens; t++) {
    let maxLogit = -Infinity;
    for (let e = 0; e < E; e++) {
      x[e] = sanitizeLogit(logits[t * E + e]);
      maxLogit = Math.max(maxLogit, x[e]);
    }
    if (cfg.scoringFunc === 'softmax') {
      let sum = 0;
      for (let e = 0; e < E; e++) sum += (scores[e] = Math.exp(x[e] - maxLogit));
      for (let e = 0; e < E; e++) scores[e] = Math.fround(scores[e] / sum);
    } else {
      for (let e = 0; e < E; e++) scores[e] = Math.fround(sigmoid(x[e]));
    }
    for (let e = 0; e < E; e++) {
      choice[e] = bias ? sanitizeLogit(Math.fround(scores[e] + bias[e])) : x[e];
    }

    // Group-limited selection: rank groups, keep the best topkGroup.
    kept.fill(numExpertGroup > 1 ? 0 : 1);
    if (numExpertGroup > 1) {
      const groupScore = new Float64Array(numExpertGroup);
      for (let g = 0; g < numExpertGroup; g++) {
        let first = -Infinity, second = -Infinity;
        for (let e = g * groupSize; e < (g + 1) * groupSize; e++) {
          if (choice[e] > first) { second = first; first = choice[e]; }
          else if (choice[e] > second) second = choice[e];
        }
        groupScore[g] = bias ? (groupSize > 1 ? first + second : first) : first;
      }
      for (const g of argTopK(groupScore, topkGroup, null)) {
        kept.fill(1, g * groupSize, (g + 1) * groupSize);
      }
    }

    const rowIds = argTopK(choice, topK, kept);
    let sum = 0;
    for (const e of rowIds) sum += scores[e];
    const row = rowIds.map((e) => {
      let w = scores[e];
      if (cfg.renormalize) w = w / (sum + 1e-20);
      return {e, w: Math.fround(w * cfg.routedScalingFactor)};
    });
    row.sort((a, b) => (b.w - a.w) || (a.e - b.e));
    row.forEach(({e, w}, j) => {
      ids[t * topK + j] = e;
      weights[t * topK + j] = w;
    });
  }
  return {weights, ids};
}

/** Indices of the k largest values (ties to the lower index), among those with allowed[i] = 1. */
function argTopK(values: Float64Array, k: number, allowed: Uint8Array | null): number[] {
  const picked: number[] = [];
  const used = new Uint8Array(values.length);
  for (let j = 0; j < k; j++) {
    let best = -1;
    for (let i = 0; i < values.length; i++) {
      if (used[i] || (allowed && !allowed[i])) continue;
      if (best < 0 || values[i] > values[best]) best = i;
    }
    used[best] = 1;
    picked.push(best);
  }
  return picked;
}

/**
 * Picking the next token from one row of logits, as transformers' generate does: temperature, then
 * top-k, then top-p (nucleus), then a draw. A seeded generator makes a sampled run repeatable.
 */

export interface SamplingOptions {
  /** > 0 samples from softmax(logits / temperature); absent or 0 is greedy (argmax). */
  temperature?: number;
  /** Keep only the k most likely tokens. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches topP, in (0, 1]. */
  topP?: number;
  /** Seed of the draw (an integer); the same seed gives the same tokens. */
  seed?: number;
}

/** mulberry32: a small, fast 32-bit generator, enough for drawing tokens (not for cryptography). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Draws a token id from `logits` (one row, length V) with temperature > 0, topK and topP applied. */
export function sampleToken(logits: Float32Array, o: {temperature: number; topK?: number; topP?: number},
    random: () => number): number {
  const V = logits.length;
  const order = Array.from({length: V}, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  const keep = Math.min(o.topK ?? V, V);
  const max = logits[order[0]];
  const probs: number[] = [];
  let sum = 0;
  for (let r = 0; r < keep; r++) {
    const p = Math.exp((logits[order[r]] - max) / o.temperature);
    probs.push(p);
    sum += p;
  }
  // Nucleus: the shortest prefix of the sorted tokens reaching topP (at least one token).
  let n = probs.length;
  if (o.topP != null && o.topP < 1) {
    let cum = 0;
    for (let r = 0; r < probs.length; r++) {
      cum += probs[r] / sum;
      if (cum >= o.topP) {
        n = r + 1;
        break;
      }
    }
  }
  let total = 0;
  for (let r = 0; r < n; r++) total += probs[r];
  let u = random() * total;
  for (let r = 0; r < n; r++) {
    u -= probs[r];
    if (u < 0) return order[r];
  }
  return order[n - 1];
}

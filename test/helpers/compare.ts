/** Comparisons against reference numbers, with the tolerances the fixtures' README gives. */
import {expect} from 'chai';

/** |a - e| <= atol + rtol·max|e| element-wise, reporting the worst element. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string,
    {atol = 1e-5, rtolOfMax = 1e-4}: {atol?: number; rtolOfMax?: number} = {}): void {
  expect(actual.length, `${what}: length`).to.equal(expected.length);
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) maxAbs = Math.max(maxAbs, Math.abs(expected[i]));
  const tol = atol + rtolOfMax * maxAbs;
  let worst = -1, worstErr = -1;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    if (!(err <= tol) && (err > worstErr || Number.isNaN(err))) { worst = i; worstErr = err; }
  }
  if (worst >= 0) {
    expect.fail(`${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(|diff| ${worstErr} > tolerance ${tol})`);
  }
}

/** Per row of k ids: the same set of experts. */
export function expectIdSets(actual: ArrayLike<number>, expected: ArrayLike<number>, k: number, what: string): void {
  expect(actual.length, `${what}: length`).to.equal(expected.length);
  for (let r = 0; r < expected.length / k; r++) {
    const a = Array.from(actual).slice(r * k, r * k + k).sort((x, y) => x - y);
    const e = Array.from(expected).slice(r * k, r * k + k).sort((x, y) => x - y);
    expect(a, `${what}: row ${r}`).to.deep.equal(e);
  }
}

/** Weights compared per (row, id), so that rows may order equal weights differently. */
export function expectWeightsById(actualW: ArrayLike<number>, actualIds: ArrayLike<number>,
    expectedW: ArrayLike<number>, expectedIds: ArrayLike<number>, k: number, what: string, atol = 1e-5): void {
  expectIdSets(actualIds, expectedIds, k, `${what} ids`);
  for (let r = 0; r < expectedW.length / k; r++) {
    for (let j = 0; j < k; j++) {
      const id = expectedIds[r * k + j];
      let jj = 0;
      while (actualIds[r * k + jj] !== id) jj++;
      const a = actualW[r * k + jj], e = expectedW[r * k + j];
      if (!(Math.abs(a - e) <= atol)) expect.fail(`${what}: row ${r} expert ${id} weight ${a}, expected ${e}`);
    }
  }
}

/** A small seeded generator (mulberry32), so every run sees the same random cases. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Normal-ish values (sum of uniforms), scaled. */
export function randn(rand: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() + rand() + rand() - 1.5) * 2 * scale;
  return out;
}

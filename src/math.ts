/** Scalar math shared by the reference kernels (float64 here; the GPU kernels use float32 forms). */

/** Largest finite float32: NaN and ±Inf logits are clamped to ±FLT_MAX before routing. */
export const FLT_MAX = 3.4028234663852886e38;

/** Routing treats NaN as the lowest value and ±Inf as ±FLT_MAX, so every row has a finite order. */
export function sanitizeLogit(x: number): number {
  if (Number.isNaN(x)) return -FLT_MAX;
  return Math.min(FLT_MAX, Math.max(-FLT_MAX, x));
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

export function silu(x: number): number {
  return x * sigmoid(x);
}

/**
 * erf(x) from Numerical Recipes' erfc Chebyshev fit (fractional error < 1.2e-7 everywhere),
 * since JavaScript has no Math.erf. PyTorch's exact gelu is 0.5·x·(1 + erf(x/√2)).
 */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
      t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
      t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - erfc : erfc - 1;
}

export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** gpt-oss's clamped SwiGLU (vLLM 'swigluoai'): alpha 1.702, limit 7. */
export const SWIGLUOAI_ALPHA = 1.702;
export const SWIGLUOAI_LIMIT = 7;

export function swigluoai(gate: number, up: number): number {
  const g = Math.min(gate, SWIGLUOAI_LIMIT);
  const u = Math.max(-SWIGLUOAI_LIMIT, Math.min(up, SWIGLUOAI_LIMIT));
  return (u + 1) * g * sigmoid(SWIGLUOAI_ALPHA * g);
}

/**
 * The Dawn toggles of the tensor-core device entries (gpu_setup_tensor_cores.ts, tc_probe.ts), for `create()`:
 * allow_unsafe_apis and vulkan_enable_f16_on_nvidia expose subgroup matrices and shader-f16 on NVIDIA Vulkan,
 * timestamp quantization off for exact GPU times; `--dawn-toggles a,b` in argv enables more (e.g.
 * disable_robustness) for A/B runs.
 */
export function tensorCoreDawnToggles(argv: string[] = process.argv): string[] {
  const at = argv.indexOf('--dawn-toggles');
  const value = at >= 0 ? argv[at + 1] : undefined;
  // Dawn does not stop on a toggle name it does not know (`undefined`), so the A/B would run its baseline twice.
  if (at >= 0 && (value == null || value.startsWith('--'))) throw new Error('--dawn-toggles: expected toggle names after it');
  const extra = value != null ? `,${value}` : '';
  return [`enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia${extra}`,
    'disable-dawn-features=timestamp_quantization'];
}

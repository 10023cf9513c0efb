/**
 * The Dawn toggles of the tensor-core device entries (gpu_setup_tensor_cores.ts, tc_probe.ts), for `create()`:
 * allow_unsafe_apis and vulkan_enable_f16_on_nvidia expose subgroup matrices and shader-f16 on NVIDIA Vulkan,
 * timestamp quantization off for exact GPU times; `--dawn-toggles a,b` in argv enables more (e.g.
 * disable_robustness) for A/B runs.
 */
export function tensorCoreDawnToggles(argv: string[] = process.argv): string[] {
  const at = argv.indexOf('--dawn-toggles');
  const extra = at >= 0 ? `,${argv[at + 1]}` : '';
  return [`enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia${extra}`,
    'disable-dawn-features=timestamp_quantization'];
}

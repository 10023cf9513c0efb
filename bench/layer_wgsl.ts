/**
 * Prints the WGSL that the device compiles for the int8 default's w13 GEMM (ExpertsW13Int8StagedGemmProgram) at a
 * benchmark shape (bench/layer_kernel.ts), with its dispatch. For reading the layer kernel beside tc_probe's loops
 * (docs/tensor-cores.md, "a twenty-first session"); no GPU needed.
 *
 *   npx tsx bench/layer_wgsl.ts [--shape plain-gemm] [--tokens 4096]
 */
import {int8W13Gemm} from './layer_kernel';
import {MoEShape, SHAPES} from './shapes';

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const s = SHAPES[arg('shape', 'plain-gemm')] as MoEShape | undefined;
if (s == null || s.kind !== 'moe') throw new Error(`--shape: not an MoE shape of bench/shapes.ts: ${arg('shape', '')}`);
const gemm = int8W13Gemm(s, Number(arg('tokens', '4096')));
console.log(`// dispatch ${gemm.dispatch.join(' × ')}; ${JSON.stringify(gemm.shapes)}\n${gemm.code}`);

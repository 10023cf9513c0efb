/**
 * Prints the WGSL that the device compiles for the int8 default's w13 GEMM (ExpertsW13Int8StagedGemmProgram) at a
 * benchmark shape: tfjs-backend-webgpu's makeShader (through compileProgram, with a device that only records the
 * code) and then this package's rewrites (device.ts rewriteShader), as createWebGPUBackend's device applies them. For reading the
 * layer kernel beside tc_probe's loops (docs/tensor-cores.md, "a twenty-first session"); no GPU needed.
 *
 *   npx tsx bench/layer_wgsl.ts [--shape plain-gemm] [--tokens 4096]
 */
import {compileProgram} from '@tensorflow/tfjs-backend-webgpu/dist/webgpu_program';
import {rewriteShader} from '../src/kernels/webgpu/device';
import {maxPaddedRows} from '../src/kernels/webgpu/experts_align_webgpu';
import {blockedRowBlockWords, int8PipelinedLayout} from '../src/kernels/webgpu/experts_int8_tc_pipelined_webgpu';
import {ExpertsW13Int8StagedGemmProgram, INT8_STAGED_LAYOUT_SUBGROUPS, INT8_STAGED_TILE, int8StagedResultColumns}
  from '../src/kernels/webgpu/experts_int8_tc_staged_webgpu';
import {MoEShape, SHAPES} from './shapes';

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const s = SHAPES[arg('shape', 'plain-gemm')] as MoEShape | undefined;
if (s == null || s.kind !== 'moe') throw new Error(`--shape: not an MoE shape of bench/shapes.ts: ${arg('shape', '')}`);
const M = Number(arg('tokens', '4096'));
const {E, H, I} = s, P = M * s.k, BM = INT8_STAGED_TILE.rows;
const layout = int8PipelinedLayout(H, I, INT8_STAGED_LAYOUT_SUBGROUPS);
const rows = maxPaddedRows(P, E, BM);
const program = new ExpertsW13Int8StagedGemmProgram({stage: 'w13', hiddenSize: H, intermediateSize: I, topK: s.k,
  numLocalExperts: E, globalNumExperts: E, hasExpertMap: false, activation: 'silu', applyRouterWeightOnInput: false,
  hasBias: false}, [rows, int8StagedResultColumns('w13', layout)], Math.ceil(P / BM) + E, layout);
let code = '';
const recorder = {createShaderModule: (d: {code: string}) => { code = d.code; return {}; }, createComputePipeline: () => ({})};
const inputs = [{name: 'xb', dtype: 'int32', shape: [Math.ceil(rows / 16), blockedRowBlockWords(layout.Hp)]},
  {name: 'align', dtype: 'int32', shape: [E + 1 + P]},
  {name: 'wb', dtype: 'int32', shape: [E * layout.w13Rows / 16 * (layout.Hp / 32), 128]}];
compileProgram(recorder as unknown as GPUDevice, program, inputs as never,
    {dtype: 'int32', shape: program.outputShape} as never, false);
console.log(rewriteShader(code));

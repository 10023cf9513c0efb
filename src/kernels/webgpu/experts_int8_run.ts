/**
 * The int8 w8a8 path of the webgpu FusedExperts kernel (useInt8W8A8), stage by stage:
 *
 *   quantize hidden rows (ExpertsInt8QuantProgram) → w13 + act (GEMV per pair | grouped GEMV | GEMM)
 *   → quantize the activation rows → w2 · routing weight (same kind of program) → combine (slot order)
 *
 * and the one choice it makes: which prefill GEMM runs (chooseInt8GemmKernel). Both GEMMs give the same int32
 * accumulators as the cpu reference, so the choice changes speed, never a bit of the output.
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {ProgramIssuer} from './dispatch_plan';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import type {ExpertProjectionShard} from '../../kernel_names';
import {ExpertsAlignProgram, maxPaddedRows} from './experts_align_webgpu';
import {ExpertsCombineProgram} from './experts_combine_webgpu';
import type {ExpertsStage} from './experts_gemv_webgpu';
import {ExpertsInt8QuantProgram} from './experts_int8_quant_webgpu';
import {ExpertsInt8Config, ExpertsW13Int8GemmProgram, ExpertsW13Int8GemvProgram, ExpertsW2Int8GemmProgram,
  ExpertsW2Int8GemvProgram, INT8_GEMM_BLOCK_ROWS,
  unsupportedInt8Shapes} from './experts_int8_webgpu';
import {ExpertsW13Int8TensorCoreGemmProgram, ExpertsW2Int8TensorCoreGemmProgram, INT8_TC_BLOCK_ROWS,
  INT8_TC_WORKGROUP_BYTES, int8TensorCoreConfig} from './experts_int8_tc_webgpu';
import {webgpuCapabilities} from './capabilities';

export type Int8GemmKernel = 'tensor-core-i8' | 'dot4-i8';

let forcedInt8Gemm: Int8GemmKernel | null = null;

/** Forces the int8 prefill GEMM (tests, the device check); null restores the choice. */
/** The kernel forced by setInt8GemmKernel, or null (part of a dispatch plan's key). */
export function forcedInt8GemmKernel(): Int8GemmKernel | null {
  return forcedInt8Gemm;
}

export function setInt8GemmKernel(kernel: Int8GemmKernel | null): void {
  forcedInt8Gemm = kernel;
}

/** Whether WGSL's dot4I8Packed is there (the `packed_4x8_integer_dot_product` language feature). */
export function hasDot4I8Packed(): boolean {
  const gpu = (globalThis as {navigator?: {gpu?: {wgslLanguageFeatures?: {has(f: string): boolean}}}}).navigator?.gpu;
  return !!gpu?.wgslLanguageFeatures?.has('packed_4x8_integer_dot_product');
}

/**
 * The int8 prefill GEMM: i8×i8→i32 subgroup matrices (16×16×32) where the adapter lists that config and subgroups
 * are 32 wide, else dot4I8Packed. Says why (vLLM oracle style).
 */
export function chooseInt8GemmKernel(backend: WebGPUBackend): {kernel: Int8GemmKernel; reason: string} {
  const caps = webgpuCapabilities(backend);
  const config = int8TensorCoreConfig(caps.subgroupMatrixConfigs);
  const whyNot = !caps.subgroups ? `subgroups are off: ${caps.reason}` :
    !config ? `no i8×i8→i32 16×16×32 subgroup-matrix config among ${JSON.stringify(caps.subgroupMatrixConfigs)}` :
    caps.subgroupSize !== 32 ? `the kernel is laid out for subgroups of 32 and this device's size is ` +
      `${caps.subgroupSize || 'not fixed'}` :
    caps.maxComputeWorkgroupStorageSize < INT8_TC_WORKGROUP_BYTES ? `it needs ${INT8_TC_WORKGROUP_BYTES} bytes of ` +
      `workgroup memory and the device allows ${caps.maxComputeWorkgroupStorageSize}` : '';
  if (forcedInt8Gemm === 'tensor-core-i8' && whyNot) {
    throw new Error(`fusedExperts (webgpu): cannot force the int8 tensor-core GEMM: ${whyNot}`);
  }
  if (forcedInt8Gemm) return {kernel: forcedInt8Gemm, reason: 'forced by setInt8GemmKernel'};
  return whyNot ? {kernel: 'dot4-i8', reason: `dot4I8Packed tiles: ${whyNot}`} :
    {kernel: 'tensor-core-i8', reason: 'i8×i8→i32 subgroup matrices, 16×16×32'};
}

/** Why the int8 path cannot run here at these sizes, or null. */
export function unsupportedInt8OnWebGPU(H: number, I: number): string | null {
  if (!hasDot4I8Packed()) {
    return `fusedExperts on 'webgpu' needs the WGSL language feature packed_4x8_integer_dot_product ` +
        `(dot4I8Packed) for useInt8W8A8, and this browser's navigator.gpu.wgslLanguageFeatures lacks it`;
  }
  const shapes = unsupportedInt8Shapes(H, I);
  return shapes ? `fusedExperts on 'webgpu': ${shapes}` : null;
}

/** What the int8 path needs from the FusedExperts kernel call. */
export interface Int8ExpertsCall {
  backend: WebGPUBackend;
  /** Issues the programs (the backend, or a dispatch-plan recorder). */
  issuer: ProgramIssuer;
  config: Omit<ExpertsInt8Config, 'stage'>;
  path: 'decode' | 'decode-grouped' | 'prefill';
  hiddenStates: TensorInfo;
  topkWeights: TensorInfo;
  /** topkIds, and the expertMap when there is one. */
  ids: TensorInfo[];
  shards: {w13: ExpertProjectionShard[]; w2: ExpertProjectionShard[]};
  /** A temporary the caller disposes after the call. */
  temp: (t: TensorInfo) => TensorInfo;
  /** Runs a program into `out` (float32), checking its storage-buffer count. */
  run: (program: WebGPUProgram, inputs: TensorInfo[], uniforms?: Array<{type: string; data: number[]}>,
    out?: TensorInfo) => TensorInfo;
}

export function runInt8Experts(c: Int8ExpertsCall): TensorInfo {
  const {backend, issuer, config, hiddenStates, topkWeights, ids} = c;
  const T = hiddenStates.shape[0];
  const {topK, hiddenSize: H, intermediateSize: I, numLocalExperts: E, applyRouterWeightOnInput: onInput} = config;
  const P = T * topK;
  const parts = (s: ExpertProjectionShard) => [s.data, s.scales!, ...(s.bias ? [s.bias] : [])];
  const quantize = (x: TensorInfo, weighted: boolean) => c.temp(issuer.runWebGPUProgram(
      new ExpertsInt8QuantProgram(x.shape[0], x.shape[1], weighted), weighted ? [x, topkWeights] : [x], 'int32'));
  const weightsFor = (stage: ExpertsStage) => stage === 'w2' && !onInput ? [topkWeights] : [];
  // One dispatch per weight shard, each handling the pairs (or sorted tiles) of its expert range.
  const perShard = (stage: ExpertsStage, out: TensorInfo, make: (s: number, n: number) => [WebGPUProgram, TensorInfo[]]) => {
    let first = 0;
    (stage === 'w13' ? c.shards.w13 : c.shards.w2).forEach((shard, s) => {
      const n = shard.data.shape[0];
      const [program, inputs] = make(s, n);
      c.run(program, [...inputs, ...parts(shard)], [{type: 'int32', data: [first]}], out);
      first += n;
    });
  };
  const w13 = {...config, stage: 'w13' as const};
  const w2 = {...config, stage: 'w2' as const};
  const xq = quantize(hiddenStates, onInput);
  let y: TensorInfo;
  if (c.path === 'prefill') {
    const gemm = chooseInt8GemmKernel(backend).kernel;
    const blockRows = gemm === 'tensor-core-i8' ? INT8_TC_BLOCK_ROWS : INT8_GEMM_BLOCK_ROWS;
    const rows = maxPaddedRows(P, E, blockRows);
    const align = c.temp(issuer.runWebGPUProgram(new ExpertsAlignProgram({...config, blockRows}, P), ids, 'int32'));
    const act = c.temp(issuer.makeTensorInfo([rows, I], 'float32'));
    const W13 = gemm === 'tensor-core-i8' ? ExpertsW13Int8TensorCoreGemmProgram : ExpertsW13Int8GemmProgram;
    const W2 = gemm === 'tensor-core-i8' ? ExpertsW2Int8TensorCoreGemmProgram : ExpertsW2Int8GemmProgram;
    const tiles = (n: number) => Math.ceil(P / blockRows) + n;
    perShard('w13', act, (s, n) => [new W13(w13, [rows, I], tiles(n)), [xq, align]]);
    const aq = quantize(act, false);
    y = c.temp(issuer.makeTensorInfo([P, H], 'float32'));
    perShard('w2', y, (s, n) => [new W2(w2, [P, H], tiles(n)), [aq, align, ...weightsFor('w2')]]);
  } else {
    const grouped = c.path === 'decode-grouped';
    const head = grouped ?
      [c.temp(issuer.runWebGPUProgram(new ExpertsAlignProgram({...config, blockRows: 1}, P), ids, 'int32'))] : ids;
    const act = c.temp(issuer.makeTensorInfo([P, I], 'float32'));
    perShard('w13', act, (s, n) => [new ExpertsW13Int8GemvProgram(w13, P, n, grouped), [xq, ...head]]);
    const aq = quantize(act, false);
    y = c.temp(issuer.makeTensorInfo([P, H], 'float32'));
    perShard('w2', y, (s, n) => [new ExpertsW2Int8GemvProgram(w2, P, n, grouped), [aq, ...head, ...weightsFor('w2')]]);
  }
  const combine = new ExpertsCombineProgram(config, T, {splits: 1});
  return issuer.runWebGPUProgram(combine, [y, ...ids], 'float32');
}

/**
 * The prefill GEMMs of FusedExperts on the storage tensor-core variants (tensor_core_plan.ts):
 *
 *   align (padded to the variant's rows) → gather x as f16 rows → per shard: [f16 weight copy, made once] →
 *   w13 GEMM (act16, f16) → per shard: [f16 weight copy, made once] → w2 GEMM (y, split along K) →
 *   (combine)
 *
 * y is by pair with biases; else in sorted row order, stored straight from the
 * result matrices, and the combine applies the routing weight (ExpertsCombineProgram sorted).
 *
 * The pipelined variants keep x16 and act16 in 16×16 blocks, as their weights' copy is (blockedRows).
 *
 * FusedExperts owns the dispatch (its `run`, temporaries and the combine); this file only issues the
 * programs of this path, in the order above, and returns y.
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import type {Activation, ExpertProjectionShard} from '../../kernel_names';
import type {WeightFormat} from '../../quant/format';
import {ExpertsAlignProgram, alignLanes, maxPaddedRows} from './experts_align_webgpu';
import type {ProgramIssuer} from './dispatch_plan';
import {ExpertsGatherF16Program} from './experts_gather_f16_webgpu';
import {ExpertsW13TensorCoreStorageGemmProgram, ExpertsW2TensorCoreStorageGemmProgram}
  from './experts_gemm_tc_storage_webgpu';
import type {ExpertsStage} from './experts_gemv_webgpu';
import {ExpertsWeightsF16Program} from './experts_weights_f16_webgpu';
import {TensorCoreLayout, TensorCoreVariant, fitsRowBlocks, groupedRowTiles, isPipelinedVariant,
  isStorageProgramVariant, roundUp, staggersK, tensorCoreBlockRows, tensorCoreLayout,
  tensorCoreSubgroupsN, tensorCoreTileShape} from './tensor_core_plan';
import {tensorCoreWeightCopy} from './tensor_core_weights';

export interface TensorCorePrefillCall {
  backend: WebGPUBackend;
  /** Issues the programs (the backend, or a dispatch-plan recorder). */
  issuer: ProgramIssuer;
  run: (program: WebGPUProgram, inputs: TensorInfo[], uniforms?: Array<{type: string; data: number[]}>,
    out?: TensorInfo) => TensorInfo;
  temp: (shape: number[], dtype?: 'float32' | 'int32') => TensorInfo;
  /** Disposed by the caller once the programs are issued. */
  temps: TensorInfo[];
  variant: TensorCoreVariant;
  x: TensorInfo;
  topkWeights: TensorInfo;
  ids: TensorInfo[];
  shards: {w13: ExpertProjectionShard[]; w2: ExpertProjectionShard[]};
  numPairs: number;
  common: {hiddenSize: number; intermediateSize: number; topK: number; numLocalExperts: number;
    globalNumExperts: number; hasExpertMap: boolean; activation: Activation; applyRouterWeightOnInput: boolean;
    format: WeightFormat; hasBias: boolean};
  /** w2's K parts for a grid of `workgroups` and `kTiles` 16-k steps (FusedExperts' chooseSplitK). */
  splitK: (workgroups: number, kTiles: number) => number;
  /** Throws if [rows, cols] float32 would exceed the binding limit. */
  checkBinding: (shape: number[], what: string) => void;
}

/**
 * The variant's padded rows per expert and layouts; FusedExperts sizes its checks from it. Rows are whole
 * 16-row blocks, which the pipelined variants' blocked x16 and act16 need: the padded bound P + E·(BM - 1)
 * alone is not one where E is not a multiple of 16 (Mixtral's 8).
 */
export function tensorCorePrefillPlan(c: TensorCorePrefillCall['common'], variant: TensorCoreVariant, numPairs: number):
    {blockRows: number; rows: number; layout: TensorCoreLayout} {
  const blockRows = tensorCoreBlockRows(variant);
  // The pipelined variants block both the weights' copy and the rows; the others neither.
  const blocked = isPipelinedVariant(variant);
  return {blockRows, rows: roundUp(maxPaddedRows(numPairs, c.numLocalExperts, blockRows), 16),
    layout: tensorCoreLayout(c.format, c.hiddenSize, c.intermediateSize, c.activation, tensorCoreTileShape(variant),
      blocked, blocked)};
}

/**
 * What the combine reads: y, its K parts, whether y is in sorted order, and the inputs the combine then takes
 * after topkIds / expertMap (ExpertsCombineProgram: the align output with positions, and topkWeights unless
 * the router weight went on the input).
 */
export interface TensorCorePrefillResult {
  y: TensorInfo;
  splitK: number;
  sorted: boolean;
  combineInputs: TensorInfo[];
}

/**
 * Whether w2 stores y in sorted row order (ExpertsTensorCoreStorageConfig.sortedOutput): the storage and
 * pipelined variants without biases, H a multiple of 16 (of a workgroup's 128 columns with two subgroups side by
 * side, whose stores then need no column check: see the program), and y's `yRows` rows (splitK · padded rows:
 * the padding rows are stored too) within one binding; else y by pair, which needs only splitK · P rows.
 */
export function w2WritesSorted(variant: TensorCoreVariant, hasBias: boolean, H: number, yRows: number,
    maxBindingBytes: number): boolean {
  const columns = tensorCoreSubgroupsN(variant) > 1 ? tensorCoreTileShape(variant).w2Columns : 16;
  return isStorageProgramVariant(variant) && !hasBias && H % columns === 0 && yRows * H * 4 <= maxBindingBytes;
}

/**
 * Issues the storage variant's programs; returns y, [splitK · P, H] by pair, or
 * without biases [splitK · rows, H] in sorted order (ExpertsTensorCoreStorageConfig.sortedOutput).
 */
export function tensorCoreStoragePrefill(call: TensorCorePrefillCall): TensorCorePrefillResult {
  const {backend, run, temp, temps, common, shards, numPairs: P} = call;
  const {hiddenSize: H, intermediateSize: I, numLocalExperts: E} = common;
  const {blockRows, rows, layout} = tensorCorePrefillPlan(common, call.variant, P);
  const tile = tensorCoreTileShape(call.variant);
  const tiles = (n: number) => Math.ceil(P / blockRows) + n;
  const splitK = call.splitK(tiles(E) * Math.ceil(H / tile.w2Columns), layout.Ip / tile.kStep);
  const sortedOutput = w2WritesSorted(call.variant, common.hasBias, H, splitK * rows,
      backend.device.limits.maxStorageBufferBindingSize);
  call.checkBinding([rows, layout.Hp / 2], 'the f16 expert-sorted x');
  const align = call.issuer.runWebGPUProgram(
      new ExpertsAlignProgram({...common, blockRows, positions: sortedOutput, lanes: alignLanes(backend)}, P), call.ids, 'int32');
  temps.push(align);
  // f16 buffers are int32 tensors of two halves a word (tfjs has no f16 dtype).
  const x16 = temp([rows, layout.Hp / 2], 'int32');
  run(new ExpertsGatherF16Program({...common, blockedRows: layout.blockedRows}, rows, layout.Hp),
      [call.x, align, ...(common.applyRouterWeightOnInput ? [call.topkWeights] : [])], undefined, x16);

  // The tensors a shard's f16 copy is made from (ExpertsWeightsF16Program's inputs).
  const copySources = (s: ExpertProjectionShard) =>
    [s.data, s.scales, s.zeros, s.gidx].filter((t): t is TensorInfo => t != null);
  // The copy program for n experts of a stage, written at expert `first` of an output of `total`.
  const copyProgram = (stage: ExpertsStage, n: number, first = 0, total = n) => new ExpertsWeightsF16Program({stage,
    hiddenSize: H, intermediateSize: I, activation: common.activation, format: common.format,
    layout: stage === 'w13' ? layout.w13 : layout.w2}, n, first, total);
  // The shard's f16 weights: its own data, or a copy through dequant_wgsl.ts (tensor_core_plan weightSource).
  // Kept between calls (tensor_core_weights.ts), so made on the backend itself, outside a plan's recording.
  const f16Weights = (stage: ExpertsStage, s: ExpertProjectionShard) => {
    const L = stage === 'w13' ? layout.w13 : layout.w2;
    if (L.source === 'direct') return s.data;
    const n = s.data.shape[0];
    const shape = [n, L.rowsPerExpert * L.kStride / 2];
    call.checkBinding(shape, `the f16 copy of a ${stage} shard`);
    const program = copyProgram(stage, n);
    const sources = copySources(s);
    const {copy, kept} = tensorCoreWeightCopy(backend, sources, program.shaderKey, shape,
        (out) => backend.runWebGPUProgram(program, sources, 'int32', undefined, out));
    if (!kept) temps.push(copy);
    return copy;
  };
  // Several shards' copies in one tensor where it fits one binding (not with biases, which stay per shard):
  // then one GEMM dispatch covers every expert. Each dispatch's last wave of workgroups runs partly empty, and
  // the next dispatch waits for it: Mixtral M = 256's two w13 shards took 0.54 and 0.83 ms for 1792 and 3136
  // working one-subgroup workgroups (4 and 7 row tiles), about two and three waves of 0.27 ms, where 4928 in one
  // dispatch would make four (bench/results/2026-12-04-h200-table.log); merged, w13 took 1.05 ms
  // (bench/results/2026-12-05-h200-tensor-core-check-merged-copy.log, another session).
  const mergedCopy = (stage: ExpertsStage): TensorInfo | null => {
    const list = stage === 'w13' ? shards.w13 : shards.w2;
    const L = stage === 'w13' ? layout.w13 : layout.w2;
    const shape = [E, L.rowsPerExpert * L.kStride / 2];
    if (list.length < 2 || L.source === 'direct' || common.hasBias ||
        shape[0] * shape[1] * 4 > backend.device.limits.maxStorageBufferBindingSize) return null;
    let first = 0;
    const programs = list.map((s) => {
      const n = s.data.shape[0];
      const p = copyProgram(stage, n, first, E);
      first += n;
      return p;
    });
    const {copy, kept} = tensorCoreWeightCopy(backend, list.flatMap(copySources), programs.map((p) => p.shaderKey).join('|'),
        shape, (out) => programs.forEach((p, i) => backend.runWebGPUProgram(p, copySources(list[i]), 'int32', undefined, out)));
    if (!kept) temps.push(copy);
    return copy;
  };
  const perShard = (stage: ExpertsStage, out: TensorInfo, make: (n: number) => [WebGPUProgram, TensorInfo[]]) => {
    const merged = mergedCopy(stage);
    if (merged != null) {
      const [program, inputs] = make(E);
      run(program, [...inputs, merged], [{type: 'int32', data: [0]}], out);
      return;
    }
    let first = 0;
    (stage === 'w13' ? shards.w13 : shards.w2).forEach((s) => {
      const n = s.data.shape[0];
      const [program, inputs] = make(n);
      run(program, [...inputs, f16Weights(stage, s), ...(common.hasBias ? [s.bias!] : [])],
          [{type: 'int32', data: [first]}], out);
      first += n;
    });
  };

  const act16 = temp([rows, layout.Ip / 2], 'int32');
  const subgroupsN = tensorCoreSubgroupsN(call.variant), kStagger = staggersK(call.variant);
  const loop = {subgroupsN, kStagger, groupRows: groupedRowTiles(call.variant),
    fitRowBlocks: fitsRowBlocks(call.variant)};
  perShard('w13', act16, (n) => [new ExpertsW13TensorCoreStorageGemmProgram({...common, stage: 'w13', blockRows, layout,
    ...loop}, act16.shape, tiles(n)), [x16, align]]);
  const yRows = sortedOutput ? rows : P;
  call.checkBinding([splitK * yRows, H], `the w2 partial sums (${splitK} K parts)`);
  const y = temp([splitK * yRows, H]);
  const routed = common.applyRouterWeightOnInput || sortedOutput ? [] : [call.topkWeights];
  perShard('w2', y, (n) => [new ExpertsW2TensorCoreStorageGemmProgram({...common, stage: 'w2', blockRows, layout, ...loop,
    splitK, sortedOutput}, y.shape, tiles(n)), [act16, align, ...routed]]);
  return {y, splitK, sorted: sortedOutput,
    combineInputs: sortedOutput ? [align, ...(common.applyRouterWeightOnInput ? [] : [call.topkWeights])] : []};
}

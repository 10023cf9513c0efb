/**
 * The f16 tensor-core prefill GEMMs (issue 11) where no GPU here has subgroup matrices or shader-f16:
 * their CPU side (variant choice and its reasons, the padded f16 layouts, grid sizes, the WGSL each
 * program generates for every weight format), the f16 rounding and the host reference with its derived
 * bound (bench/tensor_core_reference.ts), and, on webgpu (SwiftShader), the two helper programs of the
 * storage variants that need neither feature (the f16 gather of x and the f16 weight copy) against the
 * host, plus the f16 declaration rewrite against the installed tfjs's shader header, and the storage and
 * pipelined variants' whole prefill with the subgroup matrices emulated (f16_subgroup_matrix_emulation.ts).
 * The GEMMs on real subgroup matrices run in bench/gpu_check_tc.ts on a GPU that has the features.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {expect} from 'chai';
import {Activation, fusedExpertsImpl} from '../src';
import {dequantizeImpl} from '../src/kernels/cpu/dequantize_impl';
import {declareStorageElements} from '../src/kernels/webgpu/device';
import {ExpertsGemmConfig} from '../src/kernels/webgpu/experts_gemm_webgpu';
import {ExpertsTensorCoreGemmProgram, TC_BLOCK_ROWS} from '../src/kernels/webgpu/experts_gemm_tc_webgpu';
import {EPILOGUE_ROWS_MAX_K, ExpertsTensorCoreStorageGemmProgram, prefetchesEpilogueRows}
  from '../src/kernels/webgpu/experts_gemm_tc_storage_webgpu';
import {ExpertsGatherF16Program} from '../src/kernels/webgpu/experts_gather_f16_webgpu';
import {ExpertsWeightsF16Program} from '../src/kernels/webgpu/experts_weights_f16_webgpu';
import {chooseGemmKernel} from '../src/kernels/webgpu/FusedExperts';
import {tensorCorePrefillPlan, tensorCoreStoragePrefill, w2WritesSorted} from '../src/kernels/webgpu/tensor_core_prefill';
import {ExpertsAlignProgram, alignLanes} from '../src/kernels/webgpu/experts_align_webgpu';
import {ExpertsCombineProgram} from '../src/kernels/webgpu/experts_combine_webgpu';
import {PIPELINED_TILE, PIPELINED_WIDE_TILE, STORAGE_TILE, TENSOR_CORE_VARIANTS, TensorCoreVariant, foldedDispatch,
  setTensorCoreVariant, staggersK, tensorCoreBlockRows, groupedRowTiles, fitsRowBlocks, tensorCoreSubgroupsN, tensorCoreTileShape,
  isPipelinedVariant, storageWorkgroupBytes, tensorCoreChoice, tensorCoreLayout, tensorCoreStorageDispatch, weightSource} from '../src/kernels/webgpu/tensor_core_plan';
import {TENSOR_CORE_WEIGHT_CACHE_FLAG, tensorCoreWeightCopies, tensorCoreWeightCopy}
  from '../src/kernels/webgpu/tensor_core_weights';
import {releaseWeightState} from '../src/kernels/weight_state';
import {FLOAT32_FORMAT, WeightFormat, formatKey, halfToFloat, roundToF16} from '../src/quant/format';
import {compareWithBound, roundFloat32sToF16, tensorCoreReference} from '../bench/tensor_core_reference';
import {randn, rng} from './helpers/compare';
import {describeBackends} from './helpers/env';
import {randomProjection} from './helpers/quant_weights';
import {emulateF16SubgroupMatrices} from './helpers/f16_subgroup_matrix_emulation';
import {toMatrixElementOffsets} from './helpers/subgroup_matrix_lanes';

const fmt = (code: WeightFormat['code'], groupSize: number, zero: number | 'tensor' = 0,
    o: Partial<WeightFormat> = {}): WeightFormat =>
  ({code, groupSize, blockRows: 1, scaleCode: 'f32', zero, hasGIdx: false, ...o});

/** One of each kind the dequantization vocabulary has (test/quant_kernels.test.ts runs them all on every path). */
const FORMATS: WeightFormat[] = [FLOAT32_FORMAT, fmt('bf16', 0), fmt('f16', 0), fmt('e4m3', 128, 0, {blockRows: 128}),
  fmt('uint4', 32, 'tensor'), fmt('uint4', 32, 8, {hasGIdx: true}), fmt('uint8', -1, 128),
  fmt('e2m1', 32, 0, {scaleCode: 'e8m0'})];

const ON = {tensorCoreF16: true, tensorCoreReason: ''};

/** The f16 halves of int32 words (two per word, low half first). */
function halves(words: ArrayLike<number>): Float32Array {
  const out = new Float32Array(words.length * 2);
  for (let i = 0; i < words.length; i++) {
    out[2 * i] = halfToFloat(words[i] & 0xffff);
    out[2 * i + 1] = halfToFloat((words[i] >>> 16) & 0xffff);
  }
  return out;
}

describe('tensor-core GEMM plan', () => {
  afterEach(() => setTensorCoreVariant(null));

  it('says why the float32 tiles run where the device has no tensor cores, or H, I are not multiples of 8', () => {
    expect(tensorCoreChoice({tensorCoreF16: false, tensorCoreReason: 'no shader-f16'}, 64, 64))
        .to.deep.equal({kernel: 'simt-f32', reason: 'no shader-f16'});
    const odd = tensorCoreChoice(ON, 68, 64);
    expect(odd.kernel).to.equal('simt-f32');
    expect(odd.reason).to.match(/8 k at a time .* H = 68, I = 64/);
  });

  it('takes biases, swigluoai and every variant; fp8 activations go to the workgroup-tiles variant, with the reason', () => {
    for (const variant of TENSOR_CORE_VARIANTS) {
      for (const call of [{}, {hasBias: true, activation: 'swigluoai' as Activation}, {activation: 'gelu' as Activation}]) {
        expect(tensorCoreChoice(ON, 2048, 768, call, variant)).to.include({kernel: 'tensor-core-f16', variant});
      }
      const fp8 = tensorCoreChoice(ON, 2048, 768, {activationQuantGroup: 128}, variant);
      expect(fp8).to.include({kernel: 'tensor-core-f16', variant: 'workgroup-tiles'});
      if (variant !== 'workgroup-tiles') expect(fp8.reason).to.match(/fp8 w8a8 .* f16/);
    }
  });

  it('takes staggered-64x128 for grouped-64x256 where its four staged blocks do not fit, saying why', () => {
    // WebGPU's default limit, 16 KiB: four 4 KiB blocks and wgTile, wgN0, w2's 64 pairs and weights do not fit.
    const minimal = tensorCoreChoice({...ON, maxComputeWorkgroupStorageSize: 16384}, 4096, 14336, {}, 'grouped-64x256');
    expect(minimal).to.include({kernel: 'tensor-core-f16', variant: 'staggered-64x128'});
    expect(minimal.reason).to.match(/'grouped-64x256': it needs 16916 bytes of workgroup memory .* allows 16384/);
    expect(tensorCoreChoice({...ON, maxComputeWorkgroupStorageSize: 16916}, 4096, 14336, {}, 'grouped-64x256'))
        .to.include({variant: 'grouped-64x256'});
    expect(tensorCoreChoice({...ON, maxComputeWorkgroupStorageSize: 16384}, 4096, 14336, {}, 'staggered-64x128'))
        .to.include({variant: 'staggered-64x128'});
    expect(tensorCoreChoice({...ON, maxComputeWorkgroupStorageSize: 16384}, 4096, 14336, {}, 'staggered-32x256'))
        .to.include({variant: 'pipelined-32'});
    // The bytes the choice goes by are the largest the programs declare: w2 by pair, with the tile's pairs and weights.
    for (const variant of TENSOR_CORE_VARIANTS.filter(isPipelinedVariant)) {
      const layout = tensorCoreLayout(FLOAT32_FORMAT, 1024, 512, 'silu', tensorCoreTileShape(variant), true, true);
      const declared = (['w13', 'w2'] as const).map((stage) => {
        const code = new ExpertsTensorCoreStorageGemmProgram({stage, hiddenSize: 1024, intermediateSize: 512,
          numLocalExperts: 4, activation: 'silu', applyRouterWeightOnInput: false, hasBias: false, layout,
          blockRows: tensorCoreBlockRows(variant), subgroupsN: tensorCoreSubgroupsN(variant),
          kStagger: staggersK(variant)}, [512, 1024], 8).getUserCode();
        const words = [...code.matchAll(/var<workgroup> \w+ : array<(?:i32|f32), (\d+)>/g)].reduce((n, m) => n + Number(m[1]), 0);
        expect(code, variant).to.contain('var<workgroup> wgTile : vec4<i32>;').and.to.contain('var<workgroup> wgN0 : i32;');
        return 16 + 4 + 4 * words;
      });
      expect(Math.max(...declared), variant).to.equal(storageWorkgroupBytes(variant));
    }
  });

  it('takes 32-row tiles where experts average fewer than 64 rows, fitted tails from 128, else grouped-64x256, staggered-64x128 or pipelined-64 by H and I, unless one is forced', () => {
    expect(tensorCoreChoice(ON, 2048, 768, {rowsPerExpert: 16})).to.include({variant: 'staggered-32x256'});
    expect(tensorCoreChoice(ON, 2048, 768, {rowsPerExpert: 63})).to.include({variant: 'staggered-32x256'});
    expect(tensorCoreChoice(ON, 2048, 768, {rowsPerExpert: 64})).to.include({variant: 'grouped-64x256'});
    expect(tensorCoreChoice(ON, 2048, 768, {rowsPerExpert: 127})).to.include({variant: 'grouped-64x256'});
    expect(tensorCoreChoice(ON, 2048, 768, {rowsPerExpert: 128})).to.include({variant: 'fitted-64x256'});
    expect(tensorCoreChoice(ON, 4096, 14336, {rowsPerExpert: 1024})).to.include({variant: 'fitted-64x256',
      reason: 'f16 operands, f32 accumulation on subgroup matrices (\'fitted-64x256\', for 1024 rows an expert on average)'});
    expect(tensorCoreChoice(ON, 2048, 768)).to.include({variant: 'grouped-64x256'});
    // A variant passed in was not chosen by rows: the reason does not say so.
    expect(tensorCoreChoice(ON, 2048, 768, {rowsPerExpert: 128}, 'grouped-64x256').reason)
      .to.equal('f16 operands, f32 accumulation on subgroup matrices (\'grouped-64x256\')');
    // Where four subgroups' columns do not divide H and I: one 32-row subgroup, two 64-row ones.
    expect(tensorCoreChoice(ON, 2176, 768, {rowsPerExpert: 16})).to.include({variant: 'pipelined-32'});
    expect(tensorCoreChoice(ON, 2176, 768, {rowsPerExpert: 128})).to.include({variant: 'staggered-64x128'});
    // Workgroup memory short of four staged blocks: the narrower forms.
    const short = {...ON, maxComputeWorkgroupStorageSize: 16384};
    expect(tensorCoreChoice(short, 2048, 768, {rowsPerExpert: 16})).to.include({variant: 'pipelined-32'});
    expect(tensorCoreChoice(short, 2048, 768, {rowsPerExpert: 128})).to.include({variant: 'staggered-64x128'});
    // Four subgroups' workgroups would pad the weights' copy further (and y sorted needs H a multiple of 256):
    // two where those divide, else one.
    expect(tensorCoreChoice(ON, 2176, 768, {rowsPerExpert: 64})).to.include({variant: 'staggered-64x128'});
    expect(tensorCoreChoice(ON, 2048, 704, {rowsPerExpert: 64})).to.include({variant: 'staggered-64x128'});
    expect(tensorCoreChoice(ON, 2112, 768, {rowsPerExpert: 64})).to.include({variant: 'pipelined-64'});
    expect(tensorCoreChoice(ON, 2048, 800, {rowsPerExpert: 64})).to.include({variant: 'pipelined-64'});
    // Workgroup memory short of four subgroups' staged blocks: two.
    expect(tensorCoreChoice({...ON, maxComputeWorkgroupStorageSize: 16384}, 2048, 768)).to.include({variant: 'staggered-64x128'});
    // Where they are chosen, their layout is pipelined-32's: one kept copy serves both.
    for (const [H, I] of [[4096, 14336], [2048, 768], [7168, 256]]) {
      for (const v of ['grouped-64x256', 'fitted-64x256', 'staggered-32x256', 'staggered-64x128'] as TensorCoreVariant[]) {
        expect(tensorCoreLayout(FLOAT32_FORMAT, H, I, 'silu', tensorCoreTileShape(v), true, true), `${v} ${H} ${I}`)
          .to.deep.equal(tensorCoreLayout(FLOAT32_FORMAT, H, I, 'silu', tensorCoreTileShape('pipelined-32'), true, true));
      }
    }
    setTensorCoreVariant('storage-64');
    try {
      expect(tensorCoreChoice(ON, 2048, 768, {rowsPerExpert: 16})).to.include({variant: 'storage-64'});
    } finally {
      setTensorCoreVariant(null);
    }
  });

  it('uses the forced variant, and refuses an unknown one', () => {
    setTensorCoreVariant('storage-32');
    expect(tensorCoreChoice(ON, 64, 64).variant).to.equal('storage-32');
    expect(() => setTensorCoreVariant('fast' as TensorCoreVariant)).to.throw(/must be one of workgroup-tiles/);
  });

  it('reads f16 weights in place only where every matrix load stays inside them, else makes a padded copy', () => {
    const f16 = fmt('f16', 0);
    // The benchmark shapes: Qwen3 (2048, 768), DeepSeek-V3 TP8 (7168, 256), Mixtral (4096, 14336).
    for (const [H, I] of [[2048, 768], [7168, 256], [4096, 14336]]) {
      expect(weightSource(f16, 'w13', H, I, 'silu')).to.equal('direct');
      expect(weightSource(f16, 'w2', H, I, 'silu')).to.equal('direct');
      expect(weightSource(FLOAT32_FORMAT, 'w13', H, I, 'silu')).to.equal('copy');
    }
    expect(weightSource(f16, 'w13', 2048, 784, 'silu'), 'I % 32 != 0').to.equal('copy');
    expect(weightSource(f16, 'w2', 2056, 768, 'silu'), 'H % 64 != 0').to.equal('copy');
    expect(weightSource(f16, 'w13', 2048, 768, 'swigluoai'), 'interleaved gate/up').to.equal('copy');
    expect(weightSource(fmt('f16', 32), 'w13', 2048, 768, 'silu'), 'scaled f16').to.equal('copy');
  });

  it('pads the layouts so that the last tile of the last expert ends inside each buffer', () => {
    for (const tile of [STORAGE_TILE, PIPELINED_TILE]) {
      const {kStep, w13Columns, w2Columns} = tile;
      const pipelined = tile === PIPELINED_TILE;
      for (const [H, I] of [[64, 48], [136, 200], [264, 392], [2048, 768], [7168, 256], [4096, 14336]]) {
        for (const format of [FLOAT32_FORMAT, fmt('f16', 0)]) {
          for (const activation of ['silu', 'swigluoai'] as Activation[]) {
            const L = tensorCoreLayout(format, H, I, activation, tile, pipelined, pipelined);
            const what = `${formatKey(format)} ${activation} H=${H} I=${I} k step ${kStep}`;
            expect(L.Hp % kStep, what).to.equal(0);
            expect(L.Ip % kStep, what).to.equal(0);
            expect(L.Hp).to.be.within(H, H + kStep - 1);
            expect(L.Ip).to.be.within(I, I + kStep - 1);
            // w13: the last column tile's last up row of the last expert, in rows of kStride.
            const n0 = (tensorCoreStorageDispatch('w13', 1, H, I, 1, tile)[1] - 1) * w13Columns;
            const E = 3;
            // (Blocked, the pipelined GEMM's column tile n0 reads w13 rows 2·n0 .. 2·n0 + 63: gate then up.)
            const lastW13Row = (E - 1) * L.w13.rowsPerExpert + (pipelined ? 2 * (n0 + w13Columns) - 1 :
              L.w13.upOffset + L.w13.rowStep * (n0 + w13Columns - 1));
            expect(lastW13Row, what).to.be.below(E * L.w13.rowsPerExpert);
            expect(L.w13.kStride, what).to.equal(L.Hp);
            const h0 = (tensorCoreStorageDispatch('w2', 1, H, I, 1, tile)[1] - 1) * w2Columns;
            expect((E - 1) * L.w2.rowsPerExpert + h0 + w2Columns - 1, what).to.be.below(E * L.w2.rowsPerExpert);
            expect(L.w2.kStride, what).to.equal(L.Ip);
          }
        }
      }
    }
  });

  it('loads each 32-k step\'s blocks one step ahead of their multiplies in the pipelined variants', () => {
    const layout = tensorCoreLayout(FLOAT32_FORMAT, 256, 128, 'silu', PIPELINED_TILE, true, true);
    const c = {hiddenSize: 256, intermediateSize: 128, numLocalExperts: 4, activation: 'silu' as Activation,
      applyRouterWeightOnInput: false, hasBias: false, layout};
    for (const [variant, blockRows] of [['pipelined-64', 64], ['pipelined-32', 32]] as Array<[TensorCoreVariant, number]>) {
      expect(tensorCoreBlockRows(variant), variant).to.equal(blockRows);
      for (const stage of ['w13', 'w2'] as const) {
        const code = new ExpertsTensorCoreStorageGemmProgram({...c, stage, blockRows}, [128, 64], 2).getUserCode();
        // In the k loop both k blocks of the next step (2 · (TM + 4) loads), the first step's before the loop.
        const loads = code.match(/subgroupMatrixLoad</g)!.length;
        expect(loads, `${variant} ${stage}`).to.equal(4 * (blockRows / 16 + 4));
        expect(code, `${variant} ${stage}`).to.contain('let nk = u32(min(kt + 1, tile.w - 1));');
      }
    }
    // 96 rows would hold 192 accumulator registers a lane: with the loop's 2 · 10 blocks in flight they would spill.
    expect(() => new ExpertsTensorCoreStorageGemmProgram({...c, stage: 'w13', blockRows: 96}, [128, 64], 2))
        .to.throw(/blockRows 32 or 64, got 96/);
  });

  it('puts two subgroups side by side in the 64x128 variants: half the column workgroups, ids from main()\'s arguments', () => {
    expect(TENSOR_CORE_VARIANTS.filter((v) => tensorCoreSubgroupsN(v) === 2)).to.deep.equal(['staggered-64x128']);
    expect(TENSOR_CORE_VARIANTS.filter(staggersK)).to.deep.equal(['staggered-64x128', 'staggered-32x256', 'grouped-64x256',
      'fitted-64x256']);
    expect(TENSOR_CORE_VARIANTS.filter((v) => tensorCoreSubgroupsN(v) === 4)).to.deep.equal(['staggered-32x256',
      'grouped-64x256', 'fitted-64x256']);
    expect(TENSOR_CORE_VARIANTS.filter((v) => groupedRowTiles(v) > 0)).to.deep.equal(['grouped-64x256', 'fitted-64x256']);
    expect(TENSOR_CORE_VARIANTS.filter(fitsRowBlocks)).to.deep.equal(['fitted-64x256']);
    expect(tensorCoreTileShape('grouped-64x256')).to.deep.equal({kStep: 32, w13Columns: 128, w2Columns: 256});
    expect(tensorCoreTileShape('staggered-64x128')).to.deep.equal({kStep: 32, w13Columns: 64, w2Columns: 128});
    // Mixtral: the weights' copy padded to whole 128-column workgroups (14336 and 4096 are already).
    const layout = tensorCoreLayout(FLOAT32_FORMAT, 4096, 14336, 'silu', tensorCoreTileShape('staggered-64x128'), true, true);
    const c = {hiddenSize: 4096, intermediateSize: 14336, numLocalExperts: 8, activation: 'silu' as Activation,
      applyRouterWeightOnInput: false, hasBias: false, layout, blockRows: 64};
    for (const [stage, columns] of [['w13', 14336 / 64], ['w2', 4096 / 128]] as Array<['w13' | 'w2', number]>) {
      const one = new ExpertsTensorCoreStorageGemmProgram({...c, stage}, [8192, 100], 40);
      const two = new ExpertsTensorCoreStorageGemmProgram({...c, stage, subgroupsN: 2}, [8192, 100], 40);
      expect(one.dispatch).to.deep.equal([40, 2 * columns, 1]);
      expect(two.dispatch).to.deep.equal([40, columns, 1]);
      expect([one.workgroupSize, two.workgroupSize]).to.deep.equal([[32, 1, 1], [64, 1, 1]]);
      expect(two.shaderKey).to.not.equal(one.shaderKey);
      const code = two.getUserCode();
      expect(code).to.contain('// moe-main-ids').and.to.contain('fn main(wid : vec3<u32>, sid : u32, lane : u32)');
      expect(code).to.contain(`wgN0 = i32(workgroupId.y) * ${stage === 'w13' ? 64 : 128};`)
          .and.to.contain(`let n0 = workgroupUniformLoad(&wgN0) + i32(sid) * ${stage === 'w13' ? 32 : 64};`);
      expect(one.getUserCode()).to.not.contain('moe-main-ids');
    }
    expect(() => new ExpertsTensorCoreStorageGemmProgram({...c, stage: 'w13', subgroupsN: 3}, [8192, 100], 40))
        .to.throw(/subgroupsN 1, or 2 or 4 with blocked rows, got 3/);
    const rowMajor = tensorCoreLayout(FLOAT32_FORMAT, 4096, 14336, 'silu', STORAGE_TILE, false);
    expect(() => new ExpertsTensorCoreStorageGemmProgram({...c, layout: rowMajor, stage: 'w13', subgroupsN: 2}, [8192, 100], 40))
        .to.throw(/got 2/);
    // Four side by side: a quarter of one subgroup's column workgroups, 128 lanes, four staged blocks.
    const wide4 = tensorCoreLayout(FLOAT32_FORMAT, 4096, 14336, 'silu', tensorCoreTileShape('grouped-64x256'), true, true);
    const four = new ExpertsTensorCoreStorageGemmProgram({...c, layout: wide4, stage: 'w13', subgroupsN: 4, kStagger: true},
      [8192, 100], 40);
    expect(four.dispatch).to.deep.equal([40, 14336 / 128, 1]);
    expect(four.workgroupSize).to.deep.equal([128, 1, 1]);
    expect(four.getUserCode()).to.contain('var<workgroup> staged : array<f32, 4096>;')
        .and.to.contain('wgN0 = i32(workgroupId.y) * 128;');
    // kStagger: the second subgroup's blocks from sid on, the last step's second wrapped to the tile's first; the
    // loop without it keeps the text the H200 timed. Only for subgroups side by side.
    const staggered = {...c, subgroupsN: 2, stage: 'w13' as const};
    const withLag = new ExpertsTensorCoreStorageGemmProgram({...staggered, kStagger: true}, [8192, 100], 40);
    const inStep = new ExpertsTensorCoreStorageGemmProgram(staggered, [8192, 100], 40);
    expect(withLag.getUserCode()).to.contain('let nkBlock0 = nk * 2u + sid;')
        .and.to.contain('let nkBlock1 = select(nkBlock0 + 1u, u32(tile.z) * 2u, nkBlock0 + 1u == u32(tile.w) * 2u);');
    expect(inStep.getUserCode()).to.contain('(nk * 2u + 1u)');
    expect(inStep.getUserCode()).to.not.contain('nkBlock0');
    // Lags up to 3 (four subgroups): each taken modulo the tile's blocks, then a step's first block wrapped too.
    expect(four.getUserCode()).to.contain('let kLag = (sid) % kBlocks;')
        .and.to.contain('let nkBlock0 = select(nkAhead, nkAhead - kBlocks, nkAhead >= u32(tile.w) * 2u);');
    expect(withLag.getUserCode()).to.not.contain('kLag');
    expect(withLag.shaderKey).to.not.equal(inStep.shaderKey);
    expect(() => new ExpertsTensorCoreStorageGemmProgram({...staggered, subgroupsN: 1, kStagger: true}, [8192, 100], 40))
        .to.throw(/kStagger needs subgroups side by side/);
    // y in sorted order: no store hangs on a condition that differs between the two subgroups (H whole workgroups).
    const sorted = new ExpertsTensorCoreStorageGemmProgram({...c, stage: 'w2', subgroupsN: 2, sortedOutput: true}, [8192, 4096],
        40).getUserCode();
    expect(sorted.match(/subgroupMatrixStore<row_major>\(&result, /g)).to.have.length(16);
    expect(sorted).to.not.match(/if \(n0 \+/);
    const narrow = tensorCoreLayout(FLOAT32_FORMAT, 4160, 14336, 'silu', tensorCoreTileShape('staggered-64x128'), true, true);
    expect(() => new ExpertsTensorCoreStorageGemmProgram({...c, layout: narrow, hiddenSize: 4160, stage: 'w2', subgroupsN: 2,
      sortedOutput: true}, [8192, 4160], 40)).to.throw(/H a multiple of 16 \(of 128 with 2 subgroups side by side\)/);
  });

  it('sizes the grids: row tiles × column tiles × K parts, and folded flat grids within the per-dimension limit', () => {
    expect(tensorCoreStorageDispatch('w13', 40, 2048, 768, 4)).to.deep.equal([40, 24, 1]);
    expect(tensorCoreStorageDispatch('w2', 40, 2048, 768, 4)).to.deep.equal([40, 32, 4]);
    expect(tensorCoreBlockRows('storage-64')).to.equal(64);
    expect(tensorCoreStorageDispatch('w13', 40, 2048, 768, 1, PIPELINED_WIDE_TILE)).to.deep.equal([40, 12, 1]);
    expect(tensorCoreStorageDispatch('w2', 40, 2048, 768, 4, PIPELINED_WIDE_TILE)).to.deep.equal([40, 16, 4]);
    expect(tensorCoreStorageDispatch('w13', 40, 2048, 768, 1, PIPELINED_TILE)).to.deep.equal([40, 24, 1]);
    expect(tensorCoreBlockRows('pipelined-32')).to.equal(32);
    expect(tensorCoreBlockRows('pipelined-64')).to.equal(64);
    expect(tensorCoreBlockRows('workgroup-tiles')).to.equal(TC_BLOCK_ROWS);
    // A Mixtral shard of 8 experts' w13 in 8-k chunks.
    const chunks = 8 * 2 * 14336 * 4096 / 8;
    const [x, y, z] = foldedDispatch(chunks, 256);
    expect(x).to.be.at.most(65535);
    expect(x * y * z * 256).to.be.at.least(chunks);
    expect((x * (y - 1)) * 256).to.be.below(chunks);
    expect(foldedDispatch(10, 256)).to.deep.equal([1, 1, 1]);
  });

  it('generates one program per projection for every format, with the format in the shader key', () => {
    const keys = new Set<string>();
    for (const format of FORMATS) {
      for (const stage of ['w13', 'w2'] as const) {
        for (const [activation, hasBias] of [['silu', false], ['swigluoai', true]] as Array<[Activation, boolean]>) {
          const c: ExpertsGemmConfig = {stage, hiddenSize: 256, intermediateSize: 128, topK: 2, numLocalExperts: 4,
            activation, applyRouterWeightOnInput: false, blockRows: TC_BLOCK_ROWS, tileK: 16, splitK: stage === 'w2' ? 2 : 1,
            format, hasBias};
          const tiles = new ExpertsTensorCoreGemmProgram(c, [64, 128], 6);
          const code = tiles.getUserCode();
          expect(code).to.contain('wload8_0(').and.to.contain('subgroupMatrixMultiplyAccumulate');
          expect(code.includes('wbias0('), 'bias in the epilogue').to.equal(hasBias);
          expect(tiles.variableNames.slice(-1)[0]).to.equal(hasBias ? 'bias0' : tiles.variableNames.slice(-1)[0]);
          keys.add(tiles.shaderKey);
          const copy = new ExpertsWeightsF16Program({stage, hiddenSize: 256, intermediateSize: 128, activation, format,
            layout: tensorCoreLayout(format, 256, 128, activation)[stage]}, 4);
          expect(copy.getUserCode()).to.contain('pack2x16float');
          keys.add(copy.shaderKey);
        }
      }
    }
    expect(keys.size, 'distinct shader keys').to.equal(FORMATS.length * 2 * 2 * 2);
  });

  it('generates the storage GEMMs with f16 bindings, uniform offsets and 2×4 or 4×4 results', () => {
    for (const variant of ['storage-32', 'storage-64'] as TensorCoreVariant[]) {
      const blockRows = tensorCoreBlockRows(variant);
      for (const stage of ['w13', 'w2'] as const) {
        const layout = tensorCoreLayout(fmt('f16', 0), 2048, 768, 'silu');
        const p = new ExpertsTensorCoreStorageGemmProgram({stage, hiddenSize: 2048, intermediateSize: 768,
          numLocalExperts: 128, activation: 'silu', applyRouterWeightOnInput: false, blockRows, hasBias: true,
          layout, splitK: 2}, [100, 100], 40);
        const code = p.getUserCode();
        expect(code).to.contain('// moe-storage-f16 x16').and.to.contain('// moe-storage-f16 w16');
        expect(code.match(/subgroupMatrixMultiplyAccumulate/g)).to.have.length(4 * blockRows / 16);
        // Offsets come from the tile lookup and workgroupId only (Tint: workgroup-uniform).
        expect(code).to.not.match(/subgroupMatrixLoad[^;]*(localIndex|lane)/);
        expect(p.dispatch).to.deep.equal(tensorCoreStorageDispatch(stage, 40, 2048, 768, 2));
        expect(p.variableNames).to.deep.equal(stage === 'w13' ? ['x16', 'align', 'w16', 'bias0'] :
          ['x16', 'align', 'topkWeights', 'w16', 'bias0']);
      }
    }
  });

  it('stores w2\'s y in sorted order for the storage and pipelined variants without biases, where it fits a binding', () => {
    const limit = 2 ** 31 - 4;
    for (const variant of TENSOR_CORE_VARIANTS) {
      const storageFamily = ['storage', 'pipelined', 'staggered', 'grouped', 'fitted'].some((family) => variant.startsWith(family));
      expect(w2WritesSorted(variant, false, 2048, 40832, limit), variant).to.equal(storageFamily);
      expect(w2WritesSorted(variant, true, 2048, 40832, limit), `${variant} with biases`).to.equal(false);
    }
    expect(w2WritesSorted('pipelined-64', false, 2056, 100, limit), 'H not a multiple of 16').to.equal(false);
    // Two subgroups side by side store with no column check: H whole 128-column workgroups.
    expect(w2WritesSorted('staggered-64x128', false, 2112, 100, limit), 'H not a multiple of 128').to.equal(false);
    expect(w2WritesSorted('staggered-64x128', false, 2048, 100, limit)).to.equal(true);
    // Qwen3 at M = 32000: y by pair (256000 rows · 8 KiB) fits a binding, the padded rows' y (264064 rows) does not.
    const P = 32000 * 8;
    const rows = tensorCorePrefillPlan({hiddenSize: 2048, intermediateSize: 768, topK: 8, numLocalExperts: 128,
      globalNumExperts: 128, hasExpertMap: false, activation: 'silu', applyRouterWeightOnInput: false,
      format: FLOAT32_FORMAT, hasBias: false}, 'pipelined-64', P).rows;
    expect(P * 2048 * 4).to.be.at.most(limit);
    expect(w2WritesSorted('pipelined-64', false, 2048, rows, limit), `${rows} rows`).to.equal(false);
    expect(w2WritesSorted('pipelined-64', false, 2048, 2 ** 18, limit), 'exactly at the limit: 2^18 rows · 8 KiB').to.equal(false);
    expect(w2WritesSorted('pipelined-64', false, 2048, 2 ** 18 - 1, limit)).to.equal(true);
  });

  it('reads w2\'s rows (pairs, routing weights) once per tile after the k loop where K ≤ 4096, else per row', () => {
    // Qwen3's K = 768 and Mixtral's 14336: the H200 measured the first faster, the second slower that way.
    for (const [I, kept] of [[768, true], [EPILOGUE_ROWS_MAX_K, true], [14336, false]] as Array<[number, boolean]>) {
      const layout = tensorCoreLayout(FLOAT32_FORMAT, 4096, I, 'silu', PIPELINED_TILE, true, true);
      const cfg = {stage: 'w2' as const, hiddenSize: 4096, intermediateSize: I, numLocalExperts: 8, activation: 'silu' as const,
        applyRouterWeightOnInput: false, blockRows: 64, hasBias: false, layout};
      expect(prefetchesEpilogueRows(cfg), `I = ${I}`).to.equal(kept);
      expect(prefetchesEpilogueRows({...cfg, stage: 'w13'}), 'w13 has no row lookups').to.equal(false);
      const code = new ExpertsTensorCoreStorageGemmProgram(cfg, [8192, 4096], 10).getUserCode();
      const lastMma = code.lastIndexOf('subgroupMatrixMultiplyAccumulate');
      const firstStore = code.indexOf('subgroupMatrixStore');
      if (kept) {
        const fill = code.indexOf('tilePair[m] = pair;');
        expect(fill, 'filled between the k loop and the epilogue').to.be.greaterThan(lastMma).and.lessThan(firstStore);
        expect(code).to.contain('let pair = tilePair[rt * 16u + r];').and.to.contain('let s = tileScale[rt * 16u + r];');
        expect(code).to.not.contain('topkWeights[pair]');
      } else {
        expect(code).to.not.contain('tilePair').and.to.not.contain('tileScale');
        expect(code).to.contain('let pair = align[9 + rowStart + i32(rt * 16u + r)];').and.to.contain('let s = topkWeights[pair];');
      }
    }
  });

  it('loads the pipelined operands through block pointers', () => {
    const layout = tensorCoreLayout(fmt('f16', 0), 2048, 768, 'silu', PIPELINED_TILE, true, true);
    const code = new ExpertsTensorCoreStorageGemmProgram({stage: 'w13', hiddenSize: 2048, intermediateSize: 768,
      numLocalExperts: 128, activation: 'silu', applyRouterWeightOnInput: false, blockRows: 64, hasBias: false,
      layout}, [100, 100], 40).getUserCode();
    const loads = code.match(/subgroupMatrixLoad<[^;]*;/g) ?? [];
    expect(loads).to.have.length(2 * 2 * 8);
    expect(code).to.contain('// moe-storage-f16-blocks x16').and.to.contain('// moe-storage-f16-blocks w16');
    for (const load of loads) expect(load).to.match(/, (row|col)_major>\(&(x16|w16)\[[ab]Block\d \+ \((k0|nk) \* 2u \+ [01]u\)\], 0u, 16u\)/);
    // Block indices: x16's row blocks of Hp / 16 blocks each.
    expect(code).to.contain(`let aBlock1 = ((u32(rowStart) / 16u + 1u) * ${2048 / 16 * 256}u) / 256u;`);
  });

  it('rewrites marked declarations to array<f16>, and throws where tfjs declared nothing by that name', () => {
    const code = '@group(0) @binding(1) var<storage, read> x16: array<i32>;\n' +
        '@group(0) @binding(2) var<storage, read> align: array<i32>;\n  // moe-storage-f16 x16\nfn main() {}';
    const out = declareStorageElements(code);
    expect(out).to.contain('var<storage, read> x16: array<f16>;').and.to.contain('align: array<i32>;');
    expect(declareStorageElements('fn main() {}')).to.equal('fn main() {}');
    expect(() => declareStorageElements('// moe-storage-f16 w16\nfn main() {}')).to.throw(/no 'var<storage, read> w16/);
  });
});

describe('f16 rounding and the tensor-core reference', () => {
  it('roundToF16 keeps every half, rounds midpoints to even and overflows at 65520', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = halfToFloat(h);
      if (Number.isNaN(v)) continue;
      expect(roundToF16(v)).to.equal(v);
    }
    expect(roundToF16(1 + 2 ** -11)).to.equal(1);                 // midpoint, even below
    expect(roundToF16(1 + 3 * 2 ** -11)).to.equal(1 + 2 ** -9);   // midpoint, even above
    expect(roundToF16(2 ** -25 * 3)).to.equal(2 ** -23);           // subnormal midpoint 1.5·2^-24 → 2·2^-24
    expect(roundToF16(65519)).to.equal(65504);
    expect(roundToF16(-65520)).to.equal(-Infinity);
  });

  it('roundFloat32sToF16 (the reference\'s fast path) gives roundToF16 of every float32 it is given', () => {
    // Every 4099th bit pattern (all exponents, both signs, mantissa bits everywhere), each half's neighbours
    // and the midpoints between halves, where the bit arithmetic could be off by one.
    const bits: number[] = [];
    for (let b = 0; b < 2 ** 32; b += 4099) bits.push(b);
    const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
    for (let h = 0; h < 0x7c00; h++) {
      f32[0] = halfToFloat(h);
      const mid = f32[0] + (halfToFloat(h + 1) - f32[0]) / 2;
      for (const v of [f32[0], mid, -mid]) {
        f32[0] = v;
        bits.push(u32[0] - 1, u32[0], u32[0] + 1);
      }
    }
    bits.push(0x7f800000, 0xff800000, 0x7fc00000, 0x477ff000, 0x477fefff, 0x38800000, 0x387fffff);
    const values = new Float32Array(Uint32Array.from(bits).buffer);
    const want = Array.from(values, (v) => roundToF16(v));
    roundFloat32sToF16(values);
    let wrong = 0;
    values.forEach((v, i) => {
      if (!Object.is(v, want[i]) && !(Number.isNaN(v) && Number.isNaN(want[i]))) wrong++;
    });
    expect(wrong, `${wrong} of ${values.length} values`).to.equal(0);
  });

  const H = 48, I = 40, E = 3, T = 5, k = 2;
  const problem = (activation: Activation, bias: boolean, onInput: boolean) => {
    const rand = rng(7);
    const ids = Int32Array.from({length: T * k}, (_, p) => (p + Math.floor(p / k)) % E);
    const weights = Float32Array.from({length: T * k}, () => 0.1 + rand());
    const hidden = randn(rand, T * H);
    const w13 = randn(rand, E * 2 * I * H, 0.3), w2 = randn(rand, E * H * I, 0.3);
    const b13 = bias ? randn(rand, E * 2 * I, 0.5) : undefined, b2 = bias ? randn(rand, E * H, 0.5) : undefined;
    const exact = fusedExpertsImpl({hidden, topkWeights: weights, topkIds: ids, expertMap: null,
      shards: [{w13, w2, numExperts: E, w13Bias: b13, w2Bias: b2}], numTokens: T, topK: k, hiddenSize: H,
      intermediateSize: I, globalNumExperts: E, activation, applyRouterWeightOnInput: onInput});
    return {exact, p: {hidden, H, I, k, ids, weights, activation, applyRouterWeightOnInput: onInput,
      w13Of: (e: number) => w13.subarray(e * 2 * I * H, (e + 1) * 2 * I * H),
      w2Of: (e: number) => w2.subarray(e * H * I, (e + 1) * H * I),
      b13Of: b13 && ((e: number) => b13.subarray(e * 2 * I, (e + 1) * 2 * I)),
      b2Of: b2 && ((e: number) => b2.subarray(e * H, (e + 1) * H))}};
  };
  const rows = Array.from({length: T}, (_, t) => t);

  for (const [activation, bias, onInput] of [['silu', false, false], ['gelu', true, true], ['swigluoai', true, false]] as
      Array<[Activation, boolean, boolean]>) {
    it(`without rounding is the cpu reference within its f32 bound (${activation}${bias ? ', biases' : ''}` +
        `${onInput ? ', weight on the input' : ''})`, () => {
      const {exact, p} = problem(activation, bias, onInput);
      const ref = tensorCoreReference(p, rows, (v) => v);
      expect(compareWithBound(exact, rows, H, ref).pass).to.equal(true);
    });

    it(`with f16 rounding fails a result computed without it: the bound is tight enough to see one (${activation})`, () => {
      const {exact, p} = problem(activation, bias, onInput);
      const ref = tensorCoreReference(p, rows);
      const r = compareWithBound(exact, rows, H, ref);
      expect(r.pass).to.equal(false);
      // ...and passes itself rounded to f32 (the GPU's output type).
      expect(compareWithBound(Float32Array.from(ref.out), rows, H, ref).pass).to.equal(true);
    });
  }
});

describeBackends('tensor-core helper programs on webgpu', (backend) => {
  if (backend !== 'webgpu') return;
  const wb = () => tf.backend() as WebGPUBackend;
  const run = async (program: WebGPUProgram, inputs: tf.Tensor[], shape: number[]) => {
    const out = wb().makeTensorInfo(shape, 'int32');
    wb().runWebGPUProgram(program, inputs, 'int32', undefined, out);
    const t = tf.engine().makeTensorFromTensorInfo(out);
    const words = await t.data();
    t.dispose();
    return words;
  };

  it('chooses the float32 tiles here, saying why', () => {
    const choice = chooseGemmKernel(wb(), 64, 64);
    expect(choice.kernel).to.equal('simt-f32');
    expect(choice.reason).to.not.equal('');
  });

  it('finds the binding declarations that tfjs writes, so declareStorageElements can retype them', async () => {
    const device = wb().device;
    const codes: string[] = [];
    const create = device.createShaderModule;
    device.createShaderModule = (d: GPUShaderModuleDescriptor) => {
      codes.push(d.code);
      return create.call(device, d);
    };
    try {
      const program: WebGPUProgram = {outputShape: [4], shaderKey: 'moeTestF16Decl', dispatchLayout: {x: [0]},
        dispatch: [1, 1, 1], variableNames: ['x16'], variableComponents: [1], workgroupSize: [4, 1, 1],
        getUserCode: () => 'fn main(index: i32) { if (index < uniforms.outShape) { result[index] = x16[index]; } }'};
      const x = tf.tensor1d([1, 2, 3, 4], 'int32');
      expect(Array.from(await run(program, [x], [4]))).to.deep.equal([1, 2, 3, 4]);
      x.dispose();
    } finally {
      device.createShaderModule = create;
    }
    const code = codes.find((c) => c.includes('x16'));
    expect(code, 'the program was compiled here').to.be.a('string');
    expect(declareStorageElements(`${code}\n// moe-storage-f16 x16`)).to.match(/var<storage, read> x16\s*:\s*array<f16>;/);
    // As blocks: tfjs's getters index x16 as a flat array and would not compile on an array of arrays.
    expect(code).to.match(/fn getX16\w*\s*\(/);
    const blocks = declareStorageElements(`${code!}\n// moe-storage-f16-blocks x16`);
    expect(blocks).to.match(/var<storage, read> x16\s*:\s*array<array<f16, 256>>;/);
    expect(blocks).to.contain('result[index] = x16[index];');
    const fns = (c: string) => [...c.matchAll(/fn (\w+)\s*\(/g)].map((m) => m[1]);
    expect(fns(code!).filter((f) => !fns(blocks).includes(f)), 'the functions dropped')
        .to.deep.equal(['getX16', 'getX16ByOutputIndex', 'getX16ByOutputCoords']);
  });

  /**
   * The GEMMs' WGSL with the subgroup-matrix types and builtins replaced by stand-ins of the same shape of
   * call (a struct of one f32; loads read one element of the same binding) and f16 by f32: everything
   * around the matrices (tile lookup, offsets, epilogues, bias, dequantization, bindings) must compile and
   * validate here. Only the builtins themselves, spelled as in the kernel the H200 ran, stay unchecked.
   * Bindings of 16 × 16 blocks keep their marker (as BLOCKS_STAND_IN): `validates` rewrites tfjs's whole module
   * through device.ts's declareStorageElements, then declares the blocks f32, so the declaration and getter rewrite
   * runs on the code tfjs writes around these programs.
   */
  const BLOCKS_STAND_IN = '// moe-test-f32-blocks';
  const standIn = (code: string, f16Bindings: string[]) => {
    let out = toMatrixElementOffsets(code, () => 1, 'standIn').replace(/^\s*enable (f16|chromium_experimental_subgroup_matrix);\s*$/gm, '')
        .replace(/^(\s*)\/\/ moe-storage-f16-blocks (\w+)$/gm, `$1${BLOCKS_STAND_IN} $2`)
        .replace(/^\s*\/\/ moe-storage-f16 .*$/gm, '')
        .replace(/(var<workgroup> staged : array<f32, )(\d+)>/g, (_, decl, n) => `${decl}${Math.min(Number(n), 2048)}>`)
        .replace(/bitcast<vec2<f16>>\(([^()]*(?:\([^()]*\))?[^()]*)\)/g, 'unpack2x16float(bitcast<u32>($1))')
        .replace(/subgroup_matrix_(left|right)<f16, 16, 16>|subgroup_matrix_result<f32, 16, 16>/g, 'SM')
        .replace(/subgroupMatrixLoad<SM>\(&(\w+)\[([^\]]+)\], /g, 'smLoadBlock_$1($2, ')
        .replace(/subgroupMatrixLoad<SM>\(&(\w+), /g, 'smLoad_$1(')
        .replace(/subgroupMatrixStore\(&(\w+), /g, 'smStore_$1(')
        .replace(/subgroupMatrixMultiplyAccumulate\(/g, 'smMma(')
        .replace(/\bf16\b/g, 'f32');
    const loads = [...new Set([...out.matchAll(/smLoad_(\w+)\(/g)].map((m) => m[1]))];
    const blockLoads = [...new Set([...out.matchAll(/smLoadBlock_(\w+)\(/g)].map((m) => m[1]))];
    const stores = [...new Set([...out.matchAll(/smStore_(\w+)\(/g)].map((m) => m[1]))];
    out += `
      struct SM { v : f32 }
      fn smMma(a : SM, b : SM, c : SM) -> SM { return SM(a.v * b.v + c.v); }
      ${loads.map((b) => `fn smLoad_${b}(off : u32, colMajor : bool, stride : u32) -> SM {
        return SM(f32(${b}[off + select(0u, stride, colMajor)]));
      }`).join('\n')}
      ${blockLoads.map((b) => `fn smLoadBlock_${b}(block : u32, off : u32, colMajor : bool, stride : u32) -> SM {
        return SM(${b}[block][off + select(0u, stride, colMajor)]);
      }`).join('\n')}
      ${stores.map((b) => `fn smStore_${b}(off : u32, m : SM, colMajor : bool, stride : u32) {
        ${b}[off + select(0u, stride, colMajor)] = m.v;
      }`).join('\n')}`;
    expect(loads.every((b) => f16Bindings.includes(b) || b === 'As' || b === 'Bs'), `loads from ${loads}`).to.equal(true);
    expect(blockLoads.every((b) => f16Bindings.includes(b) && out.includes(`${BLOCKS_STAND_IN} ${b}`)),
        `block loads from ${blockLoads}`).to.equal(true);
    return out;
  };
  /** tfjs's whole module with device.ts's block declarations, in f32 (see standIn). */
  const declareStandInBlocks = (code: string) => {
    if (!code.includes(BLOCKS_STAND_IN)) return code;
    const declared = declareStorageElements(code.split(BLOCKS_STAND_IN).join('// moe-storage-f16-blocks'));
    expect(declared, 'no getter of a block binding is left').to.not.match(/fn get(X16|W16)(ByOutput\w+)?\s*\(/);
    return declared.replace(/^\s*\/\/ moe-storage-f16-blocks .*$/gm, '').replace(/array<array<f16, 256>>/g, 'array<array<f32, 256>>');
  };
  const validates = async (program: WebGPUProgram, inputs: tf.Tensor[], out: TensorInfo) => {
    const device = wb().device;
    const create = device.createShaderModule;
    device.createShaderModule = (d: GPUShaderModuleDescriptor) => create.call(device, {...d, code: declareStandInBlocks(d.code)});
    device.pushErrorScope('validation');
    try {
      wb().runWebGPUProgram(program, inputs, out.dtype as 'float32' | 'int32', [{type: 'int32', data: [0]}], out);
    } finally {
      device.createShaderModule = create;
    }
    const t = tf.engine().makeTensorFromTensorInfo(out);
    await t.data();
    t.dispose();
    const error = await device.popErrorScope();
    expect(error?.message ?? '', program.shaderKey).to.equal('');
  };

  it('compiles the GEMMs\' WGSL around the subgroup matrices, for every variant family, formats, biases and swigluoai', async () => {
    const E = 3, H = 64, I = 48, T = 8, k = 2, P = T * k;
    // f32 and a packed format (every packed format reads through the same wload8_0). (int4 with a zero tensor,
    // act-order and biases would bind 9 buffers: FusedExperts refuses that where the limit is 8.)
    for (const format of [FLOAT32_FORMAT, fmt('uint4', 32, 8, {hasGIdx: true})]) {
      for (const [activation, hasBias] of [['silu', false], ['swigluoai', true]] as Array<[Activation, boolean]>) {
        const rand = rng(5);
        const part = (N: number, K: number) => {
          const p = randomProjection(format, E, N, K, rand);
          const t = [format.code === 'f32' ? tf.tensor3d(p.data as Float32Array, [E, N, K]) :
            tf.tensor2d(p.data as Int32Array, [E, p.data.length / E], 'int32')];
          if (p.scales) t.push(p.scales instanceof Int32Array ? tf.tensor2d(p.scales, [E, p.scales.length / E], 'int32') :
            tf.tensor2d(p.scales as Float32Array, [E, p.scales.length / E]));
          if (p.zeros) t.push(tf.tensor2d(p.zeros, [E, p.zeros.length / E]));
          if (p.gIdx) t.push(tf.tensor2d(p.gIdx, [E, K], 'int32'));
          if (hasBias) t.push(tf.tensor2d(randn(rand, E * N), [E, N]));
          return t;
        };
        const w13 = part(2 * I, H), w2 = part(H, I);
        const align = tf.tensor1d(new Int32Array(E + 1 + 4 * 32).fill(0), 'int32');
        const tw = tf.tensor2d(new Float32Array(P).fill(0.5), [T, k]);
        const common = {hiddenSize: H, intermediateSize: I, topK: k, numLocalExperts: E, activation,
          applyRouterWeightOnInput: false, format, hasBias};
        // workgroup-tiles: x f32 [T, H] / act f32 [rows, I].
        const x = tf.tensor2d(randn(rand, T * H), [T, H]);
        const act = tf.tensor2d(randn(rand, 64 * I), [64, I]);
        for (const stage of ['w13', 'w2'] as const) {
          const p = new ExpertsTensorCoreGemmProgram({...common, stage, blockRows: TC_BLOCK_ROWS, tileK: 16,
            splitK: stage === 'w2' ? 2 : 1}, stage === 'w13' ? [64, I] : [2 * P, H], 2);
          const code = standIn(p.getUserCode(), []);
          await validates(Object.assign(Object.create(Object.getPrototypeOf(p)), p,
              {getUserCode: () => code, shaderKey: `${p.shaderKey}_standIn`}),
          stage === 'w13' ? [x, align, ...w13] : [act, align, tw, ...w2], wb().makeTensorInfo(p.outputShape, 'float32'));
        }
        // storage variants: x16 / act16 i32 words, the f16 weights (a copy: i32 words), bias. Their code does not
        // depend on the format (the copy does: checked below against the host).
        const variants = format === FLOAT32_FORMAT ? [
          ...[32, 64].map((blockRows) => ({Program: ExpertsTensorCoreStorageGemmProgram, tile: STORAGE_TILE, blockRows,
            loads: ['x16', 'w16'], blocked: false})),
          // The pipelined variants: the storage program with x16 / act16 and the weights in 16×16 blocks, read
          // through block pointers; and two subgroups side by side, staggered ('staggered-64x128') or in step.
          ...[32, 64].map((blockRows) => ({Program: ExpertsTensorCoreStorageGemmProgram, tile: PIPELINED_TILE, blockRows,
            loads: ['x16', 'w16'], blocked: true, blockedRows: true})),
          {Program: ExpertsTensorCoreStorageGemmProgram, tile: PIPELINED_WIDE_TILE, blockRows: 64, loads: ['x16', 'w16'],
            blocked: true, blockedRows: true, subgroupsN: 2, kStagger: activation === 'silu'}] : [];
        for (const {Program, tile, blockRows, loads, blocked, blockedRows, subgroupsN, kStagger} of
            variants as Array<typeof variants[number] & {blockedRows?: boolean; subgroupsN?: number; kStagger?: boolean}>) {
          const layout = tensorCoreLayout(format, H, I, activation, tile, blocked, blockedRows);
          for (const stage of ['w13', 'w2'] as const) {
            const L = layout[stage];
            const Kp = stage === 'w13' ? layout.Hp : layout.Ip;
            const x16 = tf.tensor2d(new Int32Array(2 * blockRows * Kp / 2), [2 * blockRows, Kp / 2], 'int32');
            const w16 = tf.tensor2d(new Int32Array(E * L.rowsPerExpert * L.kStride / 2), [E, L.rowsPerExpert * L.kStride / 2], 'int32');
            const bias = hasBias ? [(stage === 'w13' ? w13 : w2).slice(-1)[0]] : [];
            // w2 of the storage family without biases also stores y in sorted order (tensor_core_prefill.ts).
            // (With two subgroups side by side, sorted needs H a multiple of 128: the emulated prefill runs it.)
            const outputs = stage === 'w2' && !hasBias && Program === ExpertsTensorCoreStorageGemmProgram &&
              (subgroupsN ?? 1) === 1 ? [false, true] : [false];
            for (const sortedOutput of outputs) {
              const p = new Program({...common, stage, blockRows, layout, splitK: stage === 'w2' ? 2 : 1, sortedOutput,
                subgroupsN, kStagger},
                  stage === 'w13' ? [2 * blockRows, layout.Ip / 2] : sortedOutput ? [2 * 2 * blockRows, H] : [2 * P, H], 2);
              const code = standIn(p.getUserCode(), loads);
              if (sortedOutput) expect(code, 'stores y from the result matrices').to.match(/smStore_result\(/);
              await validates(Object.assign(Object.create(Object.getPrototypeOf(p)), p,
                  {getUserCode: () => code, shaderKey: `${p.shaderKey}_standIn`}),
              stage === 'w13' ? [x16, align, w16, ...bias] : [x16, align, ...(sortedOutput ? [] : [tw]), w16, ...bias],
              wb().makeTensorInfo(p.outputShape, stage === 'w13' ? 'int32' : 'float32'));
            }
            tf.dispose([x16, w16]);
          }
        }
        tf.dispose([...w13, ...w2, align, tw, x, act]);
      }
    }
  });

  it('keeps each shard\'s f16 copy between calls until its weights are disposed or released, counted by tf.memory()', () => {
    const E = 2, H = 32, I = 16;
    const L = tensorCoreLayout(FLOAT32_FORMAT, H, I, 'silu', PIPELINED_TILE, true, true).w2;
    const program = new ExpertsWeightsF16Program({stage: 'w2', hiddenSize: H, intermediateSize: I, activation: 'silu',
      format: FLOAT32_FORMAT, layout: L}, E);
    const shape = [E, L.rowsPerExpert * L.kStride / 2];
    const key = program.shaderKey;   // (tfjs extends a program's key when it runs it)
    const copyOf = (w: tf.Tensor) => tensorCoreWeightCopy(wb(), [w], key, shape,
        (out) => wb().runWebGPUProgram(program, [w], 'int32', undefined, out));
    const gpuBytes = () => {
      wb().ensureCommandEncoderReady();
      wb().endComputePassEncoder();
      wb().submitQueue();
      return (tf.memory() as unknown as {numBytesInGPU: number}).numBytesInGPU;
    };
    const base = tensorCoreWeightCopies(wb());
    const a = tf.tensor3d(randn(rng(4), E * H * I), [E, H, I]);
    const b = tf.tensor3d(randn(rng(5), E * H * I), [E, H, I]);
    const bytes0 = gpuBytes();
    const first = copyOf(a);
    expect(first.kept).to.equal(true);
    const bytes1 = gpuBytes();
    expect(bytes1 - bytes0, 'the copy is in tfjs\'s pool').to.be.at.least(shape[0] * shape[1] * 4);
    const again = copyOf(a);
    expect(again.copy.dataId, 'the second call finds the first copy').to.equal(first.copy.dataId);
    expect(gpuBytes()).to.equal(bytes1);
    copyOf(b);
    expect(tensorCoreWeightCopies(wb())).to.equal(base + 2);
    a.dispose();
    expect(tensorCoreWeightCopies(wb()), 'a disposed source makes its copy stale; the sweep disposes it').to.equal(base + 1);
    releaseWeightState([b.dataId]);
    expect(tensorCoreWeightCopies(wb()), 'released with the weights').to.equal(base);
    b.dispose();
    // (a and b were uploaded by the copies' programs, after bytes0.)
    expect(gpuBytes(), 'the copies went back to the pool with the weights').to.equal(bytes0);
    tf.env().set(TENSOR_CORE_WEIGHT_CACHE_FLAG, false);
    try {
      const c = tf.tensor3d(randn(rng(6), E * H * I), [E, H, I]);
      const made = copyOf(c);
      expect(made.kept, 'with the flag off the caller disposes the copy').to.equal(false);
      expect(tensorCoreWeightCopies(wb())).to.equal(base);
      wb().disposeData(made.copy.dataId);
      c.dispose();
    } finally {
      tf.env().set(TENSOR_CORE_WEIGHT_CACHE_FLAG, true);
    }
  });

  it('gathers x into expert-sorted f16 rows, zero for padding rows and the padded columns', async () => {
    const T = 12, H = 40, k = 2, E = 2, BM = 4;   // H a multiple of 8 (the tensor-core path's), Hp - H zero columns
    const rand = rng(3);
    const x = randn(rand, T * H);
    const w = Float32Array.from({length: T * k}, () => 0.5 + rand());
    // align as the align program makes it: each expert's pairs padded to BM rows with -1.
    const byExpert: number[][] = [[], []];
    for (let p = 0; p < T * k; p++) byExpert[p % 5 === 0 ? 0 : 1].push(p);   // 5 and 19 pairs: 8 + 20 rows
    const sorted = byExpert.flatMap((ps) => [...ps, ...Array((BM - ps.length % BM) % BM).fill(-1)]);
    const offsets = [0, Math.ceil(byExpert[0].length / BM) * BM, sorted.length];
    const rows = 40, Hp = 48;   // rows past align[E] = 28 are left unwritten (no tile reads them)
    const align = Int32Array.from([...offsets, ...sorted, ...Array(rows - sorted.length).fill(77)]);
    for (const [onInput, blockedRows] of [[false, false], [true, false], [false, true], [true, true]]) {
      const tx = tf.tensor2d(x, [T, H]), ta = tf.tensor1d(align, 'int32'), tw = tf.tensor2d(w, [T, k]);
      // Blocked (the pipelined variants): 3 row blocks × 3 k blocks of 16×16.
      const outRows = blockedRows ? 48 : rows;
      const words = await run(new ExpertsGatherF16Program({hiddenSize: H, topK: k, numLocalExperts: E,
        applyRouterWeightOnInput: onInput, blockedRows}, outRows, Hp), onInput ? [tx, ta, tw] : [tx, ta], [outRows, Hp / 2]);
      tf.dispose([tx, ta, tw]);
      const got = halves(words);
      for (let r = 0; r < align[E]; r++) {
        const pair = align[E + 1 + r];
        for (let h = 0; h < Hp; h++) {
          const want = pair >= 0 && h < H ? roundToF16(Math.fround(x[Math.floor(pair / k) * H + h] * (onInput ? w[pair] : 1))) : 0;
          const at = blockedRows ? ((r >> 4) * (Hp / 16) + (h >> 4)) * 256 + (r & 15) * 16 + (h & 15) : r * Hp + h;
          expect(got[at], `row ${r} h ${h}${blockedRows ? ' blocked' : ''}`).to.equal(want);
        }
      }
    }
  });

  // H = 64, 128, 160: the gather takes 4, 8 and 2 k blocks at a time (one workgroup's subgroups).
  for (const H of [64, 128, 160]) it(`aligns and gathers 8 experts' pairs into whole 16-row blocks (Mixtral's padding), ` +
      `refusing partial blocks, H ${H}`, async () => {
    // With 8 experts the padded bound P + 8·(BM - 1) is 8 rows short of a block; the plan rounds it up, and
    // the blocked gather of those rows must leave every row of every expert intact (the H200's Mixtral
    // M = 64, 256 runs once lost the first k block of some rows here).
    const T = 24, k = 2, E = 8;
    const common = {hiddenSize: H, intermediateSize: 32, topK: k, numLocalExperts: E, globalNumExperts: E,
      hasExpertMap: false, activation: 'silu' as Activation, applyRouterWeightOnInput: false, format: FLOAT32_FORMAT,
      hasBias: false};
    const {blockRows, rows, layout} = tensorCorePrefillPlan(common, 'pipelined-32', T * k);
    expect(rows % 16, `rows ${rows}`).to.equal(0);
    const rand = rng(5);
    const x = randn(rand, T * H);
    // Expert 0 takes 20 pairs (rows 0..19 of its 32-row tile, across the first block boundary), the rest spread.
    const ids = Int32Array.from({length: T * k}, (_, p) => p < 20 ? 0 : 1 + p % (E - 1));
    const tx = tf.tensor2d(x, [T, H]), ti = tf.tensor2d(ids, [T, k], 'int32');
    const alignInfo = wb().runWebGPUProgram(new ExpertsAlignProgram({...common, blockRows}, T * k), [ti], 'int32');
    const ta = tf.engine().makeTensorFromTensorInfo(alignInfo);
    const align = await ta.data();
    const words = await run(new ExpertsGatherF16Program({...common, blockedRows: true}, rows, layout.Hp), [tx, ta],
      [rows, layout.Hp / 2]);
    tf.dispose([tx, ti, ta]);
    const got = halves(words);
    const seen = new Set<number>();
    for (let e = 0; e < E; e++) {
      expect(align[e] % blockRows, `offset of expert ${e}`).to.equal(0);
      for (let r = align[e]; r < align[e + 1]; r++) {
        const pair = align[E + 1 + r];
        if (pair >= 0) {
          expect(ids[pair], `row ${r}'s pair ${pair}`).to.equal(e);
          seen.add(pair);
        }
        for (let h = 0; h < H; h++) {
          const want = pair >= 0 ? roundToF16(x[Math.floor(pair / k) * H + h]) : 0;
          const at = ((r >> 4) * (layout.Hp / 16) + (h >> 4)) * 256 + (r & 15) * 16 + (h & 15);
          if (got[at] !== want) expect.fail(`expert ${e} row ${r} h ${h}: ${got[at]} != ${want}`);
        }
      }
    }
    expect(seen.size, 'every pair placed once').to.equal(T * k);
    expect(() => new ExpertsGatherF16Program({...common, blockedRows: true}, rows - 8, layout.Hp))
      .to.throw(/rows must be whole 16-row blocks when blocked, got/);
  });

  it('aligns the same way with any number of lanes (the device\'s up to 1024, here fewer than 256 too)', async () => {
    // 1000 pairs over 40 experts, 2 on another rank: each lane takes several passes of 8 pairs at 32 lanes.
    const T = 500, k = 2, E = 40, P = T * k, blockRows = 16;
    const rand = rng(13);
    const ids = Int32Array.from({length: P}, (_, p) => p % 7 === 0 ? 3 : Math.floor(rand() * E));
    const expertMap = Int32Array.from({length: E}, (_, e) => e === 5 || e === 6 ? -1 : e - (e > 6 ? 2 : 0));
    const numLocal = E - 2;
    const local = (p: number) => expertMap[ids[p]];
    const counts = new Array(numLocal).fill(0);
    for (let p = 0; p < P; p++) if (local(p) >= 0) counts[local(p)]++;
    const offsets = [0];
    counts.forEach((c) => offsets.push(offsets[offsets.length - 1] + Math.ceil(c / blockRows) * blockRows));
    const ti = tf.tensor2d(ids, [T, k], 'int32'), tm = tf.tensor1d(expertMap, 'int32');
    for (const lanes of [32, 64, 256, alignLanes(wb())]) {
      const program = new ExpertsAlignProgram({numLocalExperts: numLocal, globalNumExperts: E, hasExpertMap: true,
        blockRows, positions: true, lanes}, P);
      expect(program.workgroupSize[0]).to.equal(lanes);
      const info = wb().runWebGPUProgram(program, [ti, tm], 'int32');
      const align = await tf.engine().makeTensorFromTensorInfo(info).data();
      wb().disposeData(info.dataId);
      expect(Array.from(align.subarray(0, numLocal + 1)), `offsets, ${lanes} lanes`).to.deep.equal(offsets);
      const sorted = align.subarray(numLocal + 1, numLocal + 1 + offsets[numLocal]);
      const positions = align.subarray(align.length - P);
      for (let e = 0; e < numLocal; e++) {
        const segment = Array.from(sorted.subarray(offsets[e], offsets[e + 1]));
        const pairs = segment.filter((p) => p >= 0).sort((a, b) => a - b);
        const want = Array.from({length: P}, (_, p) => p).filter((p) => local(p) === e);
        expect(pairs, `expert ${e}'s pairs, ${lanes} lanes`).to.deep.equal(want);
        expect(segment.slice(counts[e]).every((p) => p === -1), `expert ${e}'s padding, ${lanes} lanes`).to.equal(true);
      }
      for (let p = 0; p < P; p++) {
        const want = local(p) < 0 ? -1 : sorted.indexOf(p);
        if (positions[p] !== want) expect.fail(`pair ${p}'s position ${positions[p]} != ${want}, ${lanes} lanes`);
      }
    }
    tf.dispose([ti, tm]);
  });

  it('writes each pair\'s sorted row, and combines a y in sorted order through it with the routing weights', async () => {
    // The w2 GEMM without biases stores y in the align program's sorted order (tensor_core_prefill.ts); the
    // combine finds each pair's row through the positions and applies the routing weight after adding the
    // K parts. Checked against the host, with an expert map that leaves half the experts on another rank.
    const T = 24, k = 2, E = 8, H = 64, splits = 2;
    const rand = rng(9);
    const ids = Int32Array.from({length: T * k}, (_, p) => p < 20 ? 0 : 1 + p % (E - 1));
    const w = Float32Array.from({length: T * k}, () => 0.25 + rand());
    // Two variants' row counts through the same combine program (rows per part come from y's shape: a count
    // baked into the shader would be reused from the first under the same shader key).
    for (const [expertMap, onInput, variant] of [[null, false, 'pipelined-64'], [null, false, 'pipelined-32'],
      [Int32Array.from([0, -1, 1, -1, 2, -1, 3, -1]), false, 'pipelined-32'], [null, true, 'pipelined-32']] as
      Array<[Int32Array | null, boolean, TensorCoreVariant]>) {
      const numLocal = expertMap ? 4 : E;
      const common = {hiddenSize: H, intermediateSize: 32, topK: k, numLocalExperts: numLocal, globalNumExperts: E,
        hasExpertMap: expertMap != null, activation: 'silu' as Activation, applyRouterWeightOnInput: onInput,
        format: FLOAT32_FORMAT, hasBias: false};
      const {blockRows, rows} = tensorCorePrefillPlan(common, variant, T * k);
      const ti = tf.tensor2d(ids, [T, k], 'int32');
      const tm = expertMap ? [tf.tensor1d(expertMap, 'int32')] : [];
      const alignInfo = wb().runWebGPUProgram(new ExpertsAlignProgram({...common, blockRows, positions: true}, T * k),
          [ti, ...tm], 'int32');
      const ta = tf.engine().makeTensorFromTensorInfo(alignInfo);
      const align = await ta.data();
      const positions = align.subarray(align.length - T * k);
      const local = (p: number) => expertMap ? expertMap[ids[p]] : ids[p];
      for (let p = 0; p < T * k; p++) {
        if (local(p) < 0) {
          expect(positions[p], `pair ${p} (another rank's expert)`).to.equal(-1);
        } else {
          expect(align[numLocal + 1 + positions[p]], `the sorted row of pair ${p}`).to.equal(p);
          expect(positions[p] >= align[local(p)] && positions[p] < align[local(p) + 1], `pair ${p} in its expert's rows`)
            .to.equal(true);
        }
      }
      const y = randn(rand, splits * rows * H);
      const ty = tf.tensor2d(y, [splits * rows, H]), tw = tf.tensor2d(w, [T, k]);
      const combine = new ExpertsCombineProgram(common, T, {splits, sorted: true});
      const out = wb().runWebGPUProgram(combine, [ty, ti, ...tm, ta, ...(onInput ? [] : [tw])], 'float32');
      const got = await tf.engine().makeTensorFromTensorInfo(out).data();
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < H; h++) {
          let want = 0;
          for (let j = 0; j < k; j++) {
            const p = t * k + j;
            if (local(p) < 0) continue;
            const parts = y[positions[p] * H + h] + y[(rows + positions[p]) * H + h];
            want += (onInput ? 1 : w[p]) * parts;
          }
          expect(Math.abs(got[t * H + h] - want), `token ${t} h ${h}`).to.be.below(1e-5 * (1 + Math.abs(want)));
        }
      }
      tf.dispose([ti, ...tm, ta, ty, tw]);
      wb().disposeData(out.dataId);
    }
  });

  /**
   * The whole storage-program prefill as FusedExperts issues it (tensorCoreStoragePrefill: align, f16 gather,
   * weight copy, w13, w2 sorted or by pair, then the combine), the GEMMs' subgroup matrices emulated
   * (test/helpers/f16_subgroup_matrix_emulation.ts), against the host reference of the f16 numerics within its
   * derived bound: the offsets, blocked layouts, epilogues and w2's sorted stores run here, not only on the H200.
   */
  const emulatedPrefillCases: Array<{variant: TensorCoreVariant; activation: Activation; bias: boolean; onInput: boolean;
      splitK: number; H: number; I: number; sorted: boolean; shards?: number[]; expertMap?: number[]; tokens?: number;
      /** GEMM dispatches per stage: one per shard, or one over a copy of every shard (mergedCopy). */
      gemmsPerStage?: number}> = [
    {variant: 'pipelined-64', activation: 'silu', bias: false, onInput: false, splitK: 1, H: 64, I: 48, sorted: true},
    {variant: 'pipelined-32', activation: 'gelu', bias: false, onInput: true, splitK: 2, H: 144, I: 80, sorted: true},
    {variant: 'pipelined-32', activation: 'swigluoai', bias: true, onInput: false, splitK: 2, H: 64, I: 48, sorted: false},
    {variant: 'storage-64', activation: 'silu', bias: false, onInput: false, splitK: 2, H: 144, I: 80, sorted: true},
    // The second subgroup one k block ahead, wrapping at its tile's (or split-K part's) last block: split-K parts of
    // 1 and 2 steps (I = 80: 3 steps in 2 parts), and whole tiles of 2 and 5 steps.
    {variant: 'staggered-64x128', activation: 'silu', bias: false, onInput: false, splitK: 2, H: 128, I: 80, sorted: true,
      tokens: 80},
    {variant: 'staggered-64x128', activation: 'gelu', bias: true, onInput: true, splitK: 1, H: 144, I: 48, sorted: false,
      tokens: 80},
    // Two shards and an expert map, each stage's copies merged into one tensor: one GEMM dispatch a stage.
    {variant: 'staggered-64x128', activation: 'silu', bias: false, onInput: false, splitK: 1, H: 128, I: 48, sorted: true,
      shards: [2, 1], expertMap: [0, -1, 1, 2], gemmsPerStage: 1},
    // Four subgroups, subgroup s s blocks ahead: lags past the tile's end and past a whole tile's blocks (w2's
    // split-K part of one step; H = 32, one step in w13, whose fourth subgroup has act columns 96..111) wrap modulo
    // the tile; columns past Ip and H skipped.
    {variant: 'grouped-64x256', activation: 'silu', bias: false, onInput: false, splitK: 2, H: 256, I: 80, sorted: true,
      tokens: 80},
    {variant: 'grouped-64x256', activation: 'swigluoai', bias: false, onInput: false, splitK: 1, H: 32, I: 112, sorted: false},
    // Row tiles launched 16 at a time: 600 tokens make 22 row workgroups (19 tiles of pairs), a group of 16 and
    // one of 6, whose column order differs; y sorted (no split-K) and by pair.
    {variant: 'grouped-64x256', activation: 'silu', bias: false, onInput: false, splitK: 1, H: 256, I: 48, sorted: true,
      tokens: 600},
    {variant: 'grouped-64x256', activation: 'swigluoai', bias: true, onInput: false, splitK: 2, H: 64, I: 144, sorted: false,
      tokens: 600},
    {variant: 'grouped-64x256', activation: 'gelu', bias: false, onInput: true, splitK: 2, H: 256, I: 80, sorted: true,
      tokens: 600},
    // Tails fitted to their live row blocks: 90 tokens give expert 0 a tail tile of one live block (144 pairs) and
    // experts 1 and 2 tiles of two (18 pairs each); 110 tokens a tail of three (176) and two of two (22 each).
    {variant: 'fitted-64x256', activation: 'silu', bias: false, onInput: false, splitK: 2, H: 256, I: 80, sorted: true,
      tokens: 90},
    {variant: 'fitted-64x256', activation: 'swigluoai', bias: true, onInput: false, splitK: 1, H: 64, I: 144, sorted: false,
      tokens: 110},
    {variant: 'fitted-64x256', activation: 'gelu', bias: false, onInput: true, splitK: 1, H: 256, I: 48, sorted: true,
      tokens: 110},
    // Four 32-row subgroups.
    {variant: 'staggered-32x256', activation: 'gelu', bias: true, onInput: false, splitK: 2, H: 144, I: 112, sorted: false},
    // Two weight shards copied into one f16 tensor (each copy program at its first expert), one GEMM per stage,
    // and an expert map: global expert 1 is another rank's.
    {variant: 'pipelined-64', activation: 'silu', bias: false, onInput: false, splitK: 2, H: 64, I: 48, sorted: true,
      shards: [2, 1], expertMap: [0, -1, 1, 2], gemmsPerStage: 1},
    // With biases (per shard) the shards stay apart: one GEMM each, at its firstExpert.
    {variant: 'pipelined-32', activation: 'swigluoai', bias: true, onInput: false, splitK: 2, H: 64, I: 48, sorted: false,
      shards: [1, 2], gemmsPerStage: 2},
  ];
  for (const tc of emulatedPrefillCases) {
    it(`runs the ${tc.variant} prefill with emulated f16 subgroup matrices within the reference's bound ` +
        `(${tc.activation}${tc.bias ? ', biases' : ''}${tc.onInput ? ', weight on the input' : ''}, split-K ${tc.splitK}, ` +
        `y ${tc.sorted ? 'sorted' : 'by pair'}${tc.shards ? `, shards of ${tc.shards} experts in ${tc.gemmsPerStage} GEMM(s)` : ''}` +
        `${tc.expertMap ? ', an expert map' : ''})`, async () => {
      const {H, I} = tc;
      const E = 3, T = tc.tokens ?? 40, k = 2, P = T * k;
      const globalE = tc.expertMap?.length ?? E;
      const local = (g: number) => tc.expertMap ? tc.expertMap[g] : g;
      const shardSizes = tc.shards ?? [E];
      const rand = rng(21);
      // Expert 0 takes most pairs (several row tiles), the others a few (a partial tile each).
      const ids = Int32Array.from({length: P}, (_, p) => p % 5 === 0 ? 1 + (p % (globalE - 1)) : 0);
      const weights = Float32Array.from({length: P}, () => 0.25 + rand());
      const hidden = randn(rand, T * H);
      const w13 = randn(rand, E * 2 * I * H, 0.3), w2 = randn(rand, E * H * I, 0.3);
      const b13 = randn(rand, E * 2 * I, 0.5), b2 = randn(rand, E * H, 0.5);
      const common = {hiddenSize: H, intermediateSize: I, topK: k, numLocalExperts: E, globalNumExperts: globalE,
        hasExpertMap: tc.expertMap != null, activation: tc.activation, applyRouterWeightOnInput: tc.onInput,
        format: FLOAT32_FORMAT, hasBias: tc.bias};
      const x = tf.tensor2d(hidden, [T, H]), tw = tf.tensor2d(weights, [T, k]), ti = tf.tensor2d(ids, [T, k], 'int32');
      const ids2 = [ti, ...(tc.expertMap ? [tf.tensor1d(tc.expertMap, 'int32')] : [])];
      // Each shard's experts as their own tensors, as FusedMoE's expert-range shards are.
      const shardTensors = (data: Float32Array, perExpert: number[]) => {
        let first = 0;
        return shardSizes.map((n) => {
          const t = tf.tensor(data.subarray(first * perExpert.reduce((a, b) => a * b), (first + n) *
            perExpert.reduce((a, b) => a * b)), [n, ...perExpert]);
          first += n;
          return t;
        });
      };
      const w13t = shardTensors(w13, [2 * I, H]), w2t = shardTensors(w2, [H, I]);
      const b13t = shardTensors(b13, [2 * I]), b2t = shardTensors(b2, [H]);
      const temps: TensorInfo[] = [];
      const emulatedCodes: string[] = [];
      tf.env().set(TENSOR_CORE_WEIGHT_CACHE_FLAG, false);
      try {
        const run = (program: WebGPUProgram, inputs: TensorInfo[], uniforms?: Array<{type: string; data: number[]}>,
            out?: TensorInfo) => {
          const code = program.getUserCode();
          const emulated = code.includes('subgroup_matrix') ? emulateF16SubgroupMatrices(code) : null;
          if (emulated) emulatedCodes.push(emulated);
          const p = emulated == null ? program : Object.assign(Object.create(Object.getPrototypeOf(program)), program,
            {getUserCode: () => emulated, shaderKey: `${program.shaderKey}_emulatedF16`}) as WebGPUProgram;
          return wb().runWebGPUProgram(p, inputs, 'float32', uniforms, out);
        };
        const {y, splitK, sorted, combineInputs} = tensorCoreStoragePrefill({backend: wb(), issuer: wb(), run, temps,
          temp: (shape, dtype = 'float32') => {
            const t = wb().makeTensorInfo(shape, dtype);
            temps.push(t);
            return t;
          },
          variant: tc.variant, x, topkWeights: tw, ids: ids2, numPairs: P, common,
          shards: {w13: w13t.map((data, s) => ({data, ...(tc.bias ? {bias: b13t[s]} : {})})),
            w2: w2t.map((data, s) => ({data, ...(tc.bias ? {bias: b2t[s]} : {})}))},
          splitK: () => tc.splitK, checkBinding: () => {}});
        expect(splitK).to.equal(tc.splitK);
        expect(sorted, 'y in sorted order').to.equal(tc.sorted);
        expect(emulatedCodes.length, 'the w13 and w2 GEMMs ran emulated').to.equal(2 * (tc.gemmsPerStage ?? 1));
        const combine = new ExpertsCombineProgram(common, T, {splits: splitK, sorted});
        const outInfo = wb().runWebGPUProgram(combine, [y, ...ids2, ...combineInputs], 'float32');
        const out = tf.engine().makeTensorFromTensorInfo(outInfo);
        const got = await out.data();
        out.dispose();
        // Another rank's expert contributes exactly 0 here: in the reference, zero weights (act(0)·0 = 0).
        const of = (data: Float32Array, size: number) => (g: number) => local(g) < 0 ? new Float32Array(size) :
          data.subarray(local(g) * size, (local(g) + 1) * size);
        const rows = Array.from({length: T}, (_, t) => t);
        const ref = tensorCoreReference({hidden, H, I, k, ids, weights, activation: tc.activation,
          applyRouterWeightOnInput: tc.onInput, w13Of: of(w13, 2 * I * H), w2Of: of(w2, H * I),
          ...(tc.bias ? {b13Of: of(b13, 2 * I), b2Of: of(b2, H)} : {})}, rows);
        const r = compareWithBound(got, rows, H, ref);
        expect(r.pass, `worst error ${r.worstRatio} of its bound (max error ${r.err})`).to.equal(true);
        expect(Array.from(got.slice(0, 8)).some((v) => v !== 0), 'nonzero output').to.equal(true);
      } finally {
        tf.env().set(TENSOR_CORE_WEIGHT_CACHE_FLAG, true);
        temps.forEach((t) => wb().disposeData(t.dataId));
        tf.dispose([x, tw, ...ids2, ...w13t, ...w2t, ...b13t, ...b2t]);
      }
    });
  }

  it('copies weights of every format to padded f16 in the GEMM\'s layout (gate/up de-interleaved, or in 16×16 blocks)', async () => {
    const E = 2, H = 40, I = 24;
    // Blocked: in two pipelined subgroups' tiles (128 w13 rows per 64 act columns), or one's (64 per 32).
    for (const [format, blocked, blockTile] of [...FORMATS.map((f) => [f, false, STORAGE_TILE] as const),
      [FLOAT32_FORMAT, true, PIPELINED_WIDE_TILE] as const, [FLOAT32_FORMAT, true, PIPELINED_TILE] as const,
      ...FORMATS.filter((f) => f.code === 'uint4').slice(0, 1).map((f) => [f, true, PIPELINED_WIDE_TILE] as const)]) {
      // Packed formats need K a multiple of their group; block-scaled fp8 has groups of 128 (one group here).
      for (const [stage, activation] of [['w13', 'silu'], ['w13', 'swigluoai'], ['w2', 'silu']] as
          Array<['w13' | 'w2', Activation]>) {
        const N = stage === 'w13' ? 2 * I : H, K = stage === 'w13' ? H : I;
        if (format.groupSize > 0 && K % format.groupSize !== 0 && format.groupSize !== 128) continue;
        const p = randomProjection(format, E, N, K, rng(11));
        const ref = dequantizeImpl(p);
        const L = tensorCoreLayout(format, H, I, activation, blockTile, blocked)[stage];
        const inputs = [format.code === 'f32' ? tf.tensor3d(p.data as Float32Array, [E, N, K]) :
          tf.tensor2d(p.data as Int32Array, [E, p.data.length / E], 'int32')];
        if (p.scales) inputs.push(p.scales instanceof Int32Array ? tf.tensor2d(p.scales, [E, p.scales.length / E], 'int32') :
          tf.tensor2d(p.scales as Float32Array, [E, p.scales.length / E]));
        if (p.zeros) inputs.push(tf.tensor2d(p.zeros, [E, p.zeros.length / E]));
        if (p.gIdx) inputs.push(tf.tensor2d(p.gIdx, [E, K], 'int32'));
        const words = await run(new ExpertsWeightsF16Program({stage, hiddenSize: H, intermediateSize: I, activation,
          format, layout: L}, E), inputs, [E, L.rowsPerExpert * L.kStride / 2]);
        tf.dispose(inputs);
        const got = halves(words);
        const what = `${formatKey(format)} ${stage} ${activation}${blocked ? ` blocked in ${blockTile.w13Columns}-column tiles` : ''}`;
        for (let e = 0; e < E; e++) {
          for (let row = 0; row < L.rowsPerExpert; row++) {
            let src = -1;
            if (stage === 'w2') src = row < H ? row : -1;
            else {
              // Blocked: per 128 rows, 32 gate rows, their 32 up rows, the next 32 gate and their up rows.
              const t = row % 128;
              const up = blocked ? Math.floor(t / 32) % 2 === 1 : row >= L.upOffset;
              const i = blocked ? Math.floor(row / 128) * 64 + 32 * Math.floor(t / 64) + t % 32 : up ? row - L.upOffset : row;
              src = i >= I ? -1 : activation === 'swigluoai' ? 2 * i + (up ? 1 : 0) : i + (up ? I : 0);
            }
            for (let kk = 0; kk < L.kStride; kk++) {
              const want = src >= 0 && kk < K ? roundToF16(ref[(e * N + src) * K + kk]) : 0;
              const r = e * L.rowsPerExpert + row;
              const v = got[blocked ? ((r >> 4) * (L.kStride / 16) + (kk >> 4)) * 256 + (r & 15) * 16 + (kk & 15) :
                r * L.kStride + kk];
              // WGSL lets an implementation flush f16 subnormals (SwiftShader's pack2x16float may).
              const flushed = Math.abs(want) < 2 ** -14 && v === 0;
              if (v !== want && !flushed) expect.fail(`${what}: expert ${e} row ${row} k ${kk}: ${v} != ${want}`);
            }
          }
        }
      }
    }
  });
});

/**
 * The benchmark harness: what it times must compute the right thing on every backend under test
 * (its own parity checks: the device fill, ours and the naive tfjs way against the cpu reference at
 * the tiny shapes), and the report must judge the targets as written.
 */
import {expect} from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import {parityChecks} from '../bench/check';
import {Row, markdown, readmeTable, svgChart, verdicts} from '../bench/report_lib';
import {expertBytes, moeFlops, parseShapes, shardExpertCounts, SHAPES} from '../bench/shapes';
import type {MoEShape} from '../bench/shapes';
import {describeBackends} from './helpers/env';
import {bothStagedForm, int8W13Gemm, layerGemmForms, oneExpertInputs, toBlocks, w13WeightRow} from '../bench/layer_kernel';
import {emulateI8SubgroupMatrices} from './helpers/i8_subgroup_matrix_emulation';

describeBackends('bench: parity checks before timing', () => {
  it('passes the fill, ours and naive tfjs against the cpu reference at the tiny shapes, without leaks', async () => {
    const before = tf.memory().numTensors;
    const lines = await parityChecks(tf.getBackend(), true);
    expect(tf.memory().numTensors).to.equal(before);
    expect(lines.map((l) => l.impl)).to.include.members(['fill', 'ours', 'naive-tfjs']);
    // 3 tiny shapes × 2 token counts × (ours, naive) + the fill.
    expect(lines).to.have.length(13);
    for (const l of lines) expect(l.ok, JSON.stringify(l)).to.equal(true);
  });
});

describe('bench: shapes', () => {
  it('counts Mixtral\'s work as the issue does', () => {
    const mixtral = SHAPES['mixtral'] as MoEShape;
    // 2·M·k·(2I·H + H·I) and 2 experts × 3·I·H float32 values at decode.
    expect(moeFlops(mixtral, 4096)).to.equal(2 * 4096 * 2 * 3 * 14336 * 4096);
    expect(expertBytes(mixtral, 2)).to.equal(2 * 3 * 14336 * 4096 * 4);
  });

  it('splits w13 by expert range to fit one storage binding', () => {
    // Mixtral's w13 expert is 470 MB: 4 per 2 GiB binding, 2 per 1 GiB.
    expect(shardExpertCounts(SHAPES['mixtral'] as MoEShape, 2 ** 31)).to.deep.equal([4, 4]);
    expect(shardExpertCounts(SHAPES['mixtral'] as MoEShape, 2 ** 30)).to.deep.equal([2, 2, 2, 2]);
    expect(shardExpertCounts(SHAPES['dsv3tp8'] as MoEShape, 2 ** 31)).to.deep.equal([146, 110]);
    expect(shardExpertCounts(SHAPES['tiny-mixtral'] as MoEShape, 2 ** 31)).to.deep.equal([3, 3, 2]);
    expect(() => shardExpertCounts(SHAPES['mixtral'] as MoEShape, 2 ** 28)).to.throw(/exceeds the storage binding/);
  });

  it('expands sets and rejects unknown names', () => {
    expect(parseShapes('real,mixtral').map((s) => s.name))
        .to.deep.equal(['mixtral', 'qwen3', 'dsv3tp8', 'topk-e256', 'grouped-dsv3']);
    expect(() => parseShapes('mixtral,llama')).to.throw(/unknown shape 'llama'/);
  });
});

describe('bench: report', () => {
  const base = {backend: 'webgpu', shape: 'mixtral', E: 8, k: 2, H: 4096, I: 14336, dtype: 'float32'};
  const torch = {...base, backend: 'cuda', us_from: 'cuda-events'};
  const rows: Row[] = [
    {impl: 'meta', backend: 'webgpu', device: 'nvidia hopper', f32_peak_tflops_assumed: 67},
    {impl: 'ours', ...base, M: 1, us: 400, us_from: 'gpu-timestamps', gpu_us: 400, wall_us: 900, tflops: 1, gbps: 3500,
      frac_copy_bw: 0.8, ids_checksum: 'aaaa0001', ref_ok: true, ref_rows: 1, ref_max_abs_err: 1e-7, ref_tol: 1e-4},
    {impl: 'naive-tfjs', ...base, M: 1, us: 9000, us_from: 'gpu-timestamps', gpu_us: 9000, wall_us: 15600, ref_ok: true},
    {impl: 'torch-eager-f32', ...torch, M: 1, us: 760, cuda_event_us: 760, wall_us: 1000, gpu_busy_us: 520,
      ids_checksum: 'aaaa0001'},
    {impl: 'ours', ...base, M: 16, us: 700, us_from: 'gpu-timestamps', gpu_us: 700, wall_us: 800, tflops: 4, gbps: 2000,
      ids_checksum: 'bbbb0002'},
    {impl: 'naive-tfjs', ...base, M: 16, us: 20000, us_from: 'gpu-timestamps', gpu_us: 20000, wall_us: 30000,
      ref_ok: false, ref_max_abs_err: 0.5, ref_tol: 1e-4},
    {impl: 'torch-eager-f32', ...torch, M: 16, us: 800, cuda_event_us: 800, wall_us: 900, ids_checksum: 'cccc0003'},
    {impl: 'ours', ...base, M: 4096, us: 80000, us_from: 'gpu-timestamps', gpu_us: 80000, wall_us: 81000, tflops: 36, gbps: 70},
    {impl: 'naive-tfjs', ...base, M: 4096, error: 'not timed: it disagrees with the cpu reference'},
    {impl: 'ours', ...base, M: 1, format: 'int4-g128', us: 150, us_from: 'gpu-timestamps', gpu_us: 150, wall_us: 500},
    {impl: 'torch-dequant-int4-g128', ...torch, M: 1, format: 'int4-g128', dtype: 'bfloat16', us: 700, wall_us: 750},
    {impl: 'naive-tfjs', backend: 'webgpu', check: 'parity-vs-cpu-reference', shape: 'tiny-dsv3', M: 1, ok: false,
      max_abs_err: 0.5, tol: 1e-4},
  ];

  it('judges decode, the wall/GPU ratio, torch (wall against wall) and naive as the issue sets them', () => {
    const at = (M: number) => verdicts(rows, rows.find((r) => r.impl === 'ours' && r.M === M && !r.format)!, 'webgpu');
    // M = 1: 400 µs ≤ 470; wall 900 > 2 × 400; naive 9000 / 400 = 22.5× ≥ 20 (GPU sums).
    expect(at(1).map((v) => v.met)).to.deep.equal([true, false, true]);
    // M = 16: torch wall 900 / ours wall 800 ≥ 1 (Mixtral's bar); naive's output is wrong: not counted.
    expect(at(16).map((v) => v.met)).to.deep.equal([true, null]);
    // M = 4096: 36 < 40 TFLOP/s; naive was not timed: unknown, not passed.
    expect(at(4096).map((v) => v.met)).to.deep.equal([false, null]);
    // The targets are for float32 weights only.
    expect(verdicts(rows, rows.find((r) => r.format === 'int4-g128')!, 'webgpu')).to.deep.equal([]);
  });

  it('forms ratios wall against wall and GPU busy against GPU busy, per format, and flags ids and wrong naive rows', () => {
    const md = markdown(rows, 'unit');
    // ours wall, ours GPU, torch f32 wall, torch GPU busy, 1000/900 wall, 520/400 busy, no grouped_mm row,
    // naive wall, 15600/900 wall and 9000/400 GPU, the float64 check, the ids.
    expect(md).to.contain('| mixtral | 1 | 900 µs | 400 µs | 1 ms | 520 µs | 1.1× | 1.3× | – | – | 15.6 ms | 17× / 23× | ok (1 rows) | same |');
    expect(md).to.contain('**wrong output**');
    expect(md).to.contain('**differ**: torch-eager-f32 routed other experts (cccc0003 vs ours bbbb0002)');
    expect(md).to.contain('**FAIL** ≥ 40 TFLOP/s');
    expect(md).to.contain('## fusedMoE on webgpu, int4-g128 weights');
    expect(md).to.contain('| mixtral | 1 | 500 µs | 150 µs | 750 µs | – | 1.5× | – |');
    expect(md).to.contain('0 passed, 1 failed');
    expect(readmeTable(rows)).to.contain('**int4-g128 weights**');
    const svg = svgChart(rows, 'unit');
    expect(svg.startsWith('<svg')).to.equal(true);
    // 9 rows with a wall time → 9 bars, plus the background and the legend's 5 swatches.
    expect(svg.match(/<rect /g)).to.have.length(9 + 1 + 5);
  });
});

/**
 * tc_probe --round32 times the layer's int8 w13 GEMM verbatim, edits of it and the both-staged GEMM
 * ('tensor-core-i8-both-staged-128-quant-pass') in its place on a GPU with i8 subgroup matrices; a form that computes something else would time nothing useful, and one that no longer matches the
 * kernel's text throws on the device. Here each form runs with the matrices emulated (test/helpers), bound as the
 * probe binds it (one expert: oneExpertInputs, the weights' blocked copy, tfjs's uniform block) on a device of its
 * own, as the probe's (the backend's device would rewrite the already rewritten code), and every output must equal
 * the exact integer product of x's row and the weight row w13WeightRow names.
 */
describeBackends('bench: the layer GEMM forms of tc_probe round 32', (backend) => {
  // The probe runs in Node (Dawn); the browser run would check the same WGSL again.
  if (backend !== 'webgpu' || typeof window !== 'undefined') return;
  it('compute the exact product in every form, with the i8 subgroup matrices emulated', async () => {
    const adapter = await navigator.gpu.requestAdapter();
    if (adapter == null) throw new Error('no WebGPU adapter');
    const device = await adapter.requestDevice({requiredFeatures: ['subgroups' as GPUFeatureName],
      requiredLimits: {maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize}});
    const M = 256, K = 64, I = 256, N = 2 * I;
    const shape = {kind: 'moe', name: 'round32-test', E: 1, k: 1, H: K, I, routing: SHAPES['plain-gemm'].routing} as MoEShape;
    const emulate = (code: string) => emulateI8SubgroupMatrices(code, device.limits.maxComputeWorkgroupStorageSize);
    const g = int8W13Gemm(shape, M, emulate);
    let seed = 7;
    const int8 = (n: number) => Int8Array.from({length: n}, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) % 255 - 127);
    const a8 = int8(M * K), b8 = int8(N * K);
    const {xb, align} = oneExpertInputs(g, M, K, toBlocks(a8, M, K, 32));
    const storage = (data: ArrayBufferView) => {
      const b = device.createBuffer({size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST});
      device.queue.writeBuffer(b, 0, data as unknown as ArrayBuffer);
      return b;
    };
    const uniforms = device.createBuffer({size: g.uniforms.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST});
    device.queue.writeBuffer(uniforms, 0, g.uniforms);
    const inputs = [storage(xb), storage(align), storage(toBlocks(b8, N, K, 32)), uniforms];
    const expected = new Int32Array(M * N);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let sum = 0;
        for (let k = 0, w = w13WeightRow(j); k < K; k++) sum += a8[i * K + k] * b8[w * K + k];
        expected[i * N + j] = sum;
      }
    }
    // The layer's forms, then the both-staged GEMM in its place.
    const forms = [...layerGemmForms(g), bothStagedForm(shape, M, g, emulate)];
    expect(forms.map((f) => f.what)).to.have.length(10);
    const made: GPUBuffer[] = [...inputs];
    try {
      for (const {what, code, dispatch, xbWords} of forms) {
        // A form reading x's block rows closer (xbWords) gets them laid out so.
        const bound = xbWords == null ? inputs :
          [storage(oneExpertInputs(g, M, K, toBlocks(a8, M, K, 32), xbWords).xb), ...inputs.slice(1)];
        if (bound !== inputs) made.push(bound[0]);
        const out = device.createBuffer({size: g.shapes.result[0] * g.shapes.result[1] * 4,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC});
        const read = device.createBuffer({size: M * N * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
        made.push(out, read);
        device.pushErrorScope('validation');
        const pipeline = await device.createComputePipelineAsync({layout: 'auto',
          compute: {module: device.createShaderModule({code}), entryPoint: '_start'}});
        const group = device.createBindGroup({layout: pipeline.getBindGroupLayout(0),
          entries: [out, ...bound].map((buffer, binding) => ({binding, resource: {buffer}}))});
        const encoder = device.createCommandEncoder();
        const pass = encoder.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(...(dispatch ?? g.dispatch));
        pass.end();
        encoder.copyBufferToBuffer(out, 0, read, 0, M * N * 4);
        device.queue.submit([encoder.finish()]);
        const error = await device.popErrorScope();
        expect(error?.message, `form '${what || 'verbatim'}'`).to.equal(undefined);
        await read.mapAsync(GPUMapMode.READ);
        const got = new Int32Array(read.getMappedRange().slice(0));
        read.unmap();
        let differing = 0;
        for (let i = 0; i < got.length; i++) if (got[i] !== expected[i]) differing++;
        expect(differing, `form '${what || 'verbatim'}': outputs differing from the exact product`).to.equal(0);
      }
    } finally {
      for (const b of made) b.destroy();
      device.destroy();
    }
  });
});

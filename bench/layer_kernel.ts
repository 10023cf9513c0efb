/**
 * The int8 default's w13 GEMM (ExpertsW13Int8StagedGemmProgram) as the device compiles it, outside tfjs: its WGSL
 * (tfjs-backend-webgpu's compileProgram through a device that only records the code, then this package's rewrites,
 * device.ts rewriteShader, as createWebGPUBackend's device applies them), its dispatch, its inputs' shapes and the
 * bytes of its uniform block. bench/layer_wgsl.ts prints the code; tc_probe --round32 runs it verbatim in the
 * probe's harness beside the probe's own loop (docs/tensor-cores.md, "a twenty-second session"). No GPU needed.
 */
import {compileProgram} from '@tensorflow/tfjs-backend-webgpu/dist/webgpu_program';
import {rewriteShader} from '../src/kernels/webgpu/device';
import {ExpertsAlignProgram, maxPaddedRows} from '../src/kernels/webgpu/experts_align_webgpu';
import {ExpertsInt8BlockedRowsProgram, ExpertsInt8WeightsBlockedProgram, int8PipelinedLayout, Int8PipelinedLayout}
  from '../src/kernels/webgpu/experts_int8_tc_pipelined_webgpu';
import {ExpertsW13Int8BothStagedGemmProgram, ExpertsW13Int8StagedGemmProgram, INT8_STAGED_LAYOUT_SUBGROUPS,
  INT8_STAGED_TILE, int8StagedResultColumns} from '../src/kernels/webgpu/experts_int8_tc_staged_webgpu';
import {MoEShape} from './shapes';

export interface LayerGemm {
  code: string;
  dispatch: [number, number, number];
  /** Bindings in order: result (int32 [rows, columns]), xb, align, wb, then the uniform block. */
  shapes: {result: number[]; xb: number[]; align: number[]; wb: number[]};
  /** The uniform block's bytes (tfjs's layout: NAN, INFINITY, each input's shape and strides, the output's, firstExpert 0). */
  uniforms: ArrayBuffer;
  layout: Int8PipelinedLayout;
  rows: number;
  /** Row tiles holding rows (the launch grid has one more an expert, for the padding). */
  rowTiles: number;
}

/**
 * The w13 GEMM of one shard holding all `s.E` experts, for M tokens (P = M·k pairs): the int8 default's, or with
 * `Program` the both-staged one ('tensor-core-i8-both-staged-128-quant-pass'). `userCode` rewrites the program's own
 * WGSL before tfjs wraps it (test/bench.test.ts passes the i8 subgroup-matrix emulation).
 */
export function int8W13Gemm(s: MoEShape, M: number, userCode?: (code: string) => string,
    Program: typeof ExpertsW13Int8StagedGemmProgram | typeof ExpertsW13Int8BothStagedGemmProgram =
    ExpertsW13Int8StagedGemmProgram): LayerGemm {
  const {E, H, I} = s, P = M * s.k, BM = INT8_STAGED_TILE.rows;
  const layout = int8PipelinedLayout(H, I, INT8_STAGED_LAYOUT_SUBGROUPS);
  const rows = maxPaddedRows(P, E, BM);
  const config = {stage: 'w13' as const, hiddenSize: H, intermediateSize: I, topK: s.k, numLocalExperts: E,
    globalNumExperts: E, hasExpertMap: false, activation: 'silu' as const, applyRouterWeightOnInput: false,
    hasBias: false};
  const result = [rows, int8StagedResultColumns('w13', layout)];
  const program = new Program(config, result, Math.ceil(P / BM) + E, layout);
  const shapes = {result,
    xb: new ExpertsInt8BlockedRowsProgram({source: 'gather', K: H, Kp: layout.Hp, topK: s.k, numLocalExperts: E},
      Math.ceil(rows / 16)).outputShape,
    align: new ExpertsAlignProgram({...config, blockRows: BM}, P).outputShape,
    wb: new ExpertsInt8WeightsBlockedProgram({stage: 'w13', hiddenSize: H, intermediateSize: I, activation: 'silu',
      layout}, E).outputShape};
  let code = '';
  const recorder = {createShaderModule: (d: {code: string}) => { code = d.code; return {}; },
    createComputePipeline: () => ({})};
  const inputs = (['xb', 'align', 'wb'] as const).map((name) => ({name, dtype: 'int32', shape: shapes[name]}));
  const compiled = userCode == null ? program : Object.assign(Object.create(Object.getPrototypeOf(program)), program,
    {getUserCode: () => userCode(program.getUserCode())});
  compileProgram(recorder as unknown as GPUDevice, compiled, inputs as never,
      {dtype: 'int32', shape: result} as never, false);
  code = rewriteShader(code);
  return {code, dispatch: program.dispatch, shapes, uniforms: uniformBlock(code, shapes), layout, rows,
    rowTiles: Math.ceil(P / BM)};
}

/**
 * Row-major [R, K] → block-major blocks of 16 rows × `kb` elements (512 bytes: 16 halves, or 32 int8), block
 * (i, b) at ((i · K/kb) + b) · 16 · kb elements, row-major inside (tc_probe's operands, its blocked() kernels).
 */
export function toBlocks<T extends Uint16Array | Int8Array>(x: T, R: number, K: number, kb = 16): T {
  const y = x.slice() as T;
  const KB = K / kb;
  for (let r = 0; r < R; r++) {
    for (let k = 0; k < K; k++) y[((r >> 4) * KB + Math.floor(k / kb)) * 16 * kb + (r & 15) * kb + k % kb] = x[r * K + k];
  }
  return y;
}

/**
 * One expert's inputs for `g` (E = 1, k = 1) from x's M int8 rows of K in 16-row × 32-k blocks of 512 bytes (the
 * probe's layout): the layer's blocked rows (each 16-row block row followed by the rest of its `words`, the row
 * scales' block, left zero here; a form's xbWords drops it) and align holding the one segment [0, M) and the pairs
 * in order.
 */
export function oneExpertInputs(g: LayerGemm, M: number, K: number, xBlocks: Int8Array, words = g.shapes.xb[1]):
    {xb: Int8Array; align: Int32Array} {
  if (M % 16 !== 0 || g.shapes.wb[0] !== 1) throw new Error('oneExpertInputs: one expert and M a multiple of 16');
  const xb = new Int8Array(g.shapes.xb[0] * words * 4);
  for (let r = 0; r < M / 16; r++) xb.set(xBlocks.subarray(r * 16 * K, (r + 1) * 16 * K), r * words * 4);
  const align = new Int32Array(g.shapes.align[0]).fill(-1);
  align[0] = 0;
  align[1] = M;
  for (let i = 0; i < M; i++) align[2 + i] = i;
  return {xb, align};
}

/**
 * The row of the weights' blocked copy (16-row blocks) that result column j of the w13 GEMM multiplies: a
 * workgroup's 128 result columns (64 act columns' gate and up) come from 8 blocks, subgroup s's two 16-column
 * results from blocks (s / 2)·4 + s % 2 and 2 after it (ExpertsW13Int8StagedGemmProgram's bFirst and bBlock1).
 */
export function w13WeightRow(j: number): number {
  const w = j % 128, sid = w >> 5;
  return (Math.floor(j / 128) * 8 + (sid >> 1) * 4 + (sid & 1) + 2 * ((w & 31) >> 4)) * 16 + j % 16;
}

/** A form of the layer's GEMM for tc_probe round 32 (layerGemmForms, bothStagedForm). */
export interface LayerGemmForm {
  what: string;
  code: string;
  /** The launch grid, where the form's is not g.dispatch. */
  dispatch?: [number, number, number];
  /** x's block rows' i32 words, where the form reads them closer than g's (oneExpertInputs' words). */
  xbWords?: number;
  /** The kernel whose GEMM the form runs in the layer GEMM's place (bothStagedForm). */
  kernel?: string;
}

/**
 * The GEMM's code as compiled, and edits of it, each alone and both, to split a shader's share of its time in one
 * call: 'constants' (the launch grid and the uniforms its main reads, as the literals they are for `g`; the uniform
 * block stays bound, read once so that the 'auto' layout keeps it), 'builtins as arguments' (main reads
 * local_invocation_index, workgroup_id and num_workgroups from its parameters, not from tfjs's private copies).
 */
export function layerGemmForms(g: LayerGemm, skipped?: string[]): LayerGemmForm[] {
  const constants = (code: string) => edit(code, [[/numWorkgroups\.x/g, `${g.dispatch[0]}u`],
    [/numWorkgroups\.y/g, `${g.dispatch[1]}u`], [/uniforms\.firstExpert/g, '0'],
    [/uniforms\.wbShape\.x/g, `${g.shapes.wb[0]}`], ['localId = LocalId;', 'localId = LocalId;\n        _ = uniforms.NAN;']]);
  // The staged tiles declared before the tile lookup's workgroup variables.
  const tilesFirst = (code: string) => edit(code,
    [[/([ \t]*var<workgroup> wgTile[^\n]*\n[ \t]*var<workgroup> wgN0[^\n]*\n)([ \t]*var<workgroup> As[^\n]*\n)/, '$2$1']]);
  // An empty tile runs the loop and skips its stores, instead of returning before the loop's barriers.
  const noEarlyReturn = (code: string) => edit(code, [['if (tile.x < 0) { return; }', ''],
    ['let rowStart = tile.x;', 'let rowStart = max(tile.x, 0);'],
    // (smStore_result: the stores as test/helpers' emulation writes them, for checking this form on SwiftShader.)
    [/((?:[ \t]*(?:subgroupMatrixStore<row_major>\(&result|smStore_result\()[^\n]*\n)+)/, 'if (tile.x >= 0) {\n$1}\n']]);
  // No lookup (one expert, its rows from 0): the tile from the launch grid alone, as the probe's, no workgroup
  // variables, no binary search, and the spare row tile returning on a launch-grid condition (uniform where the
  // builtins come as arguments: the form is taken with builtinArguments); align and the uniform block stay bound,
  // read once.
  const noLookup = (code: string) => edit(code, [[/if \(localIndex == 0u\) \{ wgN0 = [\s\S]*?let e = tile\.y;/,
    `if (gridRow >= ${g.rowTiles}u) { return; }
        let rowStart = i32(gridRow) * ${INT8_STAGED_TILE.rows};
        let e = 0;`], ['workgroupUniformLoad(&wgN0)', 'i32(gridCol) * 64'],
    ['localId = LocalId;', 'localId = LocalId;\n        _ = uniforms.NAN;\n        _ = align[0];']]);
  type Maker = [string, () => LayerGemmForm[]];
  const one = (what: string, code: () => string): Maker => [what, () => [{what, code: code()}]];
  const forms: Maker[] = [one('', () => g.code), one(', constants', () => constants(g.code)),
    one(', builtins as arguments', () => builtinArguments(g.code)),
    one(', constants, builtins as arguments', () => builtinArguments(constants(g.code))),
    one(', staged tiles declared first', () => tilesFirst(g.code)),
    one(', no early return', () => noEarlyReturn(g.code)),
    ...(g.shapes.wb[0] === 1 ? [one(', no tile lookup (the launch grid\'s tile), builtins as arguments',
      () => builtinArguments(noLookup(g.code))), [', layout forms', () => layoutForms(g)] as Maker] : [])];
  // A diagnostic build's GEMM (bench/gpu_layer_variants.sh) may already have an edit's change, or not the text it
  // edits: with `skipped`, such a form is left out and named there; without, it throws.
  return forms.flatMap(([what, make]) => {
    if (skipped == null) return make();
    try {
      return make();
    } catch (e) {
      skipped.push(`${what}: ${(e as Error).message}`);
      return [];
    }
  });
}

/**
 * What round 32 left between the layer's unpadded GEMM and the probe's loop beside its code, for one expert: x's
 * block rows read K/16 vec4 words apart (the probe's), not K/16 + 32 (the layer's, each followed by its scales'
 * block, which the GEMM does not read); the launch grid without the spare row tile (the layer launches one more an
 * expert for the padding, empty here).
 */
function layoutForms(g: LayerGemm): LayerGemmForm[] {
  const RV = g.shapes.xb[1] / 4, Kp = g.layout.Hp;
  return [{what: `, x's block rows ${Kp} vec4 words apart (no scales block)`, xbWords: 4 * Kp,
    code: edit(g.code, [[new RegExp(`\\* ${RV}u\\b`, 'g'), `* ${Kp}u`]])},
  {what: ', no spare row tile', code: g.code, dispatch: [g.dispatch[0] - 1, g.dispatch[1], g.dispatch[2]]}];
}

/**
 * The both-staged GEMM ('tensor-core-i8-both-staged-128-quant-pass': probe round 27's loop, its tile found in
 * registers) in `g`'s place, with the same bindings, uniform block and dispatch (checked).
 */
export function bothStagedForm(s: MoEShape, M: number, g: LayerGemm, userCode?: (code: string) => string):
    LayerGemmForm {
  const b = int8W13Gemm(s, M, userCode, ExpertsW13Int8BothStagedGemmProgram);
  const same = new Uint8Array(b.uniforms).every((v, i) => v === new Uint8Array(g.uniforms)[i]);
  if (!same || b.uniforms.byteLength !== g.uniforms.byteLength || b.dispatch.join() !== g.dispatch.join()) {
    throw new Error('layer_kernel: the both-staged GEMM\'s uniform block or dispatch differs from the layer GEMM\'s');
  }
  return {what: ', x and weights staged (rows padded, copies two k blocks ahead), tile found in registers',
    code: b.code, kernel: 'tensor-core-i8-both-staged-128-quant-pass'};
}

/** `code` with each pair's first part replaced by its second; a part not found throws. */
function edit(code: string, pairs: Array<[string | RegExp, string]>): string {
  return pairs.reduce((c, [a, b]) => {
    if (!(typeof a === 'string' ? c.includes(a) : a.test(c))) throw new Error(`layer_kernel: no '${a}' in the code`);
    return c.replace(a, b);
  }, code);
}

/**
 * local_invocation_index, workgroup_id and num_workgroups appended to main's parameters and to the call in tfjs's
 * entry point, whatever comes before them; main reads them instead of tfjs's private copies.
 */
function builtinArguments(code: string): string {
  const at = code.indexOf('fn main('), end = code.indexOf('fn _start(');
  if (at < 0 || end < at) throw new Error('layer_kernel: no main() before _start() in the code');
  const body = edit(code.slice(at, end), [[/^fn main\(([^)]*)\)/,
    'fn main($1, liArg : u32, widArg : vec3<u32>, nwgArg : vec3<u32>)']])
    .replace(/\blocalIndex\b/g, 'liArg').replace(/\bworkgroupId\b/g, 'widArg').replace(/\bnumWorkgroups\b/g, 'nwgArg');
  return code.slice(0, at) + body + edit(code.slice(end), [[/\bmain\(([^;]*)\);/, 'main($1, LocalIndex, WorkgroupId, NumWorkgroups);']]);
}

/**
 * The bytes of `struct Uniforms` (WGSL's uniform layout: i32/f32 4 bytes, vec2 8 aligned 8, vec3 12 and vec4 16
 * aligned 16, the size rounded to 16): NAN and INFINITY, `<name>Shape` and `<name>ShapeStrides` from the shapes
 * (`out` is the result), every other field 0 (firstExpert: the one shard).
 */
function uniformBlock(code: string, shapes: {[name: string]: number[]}): ArrayBuffer {
  const m = /struct Uniforms \{([^}]*)\}/.exec(code);
  if (m == null) throw new Error('layer_kernel: no struct Uniforms in the compiled code');
  const fields = [...m[1].matchAll(/(\w+)\s*:\s*(f32|i32|vec[234]<i32>)/g)].map((f) => ({name: f[1], type: f[2]}));
  const strides = (shape: number[]) => shape.slice(1).map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const value = (name: string): number[] => {
    if (name === 'NAN') return [NaN];
    if (name === 'INFINITY') return [Infinity];
    const s = /^(\w+?)Shape(Strides)?$/.exec(name);
    if (s == null) return [0];
    const shape = shapes[s[1] === 'out' ? 'result' : s[1]];
    if (shape == null) throw new Error(`layer_kernel: uniform ${name} names no binding`);
    return s[2] ? (shape.length > 1 ? strides(shape) : [0]) : shape;   // tfjs declares a rank-1 input's strides too
  };
  const data = new DataView(new ArrayBuffer(256));
  let at = 0;
  for (const {name, type} of fields) {
    const n = type.startsWith('vec') ? Number(type[3]) : 1, align = n === 1 ? 4 : n === 2 ? 8 : 16;
    at = Math.ceil(at / align) * align;
    const v = value(name);
    if (v.length !== n) throw new Error(`layer_kernel: uniform ${name} has ${n} components, its value ${v.length}`);
    v.forEach((x, i) => type === 'f32' ? data.setFloat32(at + 4 * i, x, true) : data.setInt32(at + 4 * i, x, true));
    at += 4 * n;
  }
  return data.buffer.slice(0, Math.ceil(at / 16) * 16);
}

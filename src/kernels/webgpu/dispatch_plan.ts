/**
 * Dispatch plans (issue 13): a kernel's programs recorded once through tfjs's own `runWebGPUProgram` and
 * replayed on later calls with the same bound tensors (weights), shapes and attributes, so that a decode
 * call costs one compute pass and a few native calls per program, with no per-call shader keys, uniform
 * writes, bind groups or submits of its own.
 *
 * tfjs-backend-webgpu spends 40-70 µs of host time per dispatch on the H200 machine (a uniform buffer
 * written, a bind group made, the shader key built and looked up, engine bookkeeping; see
 * bench/host_profile.ts), more than a decode call's GPU time. A plan keeps, per recorded program: its
 * pipeline (tfjs compiled it), its dispatch size, a uniform buffer written once (the same bytes tfjs
 * would write: shapes, strides and the program's own uniforms, all fixed by the key), and its bind groups,
 * cached by the GPU buffers of the per-call tensors (tfjs's buffer pool hands the same few buffers out
 * again and again in a decode loop, so these hit).
 *
 * Inside tfjs: inputs and outputs are tfjs tensors; outputs get their buffers from tfjs's pool
 * (`makeTensorInfo` + `uploadToGPU`); the plan's scratch (intermediate) and uniform buffers come from the
 * same pool (`bufferManager`), so `tf.memory()` counts them; nothing is read back. A plan is keyed by its
 * bound tensors' data ids and checked on every hit against their current GPU buffers, so a plan dies when a
 * tensor it binds is disposed (the next miss, `dispatchPlanStats` and `releaseDispatchPlans` sweep those)
 * or moved to another buffer (the hit finds a different buffer, drops the plan and records again).
 *
 * Ordering: tfjs batches its dispatches in one compute pass of one command encoder that it submits later. A
 * replay records its dispatches into that same pass (opening it for tfjs when none is open), so the queue runs
 * everything in program order (in a compute pass each dispatch sees the writes of those before it) and the
 * plan's work is submitted with tfjs's (at a read, or when tfjs's batch is full) or every PLAN_SUBMIT_BATCHES
 * of tfjs's batches of replayed dispatches. A decode loop of replays thus shares one pass per submit instead
 * of beginning and ending one per call (two native calls, and per-pass work in Dawn's submit).
 * Buffers released before that submit go back to tfjs's pool and are only written again by commands
 * recorded later in the same encoder (tfjs writes storage buffers only through the encoder), so the plan's
 * tensors need no deferred release.
 *
 * Private fields of tfjs-backend-webgpu 4.22: `commandEncoder` (the encoder the public
 * `ensureCommandEncoderReady` made) and `activeTimers` (tfjs's profiler is on: `tf.time` times each program in
 * its own pass, so a call then takes tfjs's path) are read; `computePassEncoder` (tfjs's open pass on that
 * encoder, or null) is read and, where null, set to the pass a replay opens: tfjs then records into it and ends
 * it before its copies and submits (the public `endComputePassEncoder`), as it does its own. Where the fields
 * are missing, the replay submits tfjs's work through the public `submitQueue` and then its own encoder at
 * once. No public API gives them, and a submit per call would cost more host time than the whole call
 * otherwise takes.
 */
import {engine, env, util} from '@tensorflow/tfjs-core';
import type {DataType, NamedTensorInfoMap, TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';

/** What a kernel body issues programs through: the backend itself, or a recorder around it. */
export type ProgramIssuer = Pick<WebGPUBackend, 'runWebGPUProgram' | 'makeTensorInfo' | 'disposeData'>;

type ProgramUniform = Array<{type: string; data: number[]}>;

/** Calls with more tokens than this take tfjs's path: their GPU time dwarfs the host time, and a plan's
 * scratch buffers would pin prefill-sized memory. */
export const PLAN_MAX_TOKENS = 64;
/** Plans kept per backend (least recently used dropped first): a few per layer of a 100-layer model. */
export const PLAN_CACHE_SIZE = 512;
/**
 * Replayed dispatches per submit, in tfjs's submit batches (15 dispatches by default). A submit costs 30 µs of
 * host time on an idle H200 and 80-190 µs while the GPU works through earlier ones, so at tfjs's batch (5 decode
 * calls) it was half of a back-to-back call's host time; at 4 batches (20 calls) Qwen3 went from 49-51 to 22-26 µs
 * per call (`bench/host_decode.ts --windows`, bench/results/2026-12-03-h200-host-windows.log). The price: after a
 * read, the GPU waits for up to 20 calls' host time (~0.5 ms) before its first submit.
 */
export const PLAN_SUBMIT_BATCHES = 4;
/** Bind groups kept per recorded program. */
const BIND_GROUPS_PER_STEP = 16;

type Slot = {kind: 'input'; name: string} | {kind: 'output'; index: number} | {kind: 'scratch'; index: number};

interface Step {
  name: string;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  dispatch: [number, number, number];
  /** Output first, then the inputs, as tfjs binds them; the uniform buffer last. */
  slots: Slot[];
  /** Whether a slot's buffer changes from call to call (call inputs and outputs). */
  perCall: boolean[];
  /** The slots' buffers where fixed (bound inputs, scratch); null where per call. */
  fixed: Array<GPUBuffer | null>;
  /** For each per-call slot: its index in `slots`, and where its buffer is in a call's per-call buffers. */
  perCallSlots: number[];
  perCallSources: number[];
  uniform: GPUBuffer;
  /** Bind groups by the per-call buffers they hold, oldest first (a decode loop meets the same few). */
  bindGroups: Array<{buffers: GPUBuffer[]; group: GPUBindGroup}>;
}

/** tfjs-backend-webgpu's record of one data id (`tensorMap`'s values). */
type TensorData = NonNullable<ReturnType<WebGPUBackend['tensorMap']['get']>>;

interface Plan {
  key: string;
  steps: Step[];
  outputs: Array<{shape: number[]; dtype: DataType}>;
  /** The per-call inputs that programs bind, in the order of a call's per-call buffers (after the outputs). */
  perCallInputs: string[];
  scratch: GPUBuffer[];
  /**
   * Bound (not per-call) inputs: their data ids, the buffers the bind groups hold, and tfjs's record of the
   * data id when the plan was made (disposing or moving the tensor zeroes its refCount or changes its
   * resource there: tfjs replaces the record, never reuses it, for data that comes back).
   */
  bound: Array<{name: string; dataId: object; buffer: GPUBuffer; data: TensorData}>;
  /** Why this call shape cannot be replayed (recorded once, then tfjs's path every time), or ''. */
  notReplayable: string;
  /** Whether the kernel returned an array (a single output is returned bare). */
  outputsArray: boolean;
}

export interface DispatchPlanStats {
  /** Live plans (after sweeping those whose bound tensors were disposed or moved). */
  plans: number;
  /** Calls replayed from a plan, recorded into one, and run on tfjs's path, since the backend started. */
  replayed: number;
  recorded: number;
  tfjsPath: number;
  /** Plans dropped: a bound tensor disposed or moved, evicted, or released. */
  dropped: number;
  /** Why the last call that took tfjs's path did (tfjs profiler on, too many tokens, ...). */
  lastTfjsPathReason: string;
}

/**
 * A call's plan key, remembered by the data id of its first bound input, so that a call with the same
 * kernel, attribute key (the same string, usually the very same object: see expertsAttrsKey), input names,
 * dtypes and shapes and the same bound data ids finds its key by comparing those instead of building the
 * string (several µs per call).
 */
interface KeyMemo {
  kernel: string;
  attrsKey: string;
  perCall: readonly string[];
  names: string[];
  dtypes: DataType[];
  shapes: number[][];
  /** The data id of each bound input; null for per-call inputs. */
  dataIds: Array<object | null>;
  key: string;
}
/** Memos kept per first bound data id (e.g. a layer's decode plans for 1 and 2 tokens, and its prefill). */
const MEMOS_PER_DATA_ID = 8;

interface PlanCache {
  plans: Map<string, Plan>;
  stats: DispatchPlanStats;
  memos: WeakMap<object, KeyMemo[]>;
}

const caches = new WeakMap<WebGPUBackend, PlanCache>();
let plansEnabled = true;

/** Turns plans off (every call takes tfjs's path) or back on; for A/B benchmarks. */
export function setDispatchPlansEnabled(enabled: boolean): void {
  plansEnabled = enabled;
}

function cacheOf(backend: WebGPUBackend): PlanCache {
  let c = caches.get(backend);
  if (!c) {
    c = {plans: new Map(), stats: {plans: 0, replayed: 0, recorded: 0, tfjsPath: 0, dropped: 0, lastTfjsPathReason: ''},
      memos: new WeakMap()};
    caches.set(backend, c);
  }
  return c;
}

/** Small stable ids for data ids and GPU buffers, for keys. */
const ids = new WeakMap<object, number>();
let nextId = 1;
function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) {
    id = nextId++;
    ids.set(o, id);
  }
  return id;
}

interface BackendPrivates {
  commandEncoder?: GPUCommandEncoder | null;
  computePassEncoder?: GPUComputePassEncoder | null;
  activeTimers?: unknown;
}

function bufferOf(backend: WebGPUBackend, dataId: object): GPUBuffer | undefined {
  const r = backend.tensorMap.get(dataId)?.resource;
  return r instanceof GPUBuffer ? r : undefined;
}

function dropPlan(backend: WebGPUBackend, cache: PlanCache, plan: Plan): void {
  cache.plans.delete(plan.key);
  cache.stats.dropped++;
  for (const b of plan.scratch) backend.bufferManager.releaseBuffer(b);
  for (const s of plan.steps) backend.bufferManager.releaseBuffer(s.uniform);
}

/** A tensor's tfjs record and GPU resource, kept across calls (plans' bound tensors, tensor_core_weights.ts). */
export interface KeptTensor {
  dataId: object;
  data: TensorData;
  buffer: TensorData['resource'];
}

/**
 * A kept tensor disposed (gone, or waiting for tfjs's next submit with no references) or moved. tfjs's
 * record of a data id is checked as kept: disposing the data zeroes its refCount and (now or at tfjs's next
 * submit) nulls its resource; moving it to another backend disposes it so; data moved back gets a new
 * record. So a live record with the kept buffer is the data id's current one. (Reads the record only: hits.)
 */
export function keptTensorStale(b: KeptTensor): boolean {
  return b.data.refCount <= 0 || b.data.resource !== b.buffer;
}

/**
 * keptTensorStale, or tfjs no longer holds the kept record (sweeps, which run rarely). `has` first: `get` of a
 * data id tfjs no longer holds would ask the engine to move it here.
 */
export function keptTensorGone(backend: WebGPUBackend, b: KeptTensor): boolean {
  return keptTensorStale(b) || !backend.tensorMap.has(b.dataId) || backend.tensorMap.get(b.dataId) !== b.data;
}

function isStale(plan: Plan): boolean {
  const bound = plan.bound;
  for (let i = 0; i < bound.length; i++) if (keptTensorStale(bound[i])) return true;
  return false;
}

function sweep(backend: WebGPUBackend, cache: PlanCache): void {
  for (const plan of [...cache.plans.values()]) {
    if (plan.bound.some((b) => keptTensorGone(backend, b))) dropPlan(backend, cache, plan);
  }
}

/** The plans of `backend` (sweeping those whose bound tensors are gone) and how calls were issued. */
export function dispatchPlanStats(backend: WebGPUBackend): DispatchPlanStats {
  const cache = cacheOf(backend);
  sweep(backend, cache);
  return {...cache.stats, plans: cache.plans.size};
}

/** Drops every plan of `backend` (all of them, or those binding any of `dataIds`), returning their buffers. */
export function releaseDispatchPlans(backend: WebGPUBackend, dataIds?: object[]): void {
  const cache = caches.get(backend);
  if (!cache) return;
  const ids = dataIds && new Set(dataIds);
  for (const plan of [...cache.plans.values()]) {
    if (!ids || plan.bound.some((b) => ids.has(b.dataId))) dropPlan(backend, cache, plan);
  }
}

/** For weight_state.ts: the plans binding these data ids, on every started backend that has plans. */
export function releasePlansBinding(dataIds: object[]): void {
  for (const b of Object.values(engine().registry)) {
    if (caches.has(b as WebGPUBackend)) releaseDispatchPlans(b as WebGPUBackend, dataIds);
  }
}

/** tfjs's uniform block for one program, byte for byte as recordAndSubmit + makeUniforms build it. */
function uniformBytes(program: WebGPUProgram, inputs: TensorInfo[], output: TensorInfo,
    programDefined?: ProgramUniform): ArrayBuffer {
  const u: ProgramUniform = [{type: 'float32', data: [NaN]}, {type: 'float32', data: [Infinity]}];
  for (const shape of [...inputs.map((t) => t.shape), output.shape]) {
    u.push({type: 'int32', data: shape}, {type: 'int32', data: util.computeStrides(shape)});
  }
  if (program.size) {
    const size = util.sizeFromShape(program.outputShape);
    u.push({type: 'int32', data: [program.outputComponent ? size / program.outputComponent : size]});
  }
  if (programDefined) u.push(...programDefined);
  let offset = 0;
  let preLength = 0;
  let maxAlign = 1;
  const offsets: number[] = [];
  const fields = u.map((d) => ({type: d.type, data: d.data.length === 0 ? [1] : d.data}));
  for (const d of fields) {
    const n = d.data.length;
    if (n > 6) throw new Error(`dispatch plan: unsupported ${n}-D uniform`);
    let align = n === 1 ? 4 : n === 2 ? 8 : 16;
    if (preLength === 5 || preLength === 6) align = 16;
    maxAlign = Math.max(maxAlign, align);
    offset = Math.ceil(offset / align) * align;
    preLength = n;
    offsets.push(offset);
    offset += n * 4;
  }
  offset = Math.ceil(offset / maxAlign) * maxAlign;
  const bytes = new ArrayBuffer(offset);
  fields.forEach((d, i) => {
    const Array = d.type === 'int32' ? Int32Array : d.type === 'uint32' ? Uint32Array : Float32Array;
    new Array(bytes, offsets[i], d.data.length).set(d.data);
  });
  return bytes;
}

interface Recorded {
  program: WebGPUProgram;
  inputs: TensorInfo[];
  output: TensorInfo;
  uniforms?: ProgramUniform;
}

/** Passes every call to the backend and remembers the programs and the tensors made on the way. */
class Recorder implements ProgramIssuer {
  readonly steps: Recorded[] = [];
  readonly made = new Map<object, TensorInfo>();
  notReplayable = '';

  constructor(private readonly backend: WebGPUBackend) {}

  runWebGPUProgram(program: WebGPUProgram, inputs: TensorInfo[], outputDtype: DataType,
      uniforms?: ProgramUniform, output?: TensorInfo): TensorInfo {
    const out = this.backend.runWebGPUProgram(program, inputs, outputDtype, uniforms, output);
    this.made.set(out.dataId, out);
    if (util.sizeFromShape(out.shape) === 0) this.notReplayable ||= 'an empty output';
    else if (!(program.pipeline instanceof GPUComputePipeline)) this.notReplayable ||= 'pipelines compiled in parallel';
    // Copies: tfjs does not change them after recordAndSubmit, but the kernel may reuse the arrays.
    this.steps.push({program, inputs: [...inputs], output: out, uniforms: uniforms?.map((u) => ({...u, data: [...u.data]}))});
    return out;
  }

  makeTensorInfo(shape: number[], dtype: DataType, values?: never): TensorInfo {
    if (values != null) this.notReplayable ||= 'a tensor made from host values';
    const t = this.backend.makeTensorInfo(shape, dtype, values);
    this.made.set(t.dataId, t);
    return t;
  }

  disposeData(dataId: object, force?: boolean): boolean {
    return this.backend.disposeData(dataId, force);
  }
}

function buildPlan(backend: WebGPUBackend, key: string, rec: Recorder, inputs: NamedTensorInfoMap,
    perCallNames: ReadonlySet<string>, outputs: TensorInfo[]): Plan {
  const plan: Plan = {key, steps: [], outputs: outputs.map((o) => ({shape: [...o.shape], dtype: o.dtype})),
    perCallInputs: [], scratch: [], bound: [], notReplayable: rec.notReplayable,
    outputsArray: false};
  const inputName = new Map<object, string>();
  for (const [name, t] of Object.entries(inputs)) if (t && !inputName.has(t.dataId)) inputName.set(t.dataId, name);
  const outputIndex = new Map<object, number>(outputs.map((o, i) => [o.dataId, i]));
  const scratchIndex = new Map<object, number>();
  const slotOf = (t: TensorInfo): Slot => {
    const name = inputName.get(t.dataId);
    if (name !== undefined) {
      if (!perCallNames.has(name) && !plan.bound.some((b) => b.dataId === t.dataId)) {
        plan.bound.push({name, dataId: t.dataId, buffer: bufferOf(backend, t.dataId)!,
          data: backend.tensorMap.get(t.dataId)!});
      }
      if (perCallNames.has(name) && !plan.perCallInputs.includes(name)) plan.perCallInputs.push(name);
      return {kind: 'input', name};
    }
    const o = outputIndex.get(t.dataId);
    if (o !== undefined) return {kind: 'output', index: o};
    if (!rec.made.has(t.dataId)) {
      plan.notReplayable ||= 'a program input that is neither a kernel input nor made by the kernel';
    }
    let s = scratchIndex.get(t.dataId);
    if (s === undefined) {
      s = plan.scratch.length;
      scratchIndex.set(t.dataId, s);
      // The usage tfjs gives tensor buffers (GPUBufferUsage exists only once WebGPU is loaded).
      plan.scratch.push(backend.bufferManager.acquireBuffer(Math.max(4, util.sizeFromShape(t.shape) * 4),
          GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST));
    }
    return {kind: 'scratch', index: s};
  };
  for (const r of rec.steps) {
    if (plan.notReplayable) break;
    const slots = [r.output, ...r.inputs].map(slotOf);
    const bytes = uniformBytes(r.program, r.inputs, r.output, r.uniforms);
    const uniform = backend.bufferManager.acquireBuffer(bytes.byteLength,
        GPUBufferUsage.COPY_DST | GPUBufferUsage.UNIFORM);
    backend.queue.writeBuffer(uniform, 0, bytes);
    const pipeline = r.program.pipeline as GPUComputePipeline;
    const d = r.program.dispatch;
    const perCall = slots.map((s) => s.kind === 'output' || (s.kind === 'input' && perCallNames.has(s.name)));
    const perCallSlots = perCall.flatMap((p, i) => (p ? [i] : []));
    plan.steps.push({name: r.program.constructor.name, pipeline, layout: pipeline.getBindGroupLayout(0),
      dispatch: [d[0], d[1] ?? 1, d[2] ?? 1], slots, perCall, perCallSlots, perCallSources: [],
      fixed: slots.map((s, i) => perCall[i] ? null : s.kind === 'scratch' ? plan.scratch[s.index] :
        plan.bound.find((b) => b.name === (s as {name: string}).name)?.buffer ?? null),
      uniform, bindGroups: []});
  }
  // A call's per-call buffers: the outputs', then the per-call inputs' in perCallInputs order.
  for (const step of plan.steps) {
    step.perCallSources = step.perCallSlots.map((i) => {
      const s = step.slots[i];
      return s.kind === 'output' ? s.index : outputs.length + plan.perCallInputs.indexOf((s as {name: string}).name);
    });
  }
  if (plan.bound.some((b) => b.buffer == null)) plan.notReplayable ||= 'a bound tensor without a GPU buffer';
  return plan;
}

/** Dispatches encoded into tfjs's encoder since this module last submitted it, per backend. */
const unsubmitted = new WeakMap<WebGPUBackend, number>();

/**
 * The compute pass to record a plan's dispatches into: tfjs's open pass on its encoder (opened and handed to
 * tfjs when there is none), so that the plan's work is ordered after the tfjs work recorded before it and
 * before the tfjs work recorded after it, and is submitted with it (a submit costs ~30 µs of host time on the
 * H200 machine, more than the dispatches). Where tfjs's fields are not there, a fresh encoder (returned, for
 * the caller to end and submit) and its pass, after submitting tfjs's pending work.
 */
function passFor(backend: WebGPUBackend): {pass: GPUComputePassEncoder; encoder: GPUCommandEncoder | null} {
  const p = backend as unknown as BackendPrivates;
  backend.ensureCommandEncoderReady();
  if (p.commandEncoder && p.computePassEncoder !== undefined) {
    if (p.computePassEncoder === null) p.computePassEncoder = p.commandEncoder.beginComputePass();
    return {pass: p.computePassEncoder, encoder: null};
  }
  backend.endComputePassEncoder();
  backend.submitQueue();
  const encoder = backend.device.createCommandEncoder();
  return {pass: encoder.beginComputePass(), encoder};
}

/** The GPU buffer of a per-call input, uploaded first where its values are still on the host. */
function inputBuffer(backend: WebGPUBackend, t: TensorInfo): GPUBuffer {
  let b = bufferOf(backend, t.dataId);
  if (b === undefined) {
    backend.uploadToGPU(t.dataId);  // values still on the host: tfjs copies them (in its encoder)
    b = bufferOf(backend, t.dataId)!;
  }
  return b;
}

/** A step's bind group for this call's per-call buffers: cached, or made (the oldest dropped when full). */
function bindGroupFor(backend: WebGPUBackend, step: Step, perCall: GPUBuffer[]): GPUBindGroup {
  const src = step.perCallSources;
  const groups = step.bindGroups;
  for (let g = 0; g < groups.length; g++) {
    const held = groups[g].buffers;
    let same = true;
    for (let j = 0; j < src.length; j++) {
      if (held[j] !== perCall[src[j]]) {
        same = false;
        break;
      }
    }
    if (same) return groups[g].group;
  }
  const buffers = step.fixed.slice() as GPUBuffer[];
  const held: GPUBuffer[] = [];
  for (let j = 0; j < src.length; j++) {
    buffers[step.perCallSlots[j]] = perCall[src[j]];
    held.push(perCall[src[j]]);
  }
  const group = backend.device.createBindGroup({layout: step.layout, entries: [
    ...buffers.map((buffer, binding) => ({binding, resource: {buffer}})),
    {binding: buffers.length, resource: {buffer: step.uniform}}]});
  if (groups.length >= BIND_GROUPS_PER_STEP) groups.shift();
  groups.push({buffers: held, group});
  return group;
}

function replay(backend: WebGPUBackend, plan: Plan, inputs: NamedTensorInfoMap): TensorInfo[] {
  // Loops, no closures: this runs on every decode call.
  const outputs: TensorInfo[] = [];
  const perCall: GPUBuffer[] = [];
  for (let i = 0; i < plan.outputs.length; i++) {
    const o = plan.outputs[i];
    const t = backend.makeTensorInfo(o.shape, o.dtype);
    backend.uploadToGPU(t.dataId);
    outputs.push(t);
    perCall.push(bufferOf(backend, t.dataId)!);
  }
  for (let i = 0; i < plan.perCallInputs.length; i++) perCall.push(inputBuffer(backend, inputs[plan.perCallInputs[i]]!));
  const groups: GPUBindGroup[] = [];
  for (let i = 0; i < plan.steps.length; i++) groups.push(bindGroupFor(backend, plan.steps[i], perCall));
  const {pass, encoder} = passFor(backend);
  for (let i = 0; i < plan.steps.length; i++) {
    const step = plan.steps[i];
    pass.setPipeline(step.pipeline);
    pass.setBindGroup(0, groups[i]);
    pass.dispatchWorkgroups(step.dispatch[0], step.dispatch[1], step.dispatch[2]);
  }
  if (encoder) {
    pass.end();
    backend.queue.submit([encoder.finish()]);
  } else {
    // Submitted with tfjs's own work (at a read, or when tfjs's batch of its own dispatches is full), or here
    // every PLAN_SUBMIT_BATCHES × WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE replayed dispatches.
    const n = (unsubmitted.get(backend) ?? 0) + plan.steps.length;
    if (n >= PLAN_SUBMIT_BATCHES * (env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number)) {
      backend.endComputePassEncoder();  // tfjs's submitQueue finishes the encoder as it is
      backend.submitQueue();
      unsubmitted.set(backend, 0);
    } else {
      unsubmitted.set(backend, n);
    }
  }
  return outputs;
}

export interface PlannedCall {
  /** Kernel name and attributes: with the shapes, they fix the programs a call issues. */
  kernel: string;
  attrsKey: string;
  inputs: NamedTensorInfoMap;
  /** Inputs that change from call to call (activations, routing); every other input is bound to the plan. */
  perCall: readonly string[];
  numTokens: number;
}

/**
 * Runs `body` (a kernel that issues its programs through the issuer it is given) from a plan when one
 * matches, else records it into a new plan while tfjs runs it. Returns the body's outputs.
 */
export function runPlanned(backend: WebGPUBackend, call: PlannedCall,
    body: (issuer: ProgramIssuer) => TensorInfo | TensorInfo[]): TensorInfo | TensorInfo[] {
  const cache = cacheOf(backend);
  if (!plansEnabled) return tfjsPath(backend, cache, body, 'dispatch plans are off (setDispatchPlansEnabled)');
  if (call.numTokens > PLAN_MAX_TOKENS) {
    return tfjsPath(backend, cache, body, `${call.numTokens} tokens > ${PLAN_MAX_TOKENS}`);
  }
  if ((backend as unknown as BackendPrivates).activeTimers != null) {
    return tfjsPath(backend, cache, body, 'tfjs\'s profiler is on (tf.time / tf.profile time each program)');
  }
  if (env().getBool('WEBGPU_ENGINE_COMPILE_ONLY')) {
    return tfjsPath(backend, cache, body, 'WEBGPU_ENGINE_COMPILE_ONLY is set');
  }
  const memoId = firstBoundDataId(call);
  let key = memoId === null ? null : memoizedKey(cache, memoId, call);
  if (key === null) {
    key = planKey(call);
    if (memoId !== null) memoize(cache, memoId, call, key);
  }
  const plan = cache.plans.get(key);
  if (plan) {
    if (isStale(plan)) {
      dropPlan(backend, cache, plan);
    } else if (plan.notReplayable) {
      return tfjsPath(backend, cache, body, `not replayable: ${plan.notReplayable}`);
    } else {
      cache.plans.delete(key);  // most recently used last
      cache.plans.set(key, plan);
      cache.stats.replayed++;
      const outs = replay(backend, plan, call.inputs);
      return outs.length === 1 && !plan.outputsArray ? outs[0] : outs;
    }
  }
  sweep(backend, cache);
  const rec = new Recorder(backend);
  const result = body(rec);
  const outs = Array.isArray(result) ? result : [result];
  const built = buildPlan(backend, key, rec, call.inputs, new Set(call.perCall), outs);
  built.outputsArray = Array.isArray(result);
  cache.plans.set(key, built);
  cache.stats.recorded++;
  while (cache.plans.size > PLAN_CACHE_SIZE) dropPlan(backend, cache, cache.plans.values().next().value!);
  return result;
}

function tfjsPath(backend: WebGPUBackend, cache: PlanCache, body: (issuer: ProgramIssuer) => TensorInfo | TensorInfo[],
    reason: string): TensorInfo | TensorInfo[] {
  cache.stats.tfjsPath++;
  cache.stats.lastTfjsPathReason = reason;
  return body(backend);
}

/** The plan key: the kernel, its attributes, and every input's name, dtype, shape and, if bound, data id. */
function planKey(call: PlannedCall): string {
  // Built by hand (template strings of shape arrays cost microseconds); only on calls the memo misses.
  let key = call.kernel + '|' + call.attrsKey;
  for (const name in call.inputs) {
    const t = call.inputs[name];
    if (!t) continue;
    key += '|' + name + ':' + t.dtype;
    for (let i = 0; i < t.shape.length; i++) key += ',' + t.shape[i];
    if (!call.perCall.includes(name)) key += '@' + idOf(t.dataId);
  }
  return key;
}

function firstBoundDataId(call: PlannedCall): object | null {
  for (const name in call.inputs) {
    const t = call.inputs[name];
    if (t && !call.perCall.includes(name)) return t.dataId;
  }
  return null;
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The key of a call like one seen before (see KeyMemo), or null. */
function memoizedKey(cache: PlanCache, memoId: object, call: PlannedCall): string | null {
  const memos = cache.memos.get(memoId);
  if (memos === undefined) return null;
  for (let m = 0; m < memos.length; m++) {
    const memo = memos[m];
    if (memo.kernel !== call.kernel || memo.attrsKey !== call.attrsKey || !sameNames(memo.perCall, call.perCall)) continue;
    let i = 0;
    let same = true;
    for (const name in call.inputs) {
      const t = call.inputs[name];
      if (!t) continue;
      const shape = memo.shapes[i];
      if (i >= memo.names.length || memo.names[i] !== name || memo.dtypes[i] !== t.dtype ||
          shape.length !== t.shape.length || (memo.dataIds[i] !== null && memo.dataIds[i] !== t.dataId)) {
        same = false;
        break;
      }
      for (let j = 0; j < shape.length; j++) {
        if (shape[j] !== t.shape[j]) same = false;
      }
      if (!same) break;
      i++;
    }
    if (same && i === memo.names.length) return memo.key;
  }
  return null;
}

function memoize(cache: PlanCache, memoId: object, call: PlannedCall, key: string): void {
  const memo: KeyMemo = {kernel: call.kernel, attrsKey: call.attrsKey, perCall: [...call.perCall], names: [], dtypes: [],
    shapes: [], dataIds: [], key};
  for (const name in call.inputs) {
    const t = call.inputs[name];
    if (!t) continue;
    memo.names.push(name);
    memo.dtypes.push(t.dtype);
    memo.shapes.push([...t.shape]);
    memo.dataIds.push(call.perCall.includes(name) ? null : t.dataId);
  }
  let memos = cache.memos.get(memoId);
  if (memos === undefined) cache.memos.set(memoId, memos = []);
  if (memos.length >= MEMOS_PER_DATA_ID) memos.shift();
  memos.push(memo);
}

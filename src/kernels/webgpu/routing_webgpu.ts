/**
 * Routing (vLLM `fused_topk` / `grouped_topk`) in one dispatch: one workgroup per token row, the
 * row's E experts spread over L lanes (expert e belongs to lane e % L, slot e / L). The math is
 * ../cpu/routing_impl.ts's, in float32:
 *
 *   x      = sanitize(logits[row])                NaN → -FLT_MAX, ±Inf → ±FLT_MAX
 *   score  = softmax(x) or sigmoid(x)             row max and sum by a row reduction
 *   choice = score + bias (sanitized), or x       as u32 keys: order-preserving, -0 = +0
 *   groups = top-2 sum (bias) or max of choice per group; keep the topkGroup best (ties: lower group)
 *   ids    = K rounds of a row arg-max over the kept, unused experts (ties: lower id)
 *   w      = score[ids] (/ (Σ + 1e-20) if renormalize) · routedScalingFactor
 *   slots ordered by (w desc, id asc)
 *
 * The row reductions come in two forms. With subgroups (and a fixed subgroup size S) a workgroup
 * is exactly one subgroup, L = S, and every reduction is one subgroup builtin with no barrier.
 * Otherwise L is a power of two and reductions are trees in workgroup memory (log2 L barriers).
 *
 * Outputs: where the device rewrites marked bindings (capabilities' writableInputs), the weights [T, K]
 * float32 are the output and the ids [T, K] int32 go to an input declared read_write (one dispatch).
 * Elsewhere a tfjs WebGPU program has one writable binding, so rows [T, 2K] int32 hold K ids, then K
 * weights' bits, and RoutingUnpackProgram splits them.
 */
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import type {ScoringFunc} from '../../kernel_names';

export interface RoutingProgramConfig {
  numTokens: number;
  numExperts: number;
  topK: number;
  numExpertGroup: number;
  topkGroup: number;
  scoringFunc: ScoringFunc;
  renormalize: boolean;
  routedScalingFactor: number;
  hasBias: boolean;
  /** The device's fixed subgroup size to reduce with subgroups, or 0 for workgroup-memory trees. */
  subgroupSize: number;
  /** Lanes (threads) per row on the workgroup-memory path: a power of two. */
  treeLanes: number;
  /** Weights as the output and ids into the input 'ids' (declared read_write), else packed rows. */
  idsInput: boolean;
}

/** Lanes per row without subgroups: enough that each lane holds at most 16 experts, 32..256. */
export function routingTreeLanes(numExperts: number, maxInvocations: number): number {
  let lanes = 32;
  while (lanes < 64 && lanes < numExperts) lanes *= 2;
  while (lanes * 2 <= Math.min(256, maxInvocations) && Math.ceil(numExperts / lanes) > 16) lanes *= 2;
  return lanes;
}

export class RoutingProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: {x: number[]};
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number];
  private readonly c: RoutingProgramConfig;
  private readonly lanes: number;
  private readonly scaleBits: number;

  constructor(c: RoutingProgramConfig) {
    this.c = c;
    this.lanes = c.subgroupSize > 0 ? c.subgroupSize : c.treeLanes;
    this.outputShape = [c.numTokens, c.idsInput ? c.topK : 2 * c.topK];
    this.variableNames = [...(c.hasBias ? ['logits', 'bias'] : ['logits']), ...(c.idsInput ? ['ids'] : [])];
    this.workgroupSize = [this.lanes, 1, 1];
    this.dispatchLayout = {x: [0]};
    // One workgroup per row; tfjs folds rows beyond the per-dimension limit into y and z.
    this.dispatch = [c.numTokens, 1, 1];
    this.scaleBits = new Uint32Array(new Float32Array([c.routedScalingFactor]).buffer)[0];
    this.shaderKey = ['moeRouting', c.numExperts, c.topK, c.numExpertGroup, c.topkGroup, c.scoringFunc,
      c.renormalize ? 'renorm' : 'raw', c.hasBias ? 'bias' : 'nobias', this.scaleBits,
      c.subgroupSize > 0 ? `sg${c.subgroupSize}` : `tree${c.treeLanes}`, c.idsInput ? 'split' : 'packed'].join('_');
  }

  getUserCode(): string {
    const c = this.c;
    const L = this.lanes;
    const E = c.numExperts;
    const V = Math.ceil(E / L);
    const grouped = c.numExpertGroup > 1;
    const subgroups = c.subgroupSize > 0;
    return `
${subgroups ? 'enable subgroups;' : ''}
${c.idsInput ? '// moe-storage-rw ids' : ''}
const E = ${E};                       // experts per row
const K = ${c.topK};                  // experts chosen per row
const L = ${L};                       // lanes per row (the workgroup)
const V = ${V};                       // experts per lane: expert lane + L * v
const NUM_GROUPS = ${c.numExpertGroup};
const GROUP_SIZE = ${E / c.numExpertGroup};
const TOPK_GROUP = ${c.topkGroup};
const SCALE = bitcast<f32>(${this.scaleBits}u);  // routedScalingFactor
const FLT_MAX = 0x1.fffffep+127f;
const NO_ID = 0x7fffffff;

var<workgroup> rowShared: i32;
var<workgroup> scores: array<f32, E>;
var<workgroup> finalWeights: array<f32, K>;
${grouped ? `var<workgroup> choices: array<f32, E>;
var<workgroup> groupScores: array<f32, NUM_GROUPS>;
var<workgroup> groupKept: array<u32, NUM_GROUPS>;` : ''}
${subgroups ? subgroupReductions() : treeReductions()}

// NaN → -FLT_MAX, ±Inf → ±FLT_MAX, decided on the bits (compilers may assume floats are finite).
fn sanitize(x: f32) -> f32 {
  let bits = bitcast<u32>(x);
  let magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) { return -FLT_MAX; }
  if (magnitude == 0x7f800000u) { return select(FLT_MAX, -FLT_MAX, bits != magnitude); }
  return x;
}

// Finite floats → u32 keys in the same order; -0 and +0 share a key; 0 is below every finite value.
fn orderKey(x: f32) -> u32 {
  var bits = bitcast<u32>(x);
  if (bits == 0x80000000u) { bits = 0u; }
  return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

fn sigmoid(x: f32) -> f32 {
  let z = exp(max(-abs(x), -104.0));  // never overflows
  return select(z / (1.0 + z), 1.0 / (1.0 + z), x >= 0.0);
}

fn finalWeight(score: f32, sum: f32) -> f32 {
  return ${c.renormalize ? 'score / (sum + 1e-20)' : 'score'} * SCALE;
}

fn main(index: i32) {
  let lane = i32(localIndex);
  if (lane == 0) {
    rowShared = i32((workgroupId.z * numWorkgroups.y + workgroupId.y) * numWorkgroups.x + workgroupId.x);
  }
  let row = workgroupUniformLoad(&rowShared);
  if (row >= uniforms.outShape[0]) { return; }

  // Logits → scores.
  var x: array<f32, V>;
  var rowMaxLocal = -FLT_MAX;
  for (var v = 0; v < V; v++) {
    let e = lane + v * L;
    x[v] = -FLT_MAX;
    if (e < E) { x[v] = sanitize(logits[row * E + e]); }
    rowMaxLocal = max(rowMaxLocal, x[v]);
  }
${c.scoringFunc === 'softmax' ? `
  let m = rowMax(rowMaxLocal);
  var p: array<f32, V>;
  var sumLocal = 0.0;
  for (var v = 0; v < V; v++) {
    p[v] = 0.0;
    // exp(d) for d < -104 is below the smallest float32; testing first keeps -FLT_MAX - FLT_MAX out.
    if (lane + v * L < E && x[v] >= m - 104.0) { p[v] = exp(x[v] - m); }
    sumLocal += p[v];
  }
  let expSum = rowSum(sumLocal);
  for (var v = 0; v < V; v++) {
    let e = lane + v * L;
    if (e < E) { scores[e] = p[v] / expSum; }
  }` : `
  for (var v = 0; v < V; v++) {
    let e = lane + v * L;
    if (e < E) { scores[e] = sigmoid(x[v]); }
  }`}

  // Choice keys: what selection ranks by (0 = not selectable).
  var keys: array<u32, V>;
  for (var v = 0; v < V; v++) {
    let e = lane + v * L;
    keys[v] = 0u;
    if (e < E) {
      let choice = ${c.hasBias ? 'sanitize(scores[e] + bias[e])' : 'x[v]'};
      keys[v] = orderKey(choice);${grouped ? `
      choices[e] = choice;` : ''}
    }
  }
  workgroupBarrier();
${grouped ? groupSelection(c.hasBias) : ''}

  // K rounds of arg-max; each lane scans its experts in increasing id, so ties keep the lower id.
  var chosen: array<i32, K>;
  for (var j = 0; j < K; j++) {
    var bestKey = 0u;
    var bestId = NO_ID;
    for (var v = 0; v < V; v++) {
      if (keys[v] > bestKey) { bestKey = keys[v]; bestId = lane + v * L; }
    }
    let winner = rowArgMax(bestKey, bestId);
    chosen[j] = winner;
    if (winner % L == lane) { keys[winner / L] = 0u; }
  }

  // Weights, computed once each and stored: ranks must compare the very same floats (a compiler may
  // evaluate one expression differently in two places, e.g. contracting it into an FMA in one).
  var sum = 0.0;
  for (var j = 0; j < K; j++) { sum += scores[chosen[j]]; }
  for (var j = lane; j < K; j += L) { finalWeights[j] = finalWeight(scores[chosen[j]], sum); }
  workgroupBarrier();
  // Each lane places its slots by rank in (weight desc, id asc).
  let outBase = row * ${c.idsInput ? 'K' : '2 * K'};
  for (var j = lane; j < K; j += L) {
    let w = finalWeights[j];
    var rank = 0;
    for (var i = 0; i < K; i++) {
      let wi = finalWeights[i];
      if (i != j && (wi > w || (wi == w && chosen[i] < chosen[j]))) { rank++; }
    }
${c.idsInput ? `    ids[outBase + rank] = chosen[j];
    result[outBase + rank] = w;` : `    result[outBase + rank] = chosen[j];
    result[outBase + K + rank] = bitcast<i32>(w);`}
  }
}
`;
  }
}

/** Group scores (top-2 sum with a bias, else max), then the TOPK_GROUP best groups; others' keys → 0. */
function groupSelection(hasBias: boolean): string {
  return `
  for (var g = lane; g < NUM_GROUPS; g += L) {
    var first = choices[g * GROUP_SIZE];
    var second = -FLT_MAX;
    for (var i = 1; i < GROUP_SIZE; i++) {
      let c = choices[g * GROUP_SIZE + i];
      if (c > first) { second = first; first = c; } else if (c > second) { second = c; }
    }
    // Halves: the sum of two floats near FLT_MAX must not overflow; halving keeps the order.
    groupScores[g] = ${hasBias ? 'select(first, first * 0.5 + second * 0.5, GROUP_SIZE > 1)' : 'first'};
  }
  workgroupBarrier();
  for (var g = lane; g < NUM_GROUPS; g += L) {
    var rank = 0;
    for (var h = 0; h < NUM_GROUPS; h++) {
      let s = groupScores[h];
      if (s > groupScores[g] || (s == groupScores[g] && h < g)) { rank++; }
    }
    groupKept[g] = select(0u, 1u, rank < TOPK_GROUP);
  }
  workgroupBarrier();
  for (var v = 0; v < V; v++) {
    let e = lane + v * L;
    if (e < E && groupKept[e / GROUP_SIZE] == 0u) { keys[v] = 0u; }
  }
`;
}

/** One workgroup = one subgroup: every row reduction is a subgroup builtin. */
function subgroupReductions(): string {
  return `
fn rowMax(x: f32) -> f32 { return subgroupMax(x); }
fn rowSum(x: f32) -> f32 { return subgroupAdd(x); }
fn rowArgMax(key: u32, id: i32) -> i32 {
  let best = subgroupMax(key);
  return subgroupMin(select(NO_ID, id, key == best));
}
`;
}

/** Tree reductions over L lanes in workgroup memory. */
function treeReductions(): string {
  return `
var<workgroup> reduceF: array<f32, L>;
var<workgroup> reduceKey: array<u32, L>;
var<workgroup> reduceId: array<i32, L>;

fn rowMax(x: f32) -> f32 {
  let lane = localIndex;
  reduceF[lane] = x;
  workgroupBarrier();
  for (var s = u32(L) / 2u; s > 0u; s = s / 2u) {
    if (lane < s) { reduceF[lane] = max(reduceF[lane], reduceF[lane + s]); }
    workgroupBarrier();
  }
  return workgroupUniformLoad(&reduceF[0]);
}

fn rowSum(x: f32) -> f32 {
  let lane = localIndex;
  reduceF[lane] = x;
  workgroupBarrier();
  for (var s = u32(L) / 2u; s > 0u; s = s / 2u) {
    if (lane < s) { reduceF[lane] = reduceF[lane] + reduceF[lane + s]; }
    workgroupBarrier();
  }
  return workgroupUniformLoad(&reduceF[0]);
}

fn rowArgMax(key: u32, id: i32) -> i32 {
  let lane = localIndex;
  reduceKey[lane] = key;
  reduceId[lane] = id;
  workgroupBarrier();
  for (var s = u32(L) / 2u; s > 0u; s = s / 2u) {
    if (lane < s) {
      let k2 = reduceKey[lane + s];
      let i2 = reduceId[lane + s];
      if (k2 > reduceKey[lane] || (k2 == reduceKey[lane] && i2 < reduceId[lane])) {
        reduceKey[lane] = k2;
        reduceId[lane] = i2;
      }
    }
    workgroupBarrier();
  }
  return workgroupUniformLoad(&reduceId[0]);
}
`;
}

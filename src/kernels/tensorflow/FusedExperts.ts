/**
 * FusedExperts on the 'tensorflow' backend (reference: cpu/fused_experts_impl.ts), in two compositions
 * of raw TensorFlow ops (experts_composition.ts says which runs when):
 *
 *   [Permute]  decode: pair p = (t, j) is block p, 1 row, expert e(p)
 *              prefill: pairs sorted by expert, packed into blocks of B rows of one expert
 *   [Experts]  per chunk of blocks: W13 = GatherV2(w13, blockExpert), h = BatchMatMulV2(x, W13ᵀ),
 *              a = act(h[:I]) * h[I:], W2 = GatherV2(w2, blockExpert), y = BatchMatMulV2(a, W2ᵀ)
 *   [Combine]  y of each pair (prefill: GatherV2 at the pair's row), times its weight; pairs of no
 *              local expert (expertMap -1) or of another shard are SelectV2'd to exactly 0;
 *              out[t] = Σ_j over the k slots (Sum over axis 1 of [T, k, H])
 *
 * Prefill with numbers, N = 6 pairs, 3 experts, B = 2 (keys = local expert of each pair):
 *   keys        [2, 0, 2, 2, 1, 0]        counts [2, 1, 3]      blocks ceil(count / B) = [1, 1, 2]
 *   sorted      order = [1, 5, 4, 0, 2, 3] (stable)              segment starts [0, 2, 3]
 *   blocks      0: e0 rows pairs 1, 5    1: e1 pair 4, pad    2: e2 pairs 0, 2    3: e2 pair 3, pad
 *               (the static bound floor(6 / 2) + 3 = 6 blocks; blocks 4, 5 are unused padding)
 *   pair → row  row(p) = blockStart[key] · B + (position in sorted order - segment start)
 */
import {KernelConfig, TensorInfo} from '@tensorflow/tfjs-core';
import {Activation, FusedExperts, FusedExpertsAttrs, FusedExpertsInputs, expertProjectionShards,
  unsupportedExpertsFeature} from '../../kernel_names';
import {SWIGLUOAI_ALPHA, SWIGLUOAI_LIMIT} from '../../math';
import {WeightFormat, parseFormatKey} from '../../quant/format';
import {ProjectionParts, fakeQuantizeFp8, gatherExpertWeights} from './dequantize';
import {checkIndexRange} from './Eplb';
import {ExpertsComposition, chooseExpertsComposition} from './experts_composition';
import {projectInt8} from './int8_w8a8';
import {RawOps, tensorflowBackend} from './raw_ops';

interface Shard {
  w13: ProjectionParts;  // logical [Es, 2I, H]
  w2: ProjectionParts;   // logical [Es, H, I]
  first: number;    // local id of its first expert
  numExperts: number;
}

/** How the experts' weights and activations are stored and computed (the same for every shard). */
interface ExpertsMath {
  format: WeightFormat;
  activation: Activation;
  H: number;
  I: number;
  /** 0, or the group of fp8 activation quantization. */
  activationQuantGroup: number;
  /** int8 w8a8: integer dots (int8_w8a8.ts) and the slots summed in slot order, as the reference. */
  int8: boolean;
}

/** act(gate) * up of h [..., 2I]: gate rows then up rows, or interleaved for 'swigluoai'. */
function gatedActivation(ops: RawOps, h: TensorInfo, activation: Activation): TensorInfo {
  if (activation === 'swigluoai') {
    const [n, B, twoI] = h.shape;
    const [gate0, up0] = ops.split(ops.reshape(h, [n, B, twoI / 2, 2]), 3, 2);
    const gate = ops.reshape(ops.minimum(gate0, SWIGLUOAI_LIMIT), [n, B, twoI / 2]);
    const up = ops.reshape(ops.clip(up0, -SWIGLUOAI_LIMIT, SWIGLUOAI_LIMIT), [n, B, twoI / 2]);
    return ops.mul(ops.add(up, 1), ops.mul(gate, ops.sigmoid(ops.mul(gate, SWIGLUOAI_ALPHA))));
  }
  const [gate, up] = ops.split(h, h.shape.length - 1, 2);
  const act = activation === 'gelu' ?
    ops.mul(ops.mul(gate, 0.5), ops.add(ops.erf(ops.mul(gate, Math.SQRT1_2)), 1)) :
    ops.mul(gate, ops.sigmoid(gate));
  return ops.mul(act, up);
}

/** x [n, B, K] · Wᵀ (+ bias) for the gathered experts' projection. */
function project(ops: RawOps, x: TensorInfo, parts: ProjectionParts, experts: TensorInfo, m: ExpertsMath, N: number,
    K: number): TensorInfo {
  if (m.int8) return projectInt8(ops, x, parts, experts, N, K);
  const xq = m.activationQuantGroup > 0 ? fakeQuantizeFp8(ops, x, m.activationQuantGroup) : x;
  const y = ops.batchMatMul(xq, gatherExpertWeights(ops, parts, experts, m.format, N, K), false, true);
  if (!parts.bias) return y;
  return ops.add(y, ops.reshape(ops.gather(parts.bias, experts, 0), [experts.shape[0], 1, N]));
}

/**
 * The expert MLP of each block: x [nb, B, H] with block experts [nb] (float32 ids within the shard)
 * → y [nb, B, H]. Gathers the weights chunk by chunk so that at most one chunk's copies are alive.
 */
function expertBlocks(ops: RawOps, x: TensorInfo, blockExpert: TensorInfo, shard: Shard, m: ExpertsMath,
    blocksPerChunk: number): TensorInfo {
  const [nb, B, H] = x.shape;
  const I = m.I;
  const chunks: TensorInfo[] = [];
  for (let first = 0; first < nb; first += blocksPerChunk) {
    const n = Math.min(blocksPerChunk, nb - first);
    chunks.push(ops.scoped(() => {
      const xs = n === nb ? x : ops.slice(x, [first, 0, 0], [n, B, H]);
      const experts = ops.cast(n === nb ? blockExpert : ops.slice(blockExpert, [first], [n]), 'int32');
      const h = project(ops, xs, shard.w13, experts, m, 2 * I, H);                        // [n, B, 2I]
      const a = gatedActivation(ops, h, m.activation);                                   // [n, B, I]
      return project(ops, a, shard.w2, experts, m, H, I);                                // [n, B, H]
    }));
  }
  return ops.concat(chunks, 0);
}

interface Problem {
  hidden: TensorInfo;      // [T, H]
  pairWeight: TensorInfo;  // [N, 1]
  localId: TensorInfo;     // [N] float32 local expert of each pair, -1 if none
  pairToken: TensorInfo;   // [N] float32
  T: number; k: number; H: number;
  math: ExpertsMath;
  onInput: boolean;
}

/** Decode: every pair is its own 1-row block. Returns the shard's contribution per pair [N, H]. */
function decodeShard(ops: RawOps, p: Problem, x: TensorInfo, shard: Shard, plan: ExpertsComposition): TensorInfo {
  const N = p.T * p.k;
  const expert = ops.clip(ops.sub(p.localId, shard.first), 0, shard.numExperts - 1);
  const y = expertBlocks(ops, ops.reshape(x, [N, 1, p.H]), expert, shard, p.math, plan.blocksPerChunk);
  return ops.reshape(y, [N, p.H]);
}

/** Prefill: pairs sorted by expert into blocks of B rows. Returns the contribution per pair [N, H]. */
function prefillShard(ops: RawOps, p: Problem, x: TensorInfo, shard: Shard, inShard: TensorInfo, B: number,
    numBlocks: number, plan: ExpertsComposition): TensorInfo {
  const N = p.T * p.k, Es = shard.numExperts, R = numBlocks * B;
  // Pairs of other shards (or of no local expert) get key Es: sorted last, in no block.
  const key = ops.select(inShard, ops.sub(p.localId, shard.first), Es);                     // [N]
  const counts = ops.slice(ops.unsortedSegmentSum(ops.fill([N], 1), key, Es + 1), [0], [Es]);
  const blocks = ops.ceil(ops.div(counts, B));                                              // B = 2^m: exact
  const blockEnd = ops.cumsum(blocks, 0, false);
  const blockStart = ops.sub(blockEnd, blocks);
  const segmentStart = ops.cumsum(counts, 0, true);
  // TopKV2 over all N keys is a full sort, stable: equal keys keep pair order.
  const order = ops.cast(ops.topK(ops.neg(key), N).indices, 'float32');                    // [N]

  // Block b holds expert #{e : blockEnd[e] <= b} (Es = unused), rows rank (b - blockStart)·B + i.
  const b = ops.iota(numBlocks);
  const blockExpert = ops.sum(ops.cast(ops.lessEqual(ops.reshape(blockEnd, [1, Es]), ops.reshape(b, [numBlocks, 1])),
      'float32'), 1);                                                                        // [NB]
  const expert = ops.minimum(blockExpert, Es - 1);
  const rank = ops.add(ops.mul(ops.reshape(ops.sub(b, ops.gatherAt(blockStart, expert, 0)), [numBlocks, 1]), B),
      ops.reshape(ops.iota(B), [1, B]));                                                     // [NB, B]
  const sortedPos = ops.clip(ops.add(ops.reshape(ops.gatherAt(segmentStart, expert, 0), [numBlocks, 1]), rank),
      0, N - 1);
  const rowPair = ops.reshape(ops.gatherAt(order, sortedPos, 0), [R]);  // rows past a count: unused
  const xRows = ops.gatherAt(x, rowPair, 0);                                                // [R, H]
  const yRows = ops.reshape(expertBlocks(ops, ops.reshape(xRows, [numBlocks, B, p.H]), expert, shard, p.math,
      plan.blocksPerChunk), [R, p.H]);

  // Back to pair order: row(p) = blockStart[key]·B + (sorted position - segment start).
  const position = ops.scatterNd(ops.reshape(order, [N, 1]), ops.iota(N), [N]);
  const keyExpert = ops.minimum(key, Es - 1);
  const pairRow = ops.add(ops.mul(ops.gatherAt(blockStart, keyExpert, 0), B),
      ops.sub(position, ops.gatherAt(segmentStart, keyExpert, 0)));
  return ops.gatherAt(yRows, ops.clip(pairRow, 0, R - 1), 0);                              // [N, H]
}

export const fusedExpertsConfig: KernelConfig = {
  kernelName: FusedExperts,
  backendName: 'tensorflow',
  kernelFunc: ({inputs, attrs, backend}) => {
    const ins = inputs as FusedExpertsInputs;
    const a = attrs as unknown as FusedExpertsAttrs;
    const unsupported = unsupportedExpertsFeature(a, 'tensorflow', {formats: () => true, bias: true, swigluoai: true,
      fp8Activations: true, int8Activations: true});
    if (unsupported) throw new Error(unsupported);
    const format = parseFormatKey(a.weightFormat);
    const {w13, w2} = expertProjectionShards(ins, a);
    const [T, H] = ins.hiddenStates.shape;
    const k = ins.topkIds.shape[1];
    const I = a.intermediateSize;
    const N = T * k;
    // Packed formats also hold the unpacked codes of a chunk while decoding it: count them in the chunk's bytes.
    const bytesPerExpert = 3 * I * H * 4 * (format.code === 'f32' ? 1 : 3);
    const plan = chooseExpertsComposition(N, w13.map((w) => w.data.shape[0]), bytesPerExpert);
    const shards: Shard[] = [];
    let first = 0;
    for (let s = 0; s < w13.length; s++) {
      shards.push({w13: w13[s], w2: w2[s], first, numExperts: w13[s].data.shape[0]});
      first += w13[s].data.shape[0];
    }
    checkIndexRange(FusedExperts, 'rows (T·k plus block padding)',
        N + (plan.blockRows - 1) * first + a.globalNumExperts);

    return RawOps.run(tensorflowBackend(backend, FusedExperts), (ops) => {
      const E = a.globalNumExperts;
      const ids = ops.reshape(ops.cast(ins.topkIds, 'float32'), [N]);
      const idInRange = ops.logicalAnd(ops.greaterEqual(ids, 0), ops.less(ids, E));
      const local = ins.expertMap ? ops.gatherAt(ops.cast(ins.expertMap, 'float32'), ops.clip(ids, 0, E - 1), 0) : ids;
      const p: Problem = {
        hidden: ins.hiddenStates,
        pairWeight: ops.reshape(ins.topkWeights, [N, 1]),
        localId: ops.select(idInRange, local, -1),
        pairToken: ops.reshape(ops.add(ops.reshape(ops.iota(T), [T, 1]), ops.fill([1, k], 0)), [N]),
        T, k, H, onInput: a.applyRouterWeightOnInput,
        math: {format, activation: a.activation, H, I, activationQuantGroup: a.activationQuantGroup,
          int8: a.useInt8W8A8},
      };
      let x: TensorInfo = ops.gatherAt(p.hidden, p.pairToken, 0);                          // [N, H]
      if (p.onInput) x = ops.mul(x, p.pairWeight);
      const outScale = p.onInput ? null : p.pairWeight;

      let total: TensorInfo | null = null;
      shards.forEach((shard, s) => {
        const inShard = ops.logicalAnd(ops.greaterEqual(p.localId, shard.first),
            ops.less(p.localId, shard.first + shard.numExperts));                           // [N]
        const y = plan.kind === 'decode' ? decodeShard(ops, p, x, shard, plan) :
          prefillShard(ops, p, x, shard, inShard, plan.blockRows, plan.blocksPerShard[s], plan);
        // Exactly 0 for pairs this shard does not hold, whatever their weights and rows hold.
        const part = ops.select(ops.reshape(inShard, [N, 1]), outScale ? ops.mul(y, outScale) : y, 0);
        total = total ? ops.add(total, part) : part;
      });
      const perSlot = ops.reshape(total!, [T, k, H]);
      if (!a.useInt8W8A8 || k === 1) return [ops.sum(perSlot, 1)];
      // int8: slot by slot, in slot order (Sum may add in a tree), so that the result is the reference's bits.
      let out: TensorInfo = ops.reshape(ops.slice(perSlot, [0, 0, 0], [T, 1, H]), [T, H]);
      for (let j = 1; j < k; j++) out = ops.add(out, ops.reshape(ops.slice(perSlot, [0, j, 0], [T, 1, H]), [T, H]));
      return [out];
    })[0];
  },
};

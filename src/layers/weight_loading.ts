/**
 * Checkpoint → layer weights (vLLM `FusedMoE.weight_loader`), in two stages with plain data between:
 *
 *   [planExpertLoad]   checkpoint keys from the mapping table, every shape and dtype checked
 *        → ExpertLoadPlan (which tensor, which rows, for each local expert)   or one Error listing all problems
 *   [materializeExpertLoad]  slices, transposes and stacks into w13 / w2 shards (+ bias)
 *
 * Nothing is written to the layer until both stages succeed, so a failed load leaves it unchanged.
 *
 * Sharding, with I_tp = I / tpSize and rank r (SEMANTICS.md):
 *   w1 (gate) [I, H] rows [r·I_tp, (r+1)·I_tp) → w13[e] rows [0, I_tp)
 *   w3 (up)   [I, H] rows [r·I_tp, (r+1)·I_tp) → w13[e] rows [I_tp, 2·I_tp)
 *   w2 (down) [H, I] cols [r·I_tp, (r+1)·I_tp) → w2[e]
 * Fused 3-D (Llama 4), stored [in, out]: gate_up_proj [E, H, 2I] (gate columns, then up columns) and
 * down_proj [E, I, H]: the same ranges one dim later, then transposed.
 */
import {Tensor, Tensor1D, Tensor3D, concat, reshape, slice, stack, tidy, transpose} from '@tensorflow/tfjs-core';
import {ExpertLayout, initialPhysicalToLogical} from './expert_placement';

export type ShardId = 'w1' | 'w2' | 'w3';

/** One row of vLLM's `make_expert_params_mapping`: (param_name, weight_name, expert_id, shard_id). */
export type ExpertParamsMapping = readonly [paramName: string, weightName: string, expertId: number, shardId: ShardId];

/**
 * vLLM `FusedMoE.make_expert_params_mapping`: for every physical expert and each of w1, w2, w3, the
 * layer parameter prefix and the checkpoint name fragment of the logical expert it replicates.
 *
 * ```js
 * FusedMoE.makeExpertParamsMapping('w1', 'w2', 'w3', 2)
 * // [['experts.w13_', 'experts.0.w1.', 0, 'w1'], ['experts.w2_', 'experts.0.w2.', 0, 'w2'],
 * //  ['experts.w13_', 'experts.0.w3.', 0, 'w3'], ['experts.w13_', 'experts.1.w1.', 1, 'w1'], ...]
 * ```
 */
export function makeExpertParamsMapping(ckptGateProjName: string, ckptDownProjName: string, ckptUpProjName: string,
    numExperts: number, numRedundantExperts = 0): ExpertParamsMapping[] {
  const physicalToLogical = initialPhysicalToLogical(numExperts, numRedundantExperts);
  const shards: Array<[ShardId, string]> = [['w1', ckptGateProjName], ['w2', ckptDownProjName], ['w3', ckptUpProjName]];
  const rows: ExpertParamsMapping[] = [];
  physicalToLogical.forEach((logical, expertId) => {
    for (const [shardId, weightName] of shards) {
      const paramName = weightName === ckptGateProjName || weightName === ckptUpProjName ? 'experts.w13_' :
        'experts.w2_';
      rows.push([paramName, `experts.${logical}.${weightName}.`, expertId, shardId]);
    }
  });
  return rows;
}

export interface LoadWeightsOptions {
  /** The module path before `experts.`, e.g. 'model.layers.0.block_sparse_moe'; '' for none. */
  prefix?: string;
  /** Per-expert checkpoint names (default 'gate_proj', 'up_proj', 'down_proj'; Mixtral: 'w1', 'w3', 'w2'). */
  ckptGateProjName?: string;
  ckptUpProjName?: string;
  ckptDownProjName?: string;
  /** Fused 3-D name of gate and up (default 'gate_up_proj'); down uses ckptDownProjName. */
  ckptGateUpProjName?: string;
  /** 'per_expert' (2-D tensors per expert) or 'fused_3d'; by default, 'fused_3d' when its gate_up key exists. */
  layout?: 'per_expert' | 'fused_3d';
}

/** Where one local expert's rows come from: a checkpoint tensor, the expert index within it (3-D), the rows. */
interface Source {
  key: string;
  tensor: Tensor;
  /** Index of the logical expert in a fused 3-D tensor; -1 for a per-expert 2-D tensor. */
  expertIndex: number;
}

export interface ExpertLoadPlan {
  layout: 'per_expert' | 'fused_3d';
  /** Per local expert: gate, up and down sources (for fused 3-D, gate and up are the same tensor). */
  experts: Array<{gate: Source; up: Source; down: Source}>;
  bias: Tensor1D | null;
}

const key = (prefix: string, rest: string) => (prefix ? `${prefix}.${rest}` : rest);
const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;

/**
 * Finds and checks every checkpoint tensor this rank needs. Experts of other ranks are skipped (vLLM's
 * `expert_map[e] == -1`); anything missing, misshapen or of the wrong dtype goes into one Error.
 */
export function planExpertLoad(layout: ExpertLayout, checkpoint: Map<string, Tensor>, o: LoadWeightsOptions = {}):
    ExpertLoadPlan {
  const prefix = o.prefix ?? '';
  const gateName = o.ckptGateProjName ?? 'gate_proj';
  const upName = o.ckptUpProjName ?? 'up_proj';
  const downName = o.ckptDownProjName ?? 'down_proj';
  const gateUpName = o.ckptGateUpProjName ?? 'gate_up_proj';
  const fusedGateUpKey = key(prefix, `experts.${gateUpName}`);
  const fusedDownKey = key(prefix, `experts.${downName}`);
  const kind = o.layout ?? (checkpoint.has(fusedGateUpKey) ? 'fused_3d' : 'per_expert');
  if (kind !== 'per_expert' && kind !== 'fused_3d') {
    throw new Error(`FusedMoE.loadWeights: 'layout' must be 'per_expert' or 'fused_3d' but got ${JSON.stringify(kind)}`);
  }
  const {hiddenSize: H, intermediateSize: I, numLogicalExperts: E} = layout;
  const problems: string[] = [];
  const check = (k: string, t: Tensor, expected: number[]): boolean => {
    if (t.dtype !== 'float32') {
      problems.push(`'${k}' has dtype ${t.dtype}; expert weights must be float (F32, F16 or BF16 in the file)`);
      return false;
    }
    if (shapeStr(t.shape) !== shapeStr(expected)) {
      problems.push(`'${k}' has shape ${shapeStr(t.shape)} but the layer expects ${shapeStr(expected)}`);
      return false;
    }
    return true;
  };

  const experts: ExpertLoadPlan['experts'] = [];
  if (kind === 'fused_3d') {
    const sources: Record<string, Tensor | undefined> = {};
    for (const [k, expected] of [[fusedGateUpKey, [E, H, 2 * I]], [fusedDownKey, [E, I, H]]] as const) {
      const t = checkpoint.get(k);
      if (!t) problems.push(`missing fused 3-D checkpoint tensor '${k}' of shape ${shapeStr(expected)}`);
      else if (check(k, t, [...expected])) sources[k] = t;
    }
    if (problems.length === 0) {
      for (const physical of layout.localPhysicalExperts) {
        const logical = layout.physicalToLogical[physical];
        const gateUp = {key: fusedGateUpKey, tensor: sources[fusedGateUpKey]!, expertIndex: logical};
        experts.push({gate: gateUp, up: gateUp, down: {key: fusedDownKey, tensor: sources[fusedDownKey]!, expertIndex: logical}});
      }
    }
  } else {
    // The mapping table, filtered to this rank's physical experts: checkpoint key per (expert, shard).
    const local = new Set(layout.localPhysicalExperts);
    const found = new Map<number, Partial<Record<ShardId, Source>>>();
    const missing = new Map<ShardId, Set<number>>();
    for (const [, weightName, physical, shardId] of makeExpertParamsMapping(gateName, downName, upName, E,
        layout.numPhysicalExperts - E)) {
      if (!local.has(physical)) continue;
      const k = key(prefix, `${weightName}weight`);
      const t = checkpoint.get(k);
      if (!t) {
        if (!missing.has(shardId)) missing.set(shardId, new Set());
        missing.get(shardId)!.add(layout.physicalToLogical[physical]);
        continue;
      }
      if (!check(k, t, shardId === 'w2' ? [H, I] : [I, H])) continue;
      found.set(physical, {...found.get(physical), [shardId]: {key: k, tensor: t, expertIndex: -1}});
    }
    for (const [shardId, ids] of missing) {
      const name = shardId === 'w1' ? gateName : shardId === 'w3' ? upName : downName;
      const list = [...ids].sort((a, b) => a - b);
      problems.push(`missing ${name} (${shardId}) for expert${list.length > 1 ? 's' : ''} ${list.join(', ')}: ` +
          `expected e.g. '${key(prefix, `experts.${list[0]}.${name}.weight`)}' of shape ` +
          `${shapeStr(shardId === 'w2' ? [H, I] : [I, H])}`);
    }
    if (problems.length === 0) {
      for (const physical of layout.localPhysicalExperts) {
        const s = found.get(physical)!;
        experts.push({gate: s.w1!, up: s.w3!, down: s.w2!});
      }
    }
  }

  let bias: Tensor1D | null = null;
  const biasKey = key(prefix, 'gate.e_score_correction_bias');
  const biasTensor = checkpoint.get(biasKey);
  if (layout.hasCorrectionBias) {
    if (!biasTensor) problems.push(`missing '${biasKey}' of shape [${E}] (the layer has eScoreCorrectionBias: true)`);
    else if (check(biasKey, biasTensor, [E])) bias = biasTensor as Tensor1D;
  } else if (biasTensor) {
    problems.push(`the checkpoint has '${biasKey}' but the layer was built without 'eScoreCorrectionBias: true'`);
  }

  if (problems.length > 0) {
    throw new Error(`FusedMoE.loadWeights: the checkpoint does not fit the layer (tpRank ${layout.tpRank}/` +
        `${layout.tpSize}, local experts ${describeRange(layout.localPhysicalExperts)}); nothing was loaded:\n  - ` +
        problems.join('\n  - '));
  }
  return {layout: kind, experts, bias};
}

function describeRange(ids: number[]): string {
  return ids.length === 0 ? 'none' : `${ids[0]}..${ids[ids.length - 1]}`;
}

/**
 * Builds this rank's w13 [n, 2·I_tp, H] and w2 [n, H, I_tp] for each weight shard from a checked plan.
 * The caller owns (and disposes) the returned tensors.
 */
export function materializeExpertLoad(layout: ExpertLayout, plan: ExpertLoadPlan): {w13: Tensor3D[]; w2: Tensor3D[]} {
  const {hiddenSize: H, intermediateSize: I, tpSize, tpRank} = layout;
  const Itp = I / tpSize;
  const begin = tpRank * Itp;
  return tidy(() => {
    const w13: Tensor3D[] = [];
    const w2: Tensor3D[] = [];
    for (const shard of layout.shards) {
      const gateUps: Tensor[] = [];
      const downs: Tensor[] = [];
      for (let i = shard.firstLocalExpert; i < shard.firstLocalExpert + shard.numExperts; i++) {
        const {gate, up, down} = plan.experts[i];
        if (plan.layout === 'fused_3d') {
          // [1, H, 2I] → gate columns [begin, begin + Itp) and up columns [I + begin, ...) → [2·Itp, H]
          const g = slice(gate.tensor, [gate.expertIndex, 0, begin], [1, H, Itp]);
          const u = slice(up.tensor, [up.expertIndex, 0, I + begin], [1, H, Itp]);
          gateUps.push(reshape(transpose(concat([g, u], 2), [0, 2, 1]), [2 * Itp, H]));
          // [1, I, H] → rows [begin, begin + Itp) → [H, Itp]
          downs.push(reshape(transpose(slice(down.tensor, [down.expertIndex, begin, 0], [1, Itp, H]), [0, 2, 1]), [H, Itp]));
        } else {
          gateUps.push(concat([slice(gate.tensor, [begin, 0], [Itp, H]), slice(up.tensor, [begin, 0], [Itp, H])], 0));
          downs.push(slice(down.tensor, [0, begin], [H, Itp]));
        }
      }
      w13.push(stack(gateUps) as Tensor3D);
      w2.push(stack(downs) as Tensor3D);
    }
    return {w13, w2};
  });
}

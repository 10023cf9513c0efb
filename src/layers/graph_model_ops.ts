/**
 * Handlers for tfjs-converter graph models (`tf.loadGraphModel`) whose nodes are this package's ops.
 * A graph node's inputs are tensors in the op's argument order and its attributes carry the option
 * names in camelCase (TensorFlow attr JSON: {i: '2'}, {f: 2.5}, {b: true}, {s: base64}).
 *
 *   op 'FusedMoE'         inputs [hiddenStates, routerLogits, w13, w2, eScoreCorrectionBias?] → out
 *   op 'MoeFusedTopK'     inputs [gatingOutput, eScoreCorrectionBias?]  → [topkWeights, topkIds]
 *   op 'MoeGroupedTopK'   inputs [gatingOutput, eScoreCorrectionBias?]  → [topkWeights, topkIds]
 *   op 'MoeFusedExperts'  inputs [hiddenStates, w13, w2, topkWeights, topkIds, expertMap?] → out
 *
 * The converter is passed in (`registerGraphModelOps(tfconverter)`), so that this package does not
 * depend on it at run time.
 */
import {Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';
import {FusedExperts, FusedTopK, GroupedTopK} from '../kernel_names';
import {fusedExperts} from '../ops/fused_experts';
import {fusedMoE} from '../ops/fused_moe';
import {fusedTopK} from '../ops/fused_topk';
import {groupedTopK} from '../ops/grouped_topk';

/** The part of a converter graph node a handler reads (tfjs-converter's `GraphNode`). */
export interface GraphNodeLike {
  inputs: Tensor[];
  attrs: {[key: string]: unknown};
}

/** The part of `@tensorflow/tfjs-converter` that registers handlers. */
export interface ConverterLike {
  registerOp(name: string, opFunc: (node: GraphNodeLike) => Tensor | Tensor[]): void;
}

export const FUSED_MOE_GRAPH_OP = 'FusedMoE';

type AttrKind = 'number' | 'boolean' | 'string';

/** Reads attributes by name and kind; a missing required one, or one of another kind, is an Error naming it. */
function attrReader(op: string, node: GraphNodeLike) {
  const attrs = node.attrs ?? {};
  function read(name: string, kind: 'number', required: true): number;
  function read(name: string, kind: 'number'): number | undefined;
  function read(name: string, kind: 'boolean', required: true): boolean;
  function read(name: string, kind: 'boolean'): boolean | undefined;
  function read(name: string, kind: 'string'): string | undefined;
  function read(name: string, kind: AttrKind, required = false): unknown {
    const value = attrs[name];
    if (value == null || (typeof value === 'number' && Number.isNaN(value))) {
      if (required) {
        throw new Error(`graph op '${op}': attribute '${name}' (${kind}) is required; attributes given: ` +
            `${Object.keys(attrs).join(', ') || 'none'}`);
      }
      return undefined;
    }
    if (typeof value !== kind) {
      throw new Error(`graph op '${op}': attribute '${name}' must be a ${kind} but got ${JSON.stringify(value)}`);
    }
    return value;
  }
  return read;
}

function inputsOf(op: string, node: GraphNodeLike, names: string[], optional: string[]): Tensor[] {
  const n = node.inputs.length;
  if (n < names.length || n > names.length + optional.length) {
    throw new Error(`graph op '${op}': takes inputs [${names.join(', ')}${optional.map((o) => `, ${o}?`).join('')}] ` +
        `but the node has ${n}`);
  }
  return node.inputs;
}

function routingAttrs(op: string, node: GraphNodeLike) {
  const read = attrReader(op, node);
  return {
    topK: read('topK', 'number', true), renormalize: read('renormalize', 'boolean', true),
    scoringFunc: read('scoringFunc', 'string') as 'softmax' | 'sigmoid' | undefined,
    routedScalingFactor: read('routedScalingFactor', 'number'), read,
  };
}

const handlers: Record<string, (node: GraphNodeLike) => Tensor | Tensor[]> = {
  [FUSED_MOE_GRAPH_OP]: (node) => {
    const op = FUSED_MOE_GRAPH_OP;
    const [hidden, logits, w13, w2, bias] =
      inputsOf(op, node, ['hiddenStates', 'routerLogits', 'w13', 'w2'], ['eScoreCorrectionBias']);
    const {read, ...routing} = routingAttrs(op, node);
    return fusedMoE(hidden as Tensor2D, logits as Tensor2D, w13 as Tensor3D, w2 as Tensor3D, {
      ...routing, useGroupedTopk: read('useGroupedTopk', 'boolean'), numExpertGroup: read('numExpertGroup', 'number'),
      topkGroup: read('topkGroup', 'number'), eScoreCorrectionBias: bias as Tensor1D | undefined,
      customRoutingFunction: read('customRoutingFunction', 'string') as 'llama4' | undefined,
      activation: read('activation', 'string') as 'silu' | 'gelu' | undefined,
      applyRouterWeightOnInput: read('applyRouterWeightOnInput', 'boolean'),
    });
  },
  [FusedTopK]: (node) => {
    const [logits, bias] = inputsOf(FusedTopK, node, ['gatingOutput'], ['eScoreCorrectionBias']);
    const {read: _read, topK, renormalize, ...o} = routingAttrs(FusedTopK, node);
    const {topkWeights, topkIds} = fusedTopK(logits as Tensor2D, topK, renormalize,
        {...o, eScoreCorrectionBias: bias as Tensor1D | undefined});
    return [topkWeights, topkIds];
  },
  [GroupedTopK]: (node) => {
    const [logits, bias] = inputsOf(GroupedTopK, node, ['gatingOutput'], ['eScoreCorrectionBias']);
    const {read, ...o} = routingAttrs(GroupedTopK, node);
    const {topkWeights, topkIds} = groupedTopK(logits as Tensor2D, {
      ...o, numExpertGroup: read('numExpertGroup', 'number', true), topkGroup: read('topkGroup', 'number', true),
      eScoreCorrectionBias: bias as Tensor1D | undefined,
    });
    return [topkWeights, topkIds];
  },
  [FusedExperts]: (node) => {
    const [hidden, w13, w2, weights, ids, expertMap] = inputsOf(FusedExperts, node,
        ['hiddenStates', 'w13', 'w2', 'topkWeights', 'topkIds'], ['expertMap']);
    const read = attrReader(FusedExperts, node);
    return fusedExperts(hidden as Tensor2D, w13 as Tensor3D, w2 as Tensor3D, weights as Tensor2D, ids as Tensor2D, {
      activation: read('activation', 'string') as 'silu' | 'gelu' | undefined,
      applyRouterWeightOnInput: read('applyRouterWeightOnInput', 'boolean'),
      globalNumExperts: read('globalNumExperts', 'number'), expertMap: expertMap as Tensor1D | undefined,
    });
  },
};

/**
 * Registers the handlers with tfjs-converter; returns the op names registered.
 *
 * ```js
 * import * as tfconverter from '@tensorflow/tfjs-converter';
 * registerGraphModelOps(tfconverter);
 * const model = await tfconverter.loadGraphModel('moe/model.json');
 * ```
 */
export function registerGraphModelOps(converter: ConverterLike): string[] {
  if (converter == null || typeof converter.registerOp !== 'function') {
    throw new Error(`registerGraphModelOps: pass the '@tensorflow/tfjs-converter' module (it has registerOp)`);
  }
  for (const [name, handler] of Object.entries(handlers)) converter.registerOp(name, handler);
  return Object.keys(handlers);
}

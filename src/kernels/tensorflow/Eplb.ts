/**
 * EPLB on the 'tensorflow' backend (reference: cpu/eplb_impl.ts), in float32 index math.
 *
 *   physical[t, j] = map[id, t mod max(1, count[id])]   with id = ids[t, j]
 *                  = GatherV2(map flattened, id·R + replica)
 *   load[e]        = UnsortedSegmentSum(valid, clamp(ids)) where valid = id in [0, P) and expertMap[id] >= 0
 *
 * t mod c is t - floor(t / c)·c in float32, exact while t + c <= 2^24 (TensorFlow's FloorMod runs
 * int32 on the host and has no float32 GPU kernel).
 */
import {KernelConfig, TensorInfo} from '@tensorflow/tfjs-core';
import {EplbMapIds, EplbMapIdsInputs, ExpertLoad, ExpertLoadAttrs, ExpertLoadInputs} from '../../kernel_names';
import {RawOps, tensorflowBackend} from './raw_ops';

/** Float32 index math stays exact below this. */
export const MAX_EXACT_INDEX = 2 ** 24;

export function checkIndexRange(kernelName: string, what: string, n: number): void {
  if (n > MAX_EXACT_INDEX) {
    throw new Error(`${kernelName}: ${what} = ${n} exceeds 2^24, the range of the 'tensorflow' kernels' float32 ` +
        `index math; split the call into smaller batches of tokens`);
  }
}

export const eplbMapIdsConfig: KernelConfig = {
  kernelName: EplbMapIds,
  backendName: 'tensorflow',
  kernelFunc: ({inputs, backend}) => {
    const {topkIds, logicalToPhysicalMap, logicalReplicaCount} = inputs as EplbMapIdsInputs;
    const [T, k] = topkIds.shape;
    const [E, maxReplicas] = logicalToPhysicalMap.shape;
    checkIndexRange(EplbMapIds, 'tokens + replicas', T + maxReplicas);
    checkIndexRange(EplbMapIds, 'logical experts · replicas', E * maxReplicas);
    return RawOps.run(tensorflowBackend(backend, EplbMapIds), (ops) => {
      const ids = ops.cast(topkIds, 'float32');                                        // [T, k]
      const count = ops.gather(ops.cast(logicalReplicaCount, 'float32'), topkIds, 0);  // [T, k]
      const c = ops.maximum(count, 1);
      const t = ops.reshape(ops.iota(T), [T, 1]);
      const replica = ops.sub(t, ops.mul(ops.floor(ops.div(t, c)), c));
      const flatMap = ops.reshape(ops.cast(logicalToPhysicalMap, 'float32'), [E * maxReplicas]);
      const physical = ops.gatherAt(flatMap, ops.add(ops.mul(ids, maxReplicas), replica), 0);
      return [ops.cast(physical, 'int32')];
    })[0];
  },
};

export const expertLoadConfig: KernelConfig = {
  kernelName: ExpertLoad,
  backendName: 'tensorflow',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {topkIds, expertMap} = inputs as ExpertLoadInputs;
    const {numExperts: P} = attrs as unknown as ExpertLoadAttrs;
    const n = topkIds.shape.reduce((a, b) => a * b, 1);
    checkIndexRange(ExpertLoad, '(token, slot) pairs', n);
    return RawOps.run(tensorflowBackend(backend, ExpertLoad), (ops) => {
      const ids = ops.reshape(ops.cast(topkIds, 'float32'), [n]);
      let valid: TensorInfo = ops.logicalAnd(ops.greaterEqual(ids, 0), ops.less(ids, P));
      const clamped = ops.clip(ids, 0, P - 1);
      if (expertMap) {
        const local = ops.gatherAt(ops.cast(expertMap, 'float32'), clamped, 0);
        valid = ops.logicalAnd(valid, ops.greaterEqual(local, 0));
      }
      const load = ops.unsortedSegmentSum(ops.cast(valid, 'float32'), clamped, P);
      return [ops.cast(load, 'int32')];
    })[0];
  },
};

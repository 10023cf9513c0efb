/**
 * tfjs-fused-moe/node: this package's kernels for the 'tensorflow' backend of tfjs-node and
 * tfjs-node-gpu (raw TensorFlow ops through libtensorflow; on CUDA with tfjs-node-gpu).
 *
 * It does not load either package: both are optional peers, and the kernels register under the
 * backend name they share, so whichever the user installed (and required, before or after this
 * module) runs them.
 *
 * ```js
 * require('@tensorflow/tfjs-node-gpu');   // or '@tensorflow/tfjs-node'
 * require('tfjs-fused-moe/node');
 * const {fusedMoE} = require('tfjs-fused-moe');
 * ```
 */
import {registerTensorflowKernels} from './kernels/tensorflow/register';

export {ExpertsComposition, MAX_GATHERED_BYTES_FLAG, chooseExpertsComposition}
  from './kernels/tensorflow/experts_composition';
export {registerTensorflowKernels};

registerTensorflowKernels();

/**
 * Node test setup: loads each backend named in MOE_BACKENDS (default: cpu) and this package's
 * kernels for it. A backend that is asked for and cannot load fails the run loudly.
 */
import '@tensorflow/tfjs-backend-cpu';
import '../src';
import {backendsUnderTest} from './helpers/env';

for (const backend of backendsUnderTest()) {
  if (backend === 'cpu') continue;
  if (backend === 'webgpu') {
    require('./setup_webgpu_node');
  } else if (backend === 'tensorflow') {
    require('./setup_tensorflow_node');
  } else {
    throw new Error(`MOE_BACKENDS names '${backend}'; known backends are cpu, webgpu, tensorflow`);
  }
}

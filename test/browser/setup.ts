/**
 * Browser test setup (karma.conf.js bundles it before the test files): the backends this package
 * has kernels for in a browser, and its kernels for them. The list under test comes from karma's
 * client args (`backends=cpu,webgpu`, see ../helpers/env.ts); one that cannot exist here fails.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgpu';
import '../../src';
import '../../src/webgpu';
import {backendsUnderTest} from '../helpers/env';

for (const backend of backendsUnderTest()) {
  if (backend !== 'cpu' && backend !== 'webgpu') {
    throw new Error(`karma: backends= names '${backend}'; in a browser the backends are cpu and webgpu`);
  }
}

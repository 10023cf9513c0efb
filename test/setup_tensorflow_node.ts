/**
 * Loads tfjs-node's 'tensorflow' backend (a real libtensorflow: `npm run setup:libtensorflow` builds it)
 * and this package's kernels for it. Required by setup_node.ts when MOE_BACKENDS names 'tensorflow'.
 */
try {
  require('@tensorflow/tfjs-node');
} catch (e) {
  throw new Error(`MOE_BACKENDS names 'tensorflow' but @tensorflow/tfjs-node does not load ` +
      `(run 'npm run setup:libtensorflow'): ${(e as Error).message}`);
}
require('../src/node');

/**
 * The 'tensorflow' backend for the examples: tfjs-node-gpu (CUDA) if installed, else tfjs-node (CPU),
 * plus this package's kernels for it (tfjs-fused-moe/node). Both packages are optional peers.
 */
const PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

export type TensorflowResult = {name: string} | {name: null; reason: string};

export async function loadTensorflowBackend(): Promise<TensorflowResult> {
  const errors: string[] = [];
  for (const name of PACKAGES) {
    try {
      // A name in a variable, so that bundlers leave the native addon alone.
      require(name);
      await import('../../src/node');
      return {name};
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return {name: null, reason: `neither tfjs-node-gpu nor tfjs-node loads (${errors.join('; ')}); ` +
      'npm install @tensorflow/tfjs-node-gpu@4.22.0 (or tfjs-node), or in this repo: npm run setup:libtensorflow'};
}

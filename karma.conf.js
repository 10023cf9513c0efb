/**
 * The mocha suite (test/**\/*.test.ts) in headless Chromium with WebGPU on SwiftShader:
 * `npm run test:browser`. Backends come from MOE_BACKENDS (default cpu,webgpu) and reach the
 * tests as karma client args (test/helpers/env.ts); MOE_TEST_FILES=routing,webgpu_device runs a
 * subset.
 *
 * esbuild bundles test/browser/setup.ts, then every test file in name order, into one script, so
 * the backends and kernels register before any test module runs. Node built-ins that test helpers
 * require only on their Node branch (fs, path) are left out of the bundle.
 */
const esbuild = require('esbuild');
const fs = require('fs');
const os = require('os');
const path = require('path');

// Tests that exist for Node itself: files on disk, worker threads, tfjs-node.
const NODE_ONLY_TESTS = ['loading.test.ts', 'io_paths.test.ts', 'layer_workers.test.ts', 'tensorflow_backend.test.ts'];

/** Every test file but the Node-only ones; MOE_TEST_FILES=a,b keeps the files whose names contain a or b. */
function testFiles() {
  const only = (process.env.MOE_TEST_FILES || '').split(',').filter(Boolean);
  return fs.readdirSync(path.join(__dirname, 'test'), {recursive: true})
      .map((f) => f.split(path.sep).join('/'))
      .filter((f) => f.endsWith('.test.ts') && !NODE_ONLY_TESTS.includes(path.basename(f)))
      .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
      .sort();
}

function bundleTests() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-fused-moe-karma-'));
  process.on('exit', () => fs.rmSync(dir, {recursive: true, force: true}));
  const outfile = path.join(dir, 'tests.js');
  const entry = ['./test/browser/setup', ...testFiles().map((f) => `./test/${f.replace(/\.ts$/, '')}`)];
  esbuild.buildSync({
    stdin: {contents: entry.map((f) => `import '${f}';`).join('\n'), resolveDir: __dirname, loader: 'ts'},
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    sourcemap: 'inline',
    external: ['fs', 'path'],
    outfile,
    logLevel: 'warning',
  });
  return outfile;
}

module.exports = (config) => {
  process.env.CHROME_BIN = process.env.CHROME_BIN || '/usr/bin/chromium';
  config.set({
    frameworks: ['mocha'],
    files: [
      {pattern: bundleTests(), watched: false},
      // test/helpers/fixtures.ts fetches /base/test/fixtures/NAME.safetensors.
      {pattern: 'test/fixtures/*', included: false, served: true, watched: false},
      // test/quant_formats.test.ts: /base/test/fixtures/quant/NAME.safetensors.
      {pattern: 'test/fixtures/quant/*.safetensors', included: false, served: true, watched: false},
    ],
    client: {
      args: [`backends=${process.env.MOE_BACKENDS || 'cpu,webgpu'}`],
      mocha: {timeout: 120000},
    },
    browsers: ['ChromiumWebGPU'],
    customLaunchers: {
      ChromiumWebGPU: {
        base: 'Chrome',
        flags: ['--headless', '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader',
          '--enable-features=Vulkan', '--no-sandbox', '--disable-background-networking',
          '--disable-component-update', '--no-first-run'],
      },
    },
    reporters: ['progress'],
    singleRun: true,
    autoWatch: false,
    captureTimeout: 120000,
    browserNoActivityTimeout: 600000,
    browserDisconnectTimeout: 60000,
  });
};

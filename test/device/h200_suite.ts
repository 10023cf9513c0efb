/**
 * The test files that need no Node-only APIs, under mocha, as one bundle for the lent GPU machine
 * (no node_modules there). Pack and run (the device tool, carry [".gpu"]):
 *
 *   bash ../shared/gpu/pack.sh test/device/h200_suite.ts
 *   mkdir -p .gpu/t .gpu/fixtures && mv .gpu/h200_suite.mjs .gpu/t/ && cp test/fixtures/* .gpu/fixtures/
 *   MOE_BACKENDS=webgpu bash .gpu/run.sh .gpu/t/h200_suite.mjs      # fixtures resolve to .gpu/fixtures
 */
import Mocha from 'mocha';

// The bundle is an ES module, which has no __dirname; the fixture helper reads ../fixtures beside the bundle.
(globalThis as {__dirname?: string}).__dirname = require('path').dirname(process.argv[1]);
process.env.XDG_RUNTIME_DIR ??= '/tmp';
process.env.MOE_BACKENDS ??= 'webgpu';
const mocha = new Mocha({timeout: 120000, reporter: 'spec', ...(process.env.MOCHA_GREP ? {grep: process.env.MOCHA_GREP} : {})});
mocha.suite.emit('pre-require', globalThis, 'bundle', mocha);
/* eslint-disable @typescript-eslint/no-var-requires */
require('@tensorflow/tfjs-backend-cpu');
require('../../src');
require('../setup_webgpu_node');
require('../errors.test');
require('../expert_parallel.test');
require('../experts_parity.test');
require('../fixtures.test');
require('../grids.test');
require('../layer.test');
require('../layer_eplb.test');
require('../layer_graph_model.test');
require('../layer_serialization.test');
require('../leaks.test');
require('../routing_parity.test');
require('../webgpu_device.test');
mocha.run((failures) => process.exit(failures ? 1 : 0));

/**
 * The webgpu backend this package creates (src/kernels/webgpu/device.ts): the 'subgroups' feature
 * when the adapter offers it, `enable subgroups;` hoisted above tfjs-backend-webgpu's shader header,
 * and the capability report with its reasons. Runs where MOE_BACKENDS (or karma's backends=) names
 * webgpu. If a tfjs upgrade changes how programs are compiled, the subgroupAdd program fails here.
 */
import * as tf from '@tensorflow/tfjs-core';
import {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import type {WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {expect} from 'chai';
import {declareWritableStorage, hoistDirectives, passMainIds} from '../src/kernels/webgpu/device';
import {FusedTopK} from '../src/kernel_names';
import {SUBGROUPS_FLAG, webgpuCapabilities} from '../src/webgpu';
import {routingImpl} from '../src';
import {expectWeightsById, randn, rng} from './helpers/compare';
import {backendsUnderTest, describeBackends} from './helpers/env';

if (backendsUnderTest().includes('webgpu')) {
  describe('hoistDirectives', () => {
    it('moves enable/requires directives to the top of the module, once each', () => {
      const code = 'struct Uniforms { x : f32 };\n  enable subgroups;\nfn f() {}\nenable subgroups;\n' +
          'requires readonly_and_readwrite_storage_textures;\nfn g() {}';
      const out = hoistDirectives(code);
      expect(out.split('\n').slice(0, 2)).to.deep.equal(
          ['enable subgroups;', 'requires readonly_and_readwrite_storage_textures;']);
      expect(out.match(/enable subgroups;/g)).to.have.length(1);
      expect(out).to.contain('struct Uniforms { x : f32 };').and.to.contain('fn g() {}');
    });

    it('leaves code without directives unchanged', () => {
      const code = 'fn main() {\n  let enabled = 1;\n}';
      expect(hoistDirectives(code)).to.equal(code);
    });
  });

  describe('declareWritableStorage', () => {
    it('declares a marked input read_write and leaves the others read', () => {
      const code = '@group(0) @binding(1) var<storage, read> logits: array<f32>;\n' +
          '@group(0) @binding(2) var<storage, read> ids: array<i32>;\n// moe-storage-rw ids\nfn main() {}';
      const out = declareWritableStorage(code);
      expect(out).to.contain('var<storage, read_write> ids: array<i32>;');
      expect(out).to.contain('var<storage, read> logits: array<f32>;');
      expect(declareWritableStorage('fn main() {}')).to.equal('fn main() {}');
      expect(() => declareWritableStorage('// moe-storage-rw ids\nfn main() {}')).to.throw(/no 'var<storage, read> ids/);
    });
  });

  describe('passMainIds', () => {
    // tfjs's entry point, as webgpu_program.ts makeShader writes it (its parameters' tail and the call).
    const entry = '@compute @workgroup_size(128, 1, 1)\nfn _start(@builtin(local_invocation_index) LocalIndex : u32, ' +
        '@builtin(workgroup_id) WorkgroupId : vec3<u32>, @builtin(num_workgroups) NumWorkgroups : vec3<u32>) {\n' +
        '  main();\n}';
    it('passes the subgroup ids, and local_invocation_index and num_workgroups where main declares them', () => {
      const three = passMainIds(`// moe-main-ids\nfn main(wid : vec3<u32>, sid : u32, lane : u32) {}\n${entry}`);
      expect(three).to.contain('@builtin(subgroup_id) SubgroupId : u32, @builtin(subgroup_invocation_id) ' +
        'SubgroupInvocationId : u32) {');
      expect(three).to.contain('  main(WorkgroupId, SubgroupId, SubgroupInvocationId);');
      const five = passMainIds('// moe-main-ids\nfn main(wid : vec3<u32>, sid : u32, lane : u32, li : u32, ' +
        `nwg : vec3<u32>) {}\n${entry}`);
      expect(five).to.contain('  main(WorkgroupId, SubgroupId, SubgroupInvocationId, LocalIndex, NumWorkgroups);');
      const unmarked = `fn main() {}\n${entry}`;
      expect(passMainIds(unmarked)).to.equal(unmarked);
      expect(() => passMainIds('// moe-main-ids\nfn main(wid : vec3<u32>, sid : u32, lane : u32) {}'))
        .to.throw(/tfjs's entry point/);
    });
  });

  describeBackends('webgpu device', (backend) => {
    if (backend !== 'webgpu') return;
    const current = () => tf.backend() as WebGPUBackend;

    it('has subgroups exactly when its device has the feature, and reports the limits', () => {
      const caps = webgpuCapabilities(current());
      expect(caps.subgroups, caps.reason).to.equal(current().device.features.has('subgroups'));
      expect(caps.reason === '').to.equal(caps.subgroups);
      expect(caps.maxStorageBufferBindingSize).to.equal(current().device.limits.maxStorageBufferBindingSize);
      expect(caps.maxComputeInvocationsPerWorkgroup).to.be.at.least(64);
    });

    it('asks the adapter for its storage-buffer limit per program, where tfjs keeps WebGPU\'s default 8', async () => {
      const adapter = await navigator.gpu.requestAdapter();
      const offered = adapter!.limits.maxStorageBuffersPerShaderStage;
      expect(current().device.limits.maxStorageBuffersPerShaderStage).to.equal(offered);
      expect(webgpuCapabilities(current()).maxStorageBuffersPerShaderStage).to.equal(offered);
      const plain = new WebGPUBackend(await adapter!.requestDevice());
      try {
        expect(webgpuCapabilities(plain).maxStorageBuffersPerShaderStage).to.equal(8);
      } finally {
        plain.dispose();
      }
    });

    it(`says why subgroups are off when ${SUBGROUPS_FLAG} is false`, () => {
      tf.env().set(SUBGROUPS_FLAG, false);
      try {
        const caps = webgpuCapabilities(current());
        expect(caps.subgroups).to.equal(false);
        expect(caps.reason).to.contain(SUBGROUPS_FLAG);
      } finally {
        tf.env().set(SUBGROUPS_FLAG, true);
      }
    });

    it('says it rewrites marked bindings on the devices it creates', () => {
      expect(webgpuCapabilities(current()).writableInputs).to.equal(true);
    });

    it('routes through packed rows and two splits on a device it did not create (tfjs\'s own backend)', async () => {
      // The webgpu kernel itself, on a backend made by tfjs-backend-webgpu's constructor over a plain device
      // (no shader rewriting): what runs where an app starts the backend before importing this package.
      const adapter = await navigator.gpu.requestAdapter();
      const plain = new WebGPUBackend(await adapter!.requestDevice());
      try {
        expect(webgpuCapabilities(plain).writableInputs).to.equal(false);
        const T = 5, E = 64, K = 6;
        const logits = randn(rng(7), T * E);
        const x = plain.makeTensorInfo([T, E], 'float32', logits);
        const cfg = {topK: K, renormalize: true, scoringFunc: 'softmax' as const, routedScalingFactor: 1,
          numExpertGroup: 1, topkGroup: 1};
        const outs = tf.getKernel(FusedTopK, 'webgpu')!.kernelFunc({inputs: {gatingOutput: x}, backend: plain,
          attrs: {topK: K, renormalize: true, scoringFunc: 'softmax', routedScalingFactor: 1}}) as tf.TensorInfo[];
        const [w, ids] = [await plain.read(outs[0].dataId), await plain.read(outs[1].dataId)];
        expect(outs[0].dtype).to.equal('float32');
        expect(outs[1].dtype).to.equal('int32');
        const ref = routingImpl(logits, T, E, null, cfg);
        expectWeightsById(w as Float32Array, ids as Int32Array, ref.weights, ref.ids, K, 'packed routing');
        for (const t of [x, ...outs]) plain.disposeData(t.dataId);
      } finally {
        plain.dispose();
      }
    });

    it('runs a program whose user code enables subgroups through tfjs\'s compiler', async function() {
      const caps = webgpuCapabilities(current());
      if (!caps.subgroups) this.skip();
      const program: WebGPUProgram = {
        outputShape: [64], shaderKey: 'moeTestSubgroupAdd', dispatchLayout: {x: [0]}, dispatch: [1, 1, 1],
        variableNames: [], workgroupSize: [64, 1, 1],
        // The uniforms must be used: tfjs always binds them, and 'auto' layouts drop unused bindings.
        getUserCode: () => 'enable subgroups;\n' +
            'fn main(index: i32) { result[index] = i32(subgroupAdd(1u)) + min(uniforms.outShape, 0); }',
      };
      const out = tf.engine().makeTensorFromTensorInfo(current().runWebGPUProgram(program, [], 'int32'));
      const sizes = await out.data();
      out.dispose();
      const size = sizes[0];
      expect(size, 'subgroup size').to.be.within(1, 128);
      if (caps.subgroupSize > 0) expect(size).to.equal(caps.subgroupSize);
      expect(Array.from(sizes).every((s) => s === size), `sizes ${sizes}`).to.equal(true);
    });
  });
}

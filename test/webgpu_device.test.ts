/**
 * The webgpu backend this package creates (src/kernels/webgpu/device.ts): the 'subgroups' feature
 * when the adapter offers it, `enable subgroups;` hoisted above tfjs-backend-webgpu's shader header,
 * and the capability report with its reasons. Runs where MOE_BACKENDS (or karma's backends=) names
 * webgpu. If a tfjs upgrade changes how programs are compiled, the subgroupAdd program fails here.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';
import {expect} from 'chai';
import {hoistDirectives} from '../src/kernels/webgpu/device';
import {SUBGROUPS_FLAG, webgpuCapabilities} from '../src/webgpu';
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

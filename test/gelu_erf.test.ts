/**
 * gelu's erf on every backend against an erf that is not the same code: float64 values of Python's math.erf
 * (computed once, pasted below), checked through fusedExperts' gelu activation. The cpu reference and the
 * webgpu kernels share one Chebyshev fit (src/math.ts, experts_wgsl.ts), so comparing them with each other
 * could not catch an error in the fit; tensorflow uses TensorFlow's own Erf.
 *
 * The problem isolates act(g): E = 1, k = 1, x = e_0, gate row i = g_i·e_0, up row i = e_0, w2 = identity, so
 * out[t, i] = gelu(g_i) = 0.5·g_i·(1 + erf(g_i/√2)).
 */
import * as tf from '@tensorflow/tfjs-core';
import {fusedExperts} from '../src';
import {ExpertsPath, setFusedExpertsPath} from '../src/kernels/webgpu/FusedExperts';
import {expectClose} from './helpers/compare';
import {describeBackends} from './helpers/env';

/**
 * [g, erf(g/√2)]: g exactly representable in float32, erf in float64. Generated with
 *   python3 -c "import math, struct; f32 = lambda v: struct.unpack('f', struct.pack('f', v))[0];
 *     print([(f32(g), math.erf(f32(g) / math.sqrt(2))) for g in GS])"
 */
const ERF_TABLE: Array<[number, number]> = [
  [-6.0, -0.9999999980268247], [-5.0, -0.9999994266968563], [-4.0, -0.9999366575163338],
  [-3.5, -0.9995347418419289], [-3.0, -0.9973002039367398], [-2.5, -0.9875806693484477],
  [-2.0, -0.9544997361036416], [-1.75, -0.9198816862723658], [-1.5, -0.8663855974622838],
  [-1.25, -0.7887004526662894], [-1.0, -0.6826894921370859], [-0.75, -0.5467452952462636],
  [-0.5, -0.3829249225480262], [-0.375, -0.29233953334544754], [-0.25, -0.19741265136584743],
  [-0.125, -0.09947644966022579], [-0.015625, -0.012466438999779363], [-0.000244140625, -0.00019479603341713729],
  [0.0, 0.0], [0.000244140625, 0.00019479603341713729], [0.015625, 0.012466438999779363],
  [0.10000000149011612, 0.07965567573706873], [0.125, 0.09947644966022579], [0.25, 0.19741265136584743],
  [0.375, 0.29233953334544754], [0.5, 0.3829249225480262], [0.6000000238418579, 0.45149378038924],
  [0.75, 0.5467452952462636], [1.0, 0.6826894921370859], [1.25, 0.7887004526662894],
  [1.5, 0.8663855974622838], [1.75, 0.9198816862723658], [2.0, 0.9544997361036416],
  [2.5, 0.9875806693484477], [3.0, 0.9973002039367398], [3.5, 0.9995347418419289],
  [4.0, 0.9999366575163338], [5.0, 0.9999994266968563], [6.0, 0.9999999980268247],
];

describeBackends('gelu: erf against tabulated float64 values (Python math.erf)', (backend) => {
  const n = ERF_TABLE.length;
  const T = 2;
  const expected = new Float32Array(T * n);
  ERF_TABLE.forEach(([g, erf], i) => { for (let t = 0; t < T; t++) expected[t * n + i] = 0.5 * g * (1 + erf); });
  let t: Record<string, tf.Tensor>;
  before(() => {
    const w13 = new Float32Array(2 * n * n);
    ERF_TABLE.forEach(([g], i) => { w13[i * n] = g; w13[(n + i) * n] = 1; });
    const hidden = new Float32Array(T * n);
    for (let r = 0; r < T; r++) hidden[r * n] = 1;
    t = {hidden: tf.tensor2d(hidden, [T, n]), w13: tf.tensor3d(w13, [1, 2 * n, n]),
      w2: tf.tidy(() => tf.reshape(tf.eye(n), [1, n, n])), weights: tf.ones([T, 1]), ids: tf.zeros([T, 1], 'int32')};
  });
  after(() => { tf.dispose(Object.values(t)); setFusedExpertsPath(null); });

  for (const path of (backend === 'webgpu' ? ['decode', 'decode-grouped', 'prefill'] : [null]) as Array<ExpertsPath | null>) {
    it(`gelu(g) = 0.5·g·(1 + erf(g/√2)) for g in [-6, 6]${path ? ` (${path} path)` : ''}`, async () => {
      setFusedExpertsPath(path);
      const out = fusedExperts(t.hidden as tf.Tensor2D, t.w13 as tf.Tensor3D, t.w2 as tf.Tensor3D,
          t.weights as tf.Tensor2D, t.ids as tf.Tensor2D, {activation: 'gelu'});
      // float32 gelu: a few ulp of |gelu| <= 6, plus the cancellation in 1 + erf for g << 0 (< 1e-7 absolute).
      expectClose(await out.data(), expected, 'gelu', {atol: 1e-6, rtolOfMax: 3e-7});
      out.dispose();
    });
  }
});

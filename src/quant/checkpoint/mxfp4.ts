/**
 * MXFP4 (gpt-oss; HF `quant_method: 'mxfp4'`), fused 3-D over the experts:
 *   `experts.gate_up_proj_blocks` U8 [E, 2I, H/32, 16], `_scales` U8 [E, 2I, H/32], `_bias` BF16 [E, 2I]
 *   `experts.down_proj_blocks`    U8 [E, H, I/32, 16],  `_scales` U8 [E, H, I/32],  `_bias` BF16 [E, H]
 *   w[n, k] = e2m1(nibble k of row n; element 2j is the low nibble of byte j) · 2^(scale[n, ⌊k/32⌋] − 127)
 * Gate and up rows are interleaved (gate at even rows, up at odd); they stay so and the activation is
 * 'swigluoai', which reads them in that order.
 *
 * Device: the blocks' bytes are already format.ts's field order ('e2m1'), the scales stay E8M0 bytes, the
 * biases become float32 [E, N].
 */
import {WeightFormat} from '../format';
import {CheckpointFormat, ConvertedRows, ProjectionRequest, Stored, TensorSpec} from './checkpoint_format';

const BLOCK = 32;

export class Mxfp4Format implements CheckpointFormat {
  readonly format: WeightFormat = {code: 'e2m1', groupSize: BLOCK, blockRows: 1, scaleCode: 'e8m0', zero: 0,
    hasGIdx: false};
  readonly layout = 'fused_3d' as const;
  readonly interleavedGateUp = true;
  readonly activation = 'swigluoai' as const;
  readonly hasBias = true;
  readonly defaultUseFp8W8A8 = false;
  readonly defaultUseInt8W8A8 = false;
  readonly description = 'mxfp4 (e2m1, 32-input blocks, e8m0 scales)';

  static parse(_cfg: Record<string, unknown>): Mxfp4Format {
    return new Mxfp4Format();
  }

  tensors(N: number, K: number): TensorSpec[] {
    return [
      {suffix: '_blocks', dtypes: ['uint8'], shape: [N, K / BLOCK, 16]},
      {suffix: '_scales', dtypes: ['uint8'], shape: [N, K / BLOCK]},
    ];
  }

  convert(t: Map<string, Stored>, req: ProjectionRequest): ConvertedRows {
    const {K, rows, cols} = req;
    const blocks = t.get('_blocks')!.bytes, scaleBytes = t.get('_scales')!.bytes;
    // Two codes per byte, rows of K/2 bytes: a (row, 32-aligned input) range is whole bytes.
    const rowBytes = cols.size / 2;
    const bytes = new Uint8Array(Math.ceil(rows.size * rowBytes / 4) * 4);
    for (let n = 0; n < rows.size; n++) {
      const from = (rows.begin + n) * (K / 2) + cols.begin / 2;
      bytes.set(blocks.subarray(from, from + rowBytes), n * rowBytes);
    }
    const Gfull = K / BLOCK, G = cols.size / BLOCK, g0 = cols.begin / BLOCK;
    const scales = new Uint8Array(rows.size * G);
    for (let n = 0; n < rows.size; n++) {
      scales.set(scaleBytes.subarray((rows.begin + n) * Gfull + g0, (rows.begin + n) * Gfull + g0 + G), n * G);
    }
    return {data: new Int32Array(bytes.buffer, 0, rows.size * rowBytes / 4), scales};
  }
}

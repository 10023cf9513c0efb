/**
 * Block fp8 (DeepSeek-V3; HF `quant_method: 'fp8'`, `weight_block_size: [bn, bk]`): per expert projection
 * `.weight` F8_E4M3 [N, K] and `.weight_scale_inv` F32 [⌈N/bn⌉, ⌈K/bk⌉];
 * w[n, k] = e4m3(q) · scale_inv[⌊n/bn⌋, ⌊k/bk⌋].
 *
 * Device: the e4m3 bytes as they are (format.ts 'e4m3', groupSize bk, blockRows bn, float32 scales).
 * `activation_scheme: 'dynamic'` is vLLM's w8a8 path (activations fake-quantized per 128 inputs), so
 * the layer turns `useFp8W8A8` on by default; `useFp8W8A8: false` is the weights-only computation.
 */
import {WeightFormat} from '../format';
import {CheckpointFormat, PerExpertQuantFormat, ConvertedRows, ProjectionRequest, QuantConfigError, Stored, TensorSpec, configChoice,
  floatReader, narrowScales, packCodes} from './checkpoint_format';

export class Fp8BlockFormat extends PerExpertQuantFormat implements CheckpointFormat {
  readonly format: WeightFormat;
  override readonly defaultUseFp8W8A8 = true;
  readonly description: string;

  static parse(cfg: Record<string, unknown>): Fp8BlockFormat {
    configChoice(cfg, 'fmt', ['e4m3'], 'e4m3', 'fp8');
    configChoice(cfg, 'activation_scheme', ['dynamic'], 'dynamic', 'fp8');
    const block = cfg.weight_block_size;
    if (!Array.isArray(block) || block.length !== 2 || !block.every((b) => Number.isInteger(b) && b > 0)) {
      throw new QuantConfigError(`quantization_config: fp8 needs 'weight_block_size': [block_n, block_k] (block ` +
          `fp8, as DeepSeek-V3) but got ${JSON.stringify(block)}; per-tensor and per-channel fp8 are not supported`);
    }
    return new Fp8BlockFormat(block[0], block[1]);
  }

  constructor(readonly blockN: number, readonly blockK: number) {
    super();
    this.format = {code: 'e4m3', groupSize: blockK, blockRows: blockN, scaleCode: 'f32', zero: 0, hasGIdx: false};
    this.description = `fp8 e4m3 block [${blockN}, ${blockK}]`;
  }

  tensors(N: number, K: number): TensorSpec[] {
    return [
      {suffix: '.weight', dtypes: ['float8_e4m3fn'], shape: [N, K]},
      {suffix: '.weight_scale_inv', dtypes: ['float32'], shape: [Math.ceil(N / this.blockN), Math.ceil(K / this.blockK)]},
    ];
  }

  convert(t: Map<string, Stored>, req: ProjectionRequest): ConvertedRows {
    const w = t.get('.weight')!.bytes;
    const {K, rows, cols} = req;
    const data = packCodes(rows.size, cols.size, 8, (n, k) => w[(rows.begin + n) * K + cols.begin + k]);
    const G = Math.ceil(cols.size / this.blockK);
    const scales = narrowScales(this.format, req, Math.ceil(K / this.blockK), G, floatReader(t.get('.weight_scale_inv')!));
    return {data, scales};
  }
}

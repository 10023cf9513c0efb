/**
 * AWQ GEMM (HF `quant_method: 'awq'`, `version: 'gemm'`, AutoAWQ `WQLinear_GEMM`), int4, per expert projection:
 *   `.qweight` I32 [K, N/8]: nibble i of word (k, c) holds column 8c + [0, 2, 4, 6, 1, 3, 5, 7][i]
 *   `.qzeros`  I32 [G, N/8] in the same interleaved order;  `.scales` F16 [G, N]
 *   w[n, k] = (q[k, n] − z[⌊k/G⌋, n]) · s[⌊k/G⌋, n]
 *
 * Device: codes repacked to [N, K] field order, float32 scales and zero points [N, G]
 * (`zero_point: false` checkpoints use the constant zero 8).
 */
import {WeightFormat} from '../format';
import {CheckpointFormat, PerExpertQuantFormat, ConvertedRows, ProjectionRequest, QuantConfigError, Stored, TensorSpec, configChoice,
  configInt, firstGroup, floatReader, int32View, packCodes} from './checkpoint_format';

/** Column j of a group of 8 sits in nibble AWQ_NIBBLE[j] (the inverse of AutoAWQ's order [0, 2, 4, 6, 1, 3, 5, 7]). */
const AWQ_NIBBLE = [0, 4, 1, 5, 2, 6, 3, 7];

export class AwqFormat extends PerExpertQuantFormat implements CheckpointFormat {
  readonly format: WeightFormat;
  readonly description: string;

  static parse(cfg: Record<string, unknown>): AwqFormat {
    configChoice(cfg, 'bits', [4], 4, 'awq');
    configChoice(cfg, 'version', ['gemm'], 'gemm', 'awq');
    const groupSize = configInt(cfg, 'group_size', 'awq', 128);
    if (!(groupSize > 0)) {
      throw new QuantConfigError(`quantization_config: awq 'group_size' must be positive but got ${groupSize}`);
    }
    return new AwqFormat(groupSize, configChoice(cfg, 'zero_point', [true, false], true, 'awq'));
  }

  constructor(readonly groupSize: number, readonly zeroPoint: boolean) {
    super();
    this.format = {code: 'uint4', groupSize, blockRows: 1, scaleCode: 'f32', zero: zeroPoint ? 'tensor' : 8,
      hasGIdx: false};
    this.description = `awq int4 gemm group ${groupSize}${zeroPoint ? ' zero_point' : ''}`;
  }

  tensors(N: number, K: number): TensorSpec[] {
    const G = Math.ceil(K / this.groupSize);
    const specs: TensorSpec[] = [
      {suffix: '.qweight', dtypes: ['int32'], shape: [K, N / 8]},
      {suffix: '.scales', dtypes: ['float16', 'bfloat16', 'float32'], shape: [G, N]},
    ];
    if (this.zeroPoint) specs.push({suffix: '.qzeros', dtypes: ['int32'], shape: [G, N / 8]});
    return specs;
  }

  convert(t: Map<string, Stored>, req: ProjectionRequest): ConvertedRows {
    const {N, rows, cols} = req;
    const q = int32View(t.get('.qweight')!);
    const nibble = (words: Int32Array, row: number, n: number) =>
      (words[row * (N / 8) + (n >> 3)] >>> (4 * AWQ_NIBBLE[n & 7])) & 15;
    const data = packCodes(rows.size, cols.size, 4, (n, k) => nibble(q, cols.begin + k, rows.begin + n));
    const G = Math.ceil(cols.size / this.groupSize), g0 = firstGroup(this.format, cols);
    const readScale = floatReader(t.get('.scales')!);
    const scales = new Float32Array(rows.size * G);
    const zeros = this.zeroPoint ? new Float32Array(rows.size * G) : undefined;
    const z = this.zeroPoint ? int32View(t.get('.qzeros')!) : null;
    for (let n = 0; n < rows.size; n++) {
      for (let g = 0; g < G; g++) {
        scales[n * G + g] = readScale((g0 + g) * N + rows.begin + n);
        if (zeros) zeros[n * G + g] = nibble(z!, g0 + g, rows.begin + n);
      }
    }
    return zeros ? {data, scales, zeros} : {data, scales};
  }
}

/**
 * compressed-tensors `pack-quantized` (HF `quant_method: 'compressed-tensors'`, llm-compressor's W4A16 /
 * W8A16), symmetric int4 or int8, group or channel strategy, per expert projection:
 *   `.weight_packed` I32 [N, K·bits/32]: input k of row n at bits (k mod 32/bits)·bits, stored q + 2^(bits−1)
 *   `.weight_scale`  BF16/F16/F32 [N, G] (G = 1 for 'channel');  `.weight_shape` I64 [2] = [N, K]
 *   w[n, k] = (u − 2^(bits−1)) · s[n, ⌊k/group⌋]
 *
 * weight_packed is already format.ts's field order: the device takes it as is (narrowed under TP) with
 * float32 scales. Asymmetric schemes (weight_zero_point), act-order (weight_g_idx) and quantized
 * activations are refused by name.
 */
import {WeightFormat} from '../format';
import {CheckpointFormat, PerExpertQuantFormat, ConvertedRows, ProjectionRequest, QuantConfigError, Stored, TensorSpec, floatReader,
  int32View, narrowScales} from './checkpoint_format';

const METHOD = 'compressed-tensors';

function fail(why: string): never {
  throw new QuantConfigError(`quantization_config: ${METHOD} ${why}`);
}

export class CompressedTensorsFormat extends PerExpertQuantFormat implements CheckpointFormat {
  readonly format: WeightFormat;
  readonly description: string;

  static parse(cfg: Record<string, unknown>): CompressedTensorsFormat {
    const groups = cfg.config_groups as Record<string, Record<string, unknown>> | undefined;
    if (groups == null || typeof groups !== 'object' || Object.keys(groups).length === 0) {
      fail(`needs 'config_groups' with one weights scheme`);
    }
    const schemes = Object.entries(groups);
    if (schemes.length !== 1) {
      fail(`has ${schemes.length} config_groups (${schemes.map(([k]) => k).join(', ')}); supported is one scheme ` +
          `for every Linear`);
    }
    const [name, scheme] = schemes[0];
    const format = scheme.format ?? cfg.format;
    if (format !== 'pack-quantized') {
      fail(`format ${JSON.stringify(format)} is not supported; supported: "pack-quantized"`);
    }
    if (scheme.input_activations != null || scheme.output_activations != null) {
      fail(`group '${name}' quantizes activations; supported are weight-only schemes (W4A16, W8A16)`);
    }
    const w = scheme.weights as Record<string, unknown> | null;
    if (w == null) fail(`group '${name}' has no 'weights' scheme`);
    const check = (field: string, allowed: unknown[], fallback: unknown) => {
      const v = w![field] ?? fallback;
      if (!allowed.includes(v)) {
        fail(`weights '${field}' = ${JSON.stringify(v)} is not supported; supported: ` +
            allowed.map((a) => JSON.stringify(a)).join(', '));
      }
      return v;
    };
    check('type', ['int'], 'int');
    const bits = check('num_bits', [4, 8], undefined) as 4 | 8;
    const strategy = check('strategy', ['group', 'channel'], undefined) as 'group' | 'channel';
    check('symmetric', [true], true);
    check('dynamic', [false], false);
    check('actorder', [null, false], null);
    let groupSize = -1;
    if (strategy === 'group') {
      groupSize = w!.group_size as number;
      if (!Number.isInteger(groupSize) || groupSize <= 0) fail(`'group' strategy needs a positive 'group_size'`);
    }
    return new CompressedTensorsFormat(bits, groupSize);
  }

  constructor(readonly bits: 4 | 8, readonly groupSize: number) {
    super();
    this.format = {code: bits === 4 ? 'uint4' : 'uint8', groupSize, blockRows: 1, scaleCode: 'f32',
      zero: 2 ** (bits - 1), hasGIdx: false};
    this.description = `${METHOD} pack-quantized int${bits} ${groupSize === -1 ? 'channel' : `group ${groupSize}`} sym`;
  }

  tensors(N: number, K: number): TensorSpec[] {
    const G = this.groupSize === -1 ? 1 : Math.ceil(K / this.groupSize);
    return [
      {suffix: '.weight_packed', dtypes: ['int32'], shape: [N, K * this.bits / 32]},
      {suffix: '.weight_scale', dtypes: ['bfloat16', 'float16', 'float32'], shape: [N, G]},
      {suffix: '.weight_shape', dtypes: ['int32'], shape: [2], values: [N, K]},
    ];
  }

  convert(t: Map<string, Stored>, req: ProjectionRequest): ConvertedRows {
    const {N, K, rows, cols} = req;
    const words = int32View(t.get('.weight_packed')!);
    const per = 32 / this.bits, wordsPerRow = K / per;
    // Rows and word-aligned input ranges are whole words: copy them.
    const data = new Int32Array(rows.size * cols.size / per);
    for (let n = 0; n < rows.size; n++) {
      const from = (rows.begin + n) * wordsPerRow + cols.begin / per;
      data.set(words.subarray(from, from + cols.size / per), n * cols.size / per);
    }
    const Gfull = this.groupSize === -1 ? 1 : Math.ceil(K / this.groupSize);
    const G = this.groupSize === -1 ? 1 : Math.ceil(cols.size / this.groupSize);
    return {data, scales: narrowScales(this.format, {N, K, rows, cols}, Gfull, G, floatReader(t.get('.weight_scale')!))};
  }
}

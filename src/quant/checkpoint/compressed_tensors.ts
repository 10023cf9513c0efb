/**
 * compressed-tensors `pack-quantized` (HF `quant_method: 'compressed-tensors'`, llm-compressor's W4A16 /
 * W8A16), symmetric int4 or int8, group or channel strategy, per expert projection:
 *   `.weight_packed` I32 [N, K·bits/32]: input k of row n at bits (k mod 32/bits)·bits, stored q + 2^(bits−1)
 *   `.weight_scale`  BF16/F16/F32 [N, G] (G = 1 for 'channel');  `.weight_shape` I64 [2] = [N, K]
 *   w[n, k] = (u − 2^(bits−1)) · s[n, ⌊k/group⌋]
 *
 * weight_packed is already format.ts's field order: the device takes it as is (narrowed under TP) with
 * float32 scales.
 *
 * W8A8 int8 (llm-compressor's INT8 W8A8, `int-quantized`, or pack-quantized 8-bit): channel weights plus
 * `input_activations` {type int, num_bits 8, strategy 'token', dynamic, symmetric} is vLLM's
 * CompressedTensorsW8A8Int8MoEMethod (use_int8_w8a8, per-channel): the layer turns `useInt8W8A8` on by
 * default (defaultUseInt8W8A8), as the fp8 module does for `activation_scheme: 'dynamic'`. `int-quantized`
 * stores `.weight` I8 [N, K] and `.weight_scale` [N, 1]; q + 128 is format.ts's 'uint8' code with zero 128.
 * Asymmetric schemes (weight_zero_point), act-order (weight_g_idx) and other activation schemes are refused
 * by name.
 */
import {WeightFormat} from '../format';
import {CheckpointFormat, PerExpertQuantFormat, ConvertedRows, ProjectionRequest, QuantConfigError, Stored, TensorSpec, floatReader,
  int32View, narrowScales, packCodes} from './checkpoint_format';

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
    if (format !== 'pack-quantized' && format !== 'int-quantized') {
      fail(`format ${JSON.stringify(format)} is not supported; supported: "pack-quantized", "int-quantized"`);
    }
    if (scheme.output_activations != null) fail(`group '${name}' quantizes output activations; not supported`);
    const int8Activations = scheme.input_activations != null;
    if (int8Activations) {
      const a = scheme.input_activations as Record<string, unknown>;
      const want: Record<string, unknown> = {type: 'int', num_bits: 8, strategy: 'token', dynamic: true, symmetric: true};
      for (const [field, v] of Object.entries(want)) {
        if ((a[field] ?? (field === 'type' ? 'int' : field === 'symmetric' ? true : undefined)) !== v) {
          fail(`group '${name}' input_activations '${field}' = ${JSON.stringify(a[field])} is not supported; ` +
              `supported are weight-only schemes (W4A16, W8A16) and int8 W8A8 with dynamic per-token activations ` +
              `(${JSON.stringify(want)})`);
        }
      }
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
    if ((int8Activations || format === 'int-quantized') && (bits !== 8 || strategy !== 'channel')) {
      fail(`${int8Activations ? 'int8 W8A8' : '"int-quantized"'} needs 8-bit 'channel' weights, got ${bits}-bit ` +
          `'${strategy}'`);
    }
    return new CompressedTensorsFormat(bits, groupSize, format === 'int-quantized', int8Activations);
  }

  override readonly defaultUseInt8W8A8: boolean;

  constructor(readonly bits: 4 | 8, readonly groupSize: number, readonly unpacked = false, int8Activations = false) {
    super();
    this.defaultUseInt8W8A8 = int8Activations;
    this.format = {code: bits === 4 ? 'uint4' : 'uint8', groupSize, blockRows: 1, scaleCode: 'f32',
      zero: 2 ** (bits - 1), hasGIdx: false};
    this.description = `${METHOD} ${unpacked ? 'int' : 'pack'}-quantized int${bits} ` +
      `${groupSize === -1 ? 'channel' : `group ${groupSize}`} sym${int8Activations ? ', int8 per-token activations' : ''}`;
  }

  tensors(N: number, K: number): TensorSpec[] {
    if (this.unpacked) {
      return [
        {suffix: '.weight', dtypes: ['int8'], shape: [N, K]},
        {suffix: '.weight_scale', dtypes: ['bfloat16', 'float16', 'float32'], shape: [N, 1]},
      ];
    }
    const G = this.groupSize === -1 ? 1 : Math.ceil(K / this.groupSize);
    return [
      {suffix: '.weight_packed', dtypes: ['int32'], shape: [N, K * this.bits / 32]},
      {suffix: '.weight_scale', dtypes: ['bfloat16', 'float16', 'float32'], shape: [N, G]},
      {suffix: '.weight_shape', dtypes: ['int32'], shape: [2], values: [N, K]},
    ];
  }

  convert(t: Map<string, Stored>, req: ProjectionRequest): ConvertedRows {
    const {N, K, rows, cols} = req;
    if (this.unpacked) {
      // int8 byte b (two's complement) → code b ^ 0x80 = q + 128.
      const w = t.get('.weight')!.bytes;
      const data = packCodes(rows.size, cols.size, 8, (n, k) => w[(rows.begin + n) * K + cols.begin + k] ^ 0x80);
      return {data, scales: narrowScales(this.format, req, 1, 1, floatReader(t.get('.weight_scale')!))};
    }
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

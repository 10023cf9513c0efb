/**
 * GPTQ (HF `quant_method: 'gptq'`, AutoGPTQ / GPTQModel), int4 or int8, per expert projection:
 *   `.qweight` I32 [K·bits/32, N]: input k of column n in word row ⌊k·bits/32⌋ at bits (k mod 32/bits)·bits
 *   `.qzeros`  I32 [G, N·bits/32]: column n of group g at bits (n mod 32/bits)·bits; v1 ('gptq') stores zero − 1
 *   `.scales`  F16 [G, N];  `.g_idx` I32 [K] (the group of input k; act-order when `desc_act`)
 *   w[n, k] = (q[k, n] − zero[g(k), n]) · scales[g(k), n]
 *
 * Device: codes repacked to [N, K] field order (GPTQ packs along K in columns; format.ts along K in rows),
 * float32 scales [N, G] and, when asymmetric, float32 zero points [N, G] in code units. Symmetric
 * checkpoints use the constant zero 2^(bits−1) (vLLM's gptq_marlin ignores their qzeros too).
 */
import {WeightFormat} from '../format';
import {CheckpointFormat, PerExpertQuantFormat, ConvertedRows, ProjectionRequest, QuantConfigError, Stored, TensorSpec, configChoice,
  configInt, firstGroup, floatReader, int32View, packCodes} from './checkpoint_format';

export class GptqFormat extends PerExpertQuantFormat implements CheckpointFormat {
  readonly format: WeightFormat;
  readonly description: string;

  static parse(cfg: Record<string, unknown>): GptqFormat {
    const bits = configChoice(cfg, 'bits', [4, 8] as Array<4 | 8>, 4, 'gptq');
    const groupSize = configInt(cfg, 'group_size', 'gptq', 128);
    if (!(groupSize === -1 || groupSize > 0)) {
      throw new QuantConfigError(`quantization_config: gptq 'group_size' must be -1 (channel-wise) or positive but ` +
          `got ${groupSize}`);
    }
    const descAct = configChoice(cfg, 'desc_act', [true, false], false, 'gptq');
    const sym = configChoice(cfg, 'sym', [true, false], true, 'gptq');
    const ckptFormat = configChoice(cfg, 'checkpoint_format', ['gptq', 'gptq_v2'], 'gptq', 'gptq');
    return new GptqFormat(bits, groupSize, descAct && groupSize !== -1, sym, ckptFormat === 'gptq');
  }

  constructor(readonly bits: 4 | 8, readonly groupSize: number, readonly actOrder: boolean, readonly sym: boolean,
      readonly zerosMinusOne: boolean) {
    super();
    this.format = {code: bits === 4 ? 'uint4' : 'uint8', groupSize, blockRows: 1, scaleCode: 'f32',
      zero: sym ? 2 ** (bits - 1) : 'tensor', hasGIdx: actOrder};
    this.description = `gptq int${bits} group ${groupSize} ${sym ? 'sym' : 'asym'}${actOrder ? ' act-order' : ''}`;
  }

  private groups(K: number): number {
    return this.groupSize === -1 ? 1 : Math.ceil(K / this.groupSize);
  }

  tensors(N: number, K: number): TensorSpec[] {
    const per = 32 / this.bits, G = this.groups(K);
    return [
      {suffix: '.qweight', dtypes: ['int32'], shape: [K / per, N]},
      // Symmetric checkpoints store qzeros too; they are checked for shape and not read.
      {suffix: '.qzeros', dtypes: ['int32'], shape: [G, N / per]},
      {suffix: '.scales', dtypes: ['float16', 'bfloat16', 'float32'], shape: [G, N]},
      {suffix: '.g_idx', dtypes: ['int32'], shape: [K], optional: !this.actOrder},
    ];
  }

  convert(t: Map<string, Stored>, req: ProjectionRequest): ConvertedRows {
    const {N, K, rows, cols} = req;
    const bits = this.bits, per = 32 / bits, mask = (1 << bits) - 1;
    const q = int32View(t.get('.qweight')!);
    const data = packCodes(rows.size, cols.size, bits, (n, k) => {
      const kk = cols.begin + k, nn = rows.begin + n;
      return q[Math.floor(kk / per) * N + nn] >>> ((kk % per) * bits);
    });
    const Gfull = this.groups(K);
    // With act-order every group may occur in any input range, so all G scale columns are kept.
    const G = this.actOrder ? Gfull : this.groupSize === -1 ? 1 : Math.ceil(cols.size / this.groupSize);
    const g0 = this.actOrder ? 0 : firstGroup(this.format, cols);
    const readScale = floatReader(t.get('.scales')!);
    const scales = new Float32Array(rows.size * G);
    for (let n = 0; n < rows.size; n++) {
      for (let g = 0; g < G; g++) scales[n * G + g] = readScale((g0 + g) * N + rows.begin + n);
    }
    const out: ConvertedRows = {data, scales};
    if (!this.sym) {
      const z = int32View(t.get('.qzeros')!);
      const zeros = new Float32Array(rows.size * G);
      for (let n = 0; n < rows.size; n++) {
        const nn = rows.begin + n;
        for (let g = 0; g < G; g++) {
          const code = (z[(g0 + g) * (N / per) + Math.floor(nn / per)] >>> ((nn % per) * bits)) & mask;
          zeros[n * G + g] = this.zerosMinusOne ? code + 1 : code;
        }
      }
      out.zeros = zeros;
    }
    if (this.actOrder) out.gIdx = int32View(t.get('.g_idx')!).slice(cols.begin, cols.begin + cols.size);
    return out;
  }
}

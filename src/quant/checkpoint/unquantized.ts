/**
 * Unquantized checkpoints (`quantization_config` absent or null): F32, BF16 or F16 expert weights,
 * per expert (`experts.{e}.{name}.weight` [N, K]) or fused 3-D as Llama 4 stores them, [in, out]
 * (`experts.gate_up_proj` [E, H, 2I] gate columns then up columns, `experts.down_proj` [E, I, H]).
 *
 * The device keeps `weightDtype`: 'float32' (4 bytes), 'bfloat16' or 'float16' (2 bytes, packed two
 * to an int32 word, format.ts codes 'bf16' / 'f16'); converting rounds to nearest even.
 */
import {WeightCode, WeightFormat} from '../format';
import {CheckpointFormat, ConvertedRows, ProjectionRequest, Stored, TensorSpec, floatReader, packCodes}
  from './checkpoint_format';

export type WeightDtype = 'float32' | 'bfloat16' | 'float16';
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['float32', 'bfloat16', 'float16'];

const CODE: Record<WeightDtype, WeightCode> = {float32: 'f32', bfloat16: 'bf16', float16: 'f16'};
const FLOAT_DTYPES = ['float32', 'bfloat16', 'float16'];

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → bfloat16 bits, round to nearest even (NaN stays NaN). */
export function floatToBf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if (Number.isNaN(x)) return 0x7fc0;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 → float16 bits, round to nearest even, overflow to ±Inf. */
export function floatToHalf(x: number): number {
  f32[0] = x;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  e = h >>> 10;
  return sign | h;
}

export class UnquantizedFormat implements CheckpointFormat {
  readonly format: WeightFormat;
  readonly interleavedGateUp = false;
  readonly activation = null;
  readonly hasBias = false;
  readonly defaultUseFp8W8A8 = false;
  readonly defaultUseInt8W8A8 = false;
  readonly description: string;

  constructor(readonly weightDtype: WeightDtype, readonly layout: 'per_expert' | 'fused_3d') {
    this.format = {code: CODE[weightDtype], groupSize: 0, blockRows: 1, scaleCode: 'f32', zero: 0, hasGIdx: false};
    this.description = `unquantized (${weightDtype} on the device)`;
  }

  tensors(N: number, K: number): TensorSpec[] {
    // Llama 4's fused tensors are [in, out]; per-expert tensors are nn.Linear's [out, in].
    return [{suffix: this.layout === 'fused_3d' ? '' : '.weight', dtypes: FLOAT_DTYPES,
      shape: this.layout === 'fused_3d' ? [K, N] : [N, K]}];
  }

  convert(t: Map<string, Stored>, req: ProjectionRequest): ConvertedRows {
    const s = t.get(this.tensors(req.N, req.K)[0].suffix)!;
    const read = floatReader(s);
    const {N, K, rows, cols} = req;
    const at = this.layout === 'fused_3d' ?
      (n: number, k: number) => read((cols.begin + k) * N + rows.begin + n) :
      (n: number, k: number) => read((rows.begin + n) * K + cols.begin + k);
    if (this.weightDtype === 'float32') {
      const out = new Float32Array(rows.size * cols.size);
      for (let n = 0; n < rows.size; n++) for (let k = 0; k < cols.size; k++) out[n * cols.size + k] = at(n, k);
      return {data: out};
    }
    // A checkpoint already in the device dtype is copied bit for bit (decode → re-encode is exact).
    const encode = this.weightDtype === 'bfloat16' ? floatToBf16 : floatToHalf;
    return {data: packCodes(rows.size, cols.size, 16, (n, k) => encode(at(n, k)))};
  }
}

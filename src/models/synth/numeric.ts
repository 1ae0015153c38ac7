/**
 * Number formats for the precision variants: float32 → IEEE half (fp16 files) and symmetric int8
 * quantization (q8 files), both deterministic and free of platform-dependent maths.
 */

const F32 = new Float32Array(1);
const F32_BITS = new Uint32Array(F32.buffer);

/** IEEE 754 binary16 bits of a number, rounded to nearest even (overflow → ±Infinity, NaN kept). */
export function float32ToFloat16Bits(value: number): number {
  F32[0] = value;
  const bits = F32_BITS[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    let half = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Infinity).
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** The number a binary16 bit pattern stands for. */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * Little-endian binary16 bytes of a float32 array (what a FLOAT16 TensorProto's raw_data holds).
 *
 * @example
 *   toFloat16Bytes(new Float32Array([1, -2])); // Uint8Array [0x00, 0x3c, 0x00, 0xc0]
 */
export function toFloat16Bytes(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i]!);
  return littleEndianBytes(out);
}

/** A typed array's bytes in little-endian order (a copy-free view on little-endian hosts). */
export function littleEndianBytes(
  values: Float32Array | Uint16Array | Int32Array | BigInt64Array,
): Uint8Array {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (HOST_LITTLE_ENDIAN) return bytes;
  const copy = new Uint8Array(bytes);
  const width = values.BYTES_PER_ELEMENT;
  for (let i = 0; i < copy.length; i += width) copy.subarray(i, i + width).reverse();
  return copy;
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A weight quantized like onnxruntime's `quantize_dynamic` (QInt8, per tensor, symmetric). */
export interface QuantizedWeight {
  /** int8 values, row-major like the float weight. */
  readonly values: Int8Array;
  /** float32 scale: weight ≈ values × scale (zero point 0). */
  readonly scale: number;
}

/**
 * Symmetric per-tensor int8 quantization: scale = max|w| / 127, q = round-half-even(w / scale) in
 * [-127, 127], zero point 0 (onnxruntime's QInt8 weights with `symmetric=True`).
 *
 * @example
 *   quantizeSymmetricInt8(new Float32Array([0.5, -1, 0.25])); // { values: [64, -127, 32], scale: 1/127 }
 */
export function quantizeSymmetricInt8(weights: Float32Array): QuantizedWeight {
  let rmax = 0;
  for (let i = 0; i < weights.length; i++) {
    const a = Math.abs(weights[i]!);
    if (a > rmax) rmax = a;
  }
  const scale = rmax === 0 ? 1 : Math.fround(rmax / 127);
  const values = new Int8Array(weights.length);
  for (let i = 0; i < weights.length; i++) {
    const q = roundHalfEven(weights[i]! / scale);
    values[i] = q > 127 ? 127 : q < -127 ? -127 : q;
  }
  return { values, scale };
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

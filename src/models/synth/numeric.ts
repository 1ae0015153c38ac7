/**
 * Number formats for the precision variants: float32 → IEEE half (fp16 files) and symmetric int8
 * quantization (q8 files), both deterministic and free of platform-dependent maths.
 */

import { float16ToFloat32, float32ToFloat16 } from '../../formats/npy.js';

/** IEEE 754 binary16 bits of a number, rounded to nearest even (overflow → ±Infinity, NaN kept). */
export function float32ToFloat16Bits(value: number): number {
  return float32ToFloat16(Float32Array.of(value))[0]!;
}

/** The number a binary16 bit pattern stands for. */
export function float16BitsToNumber(bits: number): number {
  return float16ToFloat32(Uint16Array.of(bits))[0]!;
}

/**
 * Little-endian binary16 bytes of a float32 array (what a FLOAT16 TensorProto's raw_data holds).
 *
 * @example
 *   toFloat16Bytes(new Float32Array([1, -2])); // Uint8Array [0x00, 0x3c, 0x00, 0xc0]
 */
export function toFloat16Bytes(values: Float32Array): Uint8Array {
  return littleEndianBytes(float32ToFloat16(values));
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

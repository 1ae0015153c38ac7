/**
 * NumPy `.npy` files: header encoding and parsing, and float16 ⇄ float32 conversion.
 *
 * Format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html): the magic `\x93NUMPY`,
 * a major/minor version, the header length (2 bytes little-endian in v1.0, 4 bytes in v2.0/v3.0), then a
 * Python dict literal `{'descr': '<f2', 'fortran_order': False, 'shape': (n, d), }` padded with spaces and
 * a final `\n` so that the data starts at a multiple of 64 bytes. The data follows, C order.
 */
import { GlimpseError } from '../errors/index.js';

/** The dtypes glimpse reads and writes embeddings in. */
export type NpyFloatDtype = 'float16' | 'float32';

/** Every dtype parseNpyHeader recognises (readers accept only float16/float32, see assertEmbeddingNpy). */
export type NpyDtype =
  | 'float16'
  | 'float32'
  | 'float64'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'bool';

export interface NpyHeader {
  /** The element type (`<f2` → float16). */
  readonly dtype: NpyDtype;
  /** The descr string as written (`<f2`). */
  readonly descr: string;
  /** The array shape (`[n, d]` for embeddings). */
  readonly shape: readonly number[];
  readonly fortranOrder: boolean;
  /** Bytes before the data: magic, version, length field and the padded dict. Data starts here. */
  readonly headerLength: number;
  /** Bytes per element (NumPy's `itemsize`: 2 for float16, 4 for float32). */
  readonly bytesPerItem: number;
  /** Bytes per row of a 2-D array (`shape[1] * bytesPerItem`; `bytesPerItem` for 0/1-D arrays). */
  readonly bytesPerRow: number;
  /** Bytes of data the header announces (`product(shape) * bytesPerItem`). */
  readonly dataLength: number;
  /** Format version, `[major, minor]`. */
  readonly version: readonly [number, number];
}

/** An npy header that readers accept: a C-order 2-D float16 or float32 matrix. */
export interface EmbeddingNpyHeader extends NpyHeader {
  readonly dtype: NpyFloatDtype;
  readonly shape: readonly [number, number];
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const ARRAY_ALIGN = 64;
/** NumPy ≥ 1.23 leaves room after the dict so the growth axis can be rewritten in place. */
const GROWTH_AXIS_MAX_DIGITS = 21;

const DESCR: Record<string, { dtype: NpyDtype; size: number }> = {
  f2: { dtype: 'float16', size: 2 },
  f4: { dtype: 'float32', size: 4 },
  f8: { dtype: 'float64', size: 8 },
  i1: { dtype: 'int8', size: 1 },
  i2: { dtype: 'int16', size: 2 },
  i4: { dtype: 'int32', size: 4 },
  i8: { dtype: 'int64', size: 8 },
  u1: { dtype: 'uint8', size: 1 },
  u2: { dtype: 'uint16', size: 2 },
  u4: { dtype: 'uint32', size: 4 },
  u8: { dtype: 'uint64', size: 8 },
  b1: { dtype: 'bool', size: 1 },
};

/** Bytes per element of a float dtype. */
export function npyItemSize(dtype: NpyFloatDtype): number {
  return dtype === 'float16' ? 2 : 4;
}

/**
 * Encodes the header of a C-order little-endian array, byte for byte as `numpy.save` (≥ 1.23) writes it:
 * version 1.0, or 2.0 when the header does not fit in 65535 bytes. The data follows the returned bytes.
 *
 * @example
 *   const header = encodeNpyHeader('float16', [1000, 512]); // 128 bytes
 *   await writeFileAtomic('img_emb_0.npy', Buffer.concat([header, new Uint8Array(halfs.buffer)]));
 */
export function encodeNpyHeader(dtype: NpyFloatDtype, shape: readonly number[]): Uint8Array {
  if (dtype !== 'float16' && dtype !== 'float32') {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected "float16" or "float32" for dtype but received ${String(dtype)}`,
    );
  }
  for (const n of shape) {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        `Expected non-negative integers for shape but received [${shape.join(', ')}]`,
      );
    }
  }
  const descr = dtype === 'float16' ? '<f2' : '<f4';
  const shapeRepr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeRepr}, }`;
  if (shape.length > 0) dict += ' '.repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(shape[0]).length));
  // numpy: hlen = len(dict) + 1 (the '\n'); pad so that magic + version + length field + hlen % 64 == 0.
  const hlenV1 = dict.length + 1;
  let prefix = 10;
  let version = 1;
  let padlen = ARRAY_ALIGN - ((prefix + hlenV1) % ARRAY_ALIGN);
  if (hlenV1 + padlen > 0xffff) {
    prefix = 12;
    version = 2;
    padlen = ARRAY_ALIGN - ((prefix + hlenV1) % ARRAY_ALIGN);
  }
  const headerText = dict + ' '.repeat(padlen) + '\n';
  const out = new Uint8Array(prefix + headerText.length);
  out.set(MAGIC, 0);
  out[6] = version;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, headerText.length, true);
  else view.setUint32(8, headerText.length, true);
  for (let i = 0; i < headerText.length; i++) out[prefix + i] = headerText.charCodeAt(i);
  return out;
}

/**
 * How many bytes the header of an npy file takes (magic to the end of the dict), read from its first 12
 * bytes. Lets a range reader fetch exactly the header.
 *
 * @example
 *   const first = await storage.readRange(url, 0, 12);
 *   const header = parseNpyHeader(await storage.readRange(url, 0, npyHeaderSize(first, url)), url);
 */
export function npyHeaderSize(prefix: Uint8Array, source: string): number {
  if (prefix.length < 10) throw truncated(source, 10, prefix.length);
  checkMagic(prefix, source);
  const major = prefix[6]!;
  if (major === 1) return 10 + (prefix[8]! | (prefix[9]! << 8));
  if (major === 2 || major === 3) {
    if (prefix.length < 12) throw truncated(source, 12, prefix.length);
    return 12 + new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength).getUint32(8, true);
  }
  throw new GlimpseError(
    'GLIMPSE_E_NPY_INVALID',
    `Expected npy format version 1, 2 or 3 in ${source} but received version ${major}.${prefix[7]!}`,
    { details: { source } },
  );
}

/**
 * Parses an npy header (versions 1.0, 2.0, 3.0) from the first bytes of a file (at least the header).
 * Any simple dtype is recognised; use assertEmbeddingNpy to accept only what the reader reads.
 *
 * @example
 *   const h = parseNpyHeader(bytes, 'img_emb/img_emb_0.npy');
 *   // { dtype: 'float16', shape: [1000, 512], fortranOrder: false, headerLength: 128, bytesPerItem: 2, ... }
 */
export function parseNpyHeader(bytes: Uint8Array, source: string): NpyHeader {
  const headerLength = npyHeaderSize(bytes, source);
  if (bytes.length < headerLength) throw truncated(source, headerLength, bytes.length);
  const major = bytes[6]!;
  const minor = bytes[7]!;
  const start = major === 1 ? 10 : 12;
  const body = bytes.subarray(start, headerLength);
  const text = major === 3 ? new TextDecoder('utf-8').decode(body) : latin1(body);

  const invalid = (why: string): GlimpseError =>
    new GlimpseError('GLIMPSE_E_NPY_INVALID', `Expected a valid npy header in ${source} but ${why}`, {
      details: { source, header: text.slice(0, 200) },
    });

  const trimmed = text.trim();
  if (!trimmed.startsWith('{') || !trimmed.endsWith('}')) throw invalid('it is not a dict literal');
  const descrMatch = /['"]descr['"]\s*:\s*(?:'([^']*)'|"([^"]*)"|(\[))/.exec(trimmed);
  const orderMatch = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(trimmed);
  const shapeMatch = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(trimmed);
  if (!descrMatch) throw invalid("it has no 'descr'");
  if (!orderMatch) throw invalid("it has no 'fortran_order'");
  if (!shapeMatch) throw invalid("it has no 'shape'");

  const shape: number[] = [];
  for (const part of shapeMatch[1]!.split(',')) {
    const p = part.trim().replace(/L$/, '');
    if (p === '') continue;
    if (!/^\d+$/.test(p))
      throw invalid(`its shape has a non-integer dimension ${JSON.stringify(part.trim())}`);
    const n = Number(p);
    if (!Number.isSafeInteger(n)) throw invalid(`its shape dimension ${p} is too large`);
    shape.push(n);
  }

  if (descrMatch[3] !== undefined) {
    throw new GlimpseError(
      'GLIMPSE_E_NPY_UNSUPPORTED',
      `Expected a simple dtype such as '<f2' in ${source} but received a structured dtype`,
      { details: { source } },
    );
  }
  const descr = (descrMatch[1] ?? descrMatch[2])!;
  const order = descr[0];
  const known = DESCR[descr.slice(1)];
  const bigEndian = order === '>' && known !== undefined && known.size > 1;
  if (known === undefined || !['<', '>', '|', '='].includes(order ?? '') || bigEndian) {
    throw new GlimpseError(
      'GLIMPSE_E_NPY_UNSUPPORTED',
      `Expected a little-endian numeric dtype such as '<f2' or '<f4' in ${source} but received '${descr}'`,
      { details: { source, descr } },
    );
  }
  const elements = shape.reduce((a, b) => a * b, 1);
  const bytesPerRow = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) * known.size : known.size;
  return {
    dtype: known.dtype,
    descr,
    shape,
    fortranOrder: orderMatch[1] === 'True',
    headerLength,
    bytesPerItem: known.size,
    bytesPerRow,
    dataLength: elements * known.size,
    version: [major, minor],
  };
}

/**
 * Throws GLIMPSE_E_NPY_UNSUPPORTED unless the header describes a C-order 2-D float16/float32 matrix, and
 * GLIMPSE_E_NPY_INVALID when `fileSize` (if given) is smaller than header + data (a truncated file).
 *
 * @example
 *   const h = parseNpyHeader(bytes, url);
 *   assertEmbeddingNpy(h, url, size); // h.shape is now [n, d]
 */
export function assertEmbeddingNpy(
  header: NpyHeader,
  source: string,
  fileSize?: number,
): asserts header is EmbeddingNpyHeader {
  if (header.dtype !== 'float16' && header.dtype !== 'float32') {
    throw new GlimpseError(
      'GLIMPSE_E_NPY_UNSUPPORTED',
      `Expected dtype float16 ('<f2') or float32 ('<f4') in ${source} but received '${header.descr}' (${header.dtype})`,
      { details: { source, descr: header.descr } },
    );
  }
  if (header.fortranOrder) {
    throw new GlimpseError(
      'GLIMPSE_E_NPY_UNSUPPORTED',
      `Expected a C-order array in ${source} but received fortran_order True`,
      { details: { source } },
    );
  }
  if (header.shape.length !== 2) {
    throw new GlimpseError(
      'GLIMPSE_E_NPY_UNSUPPORTED',
      `Expected a 2-D array (n, d) in ${source} but received shape (${header.shape.join(', ')})`,
      { details: { source, shape: header.shape } },
    );
  }
  if (fileSize !== undefined && fileSize < header.headerLength + header.dataLength) {
    throw new GlimpseError(
      'GLIMPSE_E_NPY_INVALID',
      `Expected ${header.headerLength + header.dataLength} bytes in ${source} (shape (${header.shape.join(', ')}), ${header.dtype}) but the file has ${fileSize}: it is truncated`,
      { details: { source, expected: header.headerLength + header.dataLength, actual: fileSize } },
    );
  }
}

function checkMagic(bytes: Uint8Array, source: string): void {
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) {
      throw new GlimpseError(
        'GLIMPSE_E_NPY_INVALID',
        `Expected the npy magic \\x93NUMPY at the start of ${source} but it is not there`,
        { details: { source } },
      );
    }
  }
}

function truncated(source: string, expected: number, actual: number): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_NPY_INVALID',
    `Expected at least ${expected} header bytes in ${source} but received ${actual}: the file is truncated`,
    { details: { source, expected, actual } },
  );
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode(...bytes.subarray(i, Math.min(bytes.length, i + 4096)));
  }
  return s;
}

/**
 * Converts float32 values to IEEE binary16 bits with round-to-nearest-even, exactly as NumPy's
 * `astype(np.float16)` does (subnormals, ±inf, NaN and overflow to ±inf included).
 *
 * @example
 *   const halfs = float32ToFloat16(new Float32Array([1, 0.1, 65520])); // Uint16Array [0x3c00, 0x2e66, 0x7c00]
 */
export function float32ToFloat16(src: Float32Array, dst?: Uint16Array): Uint16Array {
  const n = src.length;
  const out = dst ?? new Uint16Array(n);
  if (out.length < n) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected a dst of length at least ${n} for float32ToFloat16 but received length ${out.length}`,
    );
  }
  const bits = new Uint32Array(src.buffer, src.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const f = bits[i]!;
    const sign = (f >>> 16) & 0x8000;
    const fExp = f & 0x7f800000;
    if (fExp >= 0x47800000) {
      // Overflow, inf or NaN.
      const fSig = f & 0x007fffff;
      if (fExp === 0x7f800000 && fSig !== 0) {
        let h = 0x7c00 + (fSig >>> 13);
        if (h === 0x7c00) h++; // keep it a NaN
        out[i] = sign | h;
      } else {
        out[i] = sign | 0x7c00;
      }
    } else if (fExp <= 0x38000000) {
      // Subnormal half or signed zero.
      if (fExp < 0x33000000) {
        out[i] = sign;
      } else {
        const e = fExp >>> 23;
        let sig = (0x00800000 + (f & 0x007fffff)) >>> (113 - e);
        if ((sig & 0x3fff) !== 0x1000 || (f & 0x7ff) !== 0) sig += 0x1000;
        out[i] = sign | (sig >>> 13);
      }
    } else {
      let sig = f & 0x007fffff;
      if ((sig & 0x3fff) !== 0x1000) sig += 0x1000;
      // A carry out of the significand increments the exponent (to inf at worst): the right answer.
      out[i] = sign | (((fExp - 0x38000000) >>> 13) + (sig >>> 13));
    }
  }
  return out;
}

let halfTable: Uint32Array | undefined;

/** float32 bits of every float16 value (256 KiB, built on first use). */
function halfToFloatTable(): Uint32Array {
  if (halfTable) return halfTable;
  const t = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    let sig = h & 0x3ff;
    if (exp === 0x1f) {
      t[h] = sign | 0x7f800000 | (sig << 13);
    } else if (exp === 0) {
      if (sig === 0) {
        t[h] = sign;
      } else {
        // Subnormal half: normalise.
        let e = 113;
        while ((sig & 0x400) === 0) {
          sig <<= 1;
          e--;
        }
        t[h] = (sign | (e << 23) | ((sig & 0x3ff) << 13)) >>> 0;
      }
    } else {
      t[h] = (sign | ((exp + 112) << 23) | (sig << 13)) >>> 0;
    }
  }
  halfTable = t;
  return t;
}

/**
 * Converts IEEE binary16 bits to float32 values (exact: every half is a float32; NaN payloads kept).
 *
 * @example
 *   float16ToFloat32(new Uint16Array([0x3c00, 0xc000])); // Float32Array [1, -2]
 */
export function float16ToFloat32(src: Uint16Array, dst?: Float32Array): Float32Array {
  const n = src.length;
  const out = dst ?? new Float32Array(n);
  if (out.length < n) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected a dst of length at least ${n} for float16ToFloat32 but received length ${out.length}`,
    );
  }
  const table = halfToFloatTable();
  const bits = new Uint32Array(out.buffer, out.byteOffset, n);
  for (let i = 0; i < n; i++) bits[i] = table[src[i]!]!;
  return out;
}

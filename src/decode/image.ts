/**
 * Image decoding: any format sharp/libvips reads (JPEG, PNG, WebP, AVIF/HEIF, GIF, TIFF, …), from a path or
 * bytes, into upright 8-bit RGB pixels. The only module that imports sharp.
 *
 * What comes out matches what Pillow's `Image.open(p)` + `.convert('RGB')` gives, byte for byte, with one
 * deliberate improvement: the EXIF orientation is applied first (as `ImageOps.exif_transpose` does), so
 * photos are seen upright. In detail:
 * - embedded ICC profiles are ignored, as Pillow ignores them (`ignoreIcc`);
 * - CMYK is decoded to raw CMYK (no colour management) and converted with Pillow's `cmyk2rgb` formula;
 * - alpha is dropped, not blended (Pillow's `convert('RGB')` of RGBA / LA / P-with-transparency);
 * - greyscale is replicated to three channels, 16-bit samples keep their high byte (Pillow's `RGB;16B`);
 * - animated images give their first frame;
 * - no JPEG shrink-on-load unless a resize is asked for (`resizeTo`, the fast mode);
 * - truncated or corrupt pixel data fails (`failOn: 'error'`) rather than coming back partly grey.
 */
import { stat, readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { describeValue, invalidParameterError } from '../core/validate.js';
import { SkipItemError, type ErrorCode } from '../errors/index.js';
import type { ResampleFilter } from '../models/types.js';

/** sharp's own default for `limitInputPixels` (0x3FFF × 0x3FFF). */
export const DEFAULT_MAX_PIXELS = 268402689;
/** Default byte limit of one image file: 64 MiB. */
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

/** Safe limits for untrusted images. */
export interface ImageLimits {
  /** Most pixels (width × height) an image may have; default 268402689, like sharp. `Infinity`: no limit. */
  readonly maxPixels?: number;
  /** Most bytes an image file may have; default 64 MiB. `Infinity`: no limit. */
  readonly maxBytes?: number;
}

export interface DecodeImageOptions extends ImageLimits {
  /**
   * Fast mode: have libvips resize while decoding (JPEG shrink-on-load included, keeping a factor of 2 for the
   * cubic kernel). Called with the upright size, returns the size wanted. Only reductions of opaque, non-CMYK
   * images are handed to libvips (it would resize CMYK before converting, and alpha premultiplied); otherwise
   * the full image comes back and the caller resizes. Not bit-exact with Pillow; see docs/preprocessing.md.
   */
  readonly resizeTo?: (width: number, height: number) => { width: number; height: number };
  /** Kernel for `resizeTo` (default bicubic: libvips' Catmull-Rom cubic). */
  readonly kernel?: ResampleFilter;
}

/** Upright 8-bit RGB pixels, interleaved (HWC), rows packed. */
export interface DecodedImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly channels: 3;
}

const KERNELS: Readonly<Record<ResampleFilter, 'cubic' | 'linear' | 'nearest'>> = {
  bicubic: 'cubic',
  bilinear: 'linear',
  nearest: 'nearest',
};

/**
 * Decodes an image file or its bytes into upright 8-bit RGB. Throws `SkipItemError` with
 * `GLIMPSE_E_IMAGE_UNREADABLE` (path cannot be read), `GLIMPSE_E_IMAGE_TOO_LARGE` (bytes over `maxBytes`),
 * `GLIMPSE_E_IMAGE_TOO_MANY_PIXELS` (over `maxPixels`) or `GLIMPSE_E_IMAGE_DECODE_FAILED` (corrupt, truncated,
 * empty or not an image).
 *
 * @example
 *   const img = await decodeImage('photos/cat.jpg');
 *   img.data.length === img.width * img.height * 3; // true
 */
export async function decodeImage(
  input: string | Uint8Array,
  options: DecodeImageOptions = {},
): Promise<DecodedImage> {
  const maxPixels = checkLimit('maxPixels', options.maxPixels, DEFAULT_MAX_PIXELS);
  const maxBytes = checkLimit('maxBytes', options.maxBytes, DEFAULT_MAX_BYTES);
  const path = typeof input === 'string' ? input : undefined;
  const bytes = await readInput(input, maxBytes);
  const where = path === undefined ? '' : ` (${path})`;
  const details = path === undefined ? { bytes: bytes.length } : { path, bytes: bytes.length };

  if (bytes.length === 0) {
    throw new SkipItemError(
      'GLIMPSE_E_IMAGE_DECODE_FAILED',
      `Expected image data but received 0 bytes${where}`,
      {
        details,
      },
    );
  }
  const fail = (code: ErrorCode, message: string, cause?: unknown): SkipItemError =>
    new SkipItemError(code, message + where, { cause, details });

  try {
    const image = sharp(bytes, {
      failOn: 'error',
      limitInputPixels: Number.isFinite(maxPixels) ? maxPixels : false,
      autoOrient: true,
      ignoreIcc: true,
      sequentialRead: true,
      pages: 1,
    });
    const meta = await image.metadata();
    const width = meta.width;
    const height = meta.height;
    if (width * height > maxPixels) {
      throw fail(
        'GLIMPSE_E_IMAGE_TOO_MANY_PIXELS',
        `Expected an image of at most ${maxPixels} pixels but received ${width}×${height} = ${width * height} pixels`,
      );
    }
    const upright = (meta.orientation ?? 1) >= 5 ? { width: height, height: width } : { width, height };
    const cmyk = meta.space === 'cmyk';
    if (options.resizeTo !== undefined) {
      const size = options.resizeTo(upright.width, upright.height);
      // libvips would resize CMYK before converting and alpha premultiplied; upscaling gains nothing.
      const reduces = size.width <= upright.width && size.height <= upright.height;
      if (reduces && !cmyk && meta.hasAlpha !== true) {
        image.resize(size.width, size.height, {
          fit: 'fill',
          kernel: KERNELS[options.kernel ?? 'bicubic'],
          // Shrink-on-load only while leaving a factor of 2 for the kernel: MAD 0.74 instead of 2.0 (uint8 levels)
          // on a 6 MP JPEG, 0.15 instead of 2.8 on a WebP (libwebp's own scaler).
          fastShrinkOnLoad: false,
        });
      }
    }
    if (cmyk) {
      // Raw CMYK (no colour management, libjpeg's Adobe inversion undone by libvips), converted below as Pillow does.
      image.pipelineColourspace('cmyk').toColourspace('cmyk');
    } else {
      image.removeAlpha().toColourspace('srgb');
    }
    const { data, info } = await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    const pixels = cmyk ? cmykToRgb(data, info.width * info.height, info.channels) : data;
    if (!cmyk && info.channels !== 3) {
      throw fail(
        'GLIMPSE_E_IMAGE_DECODE_FAILED',
        `Expected the image to decode to 3 channels but received ${info.channels} (colour space ${String(meta.space)})`,
      );
    }
    return { data: pixels, width: info.width, height: info.height, channels: 3 };
  } catch (err) {
    if (err instanceof SkipItemError) throw err;
    const text = err instanceof Error ? err.message : String(err);
    if (/pixel limit/i.test(text)) {
      // sharp checks the header before metadata() returns: read the size again, unlimited, for the message.
      const size = await sharp(bytes, { limitInputPixels: false })
        .metadata()
        .then((m) => `${m.width}×${m.height} = ${m.width * m.height} pixels`)
        .catch(() => 'more');
      throw fail(
        'GLIMPSE_E_IMAGE_TOO_MANY_PIXELS',
        `Expected an image of at most ${maxPixels} pixels but received ${size}`,
        err,
      );
    }
    throw fail(
      'GLIMPSE_E_IMAGE_DECODE_FAILED',
      `Expected a complete image in a format sharp reads (JPEG, PNG, WebP, AVIF, GIF, TIFF, …) but decoding failed: ${firstLine(text)}`,
      err,
    );
  }
}

/**
 * Pillow's `cmyk2rgb` (libImaging/Convert.c): `nk = 255 - k; out = clip8(nk - muldiv255(c, nk))`.
 *
 * @example
 *   cmykToRgb(Uint8Array.of(0, 255, 255, 0), 1, 4); // Uint8Array [255, 0, 0]
 */
export function cmykToRgb(cmyk: Uint8Array, pixels: number, channels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let i = 0, p = 0, o = 0; i < pixels; i++, p += channels, o += 3) {
    const nk = 255 - (cmyk[p + 3] as number);
    for (let c = 0; c < 3; c++) {
      const t = (cmyk[p + c] as number) * nk + 128;
      const v = nk - (((t >> 8) + t) >> 8);
      out[o + c] = v < 0 ? 0 : v;
    }
  }
  return out;
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

function checkLimit(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0) || (Number.isFinite(value) && !Number.isInteger(value))) {
    throw invalidParameterError(name, 'a positive integer or Infinity', value);
  }
  return value;
}

async function readInput(input: string | Uint8Array, maxBytes: number): Promise<Uint8Array> {
  if (input instanceof Uint8Array) {
    if (input.length > maxBytes) {
      throw new SkipItemError(
        'GLIMPSE_E_IMAGE_TOO_LARGE',
        `Expected an image of at most ${maxBytes} bytes but received ${input.length} bytes`,
        { details: { bytes: input.length } },
      );
    }
    return input;
  }
  if (typeof input !== 'string' || input === '') {
    throw invalidParameterError('input', 'a file path or a Uint8Array of image bytes', input);
  }
  const unreadable = (reason: string, cause?: unknown): SkipItemError =>
    new SkipItemError(
      'GLIMPSE_E_IMAGE_UNREADABLE',
      `Expected a readable image file at ${input} but ${reason}`,
      {
        cause,
        details: { path: input },
      },
    );
  let size: number;
  try {
    const st = await stat(input);
    if (!st.isFile()) throw unreadable('it is not a regular file');
    size = st.size;
  } catch (err) {
    if (err instanceof SkipItemError) throw err;
    throw unreadable(`it cannot be read: ${errorText(err)}`, err);
  }
  const tooLarge = (bytes: number): SkipItemError =>
    new SkipItemError(
      'GLIMPSE_E_IMAGE_TOO_LARGE',
      `Expected an image of at most ${maxBytes} bytes but received ${bytes} bytes (${input})`,
      { details: { path: input, bytes } },
    );
  if (size > maxBytes) throw tooLarge(size);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(input);
  } catch (err) {
    throw unreadable(`it cannot be read: ${errorText(err)}`, err);
  }
  if (bytes.length > maxBytes) throw tooLarge(bytes.length);
  return bytes;
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === undefined ? err.message : `${code} (${err.message})`;
  }
  return describeValue(err);
}

/**
 * CLIP image preprocessing driven by a `PreprocessConfig`, matching OpenAI CLIP's torchvision transform on
 * PIL images: `Resize(shortestEdge, BICUBIC)` → `CenterCrop(crop)` → `convert('RGB')` → `ToTensor()` →
 * `Normalize(mean, std)`.
 *
 * The work is split so that worker threads can pass small uint8 crops around and fill a batch tensor in
 * place: `preprocessToCrop` (decode + resize + crop → HWC uint8) and `normalizeCrop` (HWC uint8 → CHW float32,
 * written at an offset of a batch buffer). `preprocessImage` does both for one image.
 *
 * Modes: `'exact'` (default) resizes with the port of Pillow's resampler in resample.ts and is bit-exact with
 * the Python reference for ordinary photos; `'fast'` lets libvips resize while decoding (JPEG shrink-on-load),
 * which is faster and close but not equal (the measured difference is in docs/preprocessing.md). Upscaled,
 * alpha and CMYK images are resized exactly in both modes.
 */
import { assertOneOf, assertPositiveInteger, invalidParameterError } from '../core/validate.js';
import type { PreprocessConfig } from '../models/types.js';
import { decodeImage, type ImageLimits } from './image.js';
import { resample } from './resample.js';

/** `'exact'`: Pillow-exact resize in JS; `'fast'`: libvips resizes while decoding. */
export type PreprocessMode = 'exact' | 'fast';
export const PREPROCESS_MODES: readonly PreprocessMode[] = ['exact', 'fast'];

export interface PreprocessOptions extends ImageLimits {
  /** Default `'exact'`. */
  readonly mode?: PreprocessMode;
}

/** The geometry of resize + centre crop for one image. */
export interface ResizeAndCrop {
  /** Size after the resize step (the input size when `doResize` is false). */
  readonly resizedWidth: number;
  readonly resizedHeight: number;
  /**
   * The crop window in resized-image pixels. `cropLeft`/`cropTop` are negative when the crop is larger than
   * the image: torchvision pads with zeros first (`(crop - size) // 2` on the left/top), and so do we.
   */
  readonly cropLeft: number;
  readonly cropTop: number;
  readonly cropWidth: number;
  readonly cropHeight: number;
}

/** A uint8 RGB crop, interleaved (HWC): what travels between worker threads. */
export interface ImageCrop {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/**
 * torchvision's geometry: `Resize(int)` makes the short side `shortestEdge` and the long side
 * `int(shortestEdge * long / short)` (truncated); `CenterCrop` takes offsets `int(round((size - crop) / 2.0))`
 * with Python's round-half-to-even, after zero-padding an image smaller than the crop.
 *
 * @example
 *   computeResizeAndCrop(640, 480, clipConfig);
 *   // { resizedWidth: 298, resizedHeight: 224, cropLeft: 37, cropTop: 0, cropWidth: 224, cropHeight: 224 }
 */
export function computeResizeAndCrop(width: number, height: number, cfg: PreprocessConfig): ResizeAndCrop {
  assertPositiveInteger('width', width);
  assertPositiveInteger('height', height);
  let resizedWidth = width;
  let resizedHeight = height;
  if (cfg.doResize) {
    assertPositiveInteger('shortestEdge', cfg.shortestEdge);
    const size = cfg.shortestEdge;
    if (width <= height) {
      resizedWidth = size;
      resizedHeight = Math.trunc((size * height) / width);
    } else {
      resizedHeight = size;
      resizedWidth = Math.trunc((size * width) / height);
    }
  }
  if (!cfg.doCenterCrop) {
    return {
      resizedWidth,
      resizedHeight,
      cropLeft: 0,
      cropTop: 0,
      cropWidth: resizedWidth,
      cropHeight: resizedHeight,
    };
  }
  assertPositiveInteger('cropWidth', cfg.cropWidth);
  assertPositiveInteger('cropHeight', cfg.cropHeight);
  return {
    resizedWidth,
    resizedHeight,
    cropLeft: cropOffset(resizedWidth, cfg.cropWidth),
    cropTop: cropOffset(resizedHeight, cfg.cropHeight),
    cropWidth: cfg.cropWidth,
    cropHeight: cfg.cropHeight,
  };
}

/** torchvision's center_crop offset along one axis, in unpadded coordinates. */
function cropOffset(size: number, crop: number): number {
  // Padded: left padding is (crop - size) // 2 and the padded size equals crop, so the offset is -padding.
  if (crop > size) return -Math.floor((crop - size) / 2);
  return roundHalfEven((size - crop) / 2.0);
}

/** Python 3's `round()` for a float: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Decodes an image (path or bytes), resizes and centre-crops it: HWC uint8 RGB, `cropHeight × cropWidth`.
 * Throws `SkipItemError` for unreadable, too large or undecodable images (see decodeImage).
 *
 * @example
 *   const crop = await preprocessToCrop('cat.jpg', model.preprocess);
 *   crop.data.length; // 224 * 224 * 3
 */
export async function preprocessToCrop(
  input: string | Uint8Array,
  cfg: PreprocessConfig,
  options: PreprocessOptions = {},
): Promise<ImageCrop> {
  const mode = options.mode ?? 'exact';
  assertOneOf('mode', mode, PREPROCESS_MODES);
  const limits: ImageLimits = { maxPixels: options.maxPixels, maxBytes: options.maxBytes };
  let geometry: ResizeAndCrop | undefined;
  const image = await decodeImage(
    input,
    mode === 'fast' && cfg.doResize
      ? {
          ...limits,
          kernel: cfg.resample,
          resizeTo: (w, h) => {
            geometry = computeResizeAndCrop(w, h, cfg);
            return { width: geometry.resizedWidth, height: geometry.resizedHeight };
          },
        }
      : limits,
  );
  if (geometry === undefined) geometry = computeResizeAndCrop(image.width, image.height, cfg);
  return resizeAndCrop(image, geometry, cfg);
}

/** Resample (when the decoded size differs from the resized size) only the part of the image the crop keeps. */
function resizeAndCrop(
  image: { data: Uint8Array; width: number; height: number },
  g: ResizeAndCrop,
  cfg: PreprocessConfig,
): ImageCrop {
  const out = new Uint8Array(g.cropWidth * g.cropHeight * 3);
  const left = Math.max(0, g.cropLeft);
  const top = Math.max(0, g.cropTop);
  const right = Math.min(g.resizedWidth, g.cropLeft + g.cropWidth);
  const bottom = Math.min(g.resizedHeight, g.cropTop + g.cropHeight);
  const stride = g.cropWidth * 3;
  resample(
    { data: image.data, width: image.width, height: image.height, channels: 3 },
    g.resizedWidth,
    g.resizedHeight,
    cfg.resample,
    { left, top, width: right - left, height: bottom - top },
    { data: out, offset: (top - g.cropTop) * stride + (left - g.cropLeft) * 3, stride },
  );
  return { data: out, width: g.cropWidth, height: g.cropHeight };
}

const LUTS = new WeakMap<PreprocessConfig, Float32Array>();

/**
 * Per channel, the float32 value of each uint8 level: ToTensor (`float32(x) / 255` in float32) then Normalize
 * (`(x - mean) / std`, each step rounded to float32), exactly as torchvision computes them.
 */
function normalizeTable(cfg: PreprocessConfig): Float32Array {
  let lut = LUTS.get(cfg);
  if (lut !== undefined) return lut;
  lut = new Float32Array(3 * 256);
  const f = Math.fround;
  const byDivision = Math.abs(cfg.rescaleFactor * 255 - 1) < 1e-12;
  const factor = f(cfg.rescaleFactor);
  for (let c = 0; c < 3; c++) {
    const mean = f(cfg.imageMean[c] as number);
    const std = f(cfg.imageStd[c] as number);
    for (let x = 0; x < 256; x++) {
      // Double arithmetic on float32 operands, rounded once, is the float32 operation (+, -, *, /).
      let v = x;
      if (cfg.doRescale) v = byDivision ? f(x / 255) : f(x * factor);
      if (cfg.doNormalize) v = f(f(v - mean) / std);
      lut[c * 256 + x] = v;
    }
  }
  LUTS.set(cfg, lut);
  return lut;
}

/**
 * HWC uint8 crop → CHW float32, rescaled and normalized as torchvision does in float32. Writes into `out` at
 * `offset` (in elements) when given, so a `[batch, 3, H, W]` tensor is filled without copies.
 *
 * @example
 *   const batch = new Float32Array(crops.length * 3 * 224 * 224);
 *   crops.forEach((crop, i) => normalizeCrop(crop, cfg, batch, i * 3 * 224 * 224));
 */
export function normalizeCrop(
  crop: ImageCrop,
  cfg: PreprocessConfig,
  out?: Float32Array,
  offset = 0,
): Float32Array {
  const plane = crop.width * crop.height;
  if (crop.data.length !== plane * 3) {
    throw invalidParameterError(
      'crop.data',
      `${plane * 3} bytes (${crop.width}×${crop.height}×3)`,
      crop.data.length,
    );
  }
  const target = out ?? new Float32Array(plane * 3);
  if (!Number.isInteger(offset) || offset < 0 || offset + plane * 3 > target.length) {
    throw invalidParameterError('offset', `an integer from 0 to ${target.length - plane * 3}`, offset);
  }
  const lut = normalizeTable(cfg);
  const data = crop.data;
  const g = offset + plane;
  const b = offset + 2 * plane;
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    target[offset + i] = lut[data[p] as number] as number;
    target[g + i] = lut[256 + (data[p + 1] as number)] as number;
    target[b + i] = lut[512 + (data[p + 2] as number)] as number;
  }
  return target;
}

/**
 * Decode + resize + crop + normalize one image: a `[3, cropHeight, cropWidth]` float32 tensor (CHW).
 *
 * @example
 *   const pixels = await preprocessImage('cat.jpg', model.preprocess); // Float32Array(3 * 224 * 224)
 */
export async function preprocessImage(
  input: string | Uint8Array,
  cfg: PreprocessConfig,
  options: PreprocessOptions = {},
): Promise<Float32Array> {
  return normalizeCrop(await preprocessToCrop(input, cfg, options), cfg);
}

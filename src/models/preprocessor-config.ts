/**
 * Parses `preprocessor_config.json` into a frozen PreprocessConfig. Two formats exist in the wild:
 *
 * - CLIPImageProcessor (current): `size: {shortest_edge: 224}`, `crop_size: {height: 224, width: 224}`,
 *   `do_rescale`, `rescale_factor`, `do_convert_rgb`.
 * - CLIPFeatureExtractor (older exports): `size: 224`, `crop_size: 224`, no rescale fields (it always
 *   divided by 255, so missing rescale fields mean rescale by 1/255).
 *
 * Every field is optional with the CLIP defaults (those of transformers' CLIPImageProcessor); a field
 * that is present but wrong is a coded error naming the file, the field, what was expected and what was
 * received.
 */
import { GlimpseError } from '../errors/index.js';
import { describeValue, isPlainObject } from '../core/validate.js';
import type { PreprocessConfig, ResampleFilter } from './types.js';

/** OpenAI CLIP's normalisation (transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD). */
export const OPENAI_CLIP_MEAN: readonly [number, number, number] = Object.freeze([
  0.48145466, 0.4578275, 0.40821073,
]) as readonly [number, number, number];
export const OPENAI_CLIP_STD: readonly [number, number, number] = Object.freeze([
  0.26862954, 0.26130258, 0.27577711,
]) as readonly [number, number, number];

/**
 * openai/clip-vit-base-patch32's preprocessing (its preprocessor_config.json, parsed): resize the shortest
 * edge to 224 (bicubic), centre crop 224×224, rescale by 1/255, normalise with OpenAI's mean and std.
 */
export const OPENAI_CLIP_PREPROCESS: PreprocessConfig = Object.freeze({
  doResize: true,
  shortestEdge: 224,
  resample: 'bicubic',
  doCenterCrop: true,
  cropHeight: 224,
  cropWidth: 224,
  doRescale: true,
  rescaleFactor: 1 / 255,
  doNormalize: true,
  imageMean: OPENAI_CLIP_MEAN,
  imageStd: OPENAI_CLIP_STD,
  doConvertRgb: true,
});

/** PIL resampling numbers glimpse implements. */
const RESAMPLE: Readonly<Record<number, ResampleFilter>> = { 0: 'nearest', 2: 'bilinear', 3: 'bicubic' };
/** PIL numbers that exist but are not implemented (named in the error). */
const UNSUPPORTED_RESAMPLE: Readonly<Record<number, string>> = { 1: 'lanczos', 4: 'box', 5: 'hamming' };

/** Largest image side accepted for resize/crop targets: a guard against absurd configs. */
const MAX_SIDE = 8192;

/**
 * Validates a parsed `preprocessor_config.json` (`json`) and returns the frozen settings; `source`
 * names the file in error messages.
 *
 * @example
 *   const pre = parsePreprocessorConfig(JSON.parse(text), '/models/clip/preprocessor_config.json');
 *   pre.shortestEdge; // 224
 *   pre.resample; // 'bicubic'
 */
export function parsePreprocessorConfig(json: unknown, source: string): PreprocessConfig {
  if (!isPlainObject(json)) throw invalidField(source, '(top level)', 'a JSON object', json);

  const doResize = readBoolean(json, 'do_resize', true, source);
  const shortestEdge = readResizeSize(json, source);
  const resample = readResample(json, source);
  const doCenterCrop = readBoolean(json, 'do_center_crop', true, source);
  const { cropHeight, cropWidth } = readCropSize(json, source, shortestEdge);
  const doRescale = readBoolean(json, 'do_rescale', true, source);
  const rescaleFactor = readPositiveNumber(json, 'rescale_factor', 1 / 255, source);
  const doNormalize = readBoolean(json, 'do_normalize', true, source);
  const imageMean = readTriple(json, 'image_mean', OPENAI_CLIP_MEAN, source, false);
  const imageStd = readTriple(json, 'image_std', OPENAI_CLIP_STD, source, true);
  const doConvertRgb = readBoolean(json, 'do_convert_rgb', true, source);

  return Object.freeze({
    doResize,
    shortestEdge,
    resample,
    doCenterCrop,
    cropHeight,
    cropWidth,
    doRescale,
    rescaleFactor,
    doNormalize,
    imageMean: Object.freeze([...imageMean]) as readonly [number, number, number],
    imageStd: Object.freeze([...imageStd]) as readonly [number, number, number],
    doConvertRgb,
  });
}

/** The standard message: `Expected <expected> for <field> in <file> but received <value> of type <type>`. */
function invalidField(source: string, field: string, expected: string, actual: unknown): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_MODEL_CONFIG_INVALID',
    `Expected ${expected} for ${field} in ${source} but received ${describeValue(actual)}`,
    { details: { file: source, field } },
  );
}

function unsupported(
  source: string,
  field: string,
  expected: string,
  actual: unknown,
  note = '',
): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_MODEL_PREPROCESS_UNSUPPORTED',
    `Expected ${expected} for ${field} in ${source} but received ${describeValue(actual)}${note}`,
    { details: { file: source, field } },
  );
}

function readBoolean(obj: Record<string, unknown>, key: string, fallback: boolean, source: string): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw invalidField(source, key, 'true or false', v);
  return v;
}

function readPositiveNumber(
  obj: Record<string, unknown>,
  key: string,
  fallback: number,
  source: string,
): number {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw invalidField(source, key, 'a positive number', v);
  }
  return v;
}

function isSide(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= MAX_SIDE;
}

const SIDE = `an integer from 1 to ${MAX_SIDE}`;

/** `size`: 224 (feature extractor), {shortest_edge: 224} (image processor); {height, width} is unsupported. */
function readResizeSize(obj: Record<string, unknown>, source: string): number {
  const v = obj['size'];
  if (v === undefined || v === null) return 224;
  if (typeof v === 'number') {
    if (!isSide(v)) throw invalidField(source, 'size', SIDE, v);
    return v;
  }
  if (!isPlainObject(v)) throw invalidField(source, 'size', `${SIDE} or {"shortest_edge": n}`, v);
  if ('shortest_edge' in v) {
    const edge = v['shortest_edge'];
    if (!isSide(edge)) throw invalidField(source, 'size.shortest_edge', SIDE, edge);
    if ('longest_edge' in v && v['longest_edge'] !== null && v['longest_edge'] !== undefined) {
      throw unsupported(
        source,
        'size.longest_edge',
        'no longest_edge limit (shortest-edge resizing only)',
        v['longest_edge'],
      );
    }
    return edge;
  }
  if ('height' in v || 'width' in v) {
    throw unsupported(
      source,
      'size',
      'shortest-edge resizing ({"shortest_edge": n}); fixed-size resizing ({"height", "width"}) is not supported',
      v,
    );
  }
  throw invalidField(source, 'size', `${SIDE} or {"shortest_edge": n}`, v);
}

function readResample(obj: Record<string, unknown>, source: string): ResampleFilter {
  const v = obj['resample'];
  if (v === undefined || v === null) return 'bicubic';
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw invalidField(source, 'resample', 'a PIL resampling number (0 nearest, 2 bilinear, 3 bicubic)', v);
  }
  const filter = RESAMPLE[v];
  if (filter !== undefined) return filter;
  const name = UNSUPPORTED_RESAMPLE[v];
  if (name !== undefined) {
    throw unsupported(
      source,
      'resample',
      '0 (nearest), 2 (bilinear) or 3 (bicubic)',
      v,
      ` (${name}, which glimpse does not implement)`,
    );
  }
  throw invalidField(source, 'resample', 'a PIL resampling number (0 nearest, 2 bilinear, 3 bicubic)', v);
}

/** `crop_size`: 224 (feature extractor) or {height, width}; missing ⇒ square of `size`. */
function readCropSize(
  obj: Record<string, unknown>,
  source: string,
  shortestEdge: number,
): { cropHeight: number; cropWidth: number } {
  const v = obj['crop_size'];
  if (v === undefined || v === null) return { cropHeight: shortestEdge, cropWidth: shortestEdge };
  if (typeof v === 'number') {
    if (!isSide(v)) throw invalidField(source, 'crop_size', SIDE, v);
    return { cropHeight: v, cropWidth: v };
  }
  if (!isPlainObject(v)) throw invalidField(source, 'crop_size', `${SIDE} or {"height": n, "width": n}`, v);
  const h = v['height'];
  const w = v['width'];
  if (!isSide(h)) throw invalidField(source, 'crop_size.height', SIDE, h);
  if (!isSide(w)) throw invalidField(source, 'crop_size.width', SIDE, w);
  return { cropHeight: h, cropWidth: w };
}

function readTriple(
  obj: Record<string, unknown>,
  key: string,
  fallback: readonly [number, number, number],
  source: string,
  positive: boolean,
): readonly [number, number, number] {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  const expected = positive ? 'an array of 3 positive numbers (RGB)' : 'an array of 3 numbers (RGB)';
  if (
    !Array.isArray(v) ||
    v.length !== 3 ||
    !v.every((x: unknown) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0))
  ) {
    throw invalidField(source, key, expected, v);
  }
  return [v[0] as number, v[1] as number, v[2] as number];
}

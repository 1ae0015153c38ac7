/**
 * Loads and validates a model folder in the Hugging Face layout of ONNX CLIP exports:
 *
 * ```
 * config.json                 CLIPConfig: projection_dim, text_config, vision_config
 * preprocessor_config.json    CLIPImageProcessor or CLIPFeatureExtractor
 * tokenizer.json              Hugging Face tokenizers format
 * onnx/vision_model.onnx      fp32   (onnx/vision_model_fp16.onnx fp16, onnx/vision_model_quantized.onnx q8)
 * onnx/text_model.onnx        fp32   (onnx/text_model_fp16.onnx   fp16, onnx/text_model_quantized.onnx   q8)
 * ```
 *
 * An ONNX file may keep its weights in an external data file beside it (`<name>.onnx_data`); such files
 * are part of the fingerprint. ONNX input/output names are checked where sessions are created (infer/).
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { GlimpseError } from '../errors/index.js';
import { describeValue, isPlainObject } from '../core/validate.js';
import { computeFingerprint } from './fingerprint.js';
import { parsePreprocessorConfig } from './preprocessor-config.js';
import { MODEL_DTYPES, type ModelConfig, type ModelDtype, type ModelFolder } from './types.js';

/** The JSON files every model folder has. */
export const MODEL_JSON_FILES: readonly string[] = Object.freeze([
  'config.json',
  'preprocessor_config.json',
  'tokenizer.json',
]);

/** File name suffix of each dtype's ONNX files. */
const DTYPE_SUFFIX: Readonly<Record<ModelDtype, string>> = { fp32: '', fp16: '_fp16', q8: '_quantized' };

/** Metadata file written by the hub cache beside the model files (see hub.ts); gives the default id. */
export const MODEL_META_FILE = '.glimpse-model.json';

/** CLIPTextConfig's defaults for the special token ids. */
export const CLIP_BOS_TOKEN_ID = 49406;
export const CLIP_EOS_TOKEN_ID = 49407;
export const CLIP_PAD_TOKEN_ID = 1;

export interface LoadModelFolderOptions {
  /** Which ONNX files to use (default fp32). */
  readonly dtype?: ModelDtype;
  /** Shown in the fingerprint and outputs (default: the hub id recorded by the cache, else the folder name). */
  readonly id?: string;
}

/**
 * Paths (inside the folder) of the vision and text ONNX files of a dtype.
 *
 * @example
 *   onnxFilesFor('fp16'); // { vision: 'onnx/vision_model_fp16.onnx', text: 'onnx/text_model_fp16.onnx' }
 */
export function onnxFilesFor(dtype: ModelDtype): { readonly vision: string; readonly text: string } {
  const suffix = DTYPE_SUFFIX[dtype];
  return { vision: `onnx/vision_model${suffix}.onnx`, text: `onnx/text_model${suffix}.onnx` };
}

/**
 * Every file a model folder needs for one dtype (external data files not included).
 *
 * @example
 *   requiredModelFiles('q8'); // ['config.json', ..., 'onnx/vision_model_quantized.onnx', 'onnx/text_model_quantized.onnx']
 */
export function requiredModelFiles(dtype: ModelDtype): string[] {
  const onnx = onnxFilesFor(dtype);
  return [...MODEL_JSON_FILES, onnx.vision, onnx.text];
}

/**
 * Loads and validates a model folder: checks the files for the dtype, parses the JSON files, and
 * fingerprints the files that affect the vectors. Nothing is loaded into a runtime.
 *
 * @example
 *   const model = await loadModelFolder('/models/clip-vit-base-patch32', { dtype: 'q8' });
 *   model.config.projectionDim; // 512
 *   model.visionModelPath; // '/models/clip-vit-base-patch32/onnx/vision_model_quantized.onnx'
 */
export async function loadModelFolder(
  dir: string,
  options: LoadModelFolderOptions = {},
): Promise<ModelFolder> {
  const dtype = options.dtype ?? 'fp32';
  if (!(MODEL_DTYPES as readonly string[]).includes(dtype)) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected one of ${MODEL_DTYPES.map((d) => JSON.stringify(d)).join(', ')} for dtype but received ${describeValue(dtype)}`,
    );
  }
  const root = resolve(dir);
  const rootStat = await stat(root).catch(() => undefined);
  if (rootStat === undefined || !rootStat.isDirectory()) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_NOT_FOUND',
      `Expected a model folder at ${root} but ${rootStat === undefined ? 'it does not exist' : 'it is not a folder'}`,
      { details: { path: root } },
    );
  }

  for (const file of MODEL_JSON_FILES) await assertFile(root, file);
  const onnx = onnxFilesFor(dtype);
  const [hasVision, hasText] = await Promise.all([
    isFile(join(root, onnx.vision)),
    isFile(join(root, onnx.text)),
  ]);
  if (!hasVision && !hasText) {
    const present = await listModelDtypes(root);
    if (present.length > 0) {
      throw new GlimpseError(
        'GLIMPSE_E_MODEL_DTYPE_UNAVAILABLE',
        `Expected ${onnx.vision} and ${onnx.text} for dtype ${dtype} in ${root} but they do not exist; dtypes present: ${present.join(', ')}`,
        { details: { path: root, dtype, available: present } },
      );
    }
  }
  await assertFile(root, onnx.vision);
  await assertFile(root, onnx.text);

  const config = parseModelConfig(await readJson(root, 'config.json'), join(root, 'config.json'));
  const preprocessPath = join(root, 'preprocessor_config.json');
  const preprocess = parsePreprocessorConfig(
    await readJson(root, 'preprocessor_config.json'),
    preprocessPath,
  );
  validateTokenizerJson(await readJson(root, 'tokenizer.json'), join(root, 'tokenizer.json'));

  const files = [...MODEL_JSON_FILES, onnx.vision, onnx.text];
  for (const path of [onnx.vision, onnx.text]) {
    if (await isFile(join(root, `${path}_data`))) files.push(`${path}_data`);
  }
  const id = options.id ?? (await readCachedId(root)) ?? basename(root);
  const fingerprint = await computeFingerprint({
    dir: root,
    id,
    dtype,
    files,
    preprocess,
    dimension: config.projectionDim,
  });

  return Object.freeze({
    dir: root,
    id,
    dtype,
    visionModelPath: join(root, onnx.vision),
    textModelPath: join(root, onnx.text),
    tokenizerPath: join(root, 'tokenizer.json'),
    config,
    preprocess,
    fingerprint,
  });
}

/**
 * The dtypes whose vision AND text ONNX files are both in the folder, in MODEL_DTYPES order.
 *
 * @example
 *   await listModelDtypes('/models/clip'); // ['fp32', 'q8']
 */
export async function listModelDtypes(dir: string): Promise<ModelDtype[]> {
  const present: ModelDtype[] = [];
  for (const dtype of MODEL_DTYPES) {
    const onnx = onnxFilesFor(dtype);
    if ((await isFile(join(dir, onnx.vision))) && (await isFile(join(dir, onnx.text)))) present.push(dtype);
  }
  return present;
}

/**
 * Validates a parsed `config.json` (CLIPConfig) and returns what glimpse needs, frozen; `source` names
 * the file in errors. Missing fields take transformers' CLIP defaults (projection_dim 512, image_size
 * 224, max_position_embeddings 77, bos/eos/pad 49406/49407/1). Old exports carry the placeholder ids
 * bos 0 / eos 2 (transformers then pools at the highest token id, which is eos); those map to CLIP's
 * real ids.
 *
 * @example
 *   parseModelConfig({ model_type: 'clip', projection_dim: 512, text_config: {}, vision_config: { image_size: 224 } }, 'config.json').contextLength; // 77
 */
export function parseModelConfig(json: unknown, source: string): ModelConfig {
  if (!isPlainObject(json)) throw configError(source, '(top level)', 'a JSON object', json);
  const modelType = json['model_type'];
  if (typeof modelType !== 'string' || !/^clip(_|$)/.test(modelType)) {
    throw configError(
      source,
      'model_type',
      'a CLIP model type ("clip", "clip_vision_model", ...)',
      modelType,
    );
  }
  const text = optionalObject(json, 'text_config', source);
  const vision = optionalObject(json, 'vision_config', source);

  // Projection size: top level, and each tower's own copy when present; all must agree.
  const dims: { field: string; value: number }[] = [];
  for (const [field, obj, key] of [
    ['projection_dim', json, 'projection_dim'],
    ['text_config.projection_dim', text, 'projection_dim'],
    ['vision_config.projection_dim', vision, 'projection_dim'],
  ] as const) {
    const v = obj?.[key];
    if (v === undefined || v === null) continue;
    if (!isDim(v)) throw configError(source, field, 'a positive integer', v);
    dims.push({ field, value: v });
  }
  const first = dims[0];
  const differing = dims.find((d) => first !== undefined && d.value !== first.value);
  if (first !== undefined && differing !== undefined) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_DIM_MISMATCH',
      `Expected one projection size in ${source} but received ${dims.map((d) => `${d.field} ${d.value}`).join(', ')}`,
      { details: { file: source } },
    );
  }
  const projectionDim = first?.value ?? 512;

  const visionFields = vision ?? json;
  const imageSize = readInt(
    visionFields,
    'image_size',
    224,
    vision ? 'vision_config.image_size' : 'image_size',
    source,
  );
  const textFields = text ?? json;
  const prefix = text ? 'text_config.' : '';
  const contextLength = readInt(
    textFields,
    'max_position_embeddings',
    77,
    `${prefix}max_position_embeddings`,
    source,
  );
  let bosTokenId = readId(textFields, 'bos_token_id', CLIP_BOS_TOKEN_ID, `${prefix}bos_token_id`, source);
  let eosTokenId = readId(textFields, 'eos_token_id', CLIP_EOS_TOKEN_ID, `${prefix}eos_token_id`, source);
  const padTokenId = readId(textFields, 'pad_token_id', CLIP_PAD_TOKEN_ID, `${prefix}pad_token_id`, source);
  if (eosTokenId === 2) {
    // Legacy placeholder ids of early CLIP exports (transformers pools at argmax(input_ids) for them).
    bosTokenId = CLIP_BOS_TOKEN_ID;
    eosTokenId = CLIP_EOS_TOKEN_ID;
  }
  return Object.freeze({
    modelType,
    projectionDim,
    imageSize,
    contextLength,
    bosTokenId,
    eosTokenId,
    padTokenId,
  });
}

function configError(source: string, field: string, expected: string, actual: unknown): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_MODEL_CONFIG_INVALID',
    `Expected ${expected} for ${field} in ${source} but received ${describeValue(actual)}`,
    { details: { file: source, field } },
  );
}

function isDim(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= 65536;
}

function optionalObject(
  json: Record<string, unknown>,
  key: string,
  source: string,
): Record<string, unknown> | undefined {
  const v = json[key];
  if (v === undefined || v === null) return undefined;
  if (!isPlainObject(v)) throw configError(source, key, 'a JSON object', v);
  return v;
}

function readInt(
  obj: Record<string, unknown>,
  key: string,
  fallback: number,
  field: string,
  source: string,
): number {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (!isDim(v)) throw configError(source, field, 'a positive integer', v);
  return v;
}

function readId(
  obj: Record<string, unknown>,
  key: string,
  fallback: number,
  field: string,
  source: string,
): number {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw configError(source, field, 'a non-negative integer token id', v);
  }
  return v;
}

/** tokenizer.json is parsed by decode/; here it only has to be a tokenizers-format JSON object. */
function validateTokenizerJson(json: unknown, source: string): void {
  if (!isPlainObject(json)) throw configError(source, '(top level)', 'a JSON object', json);
  if (!isPlainObject(json['model'])) {
    throw configError(source, 'model', 'a JSON object (Hugging Face tokenizers format)', json['model']);
  }
}

async function isFile(path: string): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  return st !== undefined && st.isFile();
}

async function assertFile(root: string, rel: string): Promise<void> {
  if (!(await isFile(join(root, rel)))) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_FILE_MISSING',
      `Expected file ${rel} in ${root} but it does not exist`,
      { details: { path: root, file: rel } },
    );
  }
}

async function readJson(root: string, rel: string): Promise<unknown> {
  const path = join(root, rel);
  const text = await readFile(path, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_CONFIG_INVALID',
      `Expected valid JSON in ${path} but it does not parse: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err, details: { file: path } },
    );
  }
}

async function readCachedId(root: string): Promise<string | undefined> {
  try {
    const meta: unknown = JSON.parse(await readFile(join(root, MODEL_META_FILE), 'utf8'));
    if (isPlainObject(meta) && typeof meta['id'] === 'string' && meta['id'].length > 0) return meta['id'];
  } catch {
    // No cache metadata: a plain folder.
  }
  return undefined;
}

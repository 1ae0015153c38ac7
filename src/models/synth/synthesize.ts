/**
 * `synthesizeModel`: a complete CLIP model folder in the Hugging Face ONNX layout, with real
 * architectures and seeded random weights, for tests and benchmarks that cannot download weights.
 */
import { mkdir, open, readFile, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GlimpseError, isGlimpseError } from '../../errors/index.js';
import { ProgressTracker, type ProgressCallback } from '../../core/progress.js';
import { tempPathFor, syncDir } from '../../core/fs-atomic.js';
import { assertOneOf, invalidParameterError, isNonNegativeInteger } from '../../core/validate.js';
import { onnxFilesFor } from '../folder.js';
import { MODEL_DTYPES, type ModelDtype } from '../types.js';
import {
  ARCH_SPECS,
  SYNTH_ARCHS,
  clipConfigJson,
  preprocessorConfigJson,
  type SynthArch,
} from './clip-arch.js';
import { buildTextGraph, buildVisionGraph } from './clip-graphs.js';
import { buildClipTokenizerFiles } from './tokenizer-json.js';

/** The package root (two levels above `models/synth/`, in src/ as in dist/). */
const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** OpenAI's BPE merges file shipped with glimpse. */
export const DEFAULT_BPE_VOCAB_PATH = join(PACKAGE_ROOT, 'assets', 'clip', 'bpe_simple_vocab_16e6.txt.gz');

/** Where tests and benchmarks keep synthesized models (git-ignored). */
export const DEFAULT_SYNTH_CACHE_ROOT = join(PACKAGE_ROOT, '.cache', 'models');

/**
 * Version of the weight generator and graph layout. Bump it whenever the bytes for a given arch and
 * seed change (test/model-synth.test.ts pins a hash): cached folders of another version are rebuilt.
 */
export const SYNTH_GENERATOR_VERSION = 1;

/** Provenance file written into every synthesized folder: arch, seed, dtypes, generator version. */
export const SYNTH_META_FILE = '.glimpse-synth.json';

/** Largest seed: seeds are 32-bit. */
export const MAX_SYNTH_SEED = 0xffffffff;

export interface SynthesizeModelOptions {
  arch: SynthArch;
  /** The model folder to create; must not exist or be an empty folder (unless `overwrite`). */
  outDir: string;
  /** Seed of the random weights, 0 to 2^32 - 1 (default 0): same seed, byte-identical files. */
  seed?: number;
  /** Precision variants to write (default all: fp32, fp16, q8). */
  dtypes?: ModelDtype[];
  /** OpenAI's `bpe_simple_vocab_16e6.txt.gz` (default: the copy in glimpse's assets/clip/). */
  bpeVocabPath?: string;
  /** Replace an existing, non-empty `outDir` (default false). */
  overwrite?: boolean;
  /** One `progress` event per file written (task `synth`). */
  onProgress?: ProgressCallback;
}

export interface SynthesizedModel {
  /** Absolute path of the model folder. */
  readonly dir: string;
  /** Paths of the files written, relative to `dir` ('/' separated). */
  readonly files: string[];
}

/**
 * The ONNX files a synthesized folder holds for these dtypes.
 *
 * @example
 *   synthOnnxFiles(['fp16']); // ['onnx/vision_model_fp16.onnx', 'onnx/text_model_fp16.onnx']
 */
export function synthOnnxFiles(dtypes: readonly ModelDtype[]): string[] {
  return dtypes.flatMap((d) => {
    const f = onnxFilesFor(d);
    return [f.vision, f.text];
  });
}

/**
 * Writes a complete CLIP model folder with random weights: config.json, preprocessor_config.json, the
 * tokenizer files, and the vision and text ONNX graphs for each dtype. The folder is built under a
 * temporary name beside `outDir` and renamed into place, so `outDir` is either absent or complete.
 *
 * @example
 *   const { dir, files } = await synthesizeModel({ arch: 'tiny', outDir: '/tmp/clip-tiny', seed: 1 });
 *   // files: ['config.json', 'preprocessor_config.json', 'special_tokens_map.json', ..., 'onnx/text_model_quantized.onnx']
 */
export async function synthesizeModel(options: SynthesizeModelOptions): Promise<SynthesizedModel> {
  const { arch, outDir, seed, dtypes, bpeVocabPath, overwrite } = validateOptions(options);
  const spec = ARCH_SPECS[arch];
  const dir = resolve(outDir);
  await mkdir(dirname(dir), { recursive: true });
  await assertWritableTarget(dir, overwrite);

  const tokenizerFiles = await buildClipTokenizerFiles(bpeVocabPath);
  const jsonFiles: Array<[string, string]> = [
    ['config.json', `${JSON.stringify(clipConfigJson(spec), null, 2)}\n`],
    ['preprocessor_config.json', `${JSON.stringify(preprocessorConfigJson(spec), null, 2)}\n`],
    ...Object.entries(tokenizerFiles).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    [
      SYNTH_META_FILE,
      `${JSON.stringify({ generator: 'glimpse model synth', version: SYNTH_GENERATOR_VERSION, arch, seed, dtypes }, null, 2)}\n`,
    ],
  ];
  const graphs = dtypes.flatMap((dtype) => {
    const f = onnxFilesFor(dtype);
    return [
      { path: f.vision, build: () => buildVisionGraph(spec, seed, dtype) },
      { path: f.text, build: () => buildTextGraph(spec, seed, dtype) },
    ];
  });

  const tmp = tempPathFor(dir);
  const progress = new ProgressTracker('synth', jsonFiles.length + graphs.length, options.onProgress, 0);
  const files: string[] = [];
  try {
    await mkdir(join(tmp, 'onnx'), { recursive: true });
    for (const [name, content] of jsonFiles) {
      await writeDurably(join(tmp, name), async (h) => {
        await h.writeFile(content);
      });
      files.push(name);
      progress.add(1);
    }
    for (const { path, build } of graphs) {
      const model = build().toModel('glimpse-synth', `${arch}-seed${seed}`);
      await writeDurably(join(tmp, path), async (h) => {
        await model.writeTo(h);
      });
      files.push(path);
      progress.add(1);
    }
    await syncDir(join(tmp, 'onnx'));
    await syncDir(tmp);
    await moveIntoPlace(tmp, dir, overwrite);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (isGlimpseError(err)) throw err;
    throw new GlimpseError(
      'GLIMPSE_E_OUTPUT_WRITE_FAILED',
      `Expected to write the model folder ${dir} but ${String(err)}`,
      {
        cause: err,
        details: { path: dir },
      },
    );
  }
  progress.finish();
  return { dir, files };
}

/**
 * The folder of a synthesized model in a cache, created only when missing: `<cacheRoot>/<arch>-seed<seed>`
 * with every dtype. Safe when several processes ask at once (the first complete folder wins).
 *
 * @example
 *   const dir = await ensureSynthModel('tiny', 0); // '<repo>/.cache/models/tiny-seed0'
 */
export async function ensureSynthModel(
  arch: SynthArch,
  seed: number,
  cacheRoot: string = DEFAULT_SYNTH_CACHE_ROOT,
): Promise<string> {
  assertOneOf('arch', arch, SYNTH_ARCHS);
  if (!isNonNegativeInteger(seed) || seed > MAX_SYNTH_SEED) {
    throw invalidParameterError('seed', `an integer from 0 to ${MAX_SYNTH_SEED}`, seed);
  }
  const dir = resolve(cacheRoot, `${arch}-seed${seed}`);
  if (await isCompleteSynthFolder(dir)) return dir;
  // Incomplete, or made by another generator version: rebuilt below.
  if (await exists(dir)) {
    const stale = tempPathFor(dir);
    await rename(dir, stale).catch(() => undefined);
    await rm(stale, { recursive: true, force: true });
  }
  try {
    await synthesizeModel({ arch, outDir: dir, seed });
  } catch (err) {
    // Another process may have finished the same folder first.
    if (!(await isCompleteSynthFolder(dir))) throw err;
  }
  return dir;
}

/**
 * True when `dir` is a synthesized folder of the current generator version with every dtype: each
 * file present and non-empty.
 *
 * @example
 *   await isCompleteSynthFolder('.cache/models/tiny-seed0'); // true after ensureSynthModel('tiny', 0)
 */
export async function isCompleteSynthFolder(dir: string): Promise<boolean> {
  try {
    const meta: unknown = JSON.parse(await readFile(join(dir, SYNTH_META_FILE), 'utf8'));
    if (
      typeof meta !== 'object' ||
      meta === null ||
      (meta as { version?: unknown }).version !== SYNTH_GENERATOR_VERSION
    ) {
      return false;
    }
  } catch {
    return false;
  }
  const required = [
    'config.json',
    'preprocessor_config.json',
    'tokenizer.json',
    ...synthOnnxFiles(MODEL_DTYPES),
  ];
  for (const file of required) {
    try {
      const s = await stat(join(dir, file));
      if (!s.isFile() || s.size === 0) return false;
    } catch {
      return false;
    }
  }
  return true;
}

interface ValidOptions {
  arch: SynthArch;
  outDir: string;
  seed: number;
  dtypes: ModelDtype[];
  bpeVocabPath: string;
  overwrite: boolean;
}

function validateOptions(options: SynthesizeModelOptions): ValidOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalidParameterError('options', 'an object', options);
  }
  assertOneOf('arch', options.arch, SYNTH_ARCHS);
  if (typeof options.outDir !== 'string' || options.outDir.trim() === '') {
    throw invalidParameterError('outDir', 'a non-empty path', options.outDir);
  }
  const seed = options.seed ?? 0;
  if (!isNonNegativeInteger(seed) || seed > MAX_SYNTH_SEED) {
    throw invalidParameterError('seed', `an integer from 0 to ${MAX_SYNTH_SEED}`, seed);
  }
  const dtypes = options.dtypes ?? [...MODEL_DTYPES];
  if (!Array.isArray(dtypes) || dtypes.length === 0) {
    throw invalidParameterError('dtypes', 'a non-empty array of "fp32", "fp16", "q8"', dtypes);
  }
  for (const d of dtypes) assertOneOf('dtypes[]', d, MODEL_DTYPES);
  const bpeVocabPath = options.bpeVocabPath ?? DEFAULT_BPE_VOCAB_PATH;
  if (typeof bpeVocabPath !== 'string' || bpeVocabPath === '') {
    throw invalidParameterError('bpeVocabPath', 'a path to bpe_simple_vocab_16e6.txt.gz', bpeVocabPath);
  }
  const overwrite = options.overwrite ?? false;
  if (typeof overwrite !== 'boolean') throw invalidParameterError('overwrite', 'a boolean', overwrite);
  // Keep the caller's order but write each dtype once.
  return {
    arch: options.arch,
    outDir: options.outDir,
    seed,
    dtypes: [...new Set(dtypes)],
    bpeVocabPath,
    overwrite,
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function isEmptyDir(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length === 0;
  } catch {
    return false;
  }
}

async function assertWritableTarget(dir: string, overwrite: boolean): Promise<void> {
  if (overwrite || !(await exists(dir)) || (await isEmptyDir(dir))) return;
  throw new GlimpseError(
    'GLIMPSE_E_OUTPUT_EXISTS',
    `Expected ${dir} to be absent or an empty folder but it exists and is not empty (pass overwrite to replace it)`,
    { details: { path: dir } },
  );
}

/** Renames the finished temporary folder to `dir`; an existing folder is replaced only with `overwrite`. */
async function moveIntoPlace(tmp: string, dir: string, overwrite: boolean): Promise<void> {
  if (await exists(dir)) {
    if (await isEmptyDir(dir)) {
      await rm(dir, { recursive: true, force: true });
    } else if (overwrite) {
      const old = tempPathFor(dir);
      await rename(dir, old);
      await rename(tmp, dir);
      await syncDir(dirname(dir));
      await rm(old, { recursive: true, force: true });
      return;
    } else {
      await assertWritableTarget(dir, false);
    }
  }
  await rename(tmp, dir);
  await syncDir(dirname(dir));
}

async function writeDurably(path: string, write: (handle: FileHandle) => Promise<void>): Promise<void> {
  const handle = await open(path, 'w');
  try {
    await write(handle);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Model fingerprints: which exact bytes and settings made a vector. Hashing a 350 MB ONNX file costs
 * about a second, so file hashes are streamed and cached in a sidecar file in the model folder
 * (`.glimpse-hashes.json`, keyed by relative path, size and mtime). A read-only folder simply gets no
 * cache.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/fs-atomic.js';
import { isPlainObject } from '../core/validate.js';
import type { ModelDtype, ModelFingerprint, PreprocessConfig } from './types.js';

/** Name of the hash cache file inside a model folder. */
export const HASH_CACHE_FILE = '.glimpse-hashes.json';

/** Length of the short display form of a fingerprint. */
export const SHORT_FINGERPRINT_LENGTH = 12;

export interface FingerprintInput {
  /** The model folder. */
  readonly dir: string;
  /** Hub id or the folder's name (shown, but not part of `hash`: the same bytes are the same model). */
  readonly id: string;
  readonly dtype: ModelDtype;
  /** Paths inside `dir` of every file that affects the vectors (forward slashes). */
  readonly files: readonly string[];
  readonly preprocess: PreprocessConfig;
  readonly dimension: number;
}

export interface FingerprintOptions {
  /** Read and write the `.glimpse-hashes.json` sidecar (default true). */
  readonly cache?: boolean;
}

interface HashCacheEntry {
  size: number;
  mtimeMs: number;
  sha256: string;
}

interface HashCache {
  version: 1;
  files: Record<string, HashCacheEntry>;
}

/**
 * Computes the fingerprint of a model: sha256 of every listed file (cached by size and mtime), the
 * preprocessing and the dimension, and `hash`, the sha256 of the canonical JSON of dtype, files,
 * preprocess and dimension. The id is deliberately left out of `hash`: the same files loaded from a
 * local copy or from the hub cache make the same vectors, so they must compare equal.
 *
 * @example
 *   const fp = await computeFingerprint({
 *     dir: '/models/clip', id: 'openai/clip-vit-base-patch32', dtype: 'fp32', dimension: 512, preprocess,
 *     files: ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'onnx/vision_model.onnx', 'onnx/text_model.onnx'],
 *   });
 *   shortFingerprint(fp); // 'a3f09c1e77b2'
 */
export async function computeFingerprint(
  input: FingerprintInput,
  options: FingerprintOptions = {},
): Promise<ModelFingerprint> {
  const useCache = options.cache ?? true;
  const cache = useCache ? await readHashCache(input.dir) : emptyCache();
  let changed = false;
  const files: Record<string, string> = {};
  for (const rel of [...input.files].sort()) {
    const path = join(input.dir, rel);
    const st = await stat(path);
    const cached = cache.files[rel];
    if (cached !== undefined && cached.size === st.size && cached.mtimeMs === st.mtimeMs) {
      files[rel] = cached.sha256;
      continue;
    }
    const sha256 = await hashFile(path);
    files[rel] = sha256;
    cache.files[rel] = { size: st.size, mtimeMs: st.mtimeMs, sha256 };
    changed = true;
  }
  if (useCache && changed) await writeHashCache(input.dir, cache);

  const hashed = { dtype: input.dtype, files, preprocess: input.preprocess, dimension: input.dimension };
  const hash = createHash('sha256').update(canonicalJson(hashed)).digest('hex');
  return Object.freeze({
    id: input.id,
    dtype: input.dtype,
    files: Object.freeze(files),
    preprocess: input.preprocess,
    dimension: input.dimension,
    hash,
  });
}

/**
 * Records known hashes (for example verified while downloading) in a folder's hash cache, so the first
 * fingerprint needs no re-read. Files are stat'ed now; a failure to write is ignored.
 *
 * @example
 *   await recordFileHashes('/cache/models/openai--clip-vit-base-patch32/main', { 'onnx/text_model.onnx': sha });
 */
export async function recordFileHashes(dir: string, hashes: Readonly<Record<string, string>>): Promise<void> {
  const cache = await readHashCache(dir);
  for (const [rel, sha256] of Object.entries(hashes)) {
    try {
      const st = await stat(join(dir, rel));
      cache.files[rel] = { size: st.size, mtimeMs: st.mtimeMs, sha256 };
    } catch {
      // A file that vanished is simply not cached.
    }
  }
  await writeHashCache(dir, cache);
}

/**
 * The cached sha256 of a file in a model folder, when the cache has it for the file's current size and
 * mtime; undefined otherwise (no cache, stale entry, no file).
 *
 * @example
 *   await cachedFileHash('/models/clip', 'onnx/vision_model.onnx'); // 'a3f0...' or undefined
 */
export async function cachedFileHash(dir: string, rel: string): Promise<string | undefined> {
  const entry = (await readHashCache(dir)).files[rel];
  if (entry === undefined) return undefined;
  const st = await stat(join(dir, rel)).catch(() => undefined);
  return st !== undefined && st.size === entry.size && st.mtimeMs === entry.mtimeMs
    ? entry.sha256
    : undefined;
}

/**
 * Streams a file through sha256 and returns the hex digest.
 *
 * @example
 *   await hashFile('/models/clip/config.json'); // 'e3b0c442...'
 */
export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/**
 * True when vectors made with `a` and `b` can be mixed: the same files, dtype, preprocessing and size.
 *
 * @example
 *   if (!fingerprintsCompatible(existing, model.fingerprint)) throw new Error('different model');
 */
export function fingerprintsCompatible(a: ModelFingerprint, b: ModelFingerprint): boolean {
  return a.hash === b.hash;
}

/**
 * The first 12 hex digits of the fingerprint's hash, for display.
 *
 * @example
 *   shortFingerprint(model.fingerprint); // 'a3f09c1e77b2'
 */
export function shortFingerprint(fingerprint: ModelFingerprint | string): string {
  const hash = typeof fingerprint === 'string' ? fingerprint : fingerprint.hash;
  return hash.slice(0, SHORT_FINGERPRINT_LENGTH);
}

/**
 * JSON with object keys sorted at every level (arrays keep their order): one string per value.
 *
 * @example
 *   canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] }); // '{"a":[2,{"c":4,"d":3}],"b":1}'
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v: unknown) => canonicalJson(v)).join(',')}]`;
  if (isPlainObject(value)) {
    const keys = Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function emptyCache(): HashCache {
  return { version: 1, files: {} };
}

async function readHashCache(dir: string): Promise<HashCache> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(join(dir, HASH_CACHE_FILE), 'utf8'));
  } catch {
    return emptyCache();
  }
  const cache = emptyCache();
  if (!isPlainObject(parsed) || parsed['version'] !== 1 || !isPlainObject(parsed['files'])) return cache;
  for (const [rel, entry] of Object.entries(parsed['files'])) {
    if (
      isPlainObject(entry) &&
      typeof entry['size'] === 'number' &&
      typeof entry['mtimeMs'] === 'number' &&
      typeof entry['sha256'] === 'string' &&
      /^[0-9a-f]{64}$/.test(entry['sha256'])
    ) {
      cache.files[rel] = { size: entry['size'], mtimeMs: entry['mtimeMs'], sha256: entry['sha256'] };
    }
  }
  return cache;
}

async function writeHashCache(dir: string, cache: HashCache): Promise<void> {
  try {
    await writeFileAtomic(join(dir, HASH_CACHE_FILE), `${JSON.stringify(cache, null, 2)}\n`);
  } catch {
    // Read-only folder (or a full disk): hashes are recomputed next time, nothing else changes.
  }
}

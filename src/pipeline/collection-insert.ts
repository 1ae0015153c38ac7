/**
 * `insert`: image files or folders → the embedding pipeline (decode workers, batched inference, in input
 * order: `embedSamples`) → rows upserted into a collection, with `image_path`, `caption` (`x.txt`) and the
 * sidecar `x.json` flattened as metadata. Ids are the file's path relative to the folder given (or the path
 * as given, for single files), or a metadata key (`idColumn`). Failed items are recorded and counted.
 */
import { availableParallelism } from 'node:os';
import { readFile, stat } from 'node:fs/promises';
import { relative, resolve, sep } from 'node:path';
import { GlimpseError, isGlimpseError } from '../errors/index.js';
import { assertPositiveInteger, invalidParameterError } from '../core/validate.js';
import { ProgressTracker, type ProgressCallback } from '../core/progress.js';
import type { ModelDtype } from '../models/types.js';
import { createFolderSource } from '../sources/folder.js';
import type { Sample } from '../sources/types.js';
import { DecodePool, type DecodeLimits } from '../decode/pool.js';
import { flattenMetadata } from '../sinks/metadata.js';
import { metadataKey } from '../index/schema.js';
import type { RowBatch } from '../index/lancedb.js';
import { loadModel, type ClipModel } from './model.js';
import { embedSamples } from './stream.js';
import {
  createCollection,
  openCollection,
  openDatabase,
  type Collection,
  type DatabaseRef,
  type ItemFailure,
} from './collection.js';

export interface InsertFilesOptions {
  /** Model folder or hub id, or a loaded model (default: the model the collection was created with). */
  model?: string | ClipModel;
  dtype?: ModelDtype;
  /** Take each item's id from this metadata key (flattened, e.g. `key` or `exif.id`) instead of its path. */
  idColumn?: string;
  /** Create the collection (bound to the model) when it does not exist (default true). */
  createIfMissing?: boolean;
  /** Images per inference batch (default 32). */
  batchSize?: number;
  /** Decode worker threads (default: cores). */
  numPreproWorkers?: number;
  /** Rows per write into the store (default 1024). */
  writeBatchRows?: number;
  preprocessMode?: 'exact' | 'fast';
  limits?: DecodeLimits;
  intraOpThreads?: number;
  cacheDir?: string;
  offline?: boolean;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export interface InsertResult {
  readonly collection: string;
  /** Items found in the inputs. */
  readonly items: number;
  readonly inserted: number;
  readonly updated: number;
  readonly failed: number;
  /** Every item that was not stored, with its coded reason. */
  readonly failures: readonly ItemFailure[];
  readonly created: boolean;
  readonly seconds: number;
}

interface Input {
  /** Where the id comes from: the path relative to this base, or the path as given. */
  sample: Sample;
  id: string;
}

async function captionFor(imagePath: string): Promise<string | undefined> {
  const dot = imagePath.lastIndexOf('.');
  const slash = Math.max(imagePath.lastIndexOf('/'), imagePath.lastIndexOf(sep));
  if (dot <= slash) return undefined;
  try {
    return await readFile(`${imagePath.slice(0, dot)}.txt`, 'utf8');
  } catch {
    return undefined;
  }
}

async function sidecarFor(
  imagePath: string,
): Promise<{ meta?: Record<string, unknown>; error?: { code: string; message: string } }> {
  const dot = imagePath.lastIndexOf('.');
  const path = `${imagePath.slice(0, dot)}.json`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return {};
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('the top level is not an object');
    return { meta: parsed as Record<string, unknown> };
  } catch (err) {
    return {
      error: {
        code: 'GLIMPSE_E_SOURCE_SIDECAR_INVALID',
        message: `Expected a JSON object in ${path} but ${(err as Error).message}`,
      },
    };
  }
}

/** Lists the inputs (folders recursively, in sorted order; files as given) without reading them. */
async function listInputs(
  inputs: readonly string[],
): Promise<{ count: number; read: () => AsyncGenerator<Input> }> {
  const list: (
    | { kind: 'folder'; dir: string; source: Awaited<ReturnType<typeof createFolderSource>> }
    | { kind: 'file'; path: string }
  )[] = [];
  let count = 0;
  for (const input of inputs) {
    let info;
    try {
      info = await stat(input);
    } catch (err) {
      throw new GlimpseError(
        'GLIMPSE_E_SOURCE_NOT_FOUND',
        `Expected an image file or folder at ${input} but it does not exist`,
        { cause: err },
      );
    }
    if (info.isDirectory()) {
      const source = await createFolderSource(input, { enableText: false, enableMetadata: true });
      list.push({ kind: 'folder', dir: input, source });
      count += source.size ?? 0;
    } else {
      list.push({ kind: 'file', path: input });
      count++;
    }
  }
  async function* read(): AsyncGenerator<Input> {
    let index = 0;
    for (const part of list) {
      if (part.kind === 'folder') {
        for await (const s of part.source.read()) {
          const caption = s.imagePath !== undefined ? await captionFor(s.imagePath) : undefined;
          const sample: Sample = { ...s, index: index++, ...(caption !== undefined ? { caption } : {}) };
          yield {
            sample,
            id: relative(part.dir, s.imagePath ?? s.key)
              .split(sep)
              .join('/'),
          };
        }
      } else {
        const side = await sidecarFor(part.path);
        const caption = await captionFor(part.path);
        const sample: { -readonly [K in keyof Sample]: Sample[K] } = {
          key: part.path,
          index: index++,
          imagePath: part.path,
        };
        if (caption !== undefined) sample.caption = caption;
        if (side.meta !== undefined) sample.meta = side.meta;
        if (side.error !== undefined) sample.error = side.error;
        yield { sample, id: part.path.split(sep).join('/') };
      }
    }
  }
  return { count, read };
}

/** The id of an item: its path, or the value of `idColumn` in its flattened metadata. */
function itemId(
  input: Input,
  flat: Record<string, unknown>,
  idColumn: string | undefined,
): string | { error: string } {
  if (idColumn === undefined) return input.id;
  const v = flat[idColumn];
  if (typeof v === 'string' && v !== '') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'bigint') return String(v);
  return {
    error: `Expected a string or number in metadata key ${idColumn} (the id column) for ${input.sample.key} but received ${v === undefined ? 'no such key' : JSON.stringify(v)}`,
  };
}

/**
 * Embeds images (files, or folders read recursively) with the collection's model and upserts them. The
 * collection is created, bound to the model, when missing (unless `createIfMissing: false`); a model other
 * than the collection's is refused (GLIMPSE_E_COLLECTION_MODEL_MISMATCH). Items that cannot be read, decoded
 * or stored are recorded in `failures` and counted; they never stop the insert.
 *
 * @example
 *   const r = await insertFiles('data/db', 'photos', ['photos/'], { model: 'models/vit-b-32' });
 *   console.log(`${r.inserted} new, ${r.updated} replaced, ${r.failed} failed`);
 */
export async function insertFiles(
  db: DatabaseRef,
  name: string,
  inputs: readonly string[],
  options: InsertFilesOptions = {},
): Promise<InsertResult> {
  if (
    !Array.isArray(inputs) ||
    inputs.length === 0 ||
    !inputs.every((i) => typeof i === 'string' && i !== '')
  )
    throw invalidParameterError('inputs', 'a non-empty array of image files or folders', inputs);
  const batchSize = options.batchSize ?? 32;
  assertPositiveInteger('batchSize', batchSize, 4096);
  const writeBatchRows = options.writeBatchRows ?? 1024;
  assertPositiveInteger('writeBatchRows', writeBatchRows);
  if (options.idColumn !== undefined && (typeof options.idColumn !== 'string' || options.idColumn === ''))
    throw invalidParameterError('idColumn', 'a metadata key', options.idColumn);
  const started = performance.now();
  const store = typeof db === 'string' ? await openDatabase(db) : db;
  let collection: Collection | undefined;
  let model: ClipModel | undefined;
  let ownModel = false;
  let pool: DecodePool | undefined;
  let created = false;
  try {
    try {
      collection = await openCollection(store, name);
    } catch (err) {
      if (
        !isGlimpseError(err, 'GLIMPSE_E_COLLECTION_NOT_FOUND') ||
        options.createIfMissing === false ||
        options.model === undefined
      )
        throw err;
    }
    const modelOptions = {
      dtype: options.dtype ?? collection?.fingerprint?.dtype ?? 'fp32',
      ...(options.intraOpThreads !== undefined ? { intraOpThreads: options.intraOpThreads } : {}),
      ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      ...(options.offline !== undefined ? { offline: options.offline } : {}),
    };
    const ref = options.model ?? collection?.binding.model ?? undefined;
    if (ref === undefined) {
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        `Expected a model for inserting into ${name} (the collection does not name one) but received none; pass --model`,
      );
    }
    if (typeof ref === 'string') {
      model = await loadModel(ref, modelOptions);
      ownModel = true;
    } else model = ref;
    if (collection === undefined) {
      collection = await createCollection(store, name, { model: ref });
      created = true;
    }
    collection.checkSource({ fingerprint: model.fingerprint });
    const listing = await listInputs(inputs);
    const tracker = new ProgressTracker('insert', listing.count, options.onProgress);
    pool = new DecodePool({
      preprocess: model.folder.preprocess,
      workers: options.numPreproWorkers ?? availableParallelism(),
      limits: options.limits ?? {},
      mode: options.preprocessMode ?? 'exact',
    });
    const failures: ItemFailure[] = [];
    let inserted = 0;
    let updated = 0;
    const d = collection.dimension;
    const byKey = new Map<string, Input>();
    async function* samples(): AsyncGenerator<Sample> {
      for await (const input of listing.read()) {
        byKey.set(input.sample.key, input);
        yield input.sample;
      }
    }
    let pending: { id: string; vector: Float32Array; values: Map<string, unknown> }[] = [];
    const flush = async (): Promise<void> => {
      if (pending.length === 0) return;
      const n = pending.length;
      const vectors = new Float32Array(n * d);
      const values: Record<string, unknown[]> = {};
      pending.forEach((p, i) => {
        vectors.set(p.vector, i * d);
        for (const [k, v] of p.values) (values[k] ??= new Array<unknown>(n).fill(null))[i] = v;
      });
      const batch: RowBatch = { ids: pending.map((p) => p.id), vectors, values };
      pending = [];
      const r = await collection!.writeRows(batch, 'upsert');
      inserted += r.inserted;
      updated += r.updated;
      failures.push(...r.failures);
      tracker.add(0, r.failures.length);
    };
    for await (const batch of embedSamples(model, samples(), {
      pool,
      batchSize,
      enableImage: true,
      enableText: false,
      signal: options.signal,
    })) {
      for (const f of batch.failures) {
        failures.push({ key: byKey.get(f.key)?.id ?? f.key, code: f.code, message: f.message });
        byKey.delete(f.key);
      }
      batch.samples.forEach((s, i) => {
        const input = byKey.get(s.key)!;
        byKey.delete(s.key);
        const flat = s.meta ? flattenMetadata(s.meta) : {};
        const id = itemId(input, flat, options.idColumn);
        if (typeof id !== 'string') {
          failures.push({ key: input.id, code: 'GLIMPSE_E_COLLECTION_ITEM_INVALID', message: id.error });
          tracker.add(0, 1);
          return;
        }
        const values = new Map<string, unknown>();
        values.set('image_path', s.imagePath !== undefined ? resolve(s.imagePath) : null);
        values.set('caption', s.caption ?? null);
        for (const [k, v] of Object.entries(flat)) values.set(metadataKey(k), v);
        pending.push({ id, vector: batch.imageEmbeddings!.subarray(i * d, (i + 1) * d), values });
      });
      tracker.add(batch.samples.length + batch.failures.length, batch.failures.length);
      if (pending.length >= writeBatchRows) await flush();
    }
    await flush();
    tracker.finish();
    return {
      collection: name,
      items: listing.count,
      inserted,
      updated,
      failed: failures.length,
      failures,
      created,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (err) {
    if (options.signal?.aborted) {
      throw new GlimpseError(
        'GLIMPSE_E_ABORTED',
        `Expected the insert into ${name} to finish but it was cancelled; rows written so far are kept`,
        { cause: err },
      );
    }
    throw err;
  } finally {
    await pool?.close();
    if (ownModel) await model?.close();
    await collection?.close();
    if (typeof db === 'string') store.close();
  }
}

/**
 * `import`: bulk-loads a clip-retrieval layout folder (`img_emb/*.npy` + `metadata/*.parquet`, as written by
 * `glimpse embed` or `clip-retrieval inference`) into a collection without re-embedding. Files are taken
 * in sorted order and row ids are row numbers across the sorted files, as clip-retrieval numbers them
 * (or a metadata column's values with `idColumn`). The model comes from the folder's `glimpse.json`; for
 * other folders it must be named (`model`) or explicitly waived (`allowUnknownModel`).
 */
import { GlimpseError, isGlimpseError } from '../errors/index.js';
import {
  assertOneOf,
  assertPositiveInteger,
  invalidParameterError,
  isPlainObject,
} from '../core/validate.js';
import { ProgressTracker, type ProgressCallback } from '../core/progress.js';
import {
  assertEmbeddingNpy,
  float16ToFloat32,
  npyHeaderSize,
  parseNpyHeader,
  type EmbeddingNpyHeader,
} from '../formats/npy.js';
import {
  readParquetColumns,
  readParquetMetadata,
  type ParquetFileInfo,
  type RangeReader,
} from '../formats/parquet.js';
import { openStorage, joinUrl, type Storage } from '../storage/index.js';
import type { ModelFingerprint } from '../models/types.js';
import { shortFingerprint } from '../models/fingerprint.js';
import { metadataKey } from '../index/schema.js';
import { loadModel, type ClipModel } from './model.js';
import {
  createCollection,
  openCollection,
  openDatabase,
  type Collection,
  type DatabaseRef,
  type ItemFailure,
} from './collection.js';

export interface ImportOptions {
  /** The model that made the vectors (checked against glimpse.json when the folder has one). */
  model?: string | ClipModel;
  /** Import vectors whose model is not known (no glimpse.json, no `model`). */
  allowUnknownModel?: boolean;
  /** Which embeddings: `image` (img_emb/, default) or `text` (text_emb/). */
  modality?: 'image' | 'text';
  /** Take ids from this metadata column instead of row numbers. */
  idColumn?: string;
  /** Create the collection when it does not exist (default true). */
  createIfMissing?: boolean;
  /** Rows read and written at a time (default 65,536). */
  batchRows?: number;
  cacheDir?: string;
  offline?: boolean;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export interface ImportResult {
  readonly collection: string;
  readonly files: number;
  /** Rows read from the folder. */
  readonly rows: number;
  readonly inserted: number;
  readonly updated: number;
  readonly failed: number;
  readonly failures: readonly ItemFailure[];
  readonly created: boolean;
  /** The model fingerprint the vectors were imported as (null: unknown). */
  readonly model: string | null;
  readonly seconds: number;
  /** Rows per second, end to end. */
  readonly rate: number;
}

interface Part {
  npy: string;
  parquet: string | undefined;
  header: EmbeddingNpyHeader;
  info: ParquetFileInfo | undefined;
  reader: RangeReader | undefined;
}

const layoutError = (message: string, source: string): GlimpseError =>
  new GlimpseError('GLIMPSE_E_IMPORT_LAYOUT_INVALID', message, { details: { source } });

async function listFolder(storage: Storage, url: string, ext: string): Promise<string[] | undefined> {
  try {
    return (await storage.list(url)).filter((e) => e.name.endsWith(ext)).map((e) => e.url);
  } catch (err) {
    if (isGlimpseError(err, 'GLIMPSE_E_STORAGE_NOT_FOUND')) return undefined;
    throw err;
  }
}

function partitionOf(url: string, prefix: string, ext: string): string {
  const name = url.slice(url.lastIndexOf('/') + 1);
  return name.startsWith(prefix) && name.endsWith(ext) ? name.slice(prefix.length, -ext.length) : name;
}

async function readGlimpseJson(storage: Storage, folder: string): Promise<ModelFingerprint | undefined> {
  const url = joinUrl(folder, 'glimpse.json');
  if (!(await storage.exists(url))) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(await storage.read(url)));
  } catch (err) {
    throw layoutError(`Expected JSON in ${url} but ${(err as Error).message}`, url);
  }
  const model = isPlainObject(parsed) ? parsed['model'] : undefined;
  if (!isPlainObject(model) || typeof model['hash'] !== 'string') {
    throw layoutError(`Expected a model fingerprint ("model": {"hash": …}) in ${url} but it has none`, url);
  }
  return model as unknown as ModelFingerprint;
}

async function readHeader(storage: Storage, url: string): Promise<EmbeddingNpyHeader> {
  const size = (await storage.stat(url)).size;
  const first = await storage.readRange(url, 0, Math.min(size, 12));
  const header = parseNpyHeader(
    await storage.readRange(url, 0, Math.min(size, npyHeaderSize(first, url))),
    url,
  );
  assertEmbeddingNpy(header, url, size);
  return header;
}

/** The layout's parts, paired file for file and checked: dimensions equal, row counts equal. */
async function discover(storage: Storage, folder: string, modality: 'image' | 'text'): Promise<Part[]> {
  const embDir = modality === 'image' ? 'img_emb' : 'text_emb';
  const prefix = modality === 'image' ? 'img_emb_' : 'text_emb_';
  const npys = (await listFolder(storage, joinUrl(folder, embDir), '.npy')) ?? [];
  if (npys.length === 0) {
    throw layoutError(
      `Expected ${embDir}/*.npy in ${folder} (a clip-retrieval embeddings folder) but found none`,
      folder,
    );
  }
  const parquets = await listFolder(storage, joinUrl(folder, 'metadata'), '.parquet');
  if (parquets !== undefined && parquets.length > 0 && parquets.length !== npys.length) {
    throw layoutError(
      `Expected as many metadata/*.parquet files as ${embDir}/*.npy files in ${folder} but found ${parquets.length} and ${npys.length}`,
      folder,
    );
  }
  const parts: Part[] = [];
  let dimension: number | undefined;
  for (const [i, npy] of npys.entries()) {
    const header = await readHeader(storage, npy);
    dimension ??= header.shape[1];
    if (header.shape[1] !== dimension) {
      throw layoutError(
        `Expected dimension ${dimension} in ${npy} (as in ${npys[0]}) but it has ${header.shape[1]}`,
        npy,
      );
    }
    const parquet = parquets && parquets.length > 0 ? parquets[i] : undefined;
    let info: ParquetFileInfo | undefined;
    let reader: RangeReader | undefined;
    if (parquet !== undefined) {
      if (partitionOf(npy, prefix, '.npy') !== partitionOf(parquet, 'metadata_', '.parquet')) {
        throw layoutError(
          `Expected ${npy} and ${parquet} to be the same partition but their names differ`,
          parquet,
        );
      }
      reader = await storage.rangeReader(parquet);
      info = await readParquetMetadata(reader);
      if (info.numRows !== header.shape[0]) {
        throw layoutError(
          `Expected ${header.shape[0]} metadata rows in ${parquet} (the rows of ${npy}) but it has ${info.numRows}`,
          parquet,
        );
      }
    }
    parts.push({ npy, parquet, header, info, reader });
  }
  return parts;
}

let halfTable: Float32Array | undefined;

/**
 * float16 rows → L2-normalized float32 rows in one pass per row (convert and sum squares, then scale the row
 * while it is in cache): memory traffic, not arithmetic, bounds the import. `normalized` is false when some row
 * is zero or not finite (the store then checks each row and records the bad ones).
 */
function halfRowsToUnit(
  bits: Uint16Array,
  rows: number,
  d: number,
): { vectors: Float32Array; normalized: boolean } {
  halfTable ??= float16ToFloat32(Uint16Array.from({ length: 65536 }, (_, i) => i));
  const table = halfTable;
  const vectors = new Float32Array(rows * d);
  let normalized = true;
  for (let r = 0; r < rows; r++) {
    const start = r * d;
    const end = start + d;
    let norm = 0;
    for (let j = start; j < end; j++) {
      const v = table[bits[j]!]!;
      vectors[j] = v;
      norm += v * v;
    }
    if (!(norm > 0 && norm < Infinity)) {
      normalized = false;
      continue;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let j = start; j < end; j++) vectors[j]! *= inv;
  }
  return { vectors, normalized };
}

async function readRows(
  storage: Storage,
  part: Part,
  start: number,
  end: number,
): Promise<{ vectors: Float32Array; normalized: boolean }> {
  const { header } = part;
  const d = header.shape[1];
  const bytes = await storage.readRange(
    part.npy,
    header.headerLength + start * header.bytesPerRow,
    header.headerLength + end * header.bytesPerRow,
  );
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const n = (end - start) * d;
  if (header.dtype === 'float16')
    return halfRowsToUnit(new Uint16Array(aligned.buffer, aligned.byteOffset, n), end - start, d);
  return {
    vectors: new Float32Array(aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + n * 4)),
    normalized: false,
  };
}

/**
 * Imports a clip-retrieval embeddings folder (local, `http(s)://` or `s3://`) into a collection, creating
 * it when missing. The model must be known: from the folder's `glimpse.json`, or `model`, or waived with
 * `allowUnknownModel`; a model other than the collection's is refused. Rows whose vector or metadata cannot
 * be stored are recorded in `failures`.
 *
 * @example
 *   const r = await importEmbeddings('data/db', 'laion-sample', 'embeddings/');
 *   console.log(`${r.rows} rows at ${r.rate.toFixed(0)} rows/s`);
 */
export async function importEmbeddings(
  db: DatabaseRef,
  name: string,
  folder: string,
  options: ImportOptions = {},
): Promise<ImportResult> {
  if (typeof folder !== 'string' || folder === '')
    throw invalidParameterError('folder', 'an embeddings folder', folder);
  const modality = options.modality ?? 'image';
  assertOneOf('modality', modality, ['image', 'text'] as const);
  const batchRows = options.batchRows ?? 65_536;
  assertPositiveInteger('batchRows', batchRows);
  const started = performance.now();
  const storage = openStorage(folder);
  const store = typeof db === 'string' ? await openDatabase(db) : db;
  let collection: Collection | undefined;
  try {
    const parts = await discover(storage, folder, modality);
    // Which model made these vectors?
    const declared = await readGlimpseJson(storage, folder);
    let given: ModelFingerprint | undefined;
    if (options.model !== undefined) {
      const m =
        typeof options.model === 'string'
          ? await loadModel(options.model, {
              decodeWorkers: 1,
              ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
              ...(options.offline !== undefined ? { offline: options.offline } : {}),
            })
          : options.model;
      given = m.fingerprint;
      if (typeof options.model === 'string') await m.close();
    }
    if (declared && given && declared.hash !== given.hash) {
      throw new GlimpseError(
        'GLIMPSE_E_COLLECTION_MODEL_MISMATCH',
        `Expected the model of ${folder} (${shortFingerprint(declared)}, ${declared.id}, from its glimpse.json) but received model ${shortFingerprint(given)} (${given.id})`,
      );
    }
    const fingerprint = declared ?? given ?? null;
    if (fingerprint === null && !options.allowUnknownModel) {
      throw new GlimpseError(
        'GLIMPSE_E_IMPORT_MODEL_UNKNOWN',
        `Expected ${folder} to name its model (glimpse.json) or a model option but received neither; pass --model <id|dir> or --allow-unknown-model`,
      );
    }
    const dimension = parts[0]!.header.shape[1];
    const total = parts.reduce((a, p) => a + p.header.shape[0], 0);

    const metaColumns = new Set<string>();
    for (const p of parts)
      for (const c of p.info?.columns ?? []) if (c.type !== 'FLOAT_LIST') metaColumns.add(c.name);
    if (options.idColumn !== undefined && !metaColumns.has(options.idColumn)) {
      throw layoutError(
        `Expected a metadata column ${JSON.stringify(options.idColumn)} (the id column) in ${folder} but it has ${[...metaColumns].map((c) => JSON.stringify(c)).join(', ') || 'no metadata'}`,
        folder,
      );
    }
    let created = false;
    try {
      collection = await openCollection(store, name);
    } catch (err) {
      if (!isGlimpseError(err, 'GLIMPSE_E_COLLECTION_NOT_FOUND') || options.createIfMissing === false)
        throw err;
      collection = await createCollection(store, name, {
        fingerprint,
        dimension,
        modelRef: typeof options.model === 'string' ? options.model : null,
      });
      created = true;
    }
    collection.checkSource({ fingerprint, allowUnknownModel: options.allowUnknownModel ?? false });
    if (collection.dimension !== dimension) {
      throw new GlimpseError(
        'GLIMPSE_E_COLLECTION_DIM_MISMATCH',
        `Expected vectors of dimension ${collection.dimension} for collection ${name} but ${folder} holds dimension ${dimension}`,
      );
    }
    // Appending is much faster than merging; safe when the collection starts empty and ids are row numbers.
    const mode = options.idColumn === undefined && (await collection.count()) === 0 ? 'append' : 'upsert';

    const tracker = new ProgressTracker('import', total, options.onProgress);
    const failures: ItemFailure[] = [];
    let inserted = 0;
    let updated = 0;
    let row = 0;
    // One write in flight while the next chunk is read and converted (LanceDB writes on its own threads).
    let inflight: Promise<{ error: unknown } | undefined> | undefined;
    const settle = async (): Promise<void> => {
      const r = await inflight;
      inflight = undefined;
      if (r !== undefined) throw r.error;
    };
    for (const part of parts) {
      const rows = part.header.shape[0];
      const names = (part.info?.columns ?? []).filter((c) => c.type !== 'FLOAT_LIST').map((c) => c.name);
      for (let start = 0; start < rows; start += batchRows) {
        options.signal?.throwIfAborted();
        const end = Math.min(rows, start + batchRows);
        const { vectors, normalized } = await readRows(storage, part, start, end);
        const values: Record<string, unknown[]> = {};
        if (part.reader && part.info && names.length > 0) {
          const cols = await readParquetColumns(part.reader, {
            columns: names,
            rowStart: start,
            rowEnd: end,
            info: part.info,
          });
          for (const n of names)
            values[n === 'image_path' || n === 'caption' ? n : metadataKey(n)] = cols.columns[n]!;
        }
        let ids: string[];
        if (options.idColumn !== undefined) {
          const col = values[metadataKey(options.idColumn)] ?? values[options.idColumn] ?? [];
          ids = col.map((v) =>
            typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'bigint' ? String(v) : '',
          );
        } else {
          ids = new Array<string>(end - start);
          for (let i = 0; i < ids.length; i++) ids[i] = String(row + i);
        }
        row += end - start;
        await settle();
        const target = collection;
        inflight = target.writeRows({ ids, vectors, values, normalized }, mode).then(
          (r) => {
            inserted += r.inserted;
            updated += r.updated;
            failures.push(...r.failures);
            tracker.add(ids.length, r.failures.length);
            return undefined;
          },
          (error: unknown) => ({ error }),
        );
      }
    }
    await settle();
    const done = tracker.finish();
    const seconds = (performance.now() - started) / 1000;
    return {
      collection: name,
      files: parts.length,
      rows: total,
      inserted,
      updated,
      failed: failures.length,
      failures,
      created,
      model: fingerprint ? shortFingerprint(fingerprint) : null,
      seconds,
      rate: done.done / Math.max(seconds, 1e-9),
    };
  } catch (err) {
    if (options.signal?.aborted) {
      throw new GlimpseError(
        'GLIMPSE_E_ABORTED',
        `Expected the import into ${name} to finish but it was cancelled; rows written so far are kept`,
        { cause: err },
      );
    }
    throw err;
  } finally {
    await collection?.close();
    if (typeof db === 'string') store.close();
    storage.close();
  }
}

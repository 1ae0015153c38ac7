/**
 * Collections: named sets of vectors of ONE model in an embedded LanceDB database (a folder or an `s3://`
 * prefix), with their metadata, searchable by text, image or vector with structured filters. This module
 * wires the model (pipeline/model.ts), the store (index/) and query building (search/) together; inserts
 * through the embedding pipeline live in collection-insert.ts, imports in collection-import.ts, index builds
 * and recall evaluation in collection-index.ts, and `filter` (copy the hits) in collection-filter.ts.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { GlimpseError } from '../errors/index.js';
import { invalidParameterError, isPlainObject } from '../core/validate.js';
import type { ModelFingerprint } from '../models/types.js';
import { shortFingerprint } from '../models/fingerprint.js';
import {
  VectorStore,
  type CollectionTable,
  type RowBatch,
  type RowFailure,
  type VectorIndexInfo,
  type VectorStoreOptions,
} from '../index/lancedb.js';
import {
  assertCollectionName,
  makeBinding,
  metadataKey,
  type Cell,
  type CollectionBinding,
  type ColumnType,
  type SearchDefaults,
} from '../index/schema.js';
import { compileFilter, idsPredicate, parseFilter } from '../search/filter.js';
import { normalizeQuery, scoreFromDistance } from '../search/query.js';
import { loadModel, type ClipModel, type ImageInput, type LoadModelOptions } from './model.js';

/** A database handle, or its URI (opened and closed around the call). */
export type DatabaseRef = string | VectorStore;

export interface OpenDatabaseOptions {
  /** Object-store options passed to LanceDB as is (`region`, `endpoint`, `aws_access_key_id`, …). */
  storageOptions?: Record<string, string>;
  /**
   * Seconds between checks for writes by other processes (0: every read). Default: never — an open
   * collection sees the version it opened plus its own writes. Set it in long-lived readers (servers).
   */
  readConsistencySeconds?: number;
}

/**
 * Opens a collection database: a local folder (created on first write) or an `s3://bucket/prefix`.
 *
 * @example
 *   const db = await openDatabase('data/glimpse-db');
 *   const names = (await listCollections(db)).map((c) => c.name);
 *   db.close();
 */
export async function openDatabase(uri: string, options: OpenDatabaseOptions = {}): Promise<VectorStore> {
  const storeOptions: VectorStoreOptions = {};
  if (options.storageOptions !== undefined) {
    if (
      !isPlainObject(options.storageOptions) ||
      !Object.values(options.storageOptions).every((v) => typeof v === 'string')
    )
      throw invalidParameterError('storageOptions', 'an object of string values', options.storageOptions);
    storeOptions.storageOptions = options.storageOptions;
  }
  if (options.readConsistencySeconds !== undefined) {
    const s = options.readConsistencySeconds;
    if (typeof s !== 'number' || !Number.isFinite(s) || s < 0)
      throw invalidParameterError('readConsistencySeconds', 'a number of seconds ≥ 0', s);
    storeOptions.readConsistencySeconds = s;
  }
  return VectorStore.connect(uri, storeOptions);
}

async function withDb<T>(db: DatabaseRef, fn: (store: VectorStore) => Promise<T>): Promise<T> {
  if (typeof db !== 'string') return fn(db);
  const store = await openDatabase(db);
  try {
    return await fn(store);
  } finally {
    store.close();
  }
}

/** A column as users see it. */
export interface CollectionColumnInfo {
  readonly key: string;
  readonly type: ColumnType;
}

/** One vector to store. */
export interface VectorItem {
  readonly id: string;
  readonly vector: ArrayLike<number>;
  readonly imagePath?: string | null;
  readonly caption?: string | null;
  /** Metadata (nested objects are flattened to `a.b` keys, like clip-retrieval's metadata). */
  readonly metadata?: Record<string, unknown>;
}

/** Which model the vectors come from, checked against the collection's binding. */
export interface VectorSourceOptions {
  /** The fingerprint (or its hash) of the model that made the vectors. */
  fingerprint?: ModelFingerprint | string | null;
  /** Store vectors whose model is not known (the caller vouches for them; the dimension is still checked). */
  allowUnknownModel?: boolean;
}

export interface UpsertOptions extends VectorSourceOptions {
  /** `upsert` (default) replaces rows with the same id; `append` only adds (faster; ids must be new). */
  mode?: 'upsert' | 'append';
}

/** An item that was not stored, with its coded reason. */
export interface ItemFailure {
  readonly key: string;
  readonly code: string;
  readonly message: string;
}

export interface UpsertResult {
  readonly inserted: number;
  readonly updated: number;
  readonly failed: number;
  readonly failures: readonly ItemFailure[];
}

/** A search: exactly one of `vector`, `text`, `image`. */
export interface SearchOptions {
  vector?: ArrayLike<number>;
  text?: string;
  /** A path, an http(s) URL or the bytes of an image. */
  image?: ImageInput;
  /** The model for text and image queries (default: the one the collection was created with). */
  model?: ClipModel | string;
  /** Options for loading `model` when it is a name. */
  modelOptions?: LoadModelOptions;
  /** Results to return (default 10, at most 10,000). */
  topK?: number;
  /** A structured filter (object or JSON text), see docs/search.md. */
  filter?: unknown;
  /** Only results with score ≥ this (cosine similarity). */
  minScore?: number;
  /** Override the index's stored search parameters. */
  nprobes?: number;
  ef?: number;
  refineFactor?: number;
  /** Exact search (ignores the index). */
  exact?: boolean;
}

/** One search result. */
export interface SearchHit {
  readonly id: string;
  /** Cosine similarity to the query (higher is better, at most 1). */
  readonly score: number;
  /** `image_path`, `caption` and the metadata keys, nulls included. */
  readonly metadata: Record<string, Cell>;
}

export interface CollectionSummary {
  readonly name: string;
  readonly rows: number;
  readonly dimension: number;
  /** Short model fingerprint, or null when the model is unknown. */
  readonly model: string | null;
  readonly modelId: string | null;
}

export interface CollectionStats extends CollectionSummary {
  readonly fingerprint: ModelFingerprint | null;
  readonly modelRef: string | null;
  readonly createdAt: string;
  readonly columns: readonly CollectionColumnInfo[];
  readonly bytes: number;
  readonly fragments: number;
  readonly version: number;
  readonly index: (VectorIndexInfo & { search: SearchDefaults }) | null;
}

function fingerprintHash(f: ModelFingerprint | string): string {
  return typeof f === 'string' ? f : f.hash;
}

/**
 * A collection: vectors of one model with their metadata. Get one with `createCollection` or
 * `openCollection`; close it when done.
 *
 * @example
 *   const c = await openCollection('data/db', 'photos');
 *   const hits = await c.search({ text: 'a dog on a beach', topK: 5, filter: { eq: ['source', 'flickr'] } });
 *   await c.close();
 */
export class Collection {
  /** @internal */
  constructor(
    /** @internal the store table */
    readonly table: CollectionTable,
    private readonly ownedStore: VectorStore | undefined,
  ) {}

  get name(): string {
    return this.table.name;
  }

  get dimension(): number {
    return this.table.dimension;
  }

  /** The model the collection is bound to (null: unknown model). */
  get fingerprint(): ModelFingerprint | null {
    return this.table.binding.fingerprint;
  }

  get binding(): CollectionBinding {
    return this.table.binding;
  }

  /** Columns as users see them (filters and results use these keys). */
  get columns(): CollectionColumnInfo[] {
    return this.table.columns.map((c) => ({ key: c.key, type: c.type }));
  }

  /**
   * Throws GLIMPSE_E_COLLECTION_MODEL_MISMATCH unless vectors of `source` may enter this collection: the same
   * fingerprint, or `allowUnknownModel` with no fingerprint, or a collection of unknown model.
   */
  checkSource(source: VectorSourceOptions): void {
    const mine = this.fingerprint;
    const theirs = source.fingerprint ?? null;
    if (theirs === null) {
      if (source.allowUnknownModel || mine === null) return;
      throw new GlimpseError(
        'GLIMPSE_E_COLLECTION_MODEL_MISMATCH',
        `Expected vectors of model ${shortFingerprint(mine)} (${mine.id}) for collection ${this.name} but received vectors of an unknown model (pass a fingerprint, or allowUnknownModel to vouch for them)`,
        { details: { collection: this.name, expected: mine.hash } },
      );
    }
    if (mine === null) return;
    const hash = fingerprintHash(theirs);
    if (hash !== mine.hash) {
      throw new GlimpseError(
        'GLIMPSE_E_COLLECTION_MODEL_MISMATCH',
        `Expected vectors of model ${shortFingerprint(mine)} (${mine.id}) for collection ${this.name} but received vectors of model ${shortFingerprint(hash)}${typeof theirs === 'string' ? '' : ` (${theirs.id})`}; a new model needs a new collection`,
        { details: { collection: this.name, expected: mine.hash, received: hash } },
      );
    }
  }

  /** Rows in the collection, or rows matching a structured filter. */
  async count(filter?: unknown): Promise<number> {
    return this.table.countRows(filter === undefined ? undefined : this.compile(filter));
  }

  /** Compiles a structured filter against this collection's columns (GLIMPSE_E_FILTER_INVALID when bad). */
  compile(filter: unknown): string {
    return compileFilter(parseFilter(filter), this.table.columns);
  }

  /**
   * Stores vectors (L2-normalized here) with their metadata; rows with an existing id are replaced.
   * Vectors from another model are refused; bad items are recorded in `failures` and the rest stored.
   *
   * @example
   *   await c.upsertVectors([{ id: 'a', vector: v, metadata: { url: 'https://…' } }], { fingerprint: model.fingerprint });
   */
  async upsertVectors(items: readonly VectorItem[], options: UpsertOptions = {}): Promise<UpsertResult> {
    if (!Array.isArray(items)) throw invalidParameterError('items', 'an array of { id, vector }', items);
    this.checkSource(options);
    const d = this.dimension;
    const failures: ItemFailure[] = [];
    const good: VectorItem[] = [];
    items.forEach((item, i) => {
      const key = typeof item?.id === 'string' ? item.id : `items[${i}]`;
      const v = item?.vector;
      if (v === undefined || v === null || typeof v.length !== 'number' || v.length !== d) {
        failures.push({
          key,
          code: 'GLIMPSE_E_COLLECTION_DIM_MISMATCH',
          message: `Expected a vector of dimension ${d} for ${key} but received ${v === undefined || v === null ? String(v) : `${v.length} values`}`,
        });
        return;
      }
      good.push(item);
    });
    const batch = rowBatchFromItems(good, d);
    const r = await this.writeRows(batch, options.mode ?? 'upsert');
    return {
      inserted: r.inserted,
      updated: r.updated,
      failed: failures.length + r.failures.length,
      failures: [...failures, ...r.failures],
    };
  }

  /** @internal writes a column-wise batch (vectors normalized in place); source already checked. */
  async writeRows(
    batch: RowBatch,
    mode: 'upsert' | 'append',
  ): Promise<{ inserted: number; updated: number; failures: ItemFailure[] }> {
    const r = await this.table.write(batch, mode);
    return { inserted: r.inserted, updated: r.updated, failures: r.failures.map(itemFailure) };
  }

  /** Deletes rows by id; returns how many were deleted. */
  async deleteIds(ids: readonly string[]): Promise<number> {
    if (!Array.isArray(ids) || !ids.every((i) => typeof i === 'string'))
      throw invalidParameterError('ids', 'an array of strings', ids);
    let deleted = 0;
    for (let i = 0; i < ids.length; i += 1000)
      deleted += await this.table.deleteWhere(idsPredicate(ids.slice(i, i + 1000)));
    return deleted;
  }

  /** Deletes the rows a structured filter matches; returns how many were deleted. */
  async deleteWhere(filter: unknown): Promise<number> {
    return this.table.deleteWhere(this.compile(filter));
  }

  /**
   * Searches by text, image or vector; results best first with their cosine similarity and metadata.
   *
   * @example
   *   await c.search({ vector: queryVector, topK: 10, filter: { range: ['width', { gte: 100 }] } });
   *   await c.search({ text: 'a red car', model });
   */
  async search(options: SearchOptions): Promise<SearchHit[]> {
    const topK = options.topK ?? 10;
    if (!Number.isInteger(topK) || topK <= 0 || topK > 10_000)
      throw invalidParameterError('topK', 'an integer from 1 to 10000', topK);
    if (
      options.minScore !== undefined &&
      (typeof options.minScore !== 'number' || !Number.isFinite(options.minScore))
    )
      throw invalidParameterError('minScore', 'a finite number', options.minScore);
    const where =
      options.filter === undefined || options.filter === null ? undefined : this.compile(options.filter);
    const vector = await this.queryVector(options);
    const defaults = this.table.searchDefaults;
    const rows = await this.table.search({
      vector,
      k: topK,
      ...(where !== undefined ? { where } : {}),
      ...(options.exact ? { exact: true } : {}),
      ...pick('nprobes', options.nprobes ?? defaults.nprobes),
      ...pick('ef', options.ef ?? defaults.ef),
      ...pick('refineFactor', options.refineFactor ?? defaults.refineFactor),
      ...(options.minScore !== undefined ? { maxDistance: 1 - options.minScore } : {}),
    });
    return rows.map((r) => ({ id: r.id, score: scoreFromDistance(r.distance ?? 1), metadata: r.values }));
  }

  /** The normalized query vector of a search (embedding text or image with the collection's model). */
  async queryVector(
    options: Pick<SearchOptions, 'vector' | 'text' | 'image' | 'model' | 'modelOptions'>,
  ): Promise<Float32Array> {
    const given = [options.vector, options.text, options.image].filter((q) => q !== undefined).length;
    if (given !== 1) {
      throw new GlimpseError(
        'GLIMPSE_E_SEARCH_QUERY_INVALID',
        `Expected exactly one of vector, text, image for the search but received ${given === 0 ? 'none' : given}`,
      );
    }
    if (options.vector !== undefined) return normalizeQuery(options.vector, this.dimension);
    if (options.text !== undefined && (typeof options.text !== 'string' || options.text.trim() === ''))
      throw invalidParameterError(
        'text',
        'a non-empty string',
        options.text,
        'GLIMPSE_E_SEARCH_QUERY_INVALID',
      );
    return this.withModel(options.model, options.modelOptions, async (model) => {
      const m =
        options.text !== undefined
          ? await model.embedTexts([options.text])
          : await model.embedImages([options.image!]);
      return normalizeQuery(m.data, this.dimension);
    });
  }

  /**
   * Runs `fn` with the model for this collection's text and image queries: `model` if given (checked against
   * the binding), else the model the collection was created with. A model loaded here is closed after.
   */
  async withModel<T>(
    model: ClipModel | string | undefined,
    modelOptions: LoadModelOptions | undefined,
    fn: (model: ClipModel) => Promise<T>,
  ): Promise<T> {
    const ref = model ?? this.binding.model ?? undefined;
    if (ref === undefined) {
      throw new GlimpseError(
        'GLIMPSE_E_SEARCH_QUERY_INVALID',
        `Expected a model for a text or image query on collection ${this.name} (its vectors are of an unknown model) but received none; pass --model`,
      );
    }
    const loaded =
      typeof ref === 'string' ? await loadModel(ref, { decodeWorkers: 1, ...modelOptions }) : ref;
    try {
      this.checkSource({ fingerprint: loaded.fingerprint });
      return await fn(loaded);
    } finally {
      if (typeof ref === 'string') await loaded.close();
    }
  }

  /** Statistics: rows, size, columns, model and index. */
  async stats(): Promise<CollectionStats> {
    const s = await this.table.stats();
    const index = await this.table.vectorIndex();
    const fp = this.fingerprint;
    return {
      name: this.name,
      rows: s.rows,
      dimension: this.dimension,
      model: fp ? shortFingerprint(fp) : null,
      modelId: fp ? fp.id : null,
      fingerprint: fp,
      modelRef: this.binding.model,
      createdAt: this.binding.createdAt,
      columns: this.columns,
      bytes: s.bytes,
      fragments: s.fragments,
      version: s.version,
      index: index ? { ...index, search: this.table.searchDefaults } : null,
    };
  }

  /** Compacts small writes and folds rows added since the index build into the index. */
  async optimize(): Promise<void> {
    await this.table.optimize();
  }

  async close(): Promise<void> {
    this.table.close();
    this.ownedStore?.close();
  }
}

function pick<K extends string>(key: K, value: number | undefined): Partial<Record<K, number>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, number>);
}

function itemFailure(f: RowFailure): ItemFailure {
  return { key: f.id, code: f.code, message: f.message };
}

/** Flattens nested metadata into `a.b` keys (arrays stay one value), renaming reserved keys. */
function flatten(meta: Record<string, unknown>, out: Map<string, unknown>, prefix = ''): void {
  for (const [k, v] of Object.entries(meta)) {
    const key = prefix === '' ? k : `${prefix}.${k}`;
    if (v !== null && typeof v === 'object' && !Array.isArray(v))
      flatten(v as Record<string, unknown>, out, key);
    else out.set(prefix === '' ? metadataKey(key) : key, v);
  }
}

/** @internal column-wise batch from items (the metadata of each item flattened). */
export function rowBatchFromItems(items: readonly VectorItem[], dimension: number): RowBatch {
  const n = items.length;
  const vectors = new Float32Array(n * dimension);
  const values: Record<string, unknown[]> = {
    image_path: new Array<unknown>(n).fill(null),
    caption: new Array<unknown>(n).fill(null),
  };
  items.forEach((item, i) => {
    vectors.set(Array.from(item.vector), i * dimension);
    values['image_path']![i] = item.imagePath ?? null;
    values['caption']![i] = item.caption ?? null;
    if (item.metadata) {
      const flat = new Map<string, unknown>();
      flatten(item.metadata, flat);
      for (const [k, v] of flat) (values[k] ??= new Array<unknown>(n).fill(null))[i] = v;
    }
  });
  return { ids: items.map((it) => it.id), vectors, values };
}

export interface CreateCollectionOptions {
  /** The model whose vectors the collection holds: a loaded model, or a folder / hub id (fingerprinted). */
  model?: ClipModel | string;
  /** Options for loading `model` when it is a name. */
  modelOptions?: LoadModelOptions;
  /** Or the fingerprint itself (null: vectors of an unknown model, imported unchecked). */
  fingerprint?: ModelFingerprint | null;
  /** The vectors' dimension (default: the model's). */
  dimension?: number;
  /** How later text and image searches load the model (default: the model's folder or hub id). */
  modelRef?: string | null;
}

/**
 * Creates an empty collection bound to one model (its fingerprint and dimension): vectors of any other
 * model are refused. GLIMPSE_E_COLLECTION_EXISTS when the name is taken.
 *
 * @example
 *   const c = await createCollection('data/db', 'photos', { model: 'models/vit-b-32' });
 *   const d = await createCollection(db, 'imported', { fingerprint: null, dimension: 512 });
 */
export async function createCollection(
  db: DatabaseRef,
  name: string,
  options: CreateCollectionOptions,
): Promise<Collection> {
  assertCollectionName(name);
  if (typeof options !== 'object' || options === null)
    throw invalidParameterError('options', 'an object with model or fingerprint', options);
  let fingerprint: ModelFingerprint | null;
  let modelRef: string | null = options.modelRef ?? null;
  let dimension = options.dimension;
  if (options.model !== undefined) {
    const model =
      typeof options.model === 'string'
        ? await loadModel(options.model, { decodeWorkers: 1, ...options.modelOptions })
        : options.model;
    fingerprint = model.fingerprint;
    dimension ??= model.dimension;
    if (options.modelRef === undefined) {
      const given = typeof options.model === 'string' ? options.model : model.folder.dir;
      modelRef = existsSync(given) ? resolve(given) : given;
    }
    if (typeof options.model === 'string') await model.close();
  } else if (options.fingerprint !== undefined) {
    fingerprint = options.fingerprint;
    dimension ??= fingerprint?.dimension;
  } else {
    throw invalidParameterError('options', 'a model or a fingerprint (null for an unknown model)', options);
  }
  if (dimension === undefined) throw invalidParameterError('dimension', 'a positive integer', dimension);
  const binding = makeBinding({ fingerprint, model: modelRef, dimension });
  if (typeof db === 'string') {
    const store = await openDatabase(db);
    try {
      return new Collection(await store.createTable(name, binding), store);
    } catch (err) {
      store.close();
      throw err;
    }
  }
  return new Collection(await db.createTable(name, binding), undefined);
}

/**
 * Opens a collection. GLIMPSE_E_COLLECTION_NOT_FOUND when there is none of that name.
 *
 * @example
 *   const c = await openCollection('data/db', 'photos');
 *   console.log(await c.count());
 *   await c.close();
 */
export async function openCollection(db: DatabaseRef, name: string): Promise<Collection> {
  if (typeof db === 'string') {
    const store = await openDatabase(db);
    try {
      return new Collection(await store.openTable(name), store);
    } catch (err) {
      store.close();
      throw err;
    }
  }
  return new Collection(await db.openTable(name), undefined);
}

/**
 * The collections of a database, by name, with rows, dimension and model. Tables that are not glimpse
 * collections are left out.
 *
 * @example
 *   for (const c of await listCollections('data/db')) console.log(c.name, c.rows, c.model);
 */
export async function listCollections(db: DatabaseRef): Promise<CollectionSummary[]> {
  return withDb(db, async (store) => {
    const out: CollectionSummary[] = [];
    for (const name of await store.tableNames()) {
      let table: CollectionTable;
      try {
        table = await store.openTable(name);
      } catch {
        continue; // not a glimpse collection (or a name glimpse would not make)
      }
      try {
        const fp = table.binding.fingerprint;
        out.push({
          name,
          rows: await table.countRows(),
          dimension: table.dimension,
          model: fp ? shortFingerprint(fp) : null,
          modelId: fp ? fp.id : null,
        });
      } finally {
        table.close();
      }
    }
    return out;
  });
}

/**
 * A collection's statistics: rows, bytes, model, columns, index.
 *
 * @example
 *   const s = await collectionStats('data/db', 'photos'); // { rows: 30, dimension: 512, index: null, … }
 */
export async function collectionStats(db: DatabaseRef, name: string): Promise<CollectionStats> {
  return withDb(db, async (store) => {
    const c = await openCollection(store, name);
    try {
      return await c.stats();
    } finally {
      await c.close();
    }
  });
}

/**
 * Deletes a collection and its data. GLIMPSE_E_COLLECTION_NOT_FOUND when there is none of that name.
 *
 * @example
 *   await deleteCollection('data/db', 'old-photos');
 */
export async function deleteCollection(db: DatabaseRef, name: string): Promise<void> {
  await withDb(db, (store) => store.dropTable(name));
}

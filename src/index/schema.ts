/**
 * What a collection is, as plain data: its binding to one model (fingerprint and dimension), its columns
 * (logical keys as users see them ↔ physical column names LanceDB accepts) and the rules that turn
 * metadata values into typed cells. Nothing here touches LanceDB; `lancedb.ts` stores and reads it.
 */
import { GlimpseError } from '../errors/index.js';
import { describeValue, invalidParameterError, isPlainObject } from '../core/validate.js';
import type { ModelFingerprint } from '../models/types.js';

/** The column types a collection has: every metadata value is one of these (or null). */
export type ColumnType = 'string' | 'number' | 'boolean';

/** One cell of a metadata column. */
export type Cell = string | number | boolean | null;

/** A column as users see it (`key`, used in filters and results) and as it is stored (`column`). */
export interface CollectionColumn {
  /** The logical key: `id`, `image_path`, `caption`, or a flattened metadata key such as `exif.width`. */
  readonly key: string;
  /** The physical column name: letters, digits and `_` only (LanceDB forbids `.` in top-level names). */
  readonly column: string;
  readonly type: ColumnType;
}

/** Schema metadata key under which a collection's binding is stored (JSON). */
export const BINDING_METADATA_KEY = 'glimpse:collection';
/** Field metadata key holding a column's logical key. */
export const KEY_METADATA_KEY = 'glimpse:key';
/** Field metadata key (on the vector column) holding the default search parameters (JSON). */
export const SEARCH_METADATA_KEY = 'glimpse:search';

/** The id column, the vector column and the two well-known metadata columns every collection has. */
export const ID_COLUMN = 'id';
export const VECTOR_COLUMN = 'vector';
export const FIXED_COLUMNS: readonly CollectionColumn[] = [
  { key: 'id', column: 'id', type: 'string' },
  { key: 'image_path', column: 'image_path', type: 'string' },
  { key: 'caption', column: 'caption', type: 'string' },
];
/** Logical keys a metadata key may not take (it is stored as `meta.<key>` instead). */
const RESERVED_KEYS = new Set(['id', 'vector', 'image_path', 'caption', 'score']);

/** A collection's binding: the one model and dimension its vectors come from. Immutable. */
export interface CollectionBinding {
  readonly format: 'glimpse-collection';
  readonly version: 1;
  /** The model's fingerprint, or null for vectors of an unknown model (imported unchecked). */
  readonly fingerprint: ModelFingerprint | null;
  /** How the model was named when the collection was made (a folder or hub id): the default for searches. */
  readonly model: string | null;
  readonly dimension: number;
  /** Vectors are L2-normalized; similarity is their dot product (= cosine). */
  readonly metric: 'cosine';
  readonly createdAt: string;
}

/** Default search parameters stored with the vector index (chosen when it was built). */
export interface SearchDefaults {
  /** IVF partitions probed (IVF_PQ, IVF_HNSW_SQ). */
  nprobes?: number;
  /** HNSW candidate list size. */
  ef?: number;
  /** Re-rank `refineFactor × k` candidates with exact distances (IVF_PQ). */
  refineFactor?: number;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

/**
 * Throws GLIMPSE_E_COLLECTION_NAME_INVALID unless `name` is 1–128 letters, digits, `_` or `-`, starting
 * with a letter or digit (names become folder names and object-store prefixes).
 *
 * @example
 *   assertCollectionName('photos-2024'); // ok
 *   assertCollectionName('../etc');      // throws
 */
export function assertCollectionName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw invalidParameterError(
      'collection name',
      '1 to 128 letters, digits, "_" or "-", starting with a letter or digit',
      name,
      'GLIMPSE_E_COLLECTION_NAME_INVALID',
    );
  }
}

/**
 * The binding JSON stored in the table's schema metadata.
 *
 * @example
 *   const b = makeBinding({ fingerprint: model.fingerprint, model: 'models/tiny', dimension: 64 });
 */
export function makeBinding(input: {
  fingerprint: ModelFingerprint | null;
  model: string | null;
  dimension: number;
}): CollectionBinding {
  if (!Number.isInteger(input.dimension) || input.dimension <= 0 || input.dimension > 65536) {
    throw invalidParameterError('dimension', 'an integer from 1 to 65536', input.dimension);
  }
  if (input.fingerprint !== null && input.fingerprint.dimension !== input.dimension) {
    throw new GlimpseError(
      'GLIMPSE_E_COLLECTION_DIM_MISMATCH',
      `Expected dimension ${input.fingerprint.dimension} (the model's) for the collection but received ${input.dimension}`,
    );
  }
  return {
    format: 'glimpse-collection',
    version: 1,
    fingerprint: input.fingerprint,
    model: input.model,
    dimension: input.dimension,
    metric: 'cosine',
    createdAt: new Date().toISOString(),
  };
}

/** Parses a stored binding; throws GLIMPSE_E_COLLECTION_INVALID when it is missing or damaged. */
export function parseBinding(text: string | undefined, table: string): CollectionBinding {
  const invalid = (why: string): GlimpseError =>
    new GlimpseError(
      'GLIMPSE_E_COLLECTION_INVALID',
      `Expected glimpse collection metadata in table ${table} but ${why}`,
      { details: { collection: table } },
    );
  if (text === undefined) throw invalid('it has none (not made by glimpse)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid('it is not JSON');
  }
  if (!isPlainObject(parsed) || parsed['format'] !== 'glimpse-collection' || parsed['version'] !== 1) {
    throw invalid('its format or version is unknown');
  }
  const dimension = parsed['dimension'];
  if (typeof dimension !== 'number' || !Number.isInteger(dimension) || dimension <= 0) {
    throw invalid('its dimension is not a positive integer');
  }
  const fp = parsed['fingerprint'];
  if (fp !== null && !(isPlainObject(fp) && typeof fp['hash'] === 'string')) {
    throw invalid('its fingerprint is damaged');
  }
  const model = parsed['model'];
  return {
    format: 'glimpse-collection',
    version: 1,
    fingerprint: fp as ModelFingerprint | null,
    model: typeof model === 'string' ? model : null,
    dimension,
    metric: 'cosine',
    createdAt: typeof parsed['createdAt'] === 'string' ? parsed['createdAt'] : '',
  };
}

/** Parses stored search defaults (unknown or bad fields are dropped). */
export function parseSearchDefaults(text: string | undefined): SearchDefaults {
  if (text === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return {};
  }
  if (!isPlainObject(parsed)) return {};
  const out: SearchDefaults = {};
  for (const k of ['nprobes', 'ef', 'refineFactor'] as const) {
    const v = parsed[k];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) out[k] = v;
  }
  return out;
}

/**
 * The logical key a metadata key is stored under: itself, or `meta.<key>` when it would shadow a fixed
 * column (`id`, `vector`, `image_path`, `caption`, `score`).
 *
 * @example
 *   metadataKey('url'); // 'url'
 *   metadataKey('id');  // 'meta.id'
 */
export function metadataKey(key: string): string {
  return RESERVED_KEYS.has(key) ? `meta.${key}` : key;
}

/**
 * A physical column name for a logical key: characters other than letters, digits and `_` become `_`,
 * a leading digit or `_` gets the prefix `m_`, and a name already taken (case-insensitively) gets `_2`,
 * `_3`… The logical key is kept in the field's metadata, so users never see the physical name.
 *
 * @example
 *   physicalColumnName('exif.width', new Set(['id'])); // 'exif_width'
 */
export function physicalColumnName(key: string, taken: ReadonlySet<string>): string {
  let base = key.replace(/[^A-Za-z0-9_]/g, '_');
  if (base === '' || /^[0-9_]/.test(base)) base = `m_${base}`;
  if (base.length > 100) base = base.slice(0, 100);
  const lower = new Set([...taken].map((t) => t.toLowerCase()));
  let name = base;
  for (let i = 2; lower.has(name.toLowerCase()) || name.toLowerCase() === VECTOR_COLUMN; i++) {
    name = `${base}_${i}`;
  }
  return name;
}

/** The column type a JSON value would create, or undefined for null/undefined (no evidence). */
export function inferColumnType(value: unknown): ColumnType | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? 'number' : undefined;
  if (typeof value === 'bigint') return 'number';
  if (typeof value === 'boolean') return 'boolean';
  return 'string';
}

/**
 * Converts a metadata value into a cell of a column of `type`. Strings columns take anything (other values
 * as JSON text, as clip-retrieval's metadata does); number columns take numbers (non-finite → null);
 * boolean columns take booleans. Returns an error message when the value does not fit.
 *
 * @example
 *   toCell('number', 3);     // { cell: 3 }
 *   toCell('number', 'x');   // { error: 'Expected a number ... but received "x" of type string' }
 */
export function toCell(type: ColumnType, value: unknown, key: string): { cell: Cell } | { error: string } {
  if (value === null || value === undefined) return { cell: null };
  switch (type) {
    case 'string':
      if (typeof value === 'string') return { cell: value };
      if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
        return { cell: String(value) };
      return { cell: JSON.stringify(value) };
    case 'number':
      if (typeof value === 'number') return { cell: Number.isFinite(value) ? value : null };
      if (typeof value === 'bigint') return { cell: Number(value) };
      return { error: `Expected a number for metadata column ${key} but received ${describeValue(value)}` };
    case 'boolean':
      if (typeof value === 'boolean') return { cell: value };
      return { error: `Expected a boolean for metadata column ${key} but received ${describeValue(value)}` };
  }
}

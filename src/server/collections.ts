/**
 * The server's view of the collection database: open collection handles cached by name (reopened after
 * `refreshMs` so writes by other processes show up), searches that can return the stored vectors (for
 * clip-retrieval's `deduplicate`), rows by id, and the stored vector of one item ("more like this").
 * Everything goes through the collection library (pipeline/collection.ts).
 */
import type { VectorStore } from '../index/lancedb.js';
import type { Cell } from '../index/schema.js';
import { idsPredicate } from '../search/filter.js';
import { scoreFromDistance } from '../search/query.js';
import {
  createCollection,
  deleteCollection,
  listCollections,
  openCollection,
  openDatabase,
  type Collection,
  type CollectionSummary,
  type CreateCollectionOptions,
} from '../pipeline/collection.js';
import { GlimpseError } from '../errors/index.js';

/** One search result as the routes use it. */
export interface Hit {
  readonly id: string;
  readonly score: number;
  readonly metadata: Record<string, Cell>;
  /** The stored vector, when asked for. */
  readonly vector?: Float32Array;
}

export interface HitQuery {
  readonly vector: Float32Array;
  readonly topK: number;
  readonly filter?: unknown;
  readonly minScore?: number;
  readonly withVectors?: boolean;
}

interface Cached {
  collection: Collection;
  openedAt: number;
}

/**
 * The collection database as the server uses it.
 *
 * @example
 *   const registry = await CollectionRegistry.open('data/glimpse-db');
 *   const photos = await registry.get('photos');
 *   const hits = await registry.search(photos, { vector: q, topK: 10 });
 *   await registry.close();
 */
export class CollectionRegistry {
  private readonly cache = new Map<string, Cached>();
  private readonly retired: Collection[] = [];

  private constructor(
    readonly store: VectorStore,
    private readonly refreshMs: number,
  ) {}

  static async open(uri: string, options: { refreshMs?: number } = {}): Promise<CollectionRegistry> {
    return new CollectionRegistry(await openDatabase(uri), options.refreshMs ?? 5000);
  }

  /** Every collection, by name. */
  list(): Promise<CollectionSummary[]> {
    return listCollections(this.store);
  }

  /** Collection names, sorted. */
  async names(): Promise<string[]> {
    return (await this.list()).map((c) => c.name);
  }

  /** An open collection (GLIMPSE_E_COLLECTION_NOT_FOUND when missing). */
  async get(name: string): Promise<Collection> {
    const cached = this.cache.get(name);
    const now = Date.now();
    if (cached && now - cached.openedAt < this.refreshMs) return cached.collection;
    const collection = await openCollection(this.store, name);
    if (cached) this.retire(cached.collection);
    this.cache.set(name, { collection, openedAt: now });
    return collection;
  }

  /** Old handles may still serve a request in flight: close them a while later. */
  private retire(collection: Collection): void {
    this.retired.push(collection);
    if (this.retired.length > 32) void this.retired.shift()?.close();
  }

  async create(name: string, options: CreateCollectionOptions): Promise<Collection> {
    const collection = await createCollection(this.store, name, options);
    this.cache.set(name, { collection, openedAt: Date.now() });
    return collection;
  }

  async drop(name: string): Promise<void> {
    const cached = this.cache.get(name);
    this.cache.delete(name);
    if (cached) this.retire(cached.collection);
    await deleteCollection(this.store, name);
  }

  /** Throws when the store cannot list its tables (health check). */
  async ping(): Promise<number> {
    return (await this.store.tableNames()).length;
  }

  /**
   * Nearest items to a vector (used as given: similarity is its inner product with the stored unit vectors),
   * best first, with the index's stored search parameters; with `withVectors` each hit carries its vector.
   *
   * @example
   *   const hits = await registry.search(c, { vector: q, topK: 40, filter: { eq: ['source', 'flickr'] } });
   */
  async search(collection: Collection, query: HitQuery): Promise<Hit[]> {
    const where =
      query.filter !== undefined && query.filter !== null ? collection.compile(query.filter) : undefined;
    const defaults = collection.table.searchDefaults;
    const rows = await collection.table.search({
      vector: query.vector,
      k: query.topK,
      withVectors: query.withVectors ?? false,
      ...(where !== undefined ? { where } : {}),
      ...(defaults.nprobes !== undefined ? { nprobes: defaults.nprobes } : {}),
      ...(defaults.ef !== undefined ? { ef: defaults.ef } : {}),
      ...(defaults.refineFactor !== undefined ? { refineFactor: defaults.refineFactor } : {}),
      ...(query.minScore !== undefined ? { maxDistance: 1 - query.minScore } : {}),
    });
    return rows.map((r) => ({
      id: r.id,
      score: scoreFromDistance(r.distance ?? 1),
      metadata: r.values,
      ...(r.vector ? { vector: r.vector } : {}),
    }));
  }

  /** Metadata of items by id (missing ids are absent from the map). */
  async rowsById(collection: Collection, ids: readonly string[]): Promise<Map<string, Record<string, Cell>>> {
    const out = new Map<string, Record<string, Cell>>();
    for (let i = 0; i < ids.length; i += 1000) {
      const rows = await collection.table.scan({ where: idsPredicate(ids.slice(i, i + 1000)) });
      for (const r of rows) out.set(r.id, r.values);
    }
    return out;
  }

  /** The stored vector of one item (GLIMPSE_E_SERVER_NOT_FOUND when there is no such id). */
  async vectorOf(collection: Collection, id: string): Promise<Float32Array> {
    const rows = await collection.table.scan({
      where: idsPredicate([id]),
      keys: [],
      withVectors: true,
      limit: 1,
    });
    const v = rows[0]?.vector;
    if (v === undefined) {
      throw new GlimpseError(
        'GLIMPSE_E_SERVER_NOT_FOUND',
        `Expected an item with id ${JSON.stringify(id)} in collection ${collection.name} but there is none`,
      );
    }
    return v;
  }

  async close(): Promise<void> {
    for (const { collection } of this.cache.values()) await collection.close();
    for (const c of this.retired) await c.close();
    this.cache.clear();
    this.retired.length = 0;
    this.store.close();
  }
}

/**
 * Greedy near-duplicate removal, as clip-retrieval's `deduplicate`: a hit is dropped when its vector has an
 * inner product above `threshold` with a better-ranked hit that was kept. Squared distances are summed
 * with an early exit (`|a-b|² = 2 - 2a·b`), so distinct pairs cost a few dozen coordinates, not all of them.
 *
 * @example
 *   const kept = deduplicateHits(hits, 0.94); // hits must carry their vectors
 */
export function deduplicateHits<T extends { vector?: Float32Array }>(
  hits: readonly T[],
  threshold = 0.94,
): T[] {
  const limit = 2 - 2 * threshold;
  const kept: T[] = [];
  const vectors: Float32Array[] = [];
  outer: for (const hit of hits) {
    const a = hit.vector;
    if (a === undefined) {
      kept.push(hit);
      continue;
    }
    for (const b of vectors) {
      let sum = 0;
      let j = 0;
      const n = a.length;
      for (; j < n; j++) {
        const diff = a[j]! - b[j]!;
        sum += diff * diff;
        if (sum >= limit) break;
      }
      if (j === n && sum < limit) continue outer;
    }
    kept.push(hit);
    vectors.push(a);
  }
  return kept;
}

/**
 * What the route handlers call: the server's operations on collections as plain functions of a context
 * (model, collections, image sources, metrics). Handlers parse and answer; these do the work through the
 * library (pipeline/collection.ts, search/query.ts).
 */
import { mapLimit } from '../core/async.js';
import { createHash } from 'node:crypto';
import { basename, isAbsolute } from 'node:path';
import { GlimpseError, isGlimpseError, toGlimpseError } from '../errors/index.js';
import { normalizeQuery } from '../search/query.js';
import type { Collection, ItemFailure, VectorItem } from '../pipeline/collection.js';
import type { ServerConfig } from '../config/server.js';
import type { QueryEmbedder } from './embedder.js';
import { deduplicateHits, type CollectionRegistry, type Hit } from './collections.js';
import { decodeBase64Image, imageFromPath, imageFromUrl, type ImageSources } from './images.js';
import type { ServerMetrics } from './metrics.js';

/** Everything the routes share. */
export interface ServerContext {
  readonly config: ServerConfig;
  readonly embedder: QueryEmbedder;
  readonly registry: CollectionRegistry;
  readonly images: ImageSources;
  readonly metrics: ServerMetrics;
}

/** A query: exactly one of these. `image` is base64 (or bytes from an upload); `id` is "more like this". */
export interface QueryInput {
  text?: string;
  image?: string | Uint8Array;
  image_url?: string;
  image_path?: string;
  vector?: number[];
  id?: string;
}

const QUERY_FIELDS = ['text', 'image', 'image_url', 'image_path', 'vector', 'id'] as const;

/**
 * A model id fit for answers: hub ids as they are, local folders by their last segment (no server paths).
 *
 * @example
 *   publicModelId('/srv/models/vit-b-32');          // 'vit-b-32'
 *   publicModelId('openai/clip-vit-base-patch32'); // unchanged
 */
export function publicModelId(id: string | null): string | null {
  if (id === null) return null;
  if (!isAbsolute(id) && !id.startsWith('.')) return id;
  return basename(id.replace(/[\\/]+$/, '')) || null;
}

/** Refuses text and image queries on a collection bound to another model than the server's. */
function checkModel(ctx: ServerContext, collection: Collection): void {
  collection.checkSource({ fingerprint: ctx.embedder.fingerprint });
}

/**
 * The normalized query vector of a request (GLIMPSE_E_SEARCH_QUERY_INVALID unless exactly one query).
 *
 * @example
 *   const v = await queryVector(ctx, collection, { text: 'a red bicycle' });
 */
export async function queryVector(
  ctx: ServerContext,
  collection: Collection,
  q: QueryInput,
): Promise<Float32Array> {
  const given = QUERY_FIELDS.filter((k) => q[k] !== undefined && q[k] !== null);
  if (given.length !== 1) {
    throw new GlimpseError(
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
      `Expected exactly one of ${QUERY_FIELDS.join(', ')} for the search but received ${given.length === 0 ? 'none' : given.join(', ')}`,
    );
  }
  const max = ctx.config.limits.imageBytes;
  switch (given[0]) {
    case 'vector':
      return normalizeQuery(q.vector!, collection.dimension);
    case 'id':
      return ctx.registry.vectorOf(collection, q.id!);
    case 'text': {
      if (q.text!.trim() === '') {
        throw new GlimpseError(
          'GLIMPSE_E_SEARCH_QUERY_INVALID',
          'Expected a non-empty text query but received ""',
        );
      }
      checkModel(ctx, collection);
      return normalizeQuery(await ctx.embedder.embedText(q.text!), collection.dimension);
    }
    default: {
      checkModel(ctx, collection);
      const bytes =
        q.image !== undefined
          ? typeof q.image === 'string'
            ? decodeBase64Image(q.image, max)
            : q.image
          : q.image_url !== undefined
            ? await imageFromUrl(ctx.images, q.image_url)
            : await imageFromPath(ctx.images, q.image_path!);
      return normalizeQuery(await ctx.embedder.embedImage(bytes), collection.dimension);
    }
  }
}

export interface SearchRequest extends QueryInput {
  top_k?: number;
  filter?: unknown;
  min_score?: number;
  deduplicate?: boolean;
}

export interface SearchAnswer {
  collection: string;
  results: { id: string; score: number; metadata: Hit['metadata'] }[];
  took_ms: number;
}

/**
 * Runs a REST search on a collection: query vector, then the store search (timed for metrics).
 *
 * @example
 *   const answer = await searchCollection(ctx, 'photos', { text: 'a dog', top_k: 5 });
 */
export async function searchCollection(
  ctx: ServerContext,
  name: string,
  req: SearchRequest,
): Promise<SearchAnswer> {
  const start = performance.now();
  const collection = await ctx.registry.get(name);
  const vector = await queryVector(ctx, collection, req);
  const hits = await timedSearch(ctx, collection, {
    vector,
    topK: req.top_k ?? 10,
    filter: req.filter,
    ...(req.min_score !== undefined ? { minScore: req.min_score } : {}),
    withVectors: req.deduplicate === true,
  });
  const kept = req.deduplicate === true ? deduplicateHits(hits) : hits;
  return {
    collection: name,
    results: kept.map((h) => ({ id: h.id, score: h.score, metadata: h.metadata })),
    took_ms: Math.round((performance.now() - start) * 100) / 100,
  };
}

/**
 * A store search, timed into the search histogram.
 *
 * @example
 *   const hits = await timedSearch(ctx, collection, { vector, topK: 10 });
 */
export async function timedSearch(
  ctx: ServerContext,
  collection: Collection,
  query: Parameters<CollectionRegistry['search']>[1],
): Promise<Hit[]> {
  const end = ctx.metrics.search.startTimer({ collection: collection.name });
  try {
    return await ctx.registry.search(collection, query);
  } finally {
    end();
  }
}

/** One item to insert (JSON body), or an uploaded file. */
export interface InsertItem {
  id?: string;
  image?: string | Uint8Array;
  image_url?: string;
  image_path?: string;
  vector?: number[];
  caption?: string;
  metadata?: Record<string, unknown>;
}

export interface InsertAnswer {
  collection: string;
  inserted: number;
  updated: number;
  failed: number;
  failures: ItemFailure[];
}

const shortHash = (data: Uint8Array | string): string =>
  `sha256:${createHash('sha256').update(data).digest('hex').slice(0, 16)}`;

/**
 * Inserts items: images (base64, upload, URL or allowed path) and captions are embedded with the server's
 * model, vectors are stored as given; items that fail are recorded with their code, the others stored.
 * Ids default to the path or URL given, or a hash of the bytes or caption.
 *
 * @example
 *   await insertItems(ctx, 'photos', [{ image_url: 'https://example.com/cat.jpg', caption: 'a cat' }]);
 */
export async function insertItems(
  ctx: ServerContext,
  name: string,
  items: readonly InsertItem[],
): Promise<InsertAnswer> {
  const collection = await ctx.registry.get(name);
  const failures: ItemFailure[] = [];
  const embedded: VectorItem[] = [];
  const given: VectorItem[] = [];
  const needsModel = items.some((it) => it.vector === undefined);
  if (needsModel) checkModel(ctx, collection);
  const max = ctx.config.limits.imageBytes;
  await mapLimit(items, 8, async (item, i) => {
    const key = item.id ?? item.image_path ?? item.image_url ?? `items[${i}]`;
    try {
      const metadata: Record<string, unknown> = { ...(item.metadata ?? {}) };
      if (item.vector !== undefined) {
        if (item.id === undefined) {
          throw new GlimpseError(
            'GLIMPSE_E_COLLECTION_ITEM_INVALID',
            `Expected an id for ${key} (a vector item) but received none`,
          );
        }
        given.push({ id: item.id, vector: item.vector, caption: item.caption ?? null, metadata });
        return;
      }
      let bytes: Uint8Array | undefined;
      let imagePath: string | null = null;
      let id = item.id;
      if (item.image !== undefined) {
        bytes =
          typeof item.image === 'string'
            ? decodeBase64Image(item.image, max, `items[${i}].image`)
            : item.image;
        id ??= shortHash(bytes);
      } else if (item.image_url !== undefined) {
        bytes = await imageFromUrl(ctx.images, item.image_url);
        metadata['url'] ??= item.image_url;
        id ??= item.image_url;
      } else if (item.image_path !== undefined) {
        bytes = await imageFromPath(ctx.images, item.image_path);
        imagePath = await ctx.images.paths.resolve(item.image_path);
        id ??= item.image_path;
      }
      let vector: Float32Array;
      if (bytes !== undefined) vector = await ctx.embedder.embedImage(bytes);
      else if (item.caption !== undefined && item.caption.trim() !== '') {
        vector = await ctx.embedder.embedText(item.caption);
        id ??= shortHash(item.caption);
      } else {
        throw new GlimpseError(
          'GLIMPSE_E_COLLECTION_ITEM_INVALID',
          `Expected one of image, image_url, image_path, vector or caption in ${key} but received none`,
        );
      }
      embedded.push({ id: id!, vector, imagePath, caption: item.caption ?? null, metadata });
    } catch (err) {
      if (!isGlimpseError(err)) throw err;
      const e = toGlimpseError(err);
      if (e.code === 'GLIMPSE_E_SERVER_FORBIDDEN_PATH' || e.code === 'GLIMPSE_E_SERVER_FORBIDDEN_URL')
        throw e;
      failures.push({ key, code: e.code, message: e.message });
    }
  });
  let inserted = 0;
  let updated = 0;
  for (const [list, source] of [
    [embedded, { fingerprint: ctx.embedder.fingerprint }],
    [given, { allowUnknownModel: true }],
  ] as const) {
    if (list.length === 0) continue;
    const r = await collection.upsertVectors(list, source);
    inserted += r.inserted;
    updated += r.updated;
    failures.push(...r.failures);
  }
  return { collection: name, inserted, updated, failed: failures.length, failures };
}

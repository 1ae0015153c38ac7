/**
 * REST routes under `/v1`: collections (list, create, stats, delete), insert (JSON with base64 images, URLs,
 * allowed paths or vectors; multipart uploads), search (text, image upload, base64, URL, path, vector or
 * the id of a stored item; `top_k`; structured filter), delete by ids or filter, and a stored item's image.
 * Handlers are thin: they read the request and call service.ts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { GlimpseError } from '../../errors/index.js';
import { parseFilter } from '../../search/filter.js';
import type { CollectionStats } from '../../pipeline/collection.js';
import {
  insertItems,
  publicModelId,
  searchCollection,
  type InsertItem,
  type SearchRequest,
  type ServerContext,
} from '../service.js';
import { sniffImageType } from '../images.js';
import { ERROR_RESPONSES, FILTER_SCHEMA, METADATA_SCHEMA } from '../schemas.js';

const NAME_PARAMS = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$', description: 'collection name' },
  },
} as const;

const SUMMARY = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    rows: { type: 'integer' },
    dimension: { type: 'integer' },
    model: {
      type: ['string', 'null'],
      description: 'short model fingerprint (null: vectors of an unknown model)',
    },
    modelId: { type: ['string', 'null'] },
  },
} as const;

function querySchema(maxResults: number) {
  return {
    type: 'object',
    additionalProperties: false,
    properties: {
      text: { type: 'string', maxLength: 10_000, description: 'text query (embedded with the server model)' },
      image: { type: 'string', description: 'base64 image (a `data:` prefix is accepted)' },
      image_url: {
        type: 'string',
        maxLength: 4096,
        description: 'http(s) URL of an image (public addresses only)',
      },
      image_path: { type: 'string', maxLength: 4096, description: 'local image path under an allowed root' },
      vector: { type: 'array', items: { type: 'number' }, maxItems: 65536, description: 'query vector' },
      id: {
        type: 'string',
        maxLength: 4096,
        description: 'search with the stored vector of this item ("more like this")',
      },
      top_k: { type: 'integer', minimum: 1, maximum: maxResults, default: 10 },
      filter: FILTER_SCHEMA,
      min_score: { type: 'number', minimum: -1, maximum: 1 },
      deduplicate: {
        type: 'boolean',
        description: 'drop results with inner product > 0.94 with a better one',
      },
    },
  } as const;
}

const HIT = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    score: { type: 'number', description: 'cosine similarity' },
    metadata: METADATA_SCHEMA,
  },
} as const;

const INSERT_ANSWER = {
  type: 'object',
  properties: {
    collection: { type: 'string' },
    inserted: { type: 'integer' },
    updated: { type: 'integer' },
    failed: { type: 'integer' },
    failures: {
      type: 'array',
      items: {
        type: 'object',
        properties: { key: { type: 'string' }, code: { type: 'string' }, message: { type: 'string' } },
      },
    },
  },
} as const;

function publicStats(s: CollectionStats): Record<string, unknown> {
  return {
    name: s.name,
    rows: s.rows,
    dimension: s.dimension,
    model: s.model,
    modelId: publicModelId(s.modelId),
    fingerprint: s.fingerprint
      ? { id: publicModelId(s.fingerprint.id), hash: s.fingerprint.hash, dtype: s.fingerprint.dtype }
      : null,
    createdAt: s.createdAt,
    columns: s.columns,
    bytes: s.bytes,
    fragments: s.fragments,
    version: s.version,
    index: s.index,
  };
}

/** Reads a multipart body: files as bytes (each ≤ imageBytes, all ≤ bodyBytes), fields as text. */
async function readMultipart(
  ctx: ServerContext,
  request: FastifyRequest,
): Promise<{ files: { field: string; filename: string; bytes: Uint8Array }[]; fields: Map<string, string> }> {
  const files: { field: string; filename: string; bytes: Uint8Array }[] = [];
  const fields = new Map<string, string>();
  let total = 0;
  for await (const part of request.parts()) {
    if (part.type === 'file') {
      const bytes = await part.toBuffer();
      total += bytes.length;
      if (total > ctx.config.limits.bodyBytes) {
        throw new GlimpseError(
          'GLIMPSE_E_SERVER_BODY_TOO_LARGE',
          `Expected at most ${ctx.config.limits.bodyBytes} bytes of uploads in one request but received more`,
        );
      }
      files.push({ field: part.fieldname, filename: part.filename, bytes });
    } else {
      fields.set(part.fieldname, typeof part.value === 'string' ? part.value : String(part.value));
    }
  }
  return { files, fields };
}

function jsonField(fields: Map<string, string>, name: string): unknown {
  const text = fields.get(name);
  if (text === undefined || text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new GlimpseError(
      'GLIMPSE_E_SERVER_BAD_REQUEST',
      `Expected JSON in the multipart field ${name} but it is not JSON`,
    );
  }
}

function numberField(
  fields: Map<string, string>,
  name: string,
  min: number,
  max: number,
  integer: boolean,
): number | undefined {
  const text = fields.get(name);
  if (text === undefined || text.trim() === '') return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new GlimpseError(
      'GLIMPSE_E_SERVER_BAD_REQUEST',
      `Expected ${integer ? 'an integer' : 'a number'} from ${min} to ${max} in the multipart field ${name} but received ${JSON.stringify(text.slice(0, 40))}`,
    );
  }
  return n;
}

/**
 * The `/v1` routes as an encapsulated plugin.
 *
 * @example
 *   await app.register(collectionRoutes, { prefix: '/v1', ctx });
 */
export async function collectionRoutes(app: FastifyInstance, opts: { ctx: ServerContext }): Promise<void> {
  const { ctx } = opts;
  const limits = ctx.config.limits;
  await app.register(multipart, {
    limits: {
      fileSize: limits.imageBytes,
      files: limits.maxFiles,
      fields: 64,
      fieldSize: limits.bodyBytes,
      parts: limits.maxFiles + 64,
    },
    throwFileSizeLimit: true,
  });
  // Refuse an announced oversized body before reading any of it (multipart bodies are streamed).
  app.addHook('onRequest', async (request) => {
    const length = Number(request.headers['content-length'] ?? NaN);
    if (Number.isFinite(length) && length > limits.bodyBytes) {
      throw new GlimpseError(
        'GLIMPSE_E_SERVER_BODY_TOO_LARGE',
        `Expected a request body of at most ${limits.bodyBytes} bytes but it announces ${length}`,
      );
    }
  });

  app.get(
    '/collections',
    {
      schema: {
        summary: 'List the collections',
        tags: ['collections'],
        response: {
          200: { type: 'object', properties: { collections: { type: 'array', items: SUMMARY } } },
          ...ERROR_RESPONSES,
        },
      },
    },
    async () => ({
      collections: (await ctx.registry.list()).map((c) => ({ ...c, modelId: publicModelId(c.modelId) })),
    }),
  );

  app.post(
    '/collections',
    {
      config: { write: true },
      schema: {
        summary: 'Create a collection bound to the server model (or an unbound one of a given dimension)',
        tags: ['collections'],
        body: {
          type: 'object',
          required: ['name'],
          additionalProperties: false,
          properties: {
            name: NAME_PARAMS.properties.name,
            dimension: { type: 'integer', minimum: 1, maximum: 65536, description: 'only with bound: false' },
            bound: {
              type: 'boolean',
              default: true,
              description: 'bind to the server model (text and image search)',
            },
          },
        },
        response: { 201: SUMMARY, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const body = request.body as { name: string; dimension?: number; bound?: boolean };
      const bound = body.bound ?? true;
      if (bound && body.dimension !== undefined && body.dimension !== ctx.embedder.dimension) {
        throw new GlimpseError(
          'GLIMPSE_E_COLLECTION_DIM_MISMATCH',
          `Expected dimension ${ctx.embedder.dimension} (the server model's) or bound: false but received ${body.dimension}`,
        );
      }
      if (!bound && body.dimension === undefined) {
        throw new GlimpseError(
          'GLIMPSE_E_SERVER_BAD_REQUEST',
          'Expected a dimension for an unbound collection but received none',
        );
      }
      const c = bound
        ? await ctx.registry.create(body.name, {
            fingerprint: ctx.embedder.fingerprint,
            dimension: ctx.embedder.dimension,
            modelRef: ctx.embedder.modelRef,
          })
        : await ctx.registry.create(body.name, {
            fingerprint: null,
            dimension: body.dimension!,
            modelRef: null,
          });
      const s = await c.stats();
      return reply.status(201).send({
        name: s.name,
        rows: s.rows,
        dimension: s.dimension,
        model: s.model,
        modelId: publicModelId(s.modelId),
      });
    },
  );

  app.get(
    '/collections/:name',
    {
      schema: {
        summary: 'Statistics of a collection: rows, size, columns, model, index',
        tags: ['collections'],
        params: NAME_PARAMS,
        response: { 200: { type: 'object', additionalProperties: true }, ...ERROR_RESPONSES },
      },
    },
    async (request) =>
      publicStats(await (await ctx.registry.get((request.params as { name: string }).name)).stats()),
  );

  app.delete(
    '/collections/:name',
    {
      config: { write: true },
      schema: {
        summary: 'Delete a collection and its data',
        tags: ['collections'],
        params: NAME_PARAMS,
        response: {
          200: { type: 'object', properties: { deleted: { type: 'string' } } },
          ...ERROR_RESPONSES,
        },
      },
    },
    async (request) => {
      const { name } = request.params as { name: string };
      await ctx.registry.drop(name);
      return { deleted: name };
    },
  );

  const itemSchema = {
    type: 'object',
    additionalProperties: false,
    properties: {
      id: { type: 'string', minLength: 1, maxLength: 4096 },
      image: { type: 'string', description: 'base64 image' },
      image_url: { type: 'string', maxLength: 4096 },
      image_path: { type: 'string', maxLength: 4096, description: 'under an allowed root' },
      vector: { type: 'array', items: { type: 'number' }, maxItems: 65536 },
      caption: { type: 'string', maxLength: 100_000 },
      metadata: { type: 'object', additionalProperties: true },
    },
  } as const;

  app.post(
    '/collections/:name/items',
    {
      config: { write: true },
      schema: {
        summary: 'Insert (upsert) items: JSON {items: [...]}, or multipart/form-data with image files',
        description:
          'Each item gives one of image (base64), image_url, image_path, vector, or only a caption (embedded as text). Multipart: every file part is one item (id: the field `id` for a single file, else the file name); an optional `metadata` field (JSON object) applies to every file, `caption` too.',
        tags: ['items'],
        params: NAME_PARAMS,
        body: {
          type: 'object',
          required: ['items'],
          additionalProperties: false,
          properties: { items: { type: 'array', minItems: 1, maxItems: limits.maxBatch, items: itemSchema } },
        },
        response: { 200: INSERT_ANSWER, ...ERROR_RESPONSES },
      },
      // multipart bodies are not JSON: they skip the body schema and are checked by hand
      preValidation: async (request) => {
        if (request.isMultipart()) (request as { body: unknown }).body = { items: [{}] };
      },
    },
    async (request) => {
      const { name } = request.params as { name: string };
      if (!request.isMultipart()) {
        return insertItems(ctx, name, (request.body as { items: InsertItem[] }).items);
      }
      const { files, fields } = await readMultipart(ctx, request);
      if (files.length === 0) {
        throw new GlimpseError(
          'GLIMPSE_E_SERVER_BAD_REQUEST',
          'Expected at least one image file in the multipart body but received none',
        );
      }
      const metadata = jsonField(fields, 'metadata');
      if (
        metadata !== undefined &&
        (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))
      ) {
        throw new GlimpseError(
          'GLIMPSE_E_SERVER_BAD_REQUEST',
          'Expected a JSON object in the multipart field metadata',
        );
      }
      const single = fields.get('id');
      const caption = fields.get('caption');
      const items: InsertItem[] = files.map((f) => ({
        ...(files.length === 1 && single ? { id: single } : f.filename ? { id: f.filename } : {}),
        image: f.bytes,
        ...(caption !== undefined ? { caption } : {}),
        metadata: {
          ...(metadata as Record<string, unknown> | undefined),
          ...(f.filename ? { filename: f.filename } : {}),
        },
      }));
      return insertItems(ctx, name, items);
    },
  );

  app.post(
    '/collections/:name/search',
    {
      schema: {
        summary: 'Search by text, image (upload, base64, URL, path), vector or stored item id',
        description:
          'JSON with exactly one of text, image, image_url, image_path, vector, id; or multipart/form-data with an `image` file and optional fields top_k, filter (JSON), min_score.',
        tags: ['search'],
        params: NAME_PARAMS,
        body: querySchema(limits.maxResults),
        response: {
          200: {
            type: 'object',
            properties: {
              collection: { type: 'string' },
              results: { type: 'array', items: HIT },
              took_ms: { type: 'number' },
            },
          },
          ...ERROR_RESPONSES,
        },
      },
      preValidation: async (request) => {
        if (request.isMultipart()) (request as { body: unknown }).body = {};
      },
    },
    async (request) => {
      const { name } = request.params as { name: string };
      if (!request.isMultipart()) return searchCollection(ctx, name, request.body as SearchRequest);
      const { files, fields } = await readMultipart(ctx, request);
      if (files.length !== 1) {
        throw new GlimpseError(
          'GLIMPSE_E_SEARCH_QUERY_INVALID',
          `Expected one image file in the multipart body but received ${files.length}`,
        );
      }
      const topK = numberField(fields, 'top_k', 1, limits.maxResults, true);
      const minScore = numberField(fields, 'min_score', -1, 1, false);
      const filter = jsonField(fields, 'filter');
      return searchCollection(ctx, name, {
        image: files[0]!.bytes,
        ...(topK !== undefined ? { top_k: topK } : {}),
        ...(minScore !== undefined ? { min_score: minScore } : {}),
        ...(filter !== undefined ? { filter: parseFilter(filter) } : {}),
      });
    },
  );

  app.post(
    '/collections/:name/delete',
    {
      config: { write: true },
      schema: {
        summary: 'Delete items by ids or by a structured filter',
        tags: ['items'],
        params: NAME_PARAMS,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ids: { type: 'array', items: { type: 'string' }, maxItems: 100_000 },
            filter: FILTER_SCHEMA,
          },
        },
        response: {
          200: { type: 'object', properties: { deleted: { type: 'integer' } } },
          ...ERROR_RESPONSES,
        },
      },
    },
    async (request) => {
      const { name } = request.params as { name: string };
      const body = request.body as { ids?: string[]; filter?: unknown };
      if ((body.ids === undefined) === (body.filter === undefined)) {
        throw new GlimpseError(
          'GLIMPSE_E_SERVER_BAD_REQUEST',
          'Expected exactly one of ids or filter to delete by',
        );
      }
      const c = await ctx.registry.get(name);
      return {
        deleted: body.ids !== undefined ? await c.deleteIds(body.ids) : await c.deleteWhere(body.filter),
      };
    },
  );

  app.get(
    '/collections/:name/items/:id/image',
    {
      schema: {
        summary: "A stored item's image file (when its image_path is under an allowed root)",
        tags: ['items'],
        params: {
          type: 'object',
          required: ['name', 'id'],
          properties: { name: NAME_PARAMS.properties.name, id: { type: 'string' } },
        },
      },
    },
    async (request, reply: FastifyReply) => {
      const { name, id } = request.params as { name: string; id: string };
      const c = await ctx.registry.get(name);
      const rows = await ctx.registry.rowsById(c, [id]);
      const path = rows.get(id)?.['image_path'];
      if (typeof path !== 'string' || path === '') {
        throw new GlimpseError(
          'GLIMPSE_E_SERVER_NOT_FOUND',
          `Expected a stored image for item ${JSON.stringify(id)} but it has none`,
        );
      }
      const bytes = await ctx.images.paths.readFile(path, ctx.config.limits.imageBytes);
      return reply
        .header('content-type', sniffImageType(bytes))
        .header('cache-control', 'private, max-age=300')
        .header('x-content-type-options', 'nosniff')
        .send(Buffer.from(bytes));
    },
  );
}

/**
 * clip-retrieval back-end compatibility (docs/server.md, "clip-retrieval"): `/indices-list`, `/knn-service`,
 * `/metadata`, `/config.json`, with upstream's quirks kept where clients depend on them — bodies parsed as
 * JSON whatever the Content-Type, doubled slashes, CORS open, integer ids — and its bugs fixed: coded 4xx
 * instead of 500, `null` instead of NaN, `indice_name: ""` as the default index. Requests posted as
 * `text/plain` (what upstream's web front sends) never get a non-array answer: a bad one gets `[]` with the
 * error's status and the code in the `X-Glimpse-Error-Code` header, so the front keeps working.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GlimpseError } from '../../errors/index.js';
import { describeValue, isPlainObject } from '../../core/validate.js';
import type { Cell } from '../../index/schema.js';
import type { Collection } from '../../pipeline/collection.js';
import { deduplicateHits, type Hit } from '../collections.js';
import { decodeBase64Image, imageFromUrl, storedImageBase64 } from '../images.js';
import { timedSearch, type ServerContext } from '../service.js';
import { toErrorAnswer, type PathScrubber } from '../http-errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The Content-Type the client sent, before the compat routes read every body as JSON. */
    compatContentType?: string | undefined;
  }
}

/** First ids handed to items whose own id is not a plain row number (so the two never collide). */
const ASSIGNED_BASE = 2 ** 50;
const MAX_ASSIGNED = 1_000_000;

/**
 * clip-retrieval ids are integers. Items whose id is a canonical non-negative integer (imported rows) keep
 * it; other ids get a number from 2^50 up, remembered for this process (the most recent million).
 *
 * @example
 *   const ids = new CompatIds();
 *   ids.numberOf('42');        // 42
 *   ids.numberOf('cat.jpg');   // 1125899906842624 (2^50)
 *   ids.idOf(2 ** 50);         // 'cat.jpg'
 */
export class CompatIds {
  private readonly toNumber = new Map<string, number>();
  private readonly toId = new Map<number, string>();
  private next = ASSIGNED_BASE;

  numberOf(id: string): number {
    if (/^(0|[1-9]\d{0,14})$/.test(id)) return Number(id);
    let n = this.toNumber.get(id);
    if (n === undefined) {
      n = this.next++;
      this.toNumber.set(id, n);
      this.toId.set(n, id);
      if (this.toId.size > MAX_ASSIGNED) {
        const [oldN, oldId] = this.toId.entries().next().value as [number, string];
        this.toId.delete(oldN);
        this.toNumber.delete(oldId);
      }
    }
    return n;
  }

  idOf(n: number): string | undefined {
    return n >= ASSIGNED_BASE ? this.toId.get(n) : String(n);
  }
}

function isFrontRequest(request: FastifyRequest): boolean {
  return /^text\/plain\b/i.test(request.compatContentType ?? '');
}

function bad(message: string): GlimpseError {
  return new GlimpseError('GLIMPSE_E_SERVER_BAD_REQUEST', message);
}

function compatBool(body: Record<string, unknown>, key: string): boolean {
  const v = body[key];
  if (v === undefined || v === null || v === false || v === 0 || v === '' || v === 'false' || v === '0')
    return false;
  if (v === true || v === 1 || v === 'true' || v === '1') return true;
  throw bad(`Expected true or false for ${key} but received ${describeValue(v)}`);
}

function compatCount(body: Record<string, unknown>, key: string, max: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  const n = typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) {
    throw bad(`Expected an integer from 0 to ${max} for ${key} but received ${describeValue(v)}`);
  }
  return n;
}

/** `aesthetic_score` / `aesthetic_weight`: a number, a numeric string or "" (off); accepted, then ignored. */
function checkOptionalNumber(body: Record<string, unknown>, key: string): void {
  const v = body[key];
  if (v === undefined || v === null || v === '') return;
  if (typeof v === 'number' && Number.isFinite(v)) return;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return;
  throw bad(`Expected a number, a numeric string or "" for ${key} but received ${describeValue(v)}`);
}

function nonEmpty(v: unknown): v is string {
  return typeof v === 'string' && v !== '';
}

/**
 * The clip-retrieval routes as an encapsulated plugin.
 *
 * @example
 *   await app.register(compatRoutes, { ctx, scrub });
 */
export async function compatRoutes(
  app: FastifyInstance,
  opts: { ctx: ServerContext; scrub: PathScrubber },
): Promise<void> {
  const { ctx, scrub } = opts;
  const ids = new Map<string, CompatIds>();
  const idsOf = (name: string): CompatIds => {
    let m = ids.get(name);
    if (!m) ids.set(name, (m = new CompatIds()));
    return m;
  };

  // Every body is JSON, whatever the Content-Type says (the front sends text/plain, ClipClient none).
  app.addHook('onRequest', async (request) => {
    if (request.method !== 'POST') return;
    request.compatContentType = request.headers['content-type'];
    request.raw.headers['content-type'] = 'application/json';
  });

  app.setErrorHandler((err: FastifyError | GlimpseError, request, reply: FastifyReply) => {
    const answer = toErrorAnswer(err, scrub);
    if (answer.internal) request.log.error({ err }, 'request failed');
    else request.log.info({ code: answer.body.code }, answer.body.message);
    if (isFrontRequest(request)) {
      return reply
        .status(answer.status)
        .header('x-glimpse-error-code', answer.body.code)
        .header('x-glimpse-error-message', encodeURIComponent(answer.body.message.slice(0, 500)))
        .send([]);
    }
    return reply.status(answer.status).send(answer.body);
  });

  /** Index names in clip-retrieval order: the configured list (those that exist), else all by name. */
  const indexNames = async (): Promise<string[]> => {
    const all = await ctx.registry.names();
    if (ctx.config.indices.length === 0) return all;
    const present = new Set(all);
    return ctx.config.indices.filter((n) => present.has(n));
  };

  const indexOf = async (value: unknown): Promise<Collection> => {
    if (value === null || value === '' || value === undefined) {
      const first = (await indexNames())[0];
      if (first === undefined) {
        throw new GlimpseError(
          'GLIMPSE_E_COLLECTION_NOT_FOUND',
          'Expected at least one index (collection) but the server has none',
        );
      }
      return ctx.registry.get(first);
    }
    if (typeof value !== 'string')
      throw bad(`Expected an index name or null for indice_name but received ${describeValue(value)}`);
    if (ctx.config.indices.length > 0 && !ctx.config.indices.includes(value)) {
      throw new GlimpseError(
        'GLIMPSE_E_COLLECTION_NOT_FOUND',
        `Expected one of the listed indices for indice_name but received ${JSON.stringify(value)}`,
      );
    }
    return ctx.registry.get(value);
  };

  /** Metadata of a hit as clip-retrieval returns it: every column (nulls kept), no string id. */
  const metadataOf = async (
    values: Record<string, Cell>,
    withImage: boolean,
  ): Promise<Record<string, unknown>> => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(values)) {
      if (k === 'id') continue;
      out[k] = typeof v === 'number' && !Number.isFinite(v) ? null : (v ?? null);
    }
    if (withImage) {
      const image = await storedImageBase64(ctx.images, values['image_path']);
      if (image !== undefined) out['image'] = image;
    }
    return out;
  };

  const open = { openCors: true } as const;

  app.get(
    '/indices-list',
    {
      config: open,
      schema: {
        summary: 'clip-retrieval: index names (the first is the default)',
        tags: ['clip-retrieval'],
        response: { 200: { type: 'array', items: { type: 'string' } } },
      },
    },
    async () => indexNames(),
  );

  app.get(
    '/config.json',
    {
      config: open,
      schema: { summary: "clip-retrieval: the web front's configuration", tags: ['clip-retrieval'] },
    },
    async (request) => ({
      defaultBackend: `${request.protocol}://${request.host}/`,
      defaultIndex: '',
      urlColumn: 'url',
    }),
  );

  app.post(
    '/knn-service',
    {
      config: open,
      schema: {
        summary: 'clip-retrieval: nearest neighbours of a text, image, image URL or embedding',
        description:
          'Body parsed as JSON whatever the Content-Type. Query precedence: non-empty text, then image (base64), then image_url, then embedding_input. use_safety_model, use_violence_detector, use_mclip, aesthetic_score and aesthetic_weight are accepted and ignored.',
        tags: ['clip-retrieval'],
        body: { type: 'object', additionalProperties: true },
        response: { 200: { type: 'array', items: { type: 'object', additionalProperties: true } } },
      },
    },
    async (request) => {
      if (!isPlainObject(request.body))
        throw bad(`Expected a JSON object but received ${describeValue(request.body)}`);
      const body = request.body;
      if (!('modality' in body)) throw bad('Expected field "modality" ("image" or "text") but it is missing');
      if (!('num_images' in body)) throw bad('Expected field "num_images" but it is missing');
      if (!('indice_name' in body))
        throw bad('Expected field "indice_name" (a name, or null for the default) but it is missing');
      const modality = body['modality'];
      if (modality !== 'image' && modality !== 'text') {
        throw bad(`Expected "image" or "text" for modality but received ${describeValue(modality)}`);
      }
      const max = ctx.config.limits.maxResults;
      const numImages = compatCount(body, 'num_images', max) ?? 0;
      const numResults = compatCount(body, 'num_result_ids', max) ?? numImages;
      const dedup = compatBool(body, 'deduplicate');
      for (const k of ['use_safety_model', 'use_violence_detector', 'use_mclip']) compatBool(body, k);
      checkOptionalNumber(body, 'aesthetic_score');
      checkOptionalNumber(body, 'aesthetic_weight');
      const collection = await indexOf(body['indice_name']);
      if (modality === 'text') {
        throw new GlimpseError(
          'GLIMPSE_E_NOT_SUPPORTED',
          `Expected modality "image": collection ${collection.name} holds one vector per item and no separate caption index`,
        );
      }
      const vector = await compatQuery(collection, body);
      if (numResults === 0) return [];
      const hits = await timedSearch(ctx, collection, { vector, topK: numResults, withVectors: dedup });
      const kept: Hit[] = dedup ? deduplicateHits(hits) : hits;
      const numbers = idsOf(collection.name);
      return Promise.all(
        kept.map(async (h, i) => {
          const head = { id: numbers.numberOf(h.id), similarity: h.score };
          return i < numImages ? { ...(await metadataOf(h.metadata, true)), ...head } : head;
        }),
      );
    },
  );

  /** The query vector by clip-retrieval's precedence; embedding_input is used as given. */
  const compatQuery = async (
    collection: Collection,
    body: Record<string, unknown>,
  ): Promise<Float32Array> => {
    const check = (): void => collection.checkSource({ fingerprint: ctx.embedder.fingerprint });
    if (nonEmpty(body['text'])) {
      check();
      return ctx.embedder.embedText(body['text']);
    }
    if (nonEmpty(body['image'])) {
      check();
      return ctx.embedder.embedImage(decodeBase64Image(body['image'], ctx.config.limits.imageBytes));
    }
    if (nonEmpty(body['image_url'])) {
      check();
      return ctx.embedder.embedImage(await imageFromUrl(ctx.images, body['image_url']));
    }
    const input = body['embedding_input'];
    if (input !== undefined && input !== null && input !== '') {
      if (!Array.isArray(input) || !input.every((v) => typeof v === 'number' && Number.isFinite(v))) {
        throw new GlimpseError(
          'GLIMPSE_E_SEARCH_QUERY_INVALID',
          `Expected an array of finite numbers for embedding_input but received ${describeValue(input)}`,
        );
      }
      if (input.length !== collection.dimension) {
        throw new GlimpseError(
          'GLIMPSE_E_SEARCH_QUERY_INVALID',
          `Expected ${collection.dimension} numbers for embedding_input (index ${collection.name}) but received ${input.length}`,
        );
      }
      return Float32Array.from(input as number[]);
    }
    throw new GlimpseError(
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
      'Expected one of text, image, image_url or embedding_input but received none',
    );
  };

  app.post(
    '/metadata',
    {
      config: open,
      schema: {
        summary: 'clip-retrieval: metadata of result ids, in request order',
        tags: ['clip-retrieval'],
        body: { type: 'object', additionalProperties: true },
        response: {
          200: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                id: { type: 'integer' },
                metadata: { type: 'object', additionalProperties: true },
              },
            },
          },
        },
      },
    },
    async (request) => {
      if (!isPlainObject(request.body))
        throw bad(`Expected a JSON object but received ${describeValue(request.body)}`);
      const body = request.body;
      const list = body['ids'];
      if (
        !Array.isArray(list) ||
        !list.every((n) => typeof n === 'number' && Number.isInteger(n) && n >= 0)
      ) {
        throw bad(`Expected an array of non-negative integers for ids but received ${describeValue(list)}`);
      }
      if (list.length > ctx.config.limits.maxResults) {
        throw bad(`Expected at most ${ctx.config.limits.maxResults} ids but received ${list.length}`);
      }
      if (list.length === 0) return [];
      const collection = await indexOf(body['indice_name']);
      const numbers = idsOf(collection.name);
      const wanted = (list as number[]).map((n) => ({ n, id: numbers.idOf(n) }));
      const rows = await ctx.registry.rowsById(
        collection,
        wanted.map((w) => w.id).filter((id): id is string => id !== undefined),
      );
      const out: { id: number; metadata: Record<string, unknown> }[] = [];
      for (const w of wanted) {
        const values = w.id === undefined ? undefined : rows.get(w.id);
        if (values !== undefined) out.push({ id: w.n, metadata: await metadataOf(values, true) });
      }
      return out;
    },
  );
}

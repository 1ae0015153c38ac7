/**
 * The REST API through `inject()`: health (a real embedding; 503 when the model or the store is broken),
 * collections, inserts (paths under a root, base64, multipart, vectors), searches (text, upload, base64,
 * vector, "more like this", filters matched literally), deletes, coded errors without internals, the
 * OpenAPI document and Prometheus metrics. Tiny synthesized model, real photos.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel } from '../src/pipeline/model.js';
import { loadServerConfig } from '../src/config/server.js';
import { buildApp, BatchingEmbedder, CollectionRegistry, ServerMetrics } from '../src/server/index.js';

const photos = new URL('./fixtures/images/photos/', import.meta.url).pathname.replace(/\/$/, '');
const PHOTOS = ['flowers.jpeg', 'Portrait_1.jpg', 'Landscape_1.jpg', '123_456.jpg', 'testimgl.jpg'];

let work: string;
let modelDir: string;
let embedder: BatchingEmbedder;
let registry: CollectionRegistry;
let metrics: ServerMetrics;
let app: FastifyInstance;
const logs: string[] = [];

interface Hit {
  id: string;
  score: number;
  metadata: Record<string, unknown>;
}

function json<T>(res: { body: string }): T {
  return JSON.parse(res.body) as T;
}

/** A coded error answer: exactly {code, message}, no stack, no server path. */
function assertCodedError(res: { statusCode: number; body: string }, status: number, code: string): string {
  assert.equal(res.statusCode, status, `status of ${res.body}`);
  const body = json<Record<string, unknown>>(res);
  assert.deepEqual(Object.keys(body).sort(), ['code', 'message'], `only code and message: ${res.body}`);
  assert.equal(body['code'], code, res.body);
  const message = String(body['message']);
  for (const secret of [work, modelDir, process.cwd(), 'at async', '.ts:']) {
    assert.ok(!message.includes(secret), `no internals (${secret}) in ${message}`);
  }
  return message;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'glimpse-server-api-'));
  modelDir = await ensureSynthModel('tiny', 0);
  metrics = new ServerMetrics({ defaultMetrics: false });
  const model = await loadModel(modelDir, { decodeWorkers: 1, limits: { maxPixels: 50_000_000 } });
  embedder = new BatchingEmbedder(model, modelDir, {
    onBatch: (kind, s, n) => {
      metrics.embed.observe({ kind }, s);
      metrics.embedBatch.observe({ kind }, n);
    },
  });
  const db = join(work, 'db');
  registry = await CollectionRegistry.open(db);
  const config = await loadServerConfig({
    flags: { db, model: modelDir, allowedRoots: [photos], ui: false, 'rateLimit.max': 0 },
  });
  app = await buildApp(config, {
    embedder,
    registry,
    metrics,
    logStream: { write: (line: string) => void logs.push(line) },
  });
});

after(async () => {
  await app?.close();
  await registry?.close();
  await embedder?.close();
  await rm(work, { recursive: true, force: true });
});

describe('health', () => {
  test('GET /health embeds a text and an image and lists the store', async () => {
    const res = await app.inject({ method: 'GET', url: '/health' });
    assert.equal(res.statusCode, 200, res.body);
    const body = json<{
      status: string;
      model: { id: string; dimension: number };
      checks: Record<string, number>;
    }>(res);
    assert.equal(body.status, 'ok');
    assert.equal(body.model.dimension, 64);
    assert.equal(body.model.id, 'tiny-seed0', 'the model folder by name, not its server path');
    for (const k of ['text_ms', 'image_ms', 'store_ms']) assert.ok(body.checks[k]! >= 0, `${k} measured`);
  });

  test('503 when the model is broken (a corrupt text graph)', async () => {
    const broken = join(work, 'broken-model');
    await cp(modelDir, broken, { recursive: true });
    await writeFile(join(broken, 'onnx', 'text_model.onnx'), 'not an onnx graph');
    const model = await loadModel(broken, { decodeWorkers: 1 });
    const e = new BatchingEmbedder(model, broken);
    const config = await loadServerConfig({
      flags: { db: join(work, 'db'), model: broken, ui: false, docs: false },
    });
    const other = await buildApp(config, {
      embedder: e,
      registry,
      metrics: new ServerMetrics({ defaultMetrics: false }),
      logStream: { write: () => undefined },
    });
    try {
      const res = await other.inject({ method: 'GET', url: '/health' });
      const message = assertCodedError(res, 503, 'GLIMPSE_E_SERVER_UNAVAILABLE');
      assert.match(message, /^Expected a working model \(text\) but it failed/);
    } finally {
      await other.close();
      await e.close();
    }
  });

  test('503 when the store is broken (closed)', async () => {
    const dead = await CollectionRegistry.open(join(work, 'db-dead'));
    await dead.close();
    const config = await loadServerConfig({
      flags: { db: join(work, 'db-dead'), model: modelDir, ui: false, docs: false },
    });
    const other = await buildApp(config, {
      embedder,
      registry: dead,
      metrics: new ServerMetrics({ defaultMetrics: false }),
      logStream: { write: () => undefined },
    });
    try {
      const res = await other.inject({ method: 'GET', url: '/health' });
      const message = assertCodedError(res, 503, 'GLIMPSE_E_SERVER_UNAVAILABLE');
      assert.match(message, /^Expected a working vector store but it failed/);
      const search = await other.inject({ method: 'GET', url: '/v1/collections' });
      assertCodedError(search, 500, 'GLIMPSE_E_COLLECTION_STORE_FAILED');
    } finally {
      await other.close();
    }
  });
});

describe('collections, inserts and searches', () => {
  test('create, list, stats; a taken or bad name is a coded 4xx', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/collections', payload: { name: 'photos' } });
    assert.equal(res.statusCode, 201, res.body);
    assert.deepEqual(json(res), {
      name: 'photos',
      rows: 0,
      dimension: 64,
      model: json<{ model: string }>(res).model,
      modelId: 'tiny-seed0',
    });
    assertCodedError(
      await app.inject({ method: 'POST', url: '/v1/collections', payload: { name: 'photos' } }),
      409,
      'GLIMPSE_E_COLLECTION_EXISTS',
    );
    assertCodedError(
      await app.inject({ method: 'POST', url: '/v1/collections', payload: { name: '../etc' } }),
      400,
      'GLIMPSE_E_SERVER_BAD_REQUEST',
    );
    assertCodedError(
      await app.inject({ method: 'POST', url: '/v1/collections', payload: { name: 'x', extra: 1 } }),
      400,
      'GLIMPSE_E_SERVER_BAD_REQUEST',
    );
    const list = json<{ collections: { name: string }[] }>(
      await app.inject({ method: 'GET', url: '/v1/collections' }),
    );
    assert.ok(
      list.collections.some((c) => c.name === 'photos'),
      'listed',
    );
    const missing = assertCodedError(
      await app.inject({ method: 'GET', url: '/v1/collections/nope' }),
      404,
      'GLIMPSE_E_COLLECTION_NOT_FOUND',
    );
    assert.match(missing, /nope/);
  });

  test('insert by allowed path, with captions and metadata (quotes kept literally)', async () => {
    const items = PHOTOS.map((p, i) => ({
      image_path: p,
      caption: `photo ${p}`,
      metadata: { author: i === 0 ? "O'Brien" : i === 1 ? "x' OR 1=1 --" : 'someone', rank: i },
    }));
    const res = await app.inject({ method: 'POST', url: '/v1/collections/photos/items', payload: { items } });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(json(res), {
      collection: 'photos',
      inserted: PHOTOS.length,
      updated: 0,
      failed: 0,
      failures: [],
    });
    const stats = json<{ rows: number; columns: { key: string; type: string }[] }>(
      await app.inject({ method: 'GET', url: '/v1/collections/photos' }),
    );
    assert.equal(stats.rows, PHOTOS.length);
    assert.deepEqual(
      stats.columns.map((c) => `${c.key}:${c.type}`),
      ['id:string', 'image_path:string', 'caption:string', 'author:string', 'rank:number'],
    );
  });

  test('insert base64 and multipart uploads; a bad image fails its item only', async () => {
    const bytes = await readFile(join(photos, 'Portrait_2.jpg'));
    const res = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/items',
      payload: {
        items: [
          { id: 'b64', image: bytes.toString('base64'), caption: 'base64 portrait' },
          { id: 'broken', image: Buffer.from('not an image at all').toString('base64') },
          { caption: 'only a caption' },
        ],
      },
    });
    assert.equal(res.statusCode, 200, res.body);
    const body = json<{ inserted: number; failed: number; failures: { key: string; code: string }[] }>(res);
    assert.equal(body.inserted, 2, res.body);
    assert.equal(body.failed, 1);
    assert.equal(body.failures[0]?.key, 'broken');
    assert.equal(body.failures[0]?.code, 'GLIMPSE_E_IMAGE_DECODE_FAILED');

    const form = new FormData();
    form.append('metadata', JSON.stringify({ source: 'upload' }));
    form.append(
      'file',
      new Blob([await readFile(join(photos, 'Landscape_2.jpg'))], { type: 'image/jpeg' }),
      'Landscape_2.jpg',
    );
    form.append(
      'file',
      new Blob([await readFile(join(photos, 'Landscape_3.jpg'))], { type: 'image/jpeg' }),
      'Landscape_3.jpg',
    );
    const req = new Request('http://x/', { method: 'POST', body: form });
    const up = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/items',
      headers: { 'content-type': req.headers.get('content-type')! },
      payload: Buffer.from(await req.arrayBuffer()),
    });
    assert.equal(up.statusCode, 200, up.body);
    assert.equal(json<{ inserted: number }>(up).inserted, 2, up.body);
  });

  test('search by text: top_k results, best first, with captions and scores', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      payload: { text: 'a field of flowers', top_k: 3 },
    });
    assert.equal(res.statusCode, 200, res.body);
    const { results, collection } = json<{ results: Hit[]; collection: string }>(res);
    assert.equal(collection, 'photos');
    assert.equal(results.length, 3);
    for (let i = 1; i < results.length; i++)
      assert.ok(results[i - 1]!.score >= results[i]!.score, 'sorted by score');
    for (const r of results) {
      assert.ok(
        typeof r.metadata['caption'] === 'string' || r.metadata['caption'] === null,
        'caption key present',
      );
      assert.ok(r.score <= 1.0001 && r.score >= -1.0001, `a cosine: ${r.score}`);
    }
  });

  test('search by uploaded image, base64, stored vector and stored id all find the item itself first', async () => {
    const bytes = await readFile(join(photos, 'Landscape_1.jpg'));
    const form = new FormData();
    form.append('image', new Blob([bytes], { type: 'image/jpeg' }), 'q.jpg');
    form.append('top_k', '2');
    const req = new Request('http://x/', { method: 'POST', body: form });
    const upload = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      headers: { 'content-type': req.headers.get('content-type')! },
      payload: Buffer.from(await req.arrayBuffer()),
    });
    assert.equal(upload.statusCode, 200, upload.body);
    const up = json<{ results: Hit[] }>(upload).results;
    assert.equal(up.length, 2);
    assert.equal(up[0]?.id, 'Landscape_1.jpg');
    assert.ok(Math.abs(up[0]!.score - 1) < 1e-4, `the same image scores 1: ${up[0]?.score}`);

    const b64 = json<{ results: Hit[] }>(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { image: `data:image/jpeg;base64,${bytes.toString('base64')}`, top_k: 1 },
      }),
    ).results;
    assert.equal(b64[0]?.id, 'Landscape_1.jpg');

    const byId = json<{ results: Hit[] }>(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { id: 'flowers.jpeg', top_k: 2 },
      }),
    ).results;
    assert.equal(byId[0]?.id, 'flowers.jpeg', 'more like this: the item first');
    assert.ok(Math.abs(byId[0]!.score - 1) < 1e-4, 'with score 1');

    const vector = Array.from(await embedder.embedImage(bytes));
    const byVector = json<{ results: Hit[] }>(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { vector: vector.map((v) => v * 3), top_k: 1 },
      }),
    ).results;
    assert.equal(byVector[0]?.id, 'Landscape_1.jpg', 'vectors are normalized');
  });

  test("filters match quotes literally: O'Brien and x' OR 1=1 -- each find exactly their item", async () => {
    for (const [author, id] of [
      ["O'Brien", 'flowers.jpeg'],
      ["x' OR 1=1 --", 'Portrait_1.jpg'],
    ] as const) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { text: 'anything', top_k: 50, filter: { eq: ['author', author] } },
      });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(
        json<{ results: Hit[] }>(res).results.map((r) => r.id),
        [id],
        `only the item whose author is ${author}`,
      );
    }
    const range = json<{ results: Hit[] }>(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { text: 'x', top_k: 50, filter: { range: ['rank', { gte: 3 }] } },
      }),
    ).results;
    assert.deepEqual(range.map((r) => r.id).sort(), ['123_456.jpg', 'testimgl.jpg']);
    const bad = assertCodedError(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { text: 'x', filter: { eq: ['nope', 1] } },
      }),
      400,
      'GLIMPSE_E_FILTER_INVALID',
    );
    assert.match(bad, /filter\.eq\[0\]/);
  });

  test('bad queries are coded 400s', async () => {
    assertCodedError(
      await app.inject({ method: 'POST', url: '/v1/collections/photos/search', payload: {} }),
      400,
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
    );
    assertCodedError(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { text: 'a', vector: [1] },
      }),
      400,
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
    );
    assertCodedError(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { vector: [1, 2, 3] },
      }),
      400,
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
    );
    const topK = assertCodedError(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { text: 'a', top_k: 0 },
      }),
      400,
      'GLIMPSE_E_SERVER_BAD_REQUEST',
    );
    assert.match(topK, /top_k/);
    assertCodedError(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        headers: { 'content-type': 'application/json' },
        payload: '{"text": ',
      }),
      400,
      'GLIMPSE_E_SERVER_BAD_REQUEST',
    );
    assertCodedError(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        headers: { 'content-type': 'application/xml' },
        payload: '<a/>',
      }),
      415,
      'GLIMPSE_E_SERVER_UNSUPPORTED_MEDIA_TYPE',
    );
    assertCodedError(
      await app.inject({ method: 'GET', url: '/v1/nothing-here' }),
      404,
      'GLIMPSE_E_SERVER_NOT_FOUND',
    );
  });

  test("a stored item's image is served from its allowed path", async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/collections/photos/items/flowers.jpeg/image' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'image/jpeg');
    assert.deepEqual(res.rawPayload, await readFile(join(photos, 'flowers.jpeg')));
    assertCodedError(
      await app.inject({ method: 'GET', url: '/v1/collections/photos/items/b64/image' }),
      404,
      'GLIMPSE_E_SERVER_NOT_FOUND',
    );
  });

  test('vectors into an unbound collection; delete by ids and by filter; delete the collection', async () => {
    const create = await app.inject({
      method: 'POST',
      url: '/v1/collections',
      payload: { name: 'vecs', bound: false, dimension: 3 },
    });
    assert.equal(create.statusCode, 201, create.body);
    const items = [
      { id: 'a', vector: [1, 0, 0], metadata: { group: 'x' } },
      { id: 'b', vector: [0, 1, 0], metadata: { group: 'x' } },
      { id: 'c', vector: [0, 0, 1], metadata: { group: 'y' } },
      { vector: [1, 1, 1] },
    ];
    const ins = json<{ inserted: number; failures: { code: string }[] }>(
      await app.inject({ method: 'POST', url: '/v1/collections/vecs/items', payload: { items } }),
    );
    assert.equal(ins.inserted, 3);
    assert.equal(ins.failures[0]?.code, 'GLIMPSE_E_COLLECTION_ITEM_INVALID', 'a vector item needs an id');
    const text = await app.inject({
      method: 'POST',
      url: '/v1/collections/vecs/search',
      payload: { text: 'a cat' },
    });
    assert.equal(text.statusCode, 400, `the server model's 64-d text vector does not fit 3-d: ${text.body}`);
    const near = json<{ results: Hit[] }>(
      await app.inject({
        method: 'POST',
        url: '/v1/collections/vecs/search',
        payload: { vector: [0.9, 0.1, 0], top_k: 1 },
      }),
    ).results;
    assert.equal(near[0]?.id, 'a');
    const d1 = await app.inject({
      method: 'POST',
      url: '/v1/collections/vecs/delete',
      payload: { ids: ['a', 'zzz'] },
    });
    assert.deepEqual(json(d1), { deleted: 1 });
    const d2 = await app.inject({
      method: 'POST',
      url: '/v1/collections/vecs/delete',
      payload: { filter: { eq: ['group', 'x'] } },
    });
    assert.deepEqual(json(d2), { deleted: 1 });
    assertCodedError(
      await app.inject({ method: 'POST', url: '/v1/collections/vecs/delete', payload: {} }),
      400,
      'GLIMPSE_E_SERVER_BAD_REQUEST',
    );
    const drop = await app.inject({ method: 'DELETE', url: '/v1/collections/vecs' });
    assert.deepEqual(json(drop), { deleted: 'vecs' });
    assertCodedError(
      await app.inject({ method: 'DELETE', url: '/v1/collections/vecs' }),
      404,
      'GLIMPSE_E_COLLECTION_NOT_FOUND',
    );
  });
});

describe('documentation and observability', () => {
  test('OpenAPI document with every route, interactive docs at /docs', async () => {
    const spec = json<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(
      await app.inject({ method: 'GET', url: '/docs/json' }),
    );
    assert.match(spec.openapi, /^3\./);
    for (const [path, method] of [
      ['/health', 'get'],
      ['/v1/collections', 'get'],
      ['/v1/collections', 'post'],
      ['/v1/collections/{name}', 'delete'],
      ['/v1/collections/{name}/items', 'post'],
      ['/v1/collections/{name}/search', 'post'],
      ['/v1/collections/{name}/delete', 'post'],
      ['/knn-service', 'post'],
      ['/metadata', 'post'],
      ['/indices-list', 'get'],
    ] as const) {
      assert.ok(spec.paths[path]?.[method], `${method} ${path} is documented`);
    }
    const ui = await app.inject({ method: 'GET', url: '/docs/' });
    assert.equal(ui.statusCode, 200);
    assert.match(ui.body, /swagger/i);
  });

  test('/metrics: requests and latency per route, embed and search times', async () => {
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /^text\/plain/);
    const text = res.body;
    assert.match(
      text,
      /glimpse_http_requests_total\{method="POST",route="\/v1\/collections\/:name\/search",status="200"\} \d+/,
    );
    assert.match(
      text,
      /glimpse_http_request_duration_seconds_bucket\{le="0\.1",method="GET",route="\/health",status="200"\} \d+/,
    );
    assert.match(text, /glimpse_embed_duration_seconds_count\{kind="text"\} [1-9]/);
    assert.match(text, /glimpse_embed_duration_seconds_count\{kind="image"\} [1-9]/);
    assert.match(text, /glimpse_search_duration_seconds_count\{collection="photos"\} [1-9]/);
  });

  test('request logs are JSON lines with method, route and status', () => {
    const lines = logs.map((l) => JSON.parse(l) as Record<string, unknown>);
    const done = lines.filter((l) => l['msg'] === 'request completed');
    assert.ok(done.length > 10, `completed requests are logged (${done.length})`);
    assert.ok(
      done.every((l) => typeof l['responseTime'] === 'number'),
      'with their time',
    );
    const incoming = lines.find((l) => l['msg'] === 'incoming request');
    assert.ok(incoming && typeof (incoming['req'] as { url?: string }).url === 'string', 'with the URL');
  });
});

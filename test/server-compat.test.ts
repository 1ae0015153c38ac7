/**
 * clip-retrieval back-end compatibility (shared/docs/clip-retrieval-compat.md §2) through `inject()`:
 * index list order, doubled slashes, any Content-Type parsed as JSON, open CORS, num_images /
 * num_result_ids, deduplicate, stored images as base64, query precedence, null metadata, ignored options,
 * integer ids and /metadata order, coded 4xx (and `[]` for the web front's text/plain requests).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel } from '../src/pipeline/model.js';
import { loadServerConfig } from '../src/config/server.js';
import { buildApp, BatchingEmbedder, CollectionRegistry, ServerMetrics } from '../src/server/index.js';

const photos = new URL('./fixtures/images/photos/', import.meta.url).pathname.replace(/\/$/, '');
const PHOTOS = [
  'flowers.jpeg',
  'Portrait_1.jpg',
  'Landscape_1.jpg',
  '123_456.jpg',
  'testimgl.jpg',
  'Landscape_4.jpg',
];

let work: string;
let embedder: BatchingEmbedder;
let registry: CollectionRegistry;
let app: FastifyInstance;

type Result = Record<string, unknown> & { id: number; similarity: number };

/** The request upstream's web front sends (text/plain), with the query fields given. */
function frontBody(query: Record<string, unknown>): string {
  return JSON.stringify({
    text: '',
    image: null,
    image_url: null,
    embedding_input: null,
    modality: 'image',
    num_images: 40,
    indice_name: 'photos',
    num_result_ids: 3000,
    use_mclip: false,
    deduplicate: true,
    use_safety_model: true,
    use_violence_detector: true,
    aesthetic_score: '',
    aesthetic_weight: '0.5',
    ...query,
  });
}

async function knn(body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const res = await app.inject({
    method: 'POST',
    url: '/knn-service',
    headers,
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { res, json: JSON.parse(res.body) as unknown };
}

async function post(url: string, items: unknown[]): Promise<void> {
  const res = await app.inject({ method: 'POST', url, payload: { items } });
  assert.equal(res.statusCode, 200, res.body);
  assert.equal((JSON.parse(res.body) as { failed: number }).failed, 0, res.body);
}

const unit = (v: number[]): number[] => {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'glimpse-server-compat-'));
  const modelDir = await ensureSynthModel('tiny', 0);
  embedder = new BatchingEmbedder(await loadModel(modelDir, { decodeWorkers: 1 }), modelDir);
  registry = await CollectionRegistry.open(join(work, 'db'));
  const config = await loadServerConfig({
    flags: {
      db: join(work, 'db'),
      model: modelDir,
      allowedRoots: [photos],
      indices: ['photos', 'dups', 'rows'],
      ui: false,
      'rateLimit.max': 0,
    },
  });
  app = await buildApp(config, {
    embedder,
    registry,
    metrics: new ServerMetrics({ defaultMetrics: false }),
    logStream: { write: () => undefined },
  });
  await app.inject({ method: 'POST', url: '/v1/collections', payload: { name: 'photos' } });
  await post(
    '/v1/collections/photos/items',
    PHOTOS.map((p, i) => ({
      image_path: p,
      ...(i === 2 ? {} : { caption: `caption of ${p}` }),
      metadata: i === 0 ? { url: 'https://example.com/flowers.jpeg' } : {},
    })),
  );
  await app.inject({
    method: 'POST',
    url: '/v1/collections',
    payload: { name: 'dups', bound: false, dimension: 4 },
  });
  await post('/v1/collections/dups/items', [
    { id: 'a', vector: [1, 0, 0, 0], caption: 'a' },
    { id: 'a-near', vector: unit([1, 0.15, 0, 0]), caption: 'near a' }, // a·a-near ≈ 0.989 > 0.94
    { id: 'a-far', vector: unit([1, 0.45, 0, 0]), caption: 'further' }, // a·a-far ≈ 0.912 < 0.94
    { id: 'c', vector: [0, 0, 1, 0], caption: 'c' },
  ]);
  await app.inject({
    method: 'POST',
    url: '/v1/collections',
    payload: { name: 'rows', bound: false, dimension: 2 },
  });
  await post('/v1/collections/rows/items', [
    { id: '0', vector: [1, 0] },
    { id: '1', vector: [0.8, 0.6] },
    { id: '7', vector: [0, 1] },
  ]);
  await app.inject({
    method: 'POST',
    url: '/v1/collections',
    payload: { name: 'aaa-unlisted', bound: false, dimension: 2 },
  });
});

after(async () => {
  await app?.close();
  await registry?.close();
  await embedder?.close();
  await rm(work, { recursive: true, force: true });
});

describe('routes, slashes, content types, CORS', () => {
  test('/indices-list in configured order, also as //indices-list', async () => {
    for (const url of ['/indices-list', '//indices-list']) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 200, `${url}: ${res.body}`);
      assert.deepEqual(
        JSON.parse(res.body),
        ['photos', 'dups', 'rows'],
        `${url} lists the configured indices in order`,
      );
    }
  });

  test('/config.json for the web front', async () => {
    const res = await app.inject({
      method: 'GET',
      url: '/config.json',
      headers: { host: 'search.example:8080' },
    });
    assert.deepEqual(JSON.parse(res.body), {
      defaultBackend: 'http://search.example:8080/',
      defaultIndex: '',
      urlColumn: 'url',
    });
  });

  test('bodies are JSON whatever the Content-Type: text/plain, none, form, nonsense', async () => {
    const body = JSON.stringify({
      embedding_input: [1, 0, 0, 0],
      modality: 'image',
      num_images: 2,
      indice_name: 'dups',
    });
    for (const headers of [
      { 'content-type': 'text/plain;charset=UTF-8' },
      {},
      { 'content-type': 'application/x-www-form-urlencoded' },
      { 'content-type': 'nonsense' },
    ]) {
      const res = await app.inject({ method: 'POST', url: '//knn-service', headers, payload: body });
      assert.equal(res.statusCode, 200, `${JSON.stringify(headers)}: ${res.body}`);
      assert.equal(
        (JSON.parse(res.body) as Result[])[0]?.similarity,
        1,
        `${JSON.stringify(headers)} searched`,
      );
    }
  });

  test('CORS is open on the clip-retrieval routes (Origin echoed, else *), preflight included', async () => {
    const withOrigin = await app.inject({
      method: 'GET',
      url: '/indices-list',
      headers: { origin: 'https://front.example' },
    });
    assert.equal(withOrigin.headers['access-control-allow-origin'], 'https://front.example');
    assert.match(String(withOrigin.headers['vary']), /Origin/);
    const without = await app.inject({ method: 'GET', url: '//indices-list' });
    assert.equal(without.headers['access-control-allow-origin'], '*');
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '//knn-service',
      headers: {
        origin: 'https://front.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      },
    });
    assert.equal(preflight.statusCode, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://front.example');
    assert.match(String(preflight.headers['access-control-allow-methods']), /POST/);
    assert.equal(preflight.headers['access-control-allow-headers'], 'content-type');
    const rest = await app.inject({
      method: 'GET',
      url: '/v1/collections',
      headers: { origin: 'https://front.example' },
    });
    assert.equal(
      rest.headers['access-control-allow-origin'],
      undefined,
      'REST routes follow cors.origins (none here)',
    );
  });
});

describe('/knn-service', () => {
  test('num_images results carry metadata and the stored image; the rest only id and similarity', async () => {
    const { res, json } = await knn({
      text: 'a photo',
      modality: 'image',
      num_images: 2,
      num_result_ids: 5,
      indice_name: 'photos',
    });
    assert.equal(res.statusCode, 200, res.body);
    const results = json as Result[];
    assert.equal(results.length, 5);
    for (const r of results.slice(0, 2)) {
      assert.ok(Number.isInteger(r.id), `integer id: ${r.id}`);
      assert.equal(typeof r.similarity, 'number');
      assert.ok(
        'caption' in r && 'image_path' in r && 'url' in r,
        `metadata columns: ${Object.keys(r).join(', ')}`,
      );
      const path = r['image_path'] as string;
      assert.equal(
        r['image'],
        (await readFile(path)).toString('base64'),
        'image is the stored file as base64',
      );
    }
    for (const r of results.slice(2))
      assert.deepEqual(Object.keys(r).sort(), ['id', 'similarity'], 'only id and similarity');
    for (let i = 1; i < results.length; i++)
      assert.ok(results[i - 1]!.similarity >= results[i]!.similarity, 'best first');
  });

  test('missing metadata values are null, never NaN; num_result_ids defaults to num_images', async () => {
    const { res, json } = await knn({ text: 'x', modality: 'image', num_images: 6, indice_name: 'photos' });
    assert.ok(!/[:,[]\s*-?NaN\b/.test(res.body), 'no NaN value in the JSON');
    const results = json as Result[];
    assert.equal(results.length, 6, 'num_result_ids defaults to num_images');
    const landscape = results.find((r) => String(r['image_path']).endsWith('Landscape_1.jpg'));
    assert.ok(landscape, 'the item without caption is found');
    assert.equal(landscape['caption'], null, 'its missing caption is null');
    assert.equal(results.filter((r) => r['url'] === null).length, 5, 'url is null where there is none');
  });

  test('deduplicate drops results whose vector has inner product > 0.94 with a better-ranked one', async () => {
    const base = { embedding_input: [1, 0.05, 0, 0], modality: 'image', num_images: 10, indice_name: 'dups' };
    const all = (await knn(base)).json as Result[];
    assert.equal(all.length, 4);
    const dedup = (await knn({ ...base, deduplicate: true })).json as Result[];
    assert.deepEqual(
      dedup.map((r) => r['caption']),
      ['a', 'further', 'c'],
      'near a (0.989 with a) is dropped; further (0.912) and c stay',
    );
    // With near a ranked first, a (0.989 with it) and further (0.963 with it) both go.
    const reversed = (await knn({ ...base, embedding_input: [1, 0.2, 0, 0], deduplicate: true }))
      .json as Result[];
    assert.deepEqual(
      reversed.map((r) => r['caption']),
      ['near a', 'c'],
      'compared with the kept better-ranked hits',
    );
  });

  test('similarity is the inner product with embedding_input used as given (not normalized)', async () => {
    const results = (
      await knn({
        embedding_input: [2, 0, 0, 0],
        modality: 'image',
        num_images: 1,
        num_result_ids: 4,
        indice_name: 'dups',
      })
    ).json as Result[];
    assert.ok(Math.abs(results[0]!.similarity - 2) < 1e-6, `2·1 = 2, got ${results[0]?.similarity}`);
  });

  test('indice_name null or "" is the first index; an unknown name is a coded 404', async () => {
    for (const indice_name of [null, '']) {
      const { res, json } = await knn({ text: 'a photo', modality: 'image', num_images: 1, indice_name });
      assert.equal(res.statusCode, 200, res.body);
      assert.ok(
        String((json as Result[])[0]?.['image_path']).startsWith(photos),
        `${JSON.stringify(indice_name)} → photos`,
      );
    }
    const { res, json } = await knn({
      text: 'x',
      modality: 'image',
      num_images: 1,
      indice_name: 'aaa-unlisted',
    });
    assert.equal(res.statusCode, 404);
    assert.equal((json as { code: string }).code, 'GLIMPSE_E_COLLECTION_NOT_FOUND');
  });

  test('query precedence: non-empty text, then image, then image_url, then embedding_input', async () => {
    const bytes = (await readFile(join(photos, 'Landscape_4.jpg'))).toString('base64');
    const ids = async (q: Record<string, unknown>): Promise<number[]> =>
      (
        (await knn({ modality: 'image', num_images: 0, num_result_ids: 6, indice_name: 'photos', ...q }))
          .json as Result[]
      ).map((r) => r.id);
    const byText = await ids({ text: 'a red car' });
    const byImage = await ids({ image: bytes });
    assert.notDeepEqual(byText, byImage, 'text and image queries differ');
    assert.deepEqual(
      await ids({ text: 'a red car', image: bytes, embedding_input: [1, 2] }),
      byText,
      'text first',
    );
    assert.deepEqual(
      await ids({ text: '', image: bytes, image_url: 'http://127.0.0.1:1/x.jpg' }),
      byImage,
      'then image',
    );
    const vector = Array.from(await embedder.embedImage(await readFile(join(photos, 'Landscape_4.jpg'))));
    assert.deepEqual(
      await ids({ text: '', image: '', image_url: '', embedding_input: vector }),
      byImage,
      'then embedding_input',
    );
    const url = await knn({
      text: '',
      image: null,
      image_url: 'http://127.0.0.1:1/x.jpg',
      embedding_input: vector,
      modality: 'image',
      num_images: 1,
      indice_name: 'photos',
    });
    assert.equal(
      url.res.statusCode,
      403,
      'image_url comes before embedding_input (and private addresses are refused)',
    );
  });

  test("the web front's request works, with its ignored options (safety, violence, aesthetic, mclip)", async () => {
    const plain = await knn(frontBody({ text: 'flowers' }), { 'content-type': 'text/plain;charset=UTF-8' });
    assert.equal(plain.res.statusCode, 200, plain.res.body);
    const results = plain.json as Result[];
    assert.ok(
      results.length >= 1 && results.length <= PHOTOS.length,
      `an array of results (${results.length})`,
    );
    const bare = await knn({
      text: 'flowers',
      modality: 'image',
      num_images: 40,
      num_result_ids: 3000,
      indice_name: 'photos',
      deduplicate: true,
    });
    assert.deepEqual(
      results.map((r) => r.id),
      (bare.json as Result[]).map((r) => r.id),
      'the options change nothing',
    );
  });

  test('bad requests: coded 4xx for JSON clients, [] with the code in a header for the text/plain front', async () => {
    const cases: [Record<string, unknown>, number, string][] = [
      [{ text: 'x', num_images: 1, indice_name: null }, 400, 'GLIMPSE_E_SERVER_BAD_REQUEST'],
      [{ text: 'x', modality: 'image', indice_name: null }, 400, 'GLIMPSE_E_SERVER_BAD_REQUEST'],
      [{ text: 'x', modality: 'image', num_images: 1 }, 400, 'GLIMPSE_E_SERVER_BAD_REQUEST'],
      [
        { text: 'x', modality: 'sound', num_images: 1, indice_name: null },
        400,
        'GLIMPSE_E_SERVER_BAD_REQUEST',
      ],
      [
        { text: 'x', modality: 'image', num_images: -1, indice_name: null },
        400,
        'GLIMPSE_E_SERVER_BAD_REQUEST',
      ],
      [
        { text: 'x', modality: 'image', num_images: 1, num_result_ids: 10_001, indice_name: null },
        400,
        'GLIMPSE_E_SERVER_BAD_REQUEST',
      ],
      [{ modality: 'image', num_images: 1, indice_name: null }, 400, 'GLIMPSE_E_SEARCH_QUERY_INVALID'],
      [
        { text: 'x', modality: 'image', num_images: 1, indice_name: 'nope' },
        404,
        'GLIMPSE_E_COLLECTION_NOT_FOUND',
      ],
      [{ text: 'x', modality: 'text', num_images: 1, indice_name: null }, 400, 'GLIMPSE_E_NOT_SUPPORTED'],
      [
        { embedding_input: [1, 2], modality: 'image', num_images: 1, indice_name: 'dups' },
        400,
        'GLIMPSE_E_SEARCH_QUERY_INVALID',
      ],
      [
        { image: '!!!', modality: 'image', num_images: 1, indice_name: null },
        400,
        'GLIMPSE_E_SERVER_BAD_REQUEST',
      ],
    ];
    for (const [body, status, code] of cases) {
      const asJson = await knn(body);
      assert.equal(asJson.res.statusCode, status, `${JSON.stringify(body)}: ${asJson.res.body}`);
      assert.equal((asJson.json as { code: string }).code, code, JSON.stringify(body));
      const front = await knn(JSON.stringify(body), { 'content-type': 'text/plain;charset=UTF-8' });
      assert.equal(front.res.statusCode, status, `front ${JSON.stringify(body)}`);
      assert.deepEqual(front.json, [], `the front gets an array for ${JSON.stringify(body)}`);
      assert.equal(front.res.headers['x-glimpse-error-code'], code);
    }
    const notJson = await knn('{"text": ', { 'content-type': 'text/plain' });
    assert.deepEqual(notJson.json, [], 'even a body that is not JSON');
    assert.equal(notJson.res.statusCode, 400);
  });
});

describe('ids and /metadata', () => {
  test('ids are row numbers when the stored id is one; other ids get stable numbers that /metadata resolves', async () => {
    const rows = (
      await knn({ embedding_input: [1, 0], modality: 'image', num_images: 3, indice_name: 'rows' })
    ).json as Result[];
    assert.deepEqual(
      rows.map((r) => r.id),
      [0, 1, 7],
    );
    const first = (await knn({ text: 'a photo', modality: 'image', num_images: 6, indice_name: 'photos' }))
      .json as Result[];
    const again = (await knn({ text: 'a photo', modality: 'image', num_images: 6, indice_name: 'photos' }))
      .json as Result[];
    assert.deepEqual(
      first.map((r) => r.id),
      again.map((r) => r.id),
      'the same item keeps its number',
    );
    assert.ok(
      first.every((r) => r.id >= 2 ** 50),
      'path ids get numbers from 2^50',
    );
    const ids = [first[3]!.id, first[0]!.id, 12345, first[1]!.id];
    const res = await app.inject({
      method: 'POST',
      url: '//metadata',
      headers: { 'content-type': 'text/plain' },
      payload: JSON.stringify({ ids, indice_name: 'photos' }),
    });
    assert.equal(res.statusCode, 200, res.body);
    const meta = JSON.parse(res.body) as { id: number; metadata: Record<string, unknown> }[];
    assert.deepEqual(
      meta.map((m) => m.id),
      [first[3]!.id, first[0]!.id, first[1]!.id],
      'request order; unknown ids left out',
    );
    meta.forEach((m, i) => {
      const r = [first[3]!, first[0]!, first[1]!][i]!;
      assert.equal(m.metadata['image_path'], r['image_path'], 'the same item');
      assert.equal(m.metadata['caption'], r['caption']);
      assert.ok(typeof m.metadata['image'] === 'string', 'with its image');
    });
  });

  test('/metadata: ids [] → [], row ids of a numbered index, bad ids a coded 400', async () => {
    const empty = await app.inject({
      method: 'POST',
      url: '/metadata',
      payload: { ids: [], indice_name: 'photos' },
    });
    assert.deepEqual(JSON.parse(empty.body), []);
    const rows = await app.inject({
      method: 'POST',
      url: '/metadata',
      payload: { ids: [7, 0], indice_name: 'rows' },
    });
    assert.deepEqual(
      (JSON.parse(rows.body) as { id: number }[]).map((m) => m.id),
      [7, 0],
    );
    const bad = await app.inject({
      method: 'POST',
      url: '/metadata',
      payload: { ids: ['a'], indice_name: 'rows' },
    });
    assert.equal(bad.statusCode, 400);
    assert.equal((JSON.parse(bad.body) as { code: string }).code, 'GLIMPSE_E_SERVER_BAD_REQUEST');
  });
});

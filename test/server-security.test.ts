/**
 * The server's defences, each attack tried for real against 127.0.0.1 servers: SSRF (private and odd
 * IP spellings, redirects into private space, size and time caps), path traversal and symlink escapes,
 * oversized bodies refused before they are read, pixel limits, API keys (constant-time, never logged),
 * rate limits, CORS for the REST routes, filter injection strings matched literally.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel } from '../src/pipeline/model.js';
import { loadServerConfig } from '../src/config/server.js';
import {
  buildApp,
  BatchingEmbedder,
  CollectionRegistry,
  isPublicAddress,
  PathGuard,
  ServerMetrics,
  UrlGuard,
} from '../src/server/index.js';
import { apiKeyChecker } from '../src/server/auth.js';

const photos = new URL('./fixtures/images/photos/', import.meta.url).pathname.replace(/\/$/, '');

let work: string;
let root: string;
let outside: string;
let modelDir: string;
let embedder: BatchingEmbedder;
let registry: CollectionRegistry;
const apps: FastifyInstance[] = [];
const servers: Server[] = [];

interface Recorded {
  url: string;
  server: Server;
  hits: string[];
}

/** A real HTTP server on `host`: serves /photo.jpg (135k pixels), /big (declared), /stream (chunked), /slow, and redirects. */
async function startImageServer(host: string, routes: Record<string, string> = {}): Promise<Recorded> {
  const jpeg = await readFile(join(photos, '321_421.jpg'));
  const hits: string[] = [];
  const server = createServer((req, res) => {
    const path = req.url ?? '/';
    hits.push(path);
    const redirect = routes[path];
    if (redirect !== undefined) {
      res.writeHead(302, { location: redirect });
      res.end();
    } else if (path === '/photo.jpg') {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length });
      res.end(jpeg);
    } else if (path === '/big') {
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': 10_000_000 });
      res.end();
    } else if (path === '/stream') {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      const chunk = Buffer.alloc(64 * 1024, 1);
      let sent = 0;
      const push = (): void => {
        if (sent > 4_000_000 || res.destroyed) return void res.end();
        sent += chunk.length;
        res.write(chunk, push);
      };
      push();
    } else if (path === '/slow') {
      setTimeout(() => res.end(jpeg), 3000).unref();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  servers.push(server);
  const port = (server.address() as AddressInfo).port;
  return { url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, server, hits };
}

async function makeApp(flags: Record<string, unknown>, logs?: string[]): Promise<FastifyInstance> {
  const config = await loadServerConfig({
    flags: { db: join(work, 'db'), model: modelDir, ui: false, docs: false, 'rateLimit.max': 0, ...flags },
  });
  const app = await buildApp(config, {
    embedder,
    registry,
    metrics: new ServerMetrics({ defaultMetrics: false }),
    logStream: { write: (line: string) => void logs?.push(line) },
  });
  apps.push(app);
  return app;
}

function codeOf(res: { body: string }): string {
  return (JSON.parse(res.body) as { code: string }).code;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'glimpse-server-security-'));
  root = join(work, 'root');
  outside = join(work, 'outside');
  await mkdir(join(root, 'sub'), { recursive: true });
  await mkdir(outside);
  await copyFile(join(photos, '123_456.jpg'), join(root, 'flowers.jpeg'));
  await copyFile(join(photos, '208_495.jpg'), join(root, 'sub', 'portrait.jpg'));
  await copyFile(join(photos, 'Landscape_1.jpg'), join(outside, 'secret.jpg'));
  await symlink(join(outside, 'secret.jpg'), join(root, 'escape.jpg'));
  await symlink(outside, join(root, 'escape-dir'));
  await symlink(join(root, 'sub', 'portrait.jpg'), join(root, 'inside-link.jpg'));
  modelDir = await ensureSynthModel('tiny', 0);
  // 200k pixels: the small photos pass, the 600×450 ones are over the limit.
  embedder = new BatchingEmbedder(
    await loadModel(modelDir, { decodeWorkers: 1, limits: { maxPixels: 200_000 } }),
    modelDir,
  );
  registry = await CollectionRegistry.open(join(work, 'db'));
  const setup = await makeApp({});
  await setup.inject({ method: 'POST', url: '/v1/collections', payload: { name: 'photos' } });
  await setup.inject({
    method: 'POST',
    url: '/v1/collections/photos/items',
    payload: {
      items: [{ id: 'seed', image: (await readFile(join(photos, 'testimgl.jpg'))).toString('base64') }],
    },
  });
});

after(async () => {
  for (const app of apps) await app.close();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
  await registry?.close();
  await embedder?.close();
  await rm(work, { recursive: true, force: true });
});

describe('SSRF', () => {
  test('non-public addresses are not public', () => {
    for (const a of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '224.0.0.1',
      '255.255.255.255',
      '::1',
      '::',
      'fc00::1',
      'fd12::1',
      'fe80::1',
      'ff02::1',
      '::ffff:127.0.0.1',
      '::ffff:10.0.0.1',
      '64:ff9b::a00:1',
      '2002:c0a8:101::1',
    ]) {
      assert.equal(isPublicAddress(a), false, `${a} is not public`);
    }
    for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) {
      assert.equal(isPublicAddress(a), true, `${a} is public`);
    }
  });

  test('URLs to private, loopback and oddly spelled addresses are refused before any connection', async () => {
    const target = await startImageServer('127.0.0.1');
    const port = new URL(target.url).port;
    const app = await makeApp({});
    const urls = [
      `${target.url}/photo.jpg`,
      `http://localhost:${port}/photo.jpg`,
      `http://2130706433:${port}/photo.jpg`,
      `http://0177.0.0.1:${port}/photo.jpg`,
      `http://0x7f.1:${port}/photo.jpg`,
      `http://127.1:${port}/photo.jpg`,
      `http://[::1]:${port}/photo.jpg`,
      `http://[::ffff:127.0.0.1]:${port}/photo.jpg`,
      `http://[::ffff:7f00:1]:${port}/photo.jpg`,
      'http://10.0.0.1/x.jpg',
      'http://172.16.5.4/x.jpg',
      'http://192.168.0.1/x.jpg',
      'http://169.254.169.254/latest/meta-data/',
      'http://100.64.0.1/x.jpg',
      'http://0.0.0.0/x.jpg',
      'http://[fd00::1]/x.jpg',
      'http://[fe80::1]/x.jpg',
      'http://224.0.0.1/x.jpg',
      'file:///etc/passwd',
      'ftp://example.com/x.jpg',
      'gopher://127.0.0.1:70/x',
    ];
    for (const url of urls) {
      const rest = await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { image_url: url },
      });
      assert.equal(rest.statusCode, 403, `${url}: ${rest.body}`);
      assert.equal(codeOf(rest), 'GLIMPSE_E_SERVER_FORBIDDEN_URL', url);
      const knn = await app.inject({
        method: 'POST',
        url: '/knn-service',
        payload: { image_url: url, modality: 'image', num_images: 1, indice_name: 'photos' },
      });
      assert.equal(knn.statusCode, 403, `knn ${url}: ${knn.body}`);
      const insert = await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/items',
        payload: { items: [{ image_url: url }] },
      });
      assert.equal(insert.statusCode, 403, `insert ${url}: ${insert.body}`);
    }
    assert.deepEqual(target.hits, [], 'the loopback server never saw a request');
  });

  test('an allow-listed address works; redirects are followed and every hop is checked', async () => {
    const hidden = await startImageServer('127.0.0.2');
    const front = await startImageServer('127.0.0.1', {
      '/ok': '/photo.jpg',
      '/to-private': `${hidden.url}/photo.jpg`,
      '/to-metadata': 'http://169.254.169.254/latest/meta-data/',
      '/to-decimal': `http://2130706434:${new URL(hidden.url).port}/photo.jpg`,
      '/to-file': 'file:///etc/passwd',
      '/loop': '/loop',
    });
    const app = await makeApp({ 'fetch.allowedCidrs': ['127.0.0.1/32'], 'fetch.maxRedirects': 2 });
    const search = (url: string) =>
      app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { image_url: url, top_k: 1 },
      });

    const direct = await search(`${front.url}/photo.jpg`);
    assert.equal(direct.statusCode, 200, direct.body);
    assert.equal((JSON.parse(direct.body) as { results: unknown[] }).results.length, 1);
    const redirected = await search(`${front.url}/ok`);
    assert.equal(redirected.statusCode, 200, redirected.body);

    for (const path of ['/to-private', '/to-metadata', '/to-decimal', '/to-file']) {
      const res = await search(`${front.url}${path}`);
      assert.equal(res.statusCode, 403, `${path}: ${res.body}`);
      assert.equal(codeOf(res), 'GLIMPSE_E_SERVER_FORBIDDEN_URL');
    }
    assert.deepEqual(hidden.hits, [], 'the redirect target outside the allow-list was never contacted');
    const loop = await search(`${front.url}/loop`);
    assert.equal(loop.statusCode, 502, loop.body);
    assert.equal(codeOf(loop), 'GLIMPSE_E_STORAGE_REDIRECT_LIMIT');
    const other = await search(`http://127.0.0.3:${new URL(front.url).port}/photo.jpg`);
    assert.equal(other.statusCode, 403, 'only the listed address is allowed');
  });

  test('downloads are capped in bytes (declared or streamed) and in time', async () => {
    const server = await startImageServer('127.0.0.1');
    const app = await makeApp({
      'fetch.allowedCidrs': ['127.0.0.1'],
      'limits.imageBytes': '1M',
      'fetch.timeoutMs': 300,
    });
    const search = (path: string) =>
      app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { image_url: `${server.url}${path}` },
      });
    const declared = await search('/big');
    assert.equal(declared.statusCode, 413, declared.body);
    assert.equal(codeOf(declared), 'GLIMPSE_E_IMAGE_TOO_LARGE');
    const streamed = await search('/stream');
    assert.equal(streamed.statusCode, 413, streamed.body);
    const slow = await search('/slow');
    assert.equal(slow.statusCode, 504, slow.body);
    assert.equal(codeOf(slow), 'GLIMPSE_E_STORAGE_TIMEOUT');
  });

  test('UrlGuard resolves once and connects to the checked address', async () => {
    const server = await startImageServer('127.0.0.1');
    const guard = new UrlGuard({
      allowPrivate: false,
      allowedCidrs: ['127.0.0.1/32'],
      maxBytes: 1e7,
      timeoutMs: 2000,
      maxRedirects: 0,
    });
    const checked = await guard.check(`http://localhost:${new URL(server.url).port}/photo.jpg`);
    assert.equal(checked.address, '127.0.0.1', 'localhost resolves to the allowed 127.0.0.1');
    const bytes = await guard.fetch(`http://localhost:${new URL(server.url).port}/photo.jpg`);
    assert.deepEqual(Buffer.from(bytes), await readFile(join(photos, '321_421.jpg')));
  });
});

describe('local paths', () => {
  test('PathGuard: inside the root only, real paths checked', async () => {
    const guard = await PathGuard.create([root]);
    assert.equal(await guard.resolve('flowers.jpeg'), join(root, 'flowers.jpeg'));
    assert.equal(await guard.resolve(join(root, 'sub', '..', 'flowers.jpeg')), join(root, 'flowers.jpeg'));
    assert.equal(
      await guard.resolve('inside-link.jpg'),
      join(root, 'sub', 'portrait.jpg'),
      'a symlink that stays inside',
    );
    for (const p of [
      '../outside/secret.jpg',
      join(root, '..', 'outside', 'secret.jpg'),
      '/etc/passwd',
      'escape.jpg',
      'escape-dir/secret.jpg',
      `${root}-evil/x.jpg`,
    ]) {
      await assert.rejects(guard.resolve(p), { code: 'GLIMPSE_E_SERVER_FORBIDDEN_PATH' }, p);
    }
    await assert.rejects(guard.resolve('missing.jpg'), { code: 'GLIMPSE_E_SERVER_NOT_FOUND' });
    await assert.rejects(
      guard.resolve(join(outside, 'missing.jpg')),
      { code: 'GLIMPSE_E_SERVER_FORBIDDEN_PATH' },
      'outside: no existence check',
    );
  });

  test('inserts and searches by path: traversal and symlink escapes are refused, allowed paths work', async () => {
    const app = await makeApp({ allowedRoots: [root] });
    for (const p of [
      '../outside/secret.jpg',
      `${root}/../outside/secret.jpg`,
      '/etc/passwd',
      'escape.jpg',
      'escape-dir/secret.jpg',
      'sub/../../outside/secret.jpg',
    ]) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/search',
        payload: { image_path: p },
      });
      assert.equal(res.statusCode, 403, `${p}: ${res.body}`);
      assert.equal(codeOf(res), 'GLIMPSE_E_SERVER_FORBIDDEN_PATH');
      assert.ok(!res.body.includes(root), `the root is not disclosed: ${res.body}`);
      const ins = await app.inject({
        method: 'POST',
        url: '/v1/collections/photos/items',
        payload: { items: [{ image_path: p }] },
      });
      assert.equal(ins.statusCode, 403, `insert ${p}`);
    }
    const ok = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      payload: { image_path: 'sub/portrait.jpg' },
    });
    assert.equal(ok.statusCode, 200, ok.body);
    const none = await makeApp({});
    const refused = await none.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      payload: { image_path: join(root, 'flowers.jpeg') },
    });
    assert.equal(refused.statusCode, 403, 'no roots configured: no paths at all');
  });
});

describe('limits', () => {
  test('a body announced larger than the limit is refused with 413 before it is sent', async () => {
    const app = await makeApp({ 'limits.bodyBytes': '64K' });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as AddressInfo).port;
    for (const [path, type] of [
      ['/v1/collections/photos/search', 'application/json'],
      ['/v1/collections/photos/items', 'multipart/form-data; boundary=x'],
      ['/knn-service', 'text/plain'],
    ] as const) {
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => {
          // 100 MB announced, 10 bytes sent: the answer must come without the rest.
          socket.write(
            `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nContent-Length: 100000000\r\n\r\n{"text":"`,
          );
        });
        let data = '';
        socket.on('data', (d: Buffer) => {
          data += d.toString();
          if (data.includes('\r\n\r\n') && /\}|\]$/.test(data)) socket.destroy();
        });
        socket.on('close', () => resolve(data));
        socket.on('error', reject);
      });
      assert.match(answer, /^HTTP\/1\.1 413 /, `${path}: ${answer.slice(0, 200)}`);
      assert.match(answer, /GLIMPSE_E_SERVER_BODY_TOO_LARGE/, path);
    }
  });

  test('JSON over the body limit, base64 over the image limit, uploads over the file limit: 413', async () => {
    const app = await makeApp({ 'limits.bodyBytes': '64K', 'limits.imageBytes': '16K' });
    const big = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      payload: { text: 'x'.repeat(70_000) },
    });
    assert.equal(big.statusCode, 413);
    assert.equal(codeOf(big), 'GLIMPSE_E_SERVER_BODY_TOO_LARGE');
    const b64 = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      payload: { image: Buffer.alloc(20_000, 7).toString('base64') },
    });
    assert.equal(b64.statusCode, 413, b64.body);
    assert.equal(codeOf(b64), 'GLIMPSE_E_SERVER_BODY_TOO_LARGE');
    const knn = await app.inject({
      method: 'POST',
      url: '/knn-service',
      payload: {
        image: Buffer.alloc(20_000, 7).toString('base64'),
        modality: 'image',
        num_images: 1,
        indice_name: 'photos',
      },
    });
    assert.equal(knn.statusCode, 413, knn.body);
    const form = new FormData();
    form.append('image', new Blob([Buffer.alloc(20_000, 1)], { type: 'image/jpeg' }), 'big.jpg');
    const req = new Request('http://x/', { method: 'POST', body: form });
    const up = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      headers: { 'content-type': req.headers.get('content-type')! },
      payload: Buffer.from(await req.arrayBuffer()),
    });
    assert.equal(up.statusCode, 413, up.body);
    assert.equal(codeOf(up), 'GLIMPSE_E_SERVER_BODY_TOO_LARGE');
  });

  test('images over the pixel limit are refused (413) before inference', async () => {
    const app = await makeApp({});
    const bytes = await readFile(join(photos, 'Landscape_1.jpg'));
    const res = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      payload: { image: bytes.toString('base64') },
    });
    assert.equal(res.statusCode, 413, res.body);
    assert.equal(codeOf(res), 'GLIMPSE_E_IMAGE_TOO_MANY_PIXELS');
  });

  test('rate limit: 429 with Retry-After past the limit; /health is exempt', async () => {
    const app = await makeApp({ 'rateLimit.max': 3, 'rateLimit.windowMs': 60_000 });
    const codes: number[] = [];
    for (let i = 0; i < 5; i++)
      codes.push((await app.inject({ method: 'GET', url: '/indices-list' })).statusCode);
    assert.deepEqual(codes, [200, 200, 200, 429, 429]);
    const limited = await app.inject({ method: 'GET', url: '/v1/collections' });
    assert.equal(codeOf(limited), 'GLIMPSE_E_SERVER_RATE_LIMITED');
    assert.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After is set');
    assert.equal(
      (await app.inject({ method: 'GET', url: '/health' })).statusCode,
      200,
      'health is not limited',
    );
  });
});

describe('API keys, logs, CORS, filters', () => {
  test('apiKeyChecker compares digests in constant time', () => {
    const check = apiKeyChecker(['first-key', 'second']);
    assert.equal(check('first-key'), true);
    assert.equal(check('second'), true);
    assert.equal(check('first-ke'), false);
    assert.equal(check('first-key '), false);
    assert.equal(check(''), false);
    assert.equal(check(undefined), false);
  });

  test('protect writes: missing or wrong key → 401; a right key (Bearer or X-API-Key) passes; reads stay open', async () => {
    const logs: string[] = [];
    const app = await makeApp({ 'auth.apiKeys': ['k3y-s3cret-1', 'other-key'] }, logs);
    const create = (headers: Record<string, string>) =>
      app.inject({
        method: 'POST',
        url: '/v1/collections',
        headers,
        payload: { name: `c${Math.random().toString(36).slice(2, 8)}` },
      });
    const missing = await create({});
    assert.equal(missing.statusCode, 401);
    assert.equal(codeOf(missing), 'GLIMPSE_E_SERVER_UNAUTHORIZED');
    assert.equal(missing.headers['www-authenticate'], 'Bearer');
    assert.equal((await create({ authorization: 'Bearer wrong-key' })).statusCode, 401);
    assert.equal((await create({ 'x-api-key': 'k3y-s3cret-' })).statusCode, 401);
    assert.equal((await create({ authorization: 'Bearer k3y-s3cret-1' })).statusCode, 201);
    assert.equal((await create({ 'x-api-key': 'other-key' })).statusCode, 201);
    const del = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/delete',
      payload: { ids: ['x'] },
    });
    assert.equal(del.statusCode, 401, 'deletes are writes');
    const search = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      payload: { text: 'a' },
    });
    assert.equal(search.statusCode, 200, 'searches are reads');
    const all = logs.join('\n');
    assert.ok(
      !all.includes('k3y-s3cret-1') && !all.includes('other-key') && !all.includes('wrong-key'),
      'no key in the logs',
    );
    assert.ok(all.includes('request completed'), 'the requests were logged');
  });

  test('protect all: every route but /health needs the key, the clip-retrieval routes too', async () => {
    const app = await makeApp({ 'auth.apiKeys': ['k'], 'auth.protect': 'all' });
    for (const [method, url] of [
      ['GET', '/v1/collections'],
      ['GET', '/indices-list'],
      ['POST', '/knn-service'],
      ['GET', '/metrics'],
    ] as const) {
      const res = await app.inject({ method, url, payload: method === 'POST' ? {} : undefined });
      assert.equal(res.statusCode, 401, `${method} ${url}`);
    }
    assert.equal(
      (await app.inject({ method: 'GET', url: '/v1/collections', headers: { authorization: 'Bearer k' } }))
        .statusCode,
      200,
    );
    assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
  });

  test('REST CORS follows cors.origins; preflight answers only allowed origins', async () => {
    const app = await makeApp({ 'cors.origins': ['https://ok.example'] });
    const ok = await app.inject({
      method: 'GET',
      url: '/v1/collections',
      headers: { origin: 'https://ok.example' },
    });
    assert.equal(ok.headers['access-control-allow-origin'], 'https://ok.example');
    const bad = await app.inject({
      method: 'GET',
      url: '/v1/collections',
      headers: { origin: 'https://evil.example' },
    });
    assert.equal(bad.headers['access-control-allow-origin'], undefined);
    const pre = (origin: string) =>
      app.inject({
        method: 'OPTIONS',
        url: '/v1/collections/photos/search',
        headers: { origin, 'access-control-request-method': 'POST' },
      });
    assert.equal(
      (await pre('https://ok.example')).headers['access-control-allow-origin'],
      'https://ok.example',
    );
    assert.equal((await pre('https://evil.example')).headers['access-control-allow-origin'], undefined);
  });

  test('filter injection strings delete only their literal match', async () => {
    const app = await makeApp({});
    await app.inject({
      method: 'POST',
      url: '/v1/collections',
      payload: { name: 'names', bound: false, dimension: 2 },
    });
    const names = ["O'Brien", "x' OR 1=1 --", 'plain', "O''Brien"];
    await app.inject({
      method: 'POST',
      url: '/v1/collections/names/items',
      payload: { items: names.map((name, i) => ({ id: `n${i}`, vector: [1, i], metadata: { name } })) },
    });
    for (const name of ["x' OR 1=1 --", "O'Brien"]) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/collections/names/delete',
        payload: { filter: { eq: ['name', name] } },
      });
      assert.deepEqual(JSON.parse(res.body), { deleted: 1 }, name);
    }
    const left = await app.inject({
      method: 'POST',
      url: '/v1/collections/names/search',
      payload: { vector: [1, 0], top_k: 10 },
    });
    assert.deepEqual(
      (JSON.parse(left.body) as { results: { metadata: { name: string } }[] }).results
        .map((r) => r.metadata.name)
        .sort(),
      ["O''Brien", 'plain'],
    );
    const sneaky = await app.inject({
      method: 'POST',
      url: '/v1/collections/names/delete',
      payload: { filter: "name = 'plain' OR 1=1" },
    });
    assert.equal(sneaky.statusCode, 400, 'a raw SQL string is not a filter');
  });

  test('no server paths in errors: a missing file under the root is a 404 without the root', async () => {
    await writeFile(join(root, 'note.txt'), 'not an image');
    const app = await makeApp({ allowedRoots: [root] });
    const res = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      payload: { image_path: 'gone.jpg' },
    });
    assert.equal(res.statusCode, 404);
    assert.ok(!res.body.includes(work), res.body);
    const notImage = await app.inject({
      method: 'POST',
      url: '/v1/collections/photos/search',
      payload: { image_path: 'note.txt' },
    });
    assert.equal(notImage.statusCode, 422, notImage.body);
    assert.ok(!notImage.body.includes(work), `no server path: ${notImage.body}`);
  });
});

/**
 * HTTP storage against a real server on 127.0.0.1 that misbehaves on purpose: no Range support,
 * redirect chains, slow and stalled answers, 500s, lying Content-Length, no HEAD.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GlimpseError } from '../src/errors/index.js';
import { isGlimpseError } from '../src/errors/index.js';
import { HttpStorage, parseListing } from '../src/storage/index.js';
import { startHttpServer, type TestHttpServer } from './helpers/http-server.js';

const root = mkdtempSync(join(tmpdir(), 'glimpse-http-'));
const data = new Uint8Array(200_000).map((_, i) => (i * 7 + 3) & 255);
writeFileSync(join(root, 'data.bin'), data);
let server: TestHttpServer;

test.before(async () => {
  server = await startHttpServer(root);
});
test.after(async () => {
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<GlimpseError> {
  try {
    await p;
  } catch (err) {
    if (isGlimpseError(err)) return err;
    throw err;
  }
  assert.fail('expected a GlimpseError');
}

function same(actual: Uint8Array, expected: Uint8Array): void {
  assert.equal(actual.length, expected.length);
  assert.ok(Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected));
}

async function withStorage<T>(
  options: ConstructorParameters<typeof HttpStorage>[0],
  fn: (s: HttpStorage) => Promise<T>,
): Promise<T> {
  const s = new HttpStorage(options);
  try {
    return await fn(s);
  } finally {
    s.close();
    server.reset();
  }
}

test('a server that ignores Range (answers 200) still gives the right bytes', async () => {
  await withStorage({ retries: 0 }, async (s) => {
    server.switches.noRange = true;
    same(await s.readRange(`${server.url}/data.bin`, 150_000, 150_010), data.subarray(150_000, 150_010));
    same(await s.readRange(`${server.url}/data.bin`, 0, 3), data.subarray(0, 3));
    assert.equal((await s.stat(`${server.url}/data.bin`)).size, data.length);
    const err = await failure(s.readRange(`${server.url}/data.bin`, 199_990, 200_010));
    assert.equal(err.code, 'GLIMPSE_E_STORAGE_IO');
    assert.match(err.message, /body ends at 200000/);
    assert.ok(server.requests.every((r) => r.range !== undefined || r.method === 'HEAD'));
  });
});

test('redirect chains are followed up to maxRedirects, then GLIMPSE_E_STORAGE_REDIRECT_LIMIT', async () => {
  await withStorage({ maxRedirects: 3, retries: 0 }, async (s) => {
    server.switches.redirects = 3;
    same(await s.readRange(`${server.url}/data.bin`, 10, 20), data.subarray(10, 20));
    assert.equal(server.requests.filter((r) => r.method === 'GET').length, 4);
    server.switches.redirects = 4;
    const err = await failure(s.read(`${server.url}/data.bin`));
    assert.equal(err.code, 'GLIMPSE_E_STORAGE_REDIRECT_LIMIT');
    assert.match(
      err.message,
      /^Expected at most 3 redirects for http:\/\/127\.0\.0\.1:\d+\/data\.bin but it redirects further/,
    );
  });
});

test('slow headers and stalled bodies time out with GLIMPSE_E_STORAGE_TIMEOUT', async () => {
  await withStorage({ readTimeoutMs: 150, retries: 0 }, async (s) => {
    server.switches.delayMs = 2000;
    const err = await failure(s.stat(`${server.url}/data.bin`));
    assert.equal(err.code, 'GLIMPSE_E_STORAGE_TIMEOUT');
    assert.match(err.message, /response headers from http:\/\/127\.0\.0\.1:\d+\/data\.bin within 150 ms/);
    server.reset();
    server.switches.stallMs = 2000;
    const stalled = await failure(s.readRange(`${server.url}/data.bin`, 0, 100_000));
    assert.equal(stalled.code, 'GLIMPSE_E_STORAGE_TIMEOUT');
    assert.match(stalled.message, /body bytes/);
  });
});

test('5xx answers are retried, then reported with GLIMPSE_E_STORAGE_HTTP_STATUS and the status', async () => {
  await withStorage({ retries: 2 }, async (s) => {
    server.switches.fail500 = 2;
    same(await s.readRange(`${server.url}/data.bin`, 5, 9), data.subarray(5, 9));
    assert.equal(server.requests.length, 3);
    server.reset();
    server.switches.fail500 = Infinity;
    const err = await failure(s.readRange(`${server.url}/data.bin`, 5, 9));
    assert.equal(err.code, 'GLIMPSE_E_STORAGE_HTTP_STATUS');
    assert.equal(err.details?.status, 500);
    assert.match(err.message, /answered 500 Internal Server Error$/);
    assert.equal(server.requests.length, 3);
  });
  await withStorage({ retries: 2 }, async (s) => {
    const err = await failure(s.read(`${server.url}/missing.bin`));
    assert.equal(err.code, 'GLIMPSE_E_STORAGE_NOT_FOUND');
    assert.equal(server.requests.length, 1, '404 is not retried');
  });
});

test('a lying Content-Length (body shorter than announced) is detected', async () => {
  await withStorage({ retries: 0 }, async (s) => {
    server.switches.lieContentLength = true;
    const whole = await failure(s.read(`${server.url}/data.bin`));
    assert.equal(whole.code, 'GLIMPSE_E_STORAGE_IO');
    assert.match(whole.message, /Expected 200100 body bytes from .*data\.bin/);
    const part = await failure(s.readRange(`${server.url}/data.bin`, 100, 200));
    assert.equal(part.code, 'GLIMPSE_E_STORAGE_IO');
    assert.match(part.message, /Content-Length/);
  });
});

test('a server without HEAD still gives sizes (one-byte range GET)', async () => {
  await withStorage({ retries: 0 }, async (s) => {
    server.switches.noHead = true;
    assert.equal((await s.stat(`${server.url}/data.bin`)).size, data.length);
    assert.deepEqual(
      server.requests.map((r) => [r.method, r.range]),
      [
        ['HEAD', undefined],
        ['GET', 'bytes=0-0'],
      ],
    );
  });
});

test('a refused connection is a coded GLIMPSE_E_STORAGE_IO error', async () => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as { port: number }).port;
  await new Promise<void>((r) => blocker.close(() => r()));
  await withStorage({ retries: 1 }, async (s) => {
    const err = await failure(s.stat(`http://127.0.0.1:${port}/x.npy`));
    assert.equal(err.code, 'GLIMPSE_E_STORAGE_IO');
    assert.match(err.message, /connection failed: .*ECONNREFUSED/);
  });
});

test('parseListing reads HTML autoindexes (nginx, Apache, python), JSON and text, direct children only', () => {
  const base = new URL('http://h/emb/img_emb/');
  const nginx = `<html><head><title>Index of /emb/img_emb/</title></head><body><h1>Index of /emb/img_emb/</h1><hr><pre><a href="../">../</a>
<a href="sub/">sub/</a>                                               01-Jan-2024 00:00       -
<a href="img_emb_1.npy">img_emb_1.npy</a>                           01-Jan-2024 00:00    1280
<a href="img_emb_0.npy">img_emb_0.npy</a>                           01-Jan-2024 00:00    1280
<a href="a%20b.npy">a b.npy</a>
<a href="http://other/x.npy">x</a> <a href="/emb/img_emb/abs.npy">abs</a> <a href="?C=M;O=A">m</a> <a href="/emb/other.npy">up</a>
</pre><hr></body></html>`;
  assert.deepEqual(parseListing(nginx, 'text/html', base)?.sort(), [
    'a b.npy',
    'abs.npy',
    'img_emb_0.npy',
    'img_emb_1.npy',
  ]);
  assert.deepEqual(parseListing('["b.npy", {"name": "a.npy"}]', 'application/json', base), [
    'b.npy',
    'a.npy',
  ]);
  assert.deepEqual(parseListing('{"files": ["x.npy"]}', 'application/json', base), ['x.npy']);
  assert.deepEqual(parseListing('x.npy\n# comment\n\ny.npy\n', 'text/plain', base), ['x.npy', 'y.npy']);
  assert.equal(parseListing('{"nope": 1}', 'application/json', base), undefined);
  assert.equal(parseListing('binary', 'application/octet-stream', base), undefined);
});

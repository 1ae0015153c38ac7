/**
 * One behavioural suite run unchanged against every storage backend: local disk, HTTP (a real node:http
 * server on 127.0.0.1 serving the local folder; read-only) and S3 (a real s3rver on 127.0.0.1).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Readable } from 'node:stream';
import { isGlimpseError, type ErrorCode } from '../src/errors/index.js';
import { openStorage, joinUrl, urlBasename, storageKind, type Storage } from '../src/storage/index.js';
import { readParquetMetadata, encodeParquet } from '../src/formats/parquet.js';
import { startHttpServer, type TestHttpServer } from './helpers/http-server.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';

const root = mkdtempSync(join(tmpdir(), 'glimpse-storage-'));
let http: TestHttpServer;
let s3: TestS3Server;

test.before(async () => {
  http = await startHttpServer(root);
  s3 = await startS3Server();
});
test.after(async () => {
  await http.close();
  await s3.close();
  rmSync(root, { recursive: true, force: true });
});

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<ErrorCode | 'no error'> {
  try {
    await p;
  } catch (err) {
    if (isGlimpseError(err)) return err.code;
    throw err;
  }
  return 'no error';
}

/** Byte equality whatever the Uint8Array subclass (Buffer or plain). */
function sameBytes(actual: Uint8Array, expected: Uint8Array, message?: string): void {
  assert.equal(actual.length, expected.length, message);
  assert.ok(Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected), message);
}

async function drain(stream: Readable): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const c of stream as AsyncIterable<Uint8Array>) chunks.push(c);
  return Buffer.concat(chunks);
}

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

const small = pattern(1000, 1);
const medium = pattern(300_000, 2);
const large = pattern(12 * 1024 * 1024 + 123, 3); // S3: a multipart upload (threshold 5 MiB below)
const parquet = encodeParquet([{ name: 'x', type: 'STRING', data: ['a', 'b', null] }]);

/** Writes the fixture set through a writable storage. */
async function writeFixtures(storage: Storage, folder: string): Promise<void> {
  await storage.writeAtomic(joinUrl(folder, 'b.bin'), medium);
  await storage.writeAtomic(joinUrl(folder, 'a.bin'), small);
  await storage.writeAtomic(joinUrl(folder, 'c d.bin'), chunked(large, 1 << 20));
  await storage.writeAtomic(joinUrl(folder, 'Z.parquet'), Readable.from([parquet]));
  await storage.writeAtomic(joinUrl(folder, 'empty.bin'), new Uint8Array(0));
  await storage.writeAtomic(joinUrl(folder, 'sub', 'nested.bin'), small);
}

/** The read contract every backend meets. */
async function readContract(storage: Storage, folder: string): Promise<void> {
  const url = (name: string): string => joinUrl(folder, name);
  const entries = await storage.list(folder);
  assert.deepEqual(
    entries.map((e) => [e.name, e.size]),
    [
      ['Z.parquet', parquet.length],
      ['a.bin', small.length],
      ['b.bin', medium.length],
      ['c d.bin', large.length],
      ['empty.bin', 0],
    ],
  );
  assert.equal(urlBasename(entries[3]!.url), 'c d.bin');
  sameBytes(await storage.read(entries[3]!.url), large);

  const st = await storage.stat(url('b.bin'));
  assert.equal(st.size, medium.length);
  assert.ok(st.mtime === undefined || st.mtime instanceof Date);
  sameBytes(await storage.read(url('a.bin')), small);
  sameBytes(await storage.read(url('empty.bin')), new Uint8Array(0));
  sameBytes(await storage.readRange(url('b.bin'), 12_345, 200_000), medium.subarray(12_345, 200_000));
  sameBytes(await storage.readRange(url('b.bin'), 0, 1), medium.subarray(0, 1));
  const into = new Uint8Array(50_000);
  const target = into.subarray(10_000, 40_000);
  assert.equal(await storage.readRange(url('b.bin'), 100_000, 130_000, target), target);
  sameBytes(into.subarray(10_000, 40_000), medium.subarray(100_000, 130_000));
  assert.ok(into.subarray(0, 10_000).every((v) => v === 0) && into.subarray(40_000).every((v) => v === 0));
  assert.equal(
    await codeOf(storage.readRange(url('b.bin'), 0, 10, new Uint8Array(9))),
    'GLIMPSE_E_ARG_INVALID',
  );
  sameBytes(await storage.readRange(url('b.bin'), 5, 5), new Uint8Array(0));
  sameBytes(
    await storage.readRange(url('c d.bin'), large.length - 7, large.length),
    large.subarray(large.length - 7),
  );
  sameBytes(await drain(await storage.createReadStream(url('b.bin'))), medium);
  sameBytes(
    await drain(await storage.createReadStream(url('c d.bin'), { start: 1000, end: 5_000_000 })),
    large.subarray(1000, 5_000_000),
  );
  sameBytes(await drain(await storage.createReadStream(url('a.bin'), { start: 990 })), small.subarray(990));

  const pq = await readParquetMetadata(await storage.rangeReader(url('Z.parquet')));
  assert.equal(pq.numRows, 3);

  assert.equal(await storage.exists(url('a.bin')), true);
  assert.equal(await storage.exists(url('missing.bin')), false);
  assert.equal(await codeOf(storage.stat(url('missing.bin'))), 'GLIMPSE_E_STORAGE_NOT_FOUND');
  assert.equal(await codeOf(storage.read(url('missing.bin'))), 'GLIMPSE_E_STORAGE_NOT_FOUND');
  assert.equal(await codeOf(storage.readRange(url('missing.bin'), 0, 4)), 'GLIMPSE_E_STORAGE_NOT_FOUND');
  assert.equal(await codeOf(storage.readRange(url('a.bin'), 990, 1010)), 'GLIMPSE_E_STORAGE_IO');
  assert.equal(await codeOf(storage.readRange(url('a.bin'), 2000, 2010)), 'GLIMPSE_E_STORAGE_IO');
  assert.equal(await codeOf(storage.readRange(url('a.bin'), 10, 5)), 'GLIMPSE_E_ARG_INVALID');
}

/** The write contract of writable backends (after readContract). */
async function writeContract(storage: Storage, folder: string): Promise<void> {
  const target = joinUrl(folder, 'w', 'out.bin');
  await storage.writeAtomic(target, small);
  await storage.writeAtomic(target, medium); // replaces
  sameBytes(await storage.read(target), medium);
  await storage.delete(target);
  assert.equal(await storage.exists(target), false);
  await storage.delete(target); // deleting a missing object is fine
  // A failing stream leaves nothing behind.
  async function* failing(): AsyncGenerator<Uint8Array> {
    yield small;
    throw new Error('source broke');
  }
  assert.equal(
    await codeOf(storage.writeAtomic(joinUrl(folder, 'w', 'broken.bin'), failing())),
    'GLIMPSE_E_OUTPUT_WRITE_FAILED',
  );
  assert.equal(await storage.exists(joinUrl(folder, 'w', 'broken.bin')), false);
}

test('local storage (paths and file:// URLs) meets the contract', async () => {
  const folder = join(root, 'local');
  const storage = openStorage(folder);
  assert.equal(storage.kind, 'local');
  await writeFixtures(storage, folder);
  await readContract(storage, folder);
  await readContract(openStorage(pathToFileURL(folder).href), pathToFileURL(folder).href);
  await writeContract(storage, folder);
  // No temp files left beside the outputs.
  assert.deepEqual(
    readdirSync(join(folder, 'w')).filter((n) => n.includes('.tmp-')),
    [],
  );
  assert.equal(await codeOf(storage.list(join(root, 'nope'))), 'GLIMPSE_E_STORAGE_NOT_FOUND');
});

test('HTTP storage meets the read contract (HTML and JSON listings) and refuses writes', async () => {
  const folder = join(root, 'web');
  await writeFixtures(openStorage(folder), folder);
  const base = `${http.url}/web`;
  const storage = openStorage(base, { http: { retries: 0 } });
  try {
    assert.equal(storage.kind, 'http');
    await readContract(storage, base);
    http.switches.listing = 'json';
    await readContract(storage, `${base}/`);
    http.reset();
    assert.equal(await codeOf(storage.writeAtomic(`${base}/x.bin`, small)), 'GLIMPSE_E_NOT_SUPPORTED');
    assert.equal(await codeOf(storage.delete(`${base}/a.bin`)), 'GLIMPSE_E_NOT_SUPPORTED');
    http.switches.listing = 'none';
    assert.equal(await codeOf(storage.list(base)), 'GLIMPSE_E_STORAGE_NOT_FOUND');
  } finally {
    http.reset();
    storage.close();
  }
});

test('S3 storage (AWS SDK v3 against s3rver, path style) meets the contract, multipart included', async () => {
  const folder = `s3://${s3.bucket}/contract`;
  const storage = openStorage(folder, {
    s3: { ...s3.options, multipartThreshold: 5 * 1024 * 1024, partSize: 5 * 1024 * 1024 },
  });
  try {
    assert.equal(storage.kind, 's3');
    await writeFixtures(storage, folder);
    await readContract(storage, folder);
    await readContract(storage, `${folder}/`);
    await writeContract(storage, folder);
    const other = openStorage('s3://no-such-bucket/x', { s3: s3.options });
    assert.equal(await codeOf(other.stat('s3://no-such-bucket/x')), 'GLIMPSE_E_STORAGE_NOT_FOUND');
    other.close();
  } finally {
    storage.close();
  }
});

test('openStorage picks the backend by scheme and rejects others', async () => {
  assert.equal(storageKind('/a/b'), 'local');
  assert.equal(storageKind('relative/x.npy'), 'local');
  assert.equal(storageKind('file:///a'), 'local');
  assert.equal(storageKind('HTTPS://h/x'), 'http');
  assert.equal(storageKind('s3://b/k'), 's3');
  assert.throws(() => openStorage('gs://bucket/x'), {
    code: 'GLIMPSE_E_STORAGE_UNSUPPORTED_SCHEME',
    message: 'Expected a local path, file://, http(s):// or s3:// URL but received "gs://bucket/x"',
  });
  assert.equal(joinUrl('https://h/a b/', 'c d.npy'), 'https://h/a b/c%20d.npy');
  assert.equal(joinUrl('s3://b/p', 'img_emb', 'x.npy'), 's3://b/p/img_emb/x.npy');
  assert.equal(urlBasename('https://h/e/c%20d.npy?x=1'), 'c d.npy');
});

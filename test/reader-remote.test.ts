/**
 * EmbeddingReader over HTTP (a real node:http server on 127.0.0.1: directory index, explicit file list,
 * index file, a server without Range) and S3 (a real s3rver on 127.0.0.1).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddingReader, type EmbeddingBatch } from '../src/reader/index.js';
import { encodeNpyHeader, float32ToFloat16 } from '../src/formats/npy.js';
import { encodeParquet } from '../src/formats/parquet.js';
import { S3Storage } from '../src/storage/index.js';
import { isGlimpseError } from '../src/errors/index.js';
import { startHttpServer, type TestHttpServer } from './helpers/http-server.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';

const root = mkdtempSync(join(tmpdir(), 'glimpse-reader-remote-'));
const D = 5;
const SIZES = [9, 0, 14, 3];
const COUNT = 26;
let http: TestHttpServer;
let s3: TestS3Server;

function value(row: number, col: number): number {
  return (((row * 13 + col * 5) % 1000) - 500) / 512;
}

/** clip-retrieval layout under `dir`: img_emb/*.npy, metadata/*.parquet, and pq/*.parquet (embedding + meta). */
function writeCollection(dir: string): void {
  for (const sub of ['img_emb', 'metadata', 'pq']) mkdirSync(join(dir, sub), { recursive: true });
  let start = 0;
  SIZES.forEach((rows, p) => {
    const m = new Float32Array(rows * D);
    for (let r = 0; r < rows; r++) for (let c = 0; c < D; c++) m[r * D + c] = value(start + r, c);
    const header = encodeNpyHeader('float16', [rows, D]);
    const halves = float32ToFloat16(m);
    writeFileSync(
      join(dir, 'img_emb', `img_emb_${p}.npy`),
      Buffer.concat([header, new Uint8Array(halves.buffer, 0, halves.byteLength)]),
    );
    const meta = [
      {
        name: 'image_path',
        type: 'STRING' as const,
        data: Array.from({ length: rows }, (_, i) => `p${start + i}`),
      },
    ];
    writeFileSync(join(dir, 'metadata', `metadata_${p}.parquet`), encodeParquet(meta, { rowGroupSize: 4 }));
    const lists = Array.from({ length: rows }, (_, r) => m.subarray(r * D, (r + 1) * D));
    writeFileSync(
      join(dir, 'pq', `part_${p}.parquet`),
      encodeParquet([{ name: 'embedding', type: 'FLOAT_LIST', data: lists }, ...meta], { rowGroupSize: 4 }),
    );
    start += rows;
  });
}

writeCollection(join(root, 'out'));

test.before(async () => {
  http = await startHttpServer(root);
  s3 = await startS3Server();
});
test.after(async () => {
  await http.close();
  await s3.close();
  rmSync(root, { recursive: true, force: true });
});

async function readAll(
  reader: EmbeddingReader,
  options: Parameters<EmbeddingReader['read']>[0],
): Promise<EmbeddingBatch[]> {
  const out: EmbeddingBatch[] = [];
  for await (const b of reader.read(options)) out.push(b);
  return out;
}

function check(
  batches: readonly EmbeddingBatch[],
  start: number,
  end: number,
  batchSize: number,
  withMeta: boolean,
): void {
  let row = start;
  batches.forEach((b, i) => {
    assert.equal(b.rowStart, row);
    assert.equal(b.embeddings.rows, i < batches.length - 1 ? batchSize : end - row);
    const data = b.embeddings.data as Float32Array;
    for (let r = 0; r < b.embeddings.rows; r++) {
      for (let c = 0; c < D; c++) assert.equal(data[r * D + c], value(row + r, c), `row ${row + r} col ${c}`);
      if (withMeta) assert.deepEqual(b.meta![r], { image_path: `p${row + r}` });
    }
    row += b.embeddings.rows;
  });
  assert.equal(row, end);
}

test('HTTP: a folder URL listed from its directory index, parquet_npy with the sibling metadata folder', async () => {
  const reader = await EmbeddingReader.open(`${http.url}/out/img_emb`, {
    format: 'parquet_npy',
    metaColumns: ['image_path'],
    storageOptions: { http: { retries: 0 } },
  });
  try {
    assert.equal(reader.count, COUNT);
    assert.equal(reader.nbFiles, 4);
    assert.equal(reader.files[3]!.metadataUrl, `${http.url}/out/metadata/metadata_3.parquet`);
    http.requests.length = 0;
    for (const [start, end, batchSize] of [
      [0, COUNT, 4],
      [8, 24, 5],
    ] as const) {
      check(await readAll(reader, { start, end, batchSize, maxPieceSize: 30 }), start, end, batchSize, true);
    }
    // Every embedding read was a range request.
    const npyGets = http.requests.filter((r) => r.method === 'GET' && r.path.endsWith('.npy'));
    assert.ok(npyGets.length >= 8);
    assert.ok(npyGets.every((r) => r.range !== undefined));
  } finally {
    reader.close();
  }
});

test('HTTP: explicit file URLs, an index file, and a server that ignores Range', async () => {
  const files = [0, 1, 2, 3].map((p) => `${http.url}/out/img_emb/img_emb_${p}.npy`);
  writeFileSync(
    join(root, 'out', 'img_emb', 'index.json'),
    JSON.stringify(readdirSync(join(root, 'out', 'img_emb'))),
  );
  writeFileSync(
    join(root, 'out', 'pq', 'files.txt'),
    ['part_0.parquet', 'part_1.parquet', 'part_2.parquet', 'part_3.parquet'].join('\n'),
  );
  http.switches.listing = 'none';
  try {
    const explicit = await EmbeddingReader.open(files, {
      format: 'parquet_npy',
      metadataFolder: `${http.url}/out/metadata/index.json`.replace('index.json', ''),
      metaColumns: ['image_path'],
    }).catch((e: unknown) => e);
    // Listing the metadata folder needs an index: without one the error says what to do.
    assert.ok(isGlimpseError(explicit, 'GLIMPSE_E_STORAGE_NOT_FOUND'), String(explicit));
    assert.match(
      explicit.message,
      /^Expected a directory index at http:\/\/127\.0\.0\.1:\d+\/out\/metadata\/ but the server answered 404: serve an index there, or give an index file/,
    );
    writeFileSync(
      join(root, 'out', 'metadata', 'index.txt'),
      readdirSync(join(root, 'out', 'metadata')).join('\n'),
    );
    const reader = await EmbeddingReader.open(files, {
      format: 'parquet_npy',
      metadataFolder: `${http.url}/out/metadata/index.txt`,
      metaColumns: ['image_path'],
    });
    check(await readAll(reader, { batchSize: 7 }), 0, COUNT, 7, true);
    reader.close();
    const indexed = await EmbeddingReader.open(`${http.url}/out/img_emb/index.json`, { format: 'npy' });
    assert.equal(indexed.count, COUNT);
    http.switches.noRange = true;
    check(await readAll(indexed, { start: 3, end: 25, batchSize: 6, maxPieceSize: 20 }), 3, 25, 6, false);
    indexed.close();
    http.switches.noRange = false;
    const pq = await EmbeddingReader.open(`${http.url}/out/pq/files.txt`, {
      format: 'parquet',
      metaColumns: ['image_path'],
    });
    check(await readAll(pq, { start: 2, end: 22, batchSize: 3 }), 2, 22, 3, true);
    pq.close();
  } finally {
    http.reset();
  }
});

test('HTTP: a truncated npy file is reported with its URL', async () => {
  const dir = join(root, 'bad');
  mkdirSync(dir);
  const good = readFileSync(join(root, 'out', 'img_emb', 'img_emb_0.npy'));
  writeFileSync(join(dir, 'a.npy'), good.subarray(0, good.length - 3));
  await assert.rejects(EmbeddingReader.open(`${http.url}/bad/`, { format: 'npy' }), {
    code: 'GLIMPSE_E_NPY_INVALID',
    message: `Expected ${good.length} bytes in ${http.url}/bad/a.npy (shape (9, 5), float16) but the file has ${good.length - 3}: it is truncated`,
  });
});

test('S3: parquet_npy and parquet collections read with ranged GETs from s3rver', async () => {
  const storage = new S3Storage(s3.options);
  for (const sub of ['img_emb', 'metadata', 'pq']) {
    for (const name of readdirSync(join(root, 'out', sub))) {
      if (name.endsWith('.npy') || name.endsWith('.parquet')) {
        await storage.writeAtomic(
          `s3://${s3.bucket}/out/${sub}/${name}`,
          readFileSync(join(root, 'out', sub, name)),
        );
      }
    }
  }
  storage.close();
  const reader = await EmbeddingReader.open(`s3://${s3.bucket}/out/img_emb`, {
    format: 'parquet_npy',
    metaColumns: ['image_path'],
    storageOptions: { s3: s3.options },
  });
  try {
    assert.equal(reader.count, COUNT);
    assert.equal(reader.files[0]!.metadataUrl, `s3://${s3.bucket}/out/metadata/metadata_0.parquet`);
    check(await readAll(reader, { batchSize: 4, maxPieceSize: 25, parallelPieces: 3 }), 0, COUNT, 4, true);
    check(await readAll(reader, { start: 8, end: 10, batchSize: 1 }), 8, 10, 1, true);
  } finally {
    reader.close();
  }
  const pq = await EmbeddingReader.open(`s3://${s3.bucket}/out/pq/`, {
    format: 'parquet',
    metaColumns: ['image_path'],
    storageOptions: { s3: s3.options },
  });
  try {
    check(await readAll(pq, { start: 5, end: 26, batchSize: 10 }), 5, 26, 10, true);
  } finally {
    pq.close();
  }
});

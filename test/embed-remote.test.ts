/**
 * Remote inputs and outputs, end to end, against real servers on 127.0.0.1: WebDataset shards over HTTP
 * (test/helpers/http-server.ts) and from S3 (s3rver, test/helpers/s3-server.ts), outputs uploaded to S3 and
 * read back.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { runEmbedJob } from '../src/pipeline/embed.js';
import { float16ToFloat32, parseNpyHeader } from '../src/formats/npy.js';
import { S3Storage } from '../src/storage/index.js';
import { expandInputs } from '../src/sources/index.js';
import { StorageSet } from '../src/sources/storages.js';
import { startHttpServer, type TestHttpServer } from './helpers/http-server.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';
import { repoRoot, runCli, tempDir } from './helpers/cli.js';

const SHARDS = join(repoRoot, 'test/fixtures/webdataset');
const KEYS = [
  '123_456',
  '208_495',
  '321_421',
  '389_535',
  '416_264',
  '456_123',
  '524_316',
  '123_456',
  '208_495',
  '321_421',
  '389_535',
];

let modelDir: string;
let work: string;
let http: TestHttpServer;
let s3: TestS3Server;
let bucket: S3Storage;

function npyInfo(bytes: Uint8Array, name: string): { shape: number[]; norms: number[] } {
  const h = parseNpyHeader(bytes, name);
  const body = bytes.slice(h.headerLength);
  const data =
    h.dtype === 'float16' ? float16ToFloat32(new Uint16Array(body.buffer)) : new Float32Array(body.buffer);
  const [rows, d] = [h.shape[0]!, h.shape[1]!];
  const norms: number[] = [];
  for (let r = 0; r < rows; r++) {
    let n = 0;
    for (let k = 0; k < d; k++) n += data[r * d + k]! ** 2;
    norms.push(Math.sqrt(n));
  }
  return { shape: [...h.shape], norms };
}

async function parquetColumn(bytes: Uint8Array, column: string): Promise<unknown[]> {
  const path = join(work, `read-${Math.random().toString(36).slice(2)}.parquet`);
  await writeFile(path, bytes);
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  const reader = await conn.runAndReadAll(`SELECT "${column}" AS c FROM read_parquet('${path}')`);
  const rows = reader.getRowObjectsJson() as { c: unknown }[];
  conn.closeSync();
  instance.closeSync();
  return rows.map((r) => r.c);
}

async function localImagePaths(out: string): Promise<unknown[]> {
  const paths: unknown[] = [];
  for (const f of (await readdir(join(out, 'metadata'))).sort())
    paths.push(...(await parquetColumn(await readFile(join(out, 'metadata', f)), 'image_path')));
  return paths;
}

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  work = await tempDir('glimpse-remote-');
  http = await startHttpServer(SHARDS);
  s3 = await startS3Server();
  bucket = new S3Storage(s3.options);
  for (const i of [1, 2, 3, 4]) {
    await bucket.writeAtomic(
      `s3://${s3.bucket}/shards/image${i}.tar`,
      await readFile(join(SHARDS, `image${i}.tar`)),
    );
  }
});

after(async () => {
  bucket?.close();
  await http?.close();
  await s3?.close();
  await rm(work, { recursive: true, force: true });
});

/** The CLI's environment for the test S3 server (the SDK's standard variables). */
function s3Env(): NodeJS.ProcessEnv {
  return {
    AWS_ENDPOINT_URL_S3: s3.endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
  };
}

describe('WebDataset over HTTP', () => {
  test('shards streamed from an HTTP server: same rows as local; partitions cut every --write-batch-size, names padded for the bound', async () => {
    http.reset();
    const out = join(work, 'http-out');
    const r = await runCli([
      'embed',
      `${http.url}/image{1..4}.tar`,
      out,
      '--input-format',
      'webdataset',
      '--model',
      modelDir,
      '--write-batch-size',
      '4',
    ]);
    assert.equal(r.code, 0, r.stderr);
    // Remote: no pre-scan. The bound is 266,240 bytes / 512 = 520 samples → 130 partitions → 3 digits.
    assert.deepEqual((await readdir(join(out, 'img_emb'))).sort(), [
      'img_emb_000.npy',
      'img_emb_001.npy',
      'img_emb_002.npy',
    ]);
    const rows = [];
    for (const f of (await readdir(join(out, 'img_emb'))).sort())
      rows.push(npyInfo(new Uint8Array(await readFile(join(out, 'img_emb', f))), f).shape[0]);
    assert.deepEqual(rows, [4, 4, 3]);
    assert.deepEqual(await localImagePaths(out), KEYS);
    // Each shard was read once as a stream (after the HEAD of its size check); the first one is also
    // peeked at to decide --enable-text auto.
    const gets = http.requests.filter((q) => q.method === 'GET').map((q) => q.path);
    assert.deepEqual(gets, ['/image1.tar', '/image1.tar', '/image2.tar', '/image3.tar', '/image4.tar']);
    assert.equal(http.requests.filter((q) => q.method === 'HEAD').length, 4);
    const info = JSON.parse(await readFile(join(out, 'glimpse.json'), 'utf8')) as {
      options: { output_partition_count: number };
      partitions: { name: string; rows: number }[];
    };
    assert.equal(info.options.output_partition_count, 3);
    assert.deepEqual(
      info.partitions.map((p) => p.name),
      ['000', '001', '002'],
    );

    // --output-partition-count needs a count known before streaming.
    const r2 = await runCli([
      'embed',
      `${http.url}/image1.tar`,
      join(work, 'http-count-out'),
      '--input-format',
      'webdataset',
      '--model',
      modelDir,
      '--output-partition-count',
      '2',
    ]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /GLIMPSE_E_NOT_SUPPORTED: .*--write-batch-size/);
  });

  test('an HTTP glob lists the directory index', async () => {
    http.reset();
    const storages = new StorageSet();
    try {
      assert.deepEqual(await expandInputs([`${http.url}/image[24].tar`], storages), [
        `${http.url}/image2.tar`,
        `${http.url}/image4.tar`,
      ]);
    } finally {
      storages.close();
    }
  });

  test('a server that drops the connection mid-shard: the shard is recorded with its name, the job goes on', async () => {
    http.reset();
    // A 500 on the first attempt is retried; then every body is announced 100 bytes longer than sent and
    // the connection closed.
    http.switches.fail500 = 1;
    http.switches.lieContentLength = true;
    const out = join(work, 'http-lie-out');
    const r = await runEmbedJob({
      input: `${http.url}/image2.tar`,
      inputFormat: 'webdataset',
      output: out,
      model: modelDir,
      numPreproWorkers: 1,
    });
    http.reset();
    assert.equal(r.sourceIssues.length, 1);
    assert.equal(r.sourceIssues[0]!.key, `${http.url}/image2.tar`);
    assert.match(r.sourceIssues[0]!.code, /^GLIMPSE_E_(STORAGE_IO|SOURCE_TAR_CORRUPT)$/);
    // The whole tar arrived before the connection dropped: its 3 samples are kept.
    assert.equal(r.embedded, 3);
    const lines = (await readFile(join(out, 'failures', 'failures_0.jsonl'), 'utf8')).trim().split('\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /image2\.tar/);
  });
});

describe('S3 in and out', () => {
  test('s3:// shards → s3:// output (CLI, SDK environment variables); the output read back from S3', async () => {
    const out = `s3://${s3.bucket}/emb/run1`;
    const r = await runCli(
      [
        'embed',
        `s3://${s3.bucket}/shards/image{1..4}.tar`,
        out,
        '--input-format',
        'webdataset',
        '--model',
        modelDir,
        '--write-batch-size',
        '6',
      ],
      { env: s3Env() },
    );
    assert.equal(r.code, 0, r.stderr);
    const names = async (sub: string): Promise<string[]> =>
      (await bucket.list(`${out}/${sub}/`)).map((e) => e.name);
    // Bound 520 → 87 partitions → 2 digits; 11 samples → 2 partitions.
    assert.deepEqual(await names('img_emb'), ['img_emb_00.npy', 'img_emb_01.npy']);
    assert.deepEqual(await names('metadata'), ['metadata_00.parquet', 'metadata_01.parquet']);
    assert.deepEqual(await names('stats'), ['stats_00.json', 'stats_01.json']);
    const shapes = [];
    for (const n of await names('img_emb')) {
      const info = npyInfo(await bucket.read(`${out}/img_emb/${n}`), n);
      shapes.push(info.shape[0]);
      for (const norm of info.norms) assert.ok(Math.abs(norm - 1) < 2e-3);
    }
    assert.deepEqual(shapes, [6, 5]);
    const paths: unknown[] = [];
    for (const n of await names('metadata'))
      paths.push(...(await parquetColumn(await bucket.read(`${out}/metadata/${n}`), 'image_path')));
    assert.deepEqual(paths, KEYS);
    const info = JSON.parse(new TextDecoder().decode(await bucket.read(`${out}/glimpse.json`))) as {
      counts: { embedded: number };
    };
    assert.equal(info.counts.embedded, 11);

    // The same output again is refused; --overwrite replaces glimpse's objects only.
    await bucket.writeAtomic(`${out}/notes.txt`, new TextEncoder().encode('keep me'));
    const again = await runCli(
      [
        'embed',
        `s3://${s3.bucket}/shards/image1.tar`,
        out,
        '--input-format',
        'webdataset',
        '--model',
        modelDir,
      ],
      { env: s3Env() },
    );
    assert.equal(again.code, 1);
    assert.match(again.stderr, /GLIMPSE_E_OUTPUT_EXISTS/);
    const staging = join(work, 'staging');
    await mkdir(staging);
    const r3 = await runEmbedJob({
      input: `s3://${s3.bucket}/shards/*.tar`,
      inputFormat: 'webdataset',
      output: out,
      overwrite: true,
      model: modelDir,
      numPreproWorkers: 1,
      storage: { s3: s3.options },
      stagingDir: staging,
    });
    assert.equal(r3.embedded, 11);
    assert.deepEqual(await names('img_emb'), ['img_emb_0.npy']);
    assert.deepEqual(await names('metadata'), ['metadata_0.parquet']);
    assert.equal(new TextDecoder().decode(await bucket.read(`${out}/notes.txt`)), 'keep me');
    assert.deepEqual(await readdir(staging), [], 'the staging folder is removed');
  });
});

describe('manifests with remote images', () => {
  test('a CSV manifest on S3 naming s3:// and http:// images, embedded to S3', async () => {
    http.reset();
    await bucket.writeAtomic(
      `s3://${s3.bucket}/images/a.jpg`,
      await readFile(join(repoRoot, 'test/fixtures/images/photos/Portrait_3.jpg')),
    );
    const manifest = [
      'url,caption',
      `s3://${s3.bucket}/images/a.jpg,from s3`,
      `${http.url}/image1.tar,a tar is not an image`,
      `s3://${s3.bucket}/images/missing.jpg,missing`,
    ].join('\n');
    await bucket.writeAtomic(`s3://${s3.bucket}/manifests/m.csv`, new TextEncoder().encode(manifest));
    const out = `s3://${s3.bucket}/emb/manifest`;
    const r = await runEmbedJob({
      input: `s3://${s3.bucket}/manifests/m.csv`,
      inputFormat: 'csv',
      captionCol: 'caption',
      output: out,
      model: modelDir,
      numPreproWorkers: 1,
      storage: { s3: s3.options },
    });
    assert.equal(r.embedded, 1);
    assert.equal(r.failed, 2);
    const meta = await bucket.read(`${out}/metadata/metadata_0.parquet`);
    assert.deepEqual(await parquetColumn(meta, 'url'), [`s3://${s3.bucket}/images/a.jpg`]);
    assert.deepEqual(await parquetColumn(meta, 'caption'), ['from s3']);
    const failures = new TextDecoder()
      .decode(await bucket.read(`${out}/failures/failures_0.jsonl`))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; code: string });
    assert.deepEqual(failures.map((f) => [f.key, f.code]).sort(), [
      [`${http.url}/image1.tar`, 'GLIMPSE_E_IMAGE_DECODE_FAILED'],
      [`s3://${s3.bucket}/images/missing.jpg`, 'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED'],
    ]);
  });
});

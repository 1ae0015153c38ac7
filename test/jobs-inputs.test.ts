/**
 * Sharded jobs over every input format and an S3 output: WebDataset tars (one shard per tar), manifests (range
 * shards), and `s3://` outputs (upload, then a commit marker; stale objects of a shard not DONE are redone) on a
 * real S3-protocol server. Each sharded result is compared with a plain `glimpse embed` of the same input.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { defaultLedgerUrl, planJob, runWorker, type JobManifest } from '../src/jobs/index.js';
import { S3Storage } from '../src/storage/index.js';
import { encodeNpyHeader } from '../src/formats/npy.js';
import { collect, photosDir, repoRoot, runCli, startCli, tempDir } from './helpers/cli.js';
import { startRedis } from './helpers/redis.js';
import { duckRows, readNpy } from './helpers/outputs.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';

const TARS = ['image1.tar', 'image2.tar', 'image3.tar', 'image4.tar'];
const PHOTOS = ['123_456.jpg', '208_495.jpg', '321_421.jpg', '389_535.jpg', '416_264.jpg'];
let modelDir: string;
let work: string;
let shardsDir: string;
let s3: TestS3Server;

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  work = await tempDir('glimpse-jobs-inputs-');
  shardsDir = join(work, 'shards');
  await mkdir(shardsDir);
  for (const t of TARS) await copyFile(join(repoRoot, 'test/fixtures/webdataset', t), join(shardsDir, t));
  s3 = await startS3Server('jobs');
});

after(async () => {
  await s3?.close();
  await rm(work, { recursive: true, force: true });
});

/** Every row of a clip-retrieval output's img_emb/ files, in sorted file order. */
async function allRows(dir: string): Promise<number[][]> {
  const rows: number[][] = [];
  const files = (await readdir(join(dir, 'img_emb'))).filter((f) => f.endsWith('.npy')).sort();
  for (const f of files) {
    const { shape, data } = await readNpy(join(dir, 'img_emb', f));
    const d = shape[1] ?? 0;
    for (let r = 0; r < (shape[0] ?? 0); r++) rows.push(Array.from(data.subarray(r * d, (r + 1) * d)));
  }
  return rows;
}

async function imagePaths(dir: string): Promise<string[]> {
  const paths: string[] = [];
  const files = (await readdir(join(dir, 'metadata'))).filter((f) => f.endsWith('.parquet')).sort();
  for (const f of files)
    for (const row of (await duckRows(join(dir, 'metadata', f))).rows) paths.push(String(row['image_path']));
  return paths;
}

test('WebDataset job: one shard per tar, same rows as a plain embed, manifest names each tar', async () => {
  const plain = join(work, 'wds-plain');
  const sharded = join(work, 'wds-sharded');
  const pattern = join(shardsDir, 'image{1..4}.tar');
  const a = await runCli(['embed', pattern, plain, '--model', modelDir, '--input-format', 'webdataset']);
  assert.equal(a.code, 0, a.stderr);
  const b = await runCli([
    'embed',
    pattern,
    sharded,
    '--model',
    modelDir,
    '--input-format',
    'webdataset',
    '--workers',
    '2',
  ]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /4\/4 shard\(s\) done/);
  const manifest = JSON.parse(await readFile(join(sharded, 'manifest.json'), 'utf8')) as JobManifest;
  assert.equal(manifest.complete, true, 'the job completes');
  assert.deepEqual(
    manifest.shards.map((s) => [s.url, s.rows, s.first_row]),
    [
      [join(shardsDir, 'image1.tar'), 4, 0],
      [join(shardsDir, 'image2.tar'), 3, 4],
      [join(shardsDir, 'image3.tar'), 2, 7],
      [join(shardsDir, 'image4.tar'), 2, 9],
    ],
  );
  assert.equal(manifest.counts.samples, 11);
  assert.deepEqual(await allRows(sharded), await allRows(plain), 'the same embeddings in the same order');
  assert.deepEqual(await imagePaths(sharded), await imagePaths(plain), 'the same keys in the same order');
});

test('WebDataset job: a truncated tar keeps its readable samples and records the damage; a changed tar is refused', async () => {
  const dir = join(work, 'wds-damaged');
  await mkdir(dir);
  await copyFile(join(shardsDir, 'image2.tar'), join(dir, 'a.tar'));
  const whole = await readFile(join(shardsDir, 'image1.tar'));
  await writeFile(join(dir, 'b.tar'), whole.subarray(0, Math.floor(whole.length / 2)));
  const out = join(work, 'wds-damaged-out');
  const ledger = join(work, 'wds-damaged.sqlite');
  const plan = await planJob({
    input: join(dir, '*.tar'),
    inputFormat: 'webdataset',
    output: out,
    model: modelDir,
    ledger,
    job: 'damaged',
  });
  assert.equal(plan.shards, 2);
  // a.tar changes after planning: its shard fails for good with a coded reason, the rest completes.
  await copyFile(join(shardsDir, 'image1.tar'), join(dir, 'a.tar'));
  const r = await runWorker({ ledger, job: 'damaged', numPreproWorkers: 1, intraOpThreads: 1 });
  assert.ok(r.manifest, 'the worker that finishes the job writes the manifest');
  const [a, b] = r.manifest.shards;
  assert.equal(a?.state, 'FAILED');
  assert.match(a?.reason ?? '', /GLIMPSE_E_JOB_INPUT_CHANGED/);
  assert.equal(b?.state, 'DONE');
  assert.ok((b?.rows ?? 0) >= 1, `the samples before the damage are kept (${b?.rows})`);
  const failures = await readFile(join(out, 'failures', 'failures_1.jsonl'), 'utf8');
  assert.match(failures, /GLIMPSE_E_SOURCE_TAR_CORRUPT/);
});

test('manifest job: range shards of the CSV rows, same rows as a plain embed', async () => {
  const csv = join(work, 'list.csv');
  await writeFile(
    csv,
    'url,caption\n' +
      PHOTOS.map((p, i) => `${join(photosDir, p)},photo number ${i}`).join('\n') +
      `\n${join(work, 'missing.jpg')},a file that is not there\n`,
  );
  const plain = join(work, 'csv-plain');
  const sharded = join(work, 'csv-sharded');
  const args = ['--model', modelDir, '--input-format', 'csv', '--caption-col', 'caption'];
  const a = await runCli(['embed', csv, plain, ...args]);
  assert.equal(a.code, 0, a.stderr);
  const b = await runCli(['embed', csv, sharded, ...args, '--workers', '1', '--shard-size', '2']);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /3\/3 shard\(s\) done/);
  const manifest = JSON.parse(await readFile(join(sharded, 'manifest.json'), 'utf8')) as JobManifest;
  assert.deepEqual(
    manifest.shards.map((s) => s.samples),
    [
      [0, 2],
      [2, 4],
      [4, 6],
    ],
  );
  assert.equal(manifest.counts.rows, PHOTOS.length);
  assert.equal(manifest.counts.failed, 1, 'the missing file is one recorded failure');
  assert.deepEqual(await allRows(sharded), await allRows(plain));
  assert.deepEqual(await imagePaths(sharded), await imagePaths(plain));
  const texts = await readdir(join(sharded, 'text_emb'));
  assert.equal(texts.length, 3, `captions are embedded per shard (${texts.join(', ')})`);
});

test('S3 output: shards uploaded then committed with a marker; stale objects of an unfinished shard are redone', async () => {
  const storage = new S3Storage(s3.options);
  const prefix = `s3://${s3.bucket}/emb`;
  const ledger = join(work, 's3.sqlite');
  const plan = await planJob({
    input: join(shardsDir, 'image{1..4}.tar'),
    inputFormat: 'webdataset',
    output: prefix,
    model: modelDir,
    ledger,
    job: 's3',
    storage: { s3: s3.options },
  });
  assert.equal(plan.shards, 4);
  // What a worker killed in mid-upload leaves: a file of shard 1 with no commit marker.
  await storage.writeAtomic(
    `${prefix}/img_emb/img_emb_1.npy`,
    new Uint8Array(encodeNpyHeader('float16', [99, 4])),
  );
  const r = await runWorker({
    ledger,
    job: 's3',
    storage: { s3: s3.options },
    stagingDir: work,
    numPreproWorkers: 1,
    intraOpThreads: 1,
  });
  assert.equal(r.shards, 4);
  assert.ok(r.manifest?.complete, 'the job completes');
  const names = async (sub: string): Promise<string[]> =>
    (await storage.list(`${prefix}/${sub}`)).map((e) => e.name).sort();
  assert.deepEqual(await names('commits'), [
    'commit_0.json',
    'commit_1.json',
    'commit_2.json',
    'commit_3.json',
  ]);
  assert.deepEqual(await names('img_emb'), [
    'img_emb_0.npy',
    'img_emb_1.npy',
    'img_emb_2.npy',
    'img_emb_3.npy',
  ]);
  const marker = JSON.parse(
    new TextDecoder().decode(await storage.read(`${prefix}/commits/commit_1.json`)),
  ) as { rows: number; files: string[] };
  assert.equal(marker.rows, 3);
  assert.ok(marker.files.includes('img_emb/img_emb_1.npy'), 'the marker lists the shard files');
  // The uploaded shards hold exactly what a local sharded run holds.
  const local = join(work, 's3-copy');
  for (const sub of ['img_emb', 'metadata']) {
    await mkdir(join(local, sub), { recursive: true });
    for (const name of await names(sub))
      await writeFile(join(local, sub, name), await storage.read(`${prefix}/${sub}/${name}`));
  }
  assert.deepEqual(await allRows(local), await allRows(join(work, 'wds-sharded')));
  const manifest = JSON.parse(
    new TextDecoder().decode(await storage.read(`${prefix}/manifest.json`)),
  ) as JobManifest;
  assert.equal(manifest.counts.rows, 11);
  assert.ok(await storage.exists(`${prefix}/glimpse.json`), 'glimpse.json is written last');
  assert.deepEqual(
    await readdir(work).then((e) => e.filter((n) => n.startsWith('glimpse-stage-'))),
    [],
    'the staging folder is removed',
  );
  storage.close();
});

test('an s3:// output needs an explicit ledger', async () => {
  const r = await runCli([
    'embed',
    join(shardsDir, 'image1.tar'),
    `s3://${s3.bucket}/x`,
    '--model',
    modelDir,
    '--input-format',
    'webdataset',
    '--workers',
    '1',
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /GLIMPSE_E_ARG_INVALID: Expected a ledger/);
});

test('the multi-machine shape: plan on Redis, two `glimpse worker` processes write to S3 (endpoint and keys from the environment)', async () => {
  const redis = await startRedis();
  const storage = new S3Storage(s3.options);
  try {
    const prefix = `s3://${s3.bucket}/cluster`;
    const env = {
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
    };
    const plan = await runCli(
      [
        'embed',
        join(shardsDir, 'image{1..4}.tar'),
        prefix,
        '--model',
        modelDir,
        '--input-format',
        'webdataset',
        '--ledger',
        redis.url,
        '--job',
        'cluster',
        '--plan-only',
      ],
      { env },
    );
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /planned job cluster: 4 shard\(s\), 11 samples/);
    const args = [
      'worker',
      '--ledger',
      redis.url,
      '--job',
      'cluster',
      '--threads',
      '1',
      '--num-prepro-workers',
      '1',
    ];
    const workers = await Promise.all([
      collect(startCli([...args, '--staging-dir', work], { env })),
      collect(startCli([...args, '--staging-dir', work], { env })),
    ]);
    for (const w of workers) assert.equal(w.code, 0, w.stderr);
    const status = await runCli(['job', 'status', '--ledger', redis.url, '--job', 'cluster']);
    assert.match(status.stdout, /finished/);
    assert.match(status.stdout, /4 DONE/);
    const markers = (await storage.list(`${prefix}/commits`)).map((e) => e.name).sort();
    assert.deepEqual(markers, ['commit_0.json', 'commit_1.json', 'commit_2.json', 'commit_3.json']);
    const manifest = JSON.parse(
      new TextDecoder().decode(await storage.read(`${prefix}/manifest.json`)),
    ) as JobManifest;
    assert.equal(manifest.complete, true, 'the job completes');
    assert.equal(manifest.counts.rows, 11);
  } finally {
    storage.close();
    await redis.stop();
  }
});

test('a file:// output is the folder it names', async () => {
  const out = join(work, 'file-url-out');
  const plan = await planJob({
    input: join(shardsDir, 'image3.tar'),
    inputFormat: 'webdataset',
    output: pathToFileURL(out).href,
    model: modelDir,
    job: 'file-url',
  });
  assert.equal((plan.definition.payload as { output: string }).output, out);
  assert.equal(plan.ledger, `sqlite:${join(out, '.glimpse', 'ledger.sqlite')}`);
  assert.equal(defaultLedgerUrl(pathToFileURL(out).href), plan.ledger, 'runLocalJob and the CLI agree');
});

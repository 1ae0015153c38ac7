/**
 * Sharded jobs on one machine, end to end with the tiny synthesized model: shard files (pipeline/shard),
 * planning (stable shards, conflicts), N local worker processes, the manifest, refusal of a changed input
 * or model, and resuming a stopped job into output byte-identical to an uninterrupted run.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel, type ClipModel } from '../src/pipeline/model.js';
import { clearShardFiles, embedShard, shardFiles } from '../src/pipeline/shard.js';
import { runEmbedJob } from '../src/pipeline/embed.js';
import { createFolderSource } from '../src/sources/folder.js';
import { DecodePool } from '../src/decode/pool.js';
import { rangeReaderFromBytes, readParquetColumns } from '../src/formats/parquet.js';
import { isTempName } from '../src/core/fs-atomic.js';
import { isGlimpseError } from '../src/errors/index.js';
import { createJobStore } from '../src/jobs/store.js';
import { planJob, rangeShards } from '../src/jobs/plan.js';
import { runWorker } from '../src/jobs/worker.js';
import { runLocalJob } from '../src/jobs/local.js';
import type { JobManifest } from '../src/jobs/manifest.js';
import { edgeDir, photosDir, tempDir } from './helpers/cli.js';
import { startRedis, type RedisServer } from './helpers/redis.js';
import { readNpy, cosine } from './helpers/outputs.js';

/** Small photos (fast to decode) and one corrupt file (a recorded failure). */
const PHOTOS = [
  '123_456.jpg',
  '208_495.jpg',
  '321_421.jpg',
  '389_535.jpg',
  '416_264.jpg',
  '456_123.jpg',
  '524_316.jpg',
  'low-contrast.jpg',
  'testimgl.jpg',
  'gamma_dalai_lama_gray.jpg',
  'flowers.jpeg',
  'Landscape_9.jpg',
];
const CORRUPT = 'corrupt-header.jpg';

let modelDir: string;
let work: string;
let input: string;

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name).slice(dir.length + 1));
  }
  return out.sort();
}

async function imagePaths(path: string): Promise<string[]> {
  const { columns } = await readParquetColumns(rangeReaderFromBytes(new Uint8Array(await readFile(path))), {
    columns: ['image_path'],
  });
  return columns['image_path']!.map(String);
}

/** Rows of a sharded output in shard order, as a reader of clip-retrieval output sees them. */
async function readSharded(out: string): Promise<{ paths: string[]; vectors: Float32Array[] }> {
  const paths: string[] = [];
  const vectors: Float32Array[] = [];
  for (const f of (await readdir(join(out, 'metadata'))).filter((n) => n.endsWith('.parquet')).sort()) {
    const p = await imagePaths(join(out, 'metadata', f));
    const npy = await readNpy(
      join(out, 'img_emb', f.replace('metadata_', 'img_emb_').replace('.parquet', '.npy')),
    );
    assert.equal(npy.shape[0], p.length, `${f}: as many npy rows as metadata rows`);
    const d = npy.shape[1]!;
    p.forEach((path, i) => {
      paths.push(path);
      vectors.push(npy.data.subarray(i * d, (i + 1) * d));
    });
  }
  return { paths, vectors };
}

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  work = await tempDir('glimpse-jobs-');
  input = join(work, 'input');
  await mkdir(input);
  for (const f of PHOTOS) await copyFile(join(photosDir, f), join(input, f));
  await copyFile(join(edgeDir, CORRUPT), join(input, CORRUPT));
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('pipeline/shard', () => {
  let model: ClipModel;
  let pool: DecodePool;
  before(async () => {
    model = await loadModel(modelDir, { intraOpThreads: 1 });
    pool = new DecodePool({ preprocess: model.folder.preprocess, workers: 1 });
  });
  after(async () => {
    await pool.close();
    await model.close();
  });

  test('a shard writes its own file set; a throwing beforeCommit leaves no file at all', async () => {
    const out = join(work, 'shard-out');
    const source = await createFolderSource(input, { enableText: false });
    const common = {
      model,
      pool,
      capacity: 4,
      outDir: out,
      partitionCount: 12,
      enableImage: true,
      enableText: false,
      enableMetadata: true,
      outputDtype: 'float16' as const,
      batchSize: 2,
    };
    await assert.rejects(
      embedShard({
        ...common,
        samples: source.read({ start: 0, end: 4 }),
        partition: 3,
        beforeCommit: async () => {
          throw new Error('lease lost');
        },
      }),
      /lease lost/,
    );
    assert.deepEqual(await walk(out), [], 'nothing renamed, temp files removed');
    const { stats, files } = await embedShard({
      ...common,
      samples: source.read({ start: 4, end: 8 }),
      partition: 3,
    });
    assert.equal(stats.sample_count, 4);
    assert.deepEqual(
      [...files].sort(),
      ['img_emb/img_emb_03.npy', 'metadata/metadata_03.parquet', 'stats/stats_03.json'],
      'names zero-padded to the shard count',
    );
    assert.deepEqual(
      await imagePaths(join(out, 'metadata/metadata_03.parquet')),
      (await walkInput()).slice(4, 8),
    );
  });

  test('clearShardFiles removes one shard: final names and temp files, nothing else', async () => {
    const out = join(work, 'clear-out');
    for (const rel of [...shardFiles(3, 12), ...shardFiles(4, 12)]) {
      await mkdir(join(out, rel, '..'), { recursive: true });
      await writeFile(join(out, rel), 'x');
    }
    await writeFile(join(out, 'img_emb', '.img_emb_03.npy.tmp-123-abcdef01'), 'partial');
    await writeFile(join(out, 'img_emb', '.img_emb_04.npy.tmp-123-abcdef01'), 'partial');
    await clearShardFiles(out, 3, 12);
    assert.deepEqual(
      await walk(out),
      [...shardFiles(4, 12), 'img_emb/.img_emb_04.npy.tmp-123-abcdef01'].sort(),
    );
  });
});

/** The input's image names in sorted order (what the folder source yields). */
async function walkInput(): Promise<string[]> {
  const source = await createFolderSource(input, { enableText: false });
  const keys: string[] = [];
  for await (const s of source.read()) keys.push(s.imagePath!);
  return keys;
}

describe('planJob', () => {
  test('the same input gives the same shards; re-planning resumes; other settings conflict', async () => {
    const out = join(work, 'plan-out');
    const a = await planJob({ input, output: out, model: modelDir, shardSize: 4 });
    assert.equal(a.created, true);
    assert.equal(a.samples, PHOTOS.length + 1);
    assert.equal(a.ledger, `sqlite:${join(out, '.glimpse', 'ledger.sqlite')}`);
    const b = await planJob({ input, output: out, model: modelDir, shardSize: 4 });
    assert.equal(b.created, false, 'planning again resumes');
    const store = await createJobStore(a.ledger);
    try {
      const shards = await store.shards('embed');
      assert.deepEqual(
        shards.map((s) => s.descriptor),
        rangeShards(13, 4),
      );
      assert.deepEqual(
        rangeShards(13, 4).map((s) => s.id),
        ['0', '1', '2', '3'],
      );
      assert.deepEqual(
        rangeShards(101, 10)
          .map((s) => s.id)
          .slice(0, 2),
        ['00', '01'],
        'ids zero-padded to the shard count',
      );
    } finally {
      await store.close();
    }
    await assert.rejects(
      planJob({ input, output: out, model: modelDir, shardSize: 5 }),
      (err: unknown) =>
        isGlimpseError(err, 'GLIMPSE_E_JOB_CONFLICT') &&
        /shardSize \(4 in the ledger, 5 now\)/.test(err.message),
      'another shard size',
    );
    const other = join(work, 'plan-other');
    await mkdir(join(other, 'img_emb'), { recursive: true });
    await assert.rejects(
      planJob({ input, output: other, model: modelDir }),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_OUTPUT_EXISTS'),
      'an output with files of another run',
    );
  });

  test('a worker refuses a changed input or a changed model, before touching any shard', async () => {
    const changedInput = join(work, 'changed-input');
    await mkdir(changedInput);
    for (const f of PHOTOS.slice(0, 3)) await copyFile(join(photosDir, f), join(changedInput, f));
    const model = join(work, 'model-copy');
    await mkdir(join(model, 'onnx'), { recursive: true });
    for (const f of await walk(modelDir)) {
      await mkdir(join(model, f, '..'), { recursive: true });
      await copyFile(join(modelDir, f), join(model, f));
    }
    const out = join(work, 'changed-out');
    const plan = await planJob({ input: changedInput, output: out, model, shardSize: 2 });
    await copyFile(join(photosDir, PHOTOS[5]!), join(changedInput, 'added.jpg'));
    await assert.rejects(
      runWorker({ ledger: plan.ledger, job: plan.job, intraOpThreads: 1, numPreproWorkers: 1 }),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_JOB_INPUT_CHANGED'),
      'a file was added',
    );
    await rm(join(changedInput, 'added.jpg'));
    // Same number of files, one renamed: rows would no longer mean the samples the shards were cut from.
    await rename(join(changedInput, PHOTOS[0]!), join(changedInput, `zz_${PHOTOS[0]!}`));
    await assert.rejects(
      runWorker({ ledger: plan.ledger, job: plan.job, intraOpThreads: 1, numPreproWorkers: 1 }),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_JOB_INPUT_CHANGED'),
      'a file was renamed',
    );
    await rename(join(changedInput, `zz_${PHOTOS[0]!}`), join(changedInput, PHOTOS[0]!));
    await appendFile(join(model, 'config.json'), '\n');
    await assert.rejects(
      runWorker({ ledger: plan.ledger, job: plan.job, intraOpThreads: 1, numPreproWorkers: 1 }),
      (err: unknown) =>
        isGlimpseError(err, 'GLIMPSE_E_JOB_MODEL_MISMATCH') && /fingerprint/.test(err.message),
      'the model changed',
    );
    const store = await createJobStore(plan.ledger);
    try {
      const status = await store.status(plan.job);
      assert.deepEqual(status.counts, { PENDING: 2, IN_PROGRESS: 0, DONE: 0, FAILED: 0 }, 'no shard touched');
    } finally {
      await store.close();
    }
  });
});

describe('runLocalJob', () => {
  let reference: string;

  test('N worker processes embed every shard into its own files; rows read like clip-retrieval output', async () => {
    reference = join(work, 'ref-out');
    const r = await runLocalJob({
      input,
      output: reference,
      model: modelDir,
      shardSize: 3,
      workers: 2,
      intraOpThreads: 1,
      numPreproWorkers: 1,
      onWorkerOutput: () => undefined,
    });
    assert.equal(r.complete, true, 'complete');
    assert.deepEqual(r.status.counts, { PENDING: 0, IN_PROGRESS: 0, DONE: 5, FAILED: 0 });
    const manifest = JSON.parse(await readFile(join(reference, 'manifest.json'), 'utf8')) as JobManifest;
    assert.deepEqual(r.manifest, manifest, 'the returned manifest is the written one');
    const bad = Math.floor((await walkInput()).findIndex((p) => p.endsWith(CORRUPT)) / 3);
    let row = 0;
    const expected = [0, 1, 2, 3, 4].map((i) => {
      const size = i < 4 ? 3 : 1;
      const failed = i === bad ? 1 : 0;
      const entry = [String(i), 'DONE', [i * 3, i * 3 + size], row, size - failed, failed];
      row += size - failed;
      return entry;
    });
    assert.deepEqual(
      manifest.shards.map((s) => [s.id, s.state, s.samples, s.first_row, s.rows, s.failed]),
      expected,
      `rows numbered across shards; the corrupt file failed in shard ${bad}`,
    );
    assert.deepEqual(manifest.counts, {
      samples: 13,
      rows: 12,
      failed: 1,
      shards: 5,
      shards_done: 5,
      shards_failed: 0,
    });
    const files = await walk(reference);
    assert.ok(!files.some((f) => isTempName(f.split('/').pop()!)), `no temp file left: ${files.join(', ')}`);
    const failures = (await readFile(join(reference, 'failures', `failures_${bad}.jsonl`), 'utf8'))
      .trim()
      .split('\n');
    assert.equal(failures.length, 1);
    assert.ok(
      (JSON.parse(failures[0]!) as { key: string }).key.endsWith(CORRUPT),
      `failure recorded: ${failures[0]}`,
    );
    const glimpse = JSON.parse(await readFile(join(reference, 'glimpse.json'), 'utf8')) as {
      model: { hash: string };
      counts: { embedded: number };
    };
    assert.equal(glimpse.counts.embedded, 12, 'glimpse.json written when complete');
    assert.equal(glimpse.model.hash, manifest.model.hash);

    // The same rows, in the same order, as one `glimpse embed` run (embeddings equal within float16).
    const single = join(work, 'single-out');
    await runEmbedJob({ input, output: single, model: modelDir, intraOpThreads: 1, numPreproWorkers: 1 });
    const sharded = await readSharded(reference);
    const whole = await readSharded(single);
    assert.deepEqual(sharded.paths, whole.paths, 'same samples in the same order');
    sharded.vectors.forEach((v, i) => {
      const c = cosine(v, whole.vectors[i]!);
      assert.ok(c > 0.999, `row ${i}: cosine ${c}`);
    });
  });

  test('a stopped job resumes; the finished output is byte-identical to an uninterrupted run', async () => {
    const out = join(work, 'resumed-out');
    const options = {
      input,
      output: out,
      model: modelDir,
      shardSize: 3,
      workers: 1,
      intraOpThreads: 1,
      numPreproWorkers: 1,
    };
    const controller = new AbortController();
    await assert.rejects(
      runLocalJob({
        ...options,
        signal: controller.signal,
        onWorkerOutput: (_slot, line) => {
          if (/shard \d+ done/.test(line)) controller.abort();
        },
      }),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_ABORTED'),
      'stopping the job',
    );
    const ledger = `sqlite:${join(out, '.glimpse', 'ledger.sqlite')}`;
    const store = await createJobStore(ledger);
    try {
      const status = await store.status('embed');
      assert.ok(
        status.counts.DONE >= 1 && status.counts.DONE < 5,
        `some shards done: ${JSON.stringify(status.counts)}`,
      );
      assert.equal(status.counts.IN_PROGRESS, 0, 'the stopped worker released its shard');
    } finally {
      await store.close();
    }
    const partial = await walk(out);
    assert.ok(!partial.includes('manifest.json'), 'no manifest before the job is finished');
    assert.ok(!partial.some((f) => isTempName(f.split('/').pop()!)), `no temp file: ${partial.join(', ')}`);

    const r = await runLocalJob({ ...options, onWorkerOutput: () => undefined });
    assert.equal(r.complete, true, 'the second run finishes the job');
    const ours = (await walk(out)).filter(
      (f) => /^(img_emb|text_emb|metadata|failures)\//.test(f) || f === 'manifest.json',
    );
    const theirs = (await walk(reference)).filter(
      (f) => /^(img_emb|text_emb|metadata|failures)\//.test(f) || f === 'manifest.json',
    );
    assert.deepEqual(ours, theirs, 'the same files');
    for (const f of ours) {
      const a = await readFile(join(out, f));
      const b = await readFile(join(reference, f));
      assert.ok(a.equals(b), `${f} is byte-identical`);
    }
  });
});

describe('runWorker on Redis', () => {
  test('a worker rides out a restart of the Redis server and finishes the job', async () => {
    const redis: RedisServer = await startRedis();
    let second: RedisServer | undefined;
    try {
      const out = join(work, 'redis-restart-out');
      const plan = await planJob({
        ledger: redis.url,
        job: 'restart',
        input,
        output: out,
        model: modelDir,
        shardSize: 2,
      });
      assert.equal(plan.shards, 7);
      const waits: string[] = [];
      let restarted: Promise<void> | undefined;
      let back = false;
      let doneAfterRestart = 0;
      const result = await runWorker({
        ledger: redis.url,
        job: 'restart',
        intraOpThreads: 1,
        numPreproWorkers: 1,
        onEvent: (e) => {
          if (e.type === 'waiting') waits.push(e.message);
          if (e.type === 'done' && back) doneAfterRestart++;
          // After the first shard: stop the server, start it again on the same port and files.
          if (e.type === 'done' && restarted === undefined) {
            restarted = (async () => {
              redis.process.kill('SIGTERM');
              await new Promise<void>((r) => redis.process.once('exit', () => r()));
              await new Promise((r) => setTimeout(r, 500));
              second = await startRedis({ port: redis.port, dir: redis.dir });
              back = true;
            })();
          }
        },
      });
      await restarted;
      assert.equal(result.stoppedBy, 'finished');
      assert.ok(
        doneAfterRestart >= 1,
        `work went on after the restart (${waits.length} waits for the ledger)`,
      );
      assert.equal(result.shards, 7, 'every shard done by this worker');
      assert.ok(result.manifest?.complete, 'manifest written, complete');
      const store = await createJobStore(redis.url);
      try {
        const status = await store.status('restart');
        assert.deepEqual(status.counts, { PENDING: 0, IN_PROGRESS: 0, DONE: 7, FAILED: 0 });
        assert.equal(status.rows + status.failedSamples, 13);
      } finally {
        await store.close();
      }
    } finally {
      await second?.stop();
      await redis.stop();
    }
  });
});

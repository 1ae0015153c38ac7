/**
 * What is specific to each ledger backend: URLs, refusing an evicting Redis, unreachable ledgers,
 * SQLite's WAL file, and a Redis restart that keeps every shard's state (append-only file).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createJobStore, parseLedgerUrl, redactLedgerUrl } from '../src/jobs/store.js';
import { isGlimpseError } from '../src/errors/index.js';
import { tempDir } from './helpers/cli.js';
import { freePort, startRedis } from './helpers/redis.js';

const DEF = { name: 'photos', maxAttempts: 2, leaseMs: 10_000, retryDelayMs: 0, payload: { a: 1 } };
const SHARDS = [
  { id: '0', kind: 'range' as const, start: 0, end: 5 },
  { id: '1', kind: 'range' as const, start: 5, end: 9 },
];

describe('ledger URLs', () => {
  test('sqlite:, plain paths and redis:// URLs', () => {
    assert.deepEqual(parseLedgerUrl('sqlite:out/ledger.sqlite'), {
      kind: 'sqlite',
      path: resolve('out/ledger.sqlite'),
    });
    assert.deepEqual(parseLedgerUrl('sqlite:///tmp/l.sqlite'), { kind: 'sqlite', path: '/tmp/l.sqlite' });
    assert.deepEqual(parseLedgerUrl('/tmp/l.sqlite'), { kind: 'sqlite', path: '/tmp/l.sqlite' });
    assert.deepEqual(parseLedgerUrl('redis://10.0.0.5:6379/2'), {
      kind: 'redis',
      url: 'redis://10.0.0.5:6379/2',
      prefix: 'glimpse',
    });
    assert.deepEqual(parseLedgerUrl('rediss://u:p@h:6380/0?prefix=team-a'), {
      kind: 'redis',
      url: 'rediss://u:p@h:6380/0',
      prefix: 'team-a',
    });
    assert.equal(redactLedgerUrl('redis://u:secret@h:6379/0'), 'redis://u:***@h:6379/0');
  });

  test('other schemes and bad redis paths are refused with the standard message', () => {
    assert.throws(
      () => parseLedgerUrl('postgres://h/db'),
      (err: unknown) =>
        isGlimpseError(err, 'GLIMPSE_E_ARG_INVALID') &&
        err.message ===
          'Expected a sqlite:<path>, a path, or a redis:// URL for ledger but received "postgres://h/db" of type string',
      'postgres',
    );
    assert.throws(
      () => parseLedgerUrl('redis://h:6379/jobs'),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_ARG_INVALID') && /database number/.test(err.message),
      'redis path',
    );
    assert.throws(
      () => parseLedgerUrl(''),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_ARG_INVALID'),
      'empty',
    );
  });
});

describe('SQLite ledger', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('glimpse-sqlite-');
  });
  after(async () => {
    await chmod(join(dir, 'locked'), 0o755).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  test('one file in WAL mode; a second connection sees every change', async () => {
    const path = join(dir, 'sub', 'ledger.sqlite');
    const a = await createJobStore(`sqlite:${path}`);
    const b = await createJobStore(path);
    await a.createJob(DEF, SHARDS);
    const lease = await b.claim('photos', { worker: 'b' });
    assert.equal(lease?.shard.id, '0');
    assert.equal((await a.status('photos')).counts.IN_PROGRESS, 1, 'the other connection sees the claim');
    const files = await readdir(join(dir, 'sub'));
    assert.ok(files.includes('ledger.sqlite-wal'), `a write-ahead log beside the file (${files.join(', ')})`);
    await a.close();
    await b.close();
    await assert.rejects(
      a.status('photos'),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_LEDGER_UNAVAILABLE'),
      'a closed store refuses calls',
    );
  });

  test('a folder that cannot be written is GLIMPSE_E_LEDGER_UNAVAILABLE', async (t) => {
    if (process.getuid?.() === 0) {
      // root writes anywhere: use a path under a regular file instead.
      await mkdir(join(dir, 'locked'), { recursive: true });
      const { writeFile } = await import('node:fs/promises');
      await writeFile(join(dir, 'locked', 'file'), 'x');
      await assert.rejects(
        createJobStore(`sqlite:${join(dir, 'locked', 'file', 'ledger.sqlite')}`),
        (err: unknown) =>
          isGlimpseError(err, 'GLIMPSE_E_LEDGER_UNAVAILABLE') && /ledger\.sqlite/.test(err.message),
        'a path under a file',
      );
      return;
    }
    await mkdir(join(dir, 'locked'), { recursive: true });
    await chmod(join(dir, 'locked'), 0o500);
    t.diagnostic('non-root: read-only folder');
    await assert.rejects(
      createJobStore(`sqlite:${join(dir, 'locked', 'ledger.sqlite')}`),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_LEDGER_UNAVAILABLE'),
      'read-only folder',
    );
  });

  test('a file that is not a ledger is refused', async () => {
    const { writeFile } = await import('node:fs/promises');
    const path = join(dir, 'not-a-db.sqlite');
    await writeFile(
      path,
      'this is not a database, just text that is long enough to be read as a header......',
    );
    await assert.rejects(
      createJobStore(path),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_LEDGER_UNAVAILABLE') && err.message.includes(path),
      'not a database',
    );
  });
});

describe('Redis ledger', () => {
  test('a server with an eviction policy is refused (GLIMPSE_E_LEDGER_UNSAFE)', async () => {
    const redis = await startRedis({ args: ['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru'] });
    try {
      await assert.rejects(
        createJobStore(redis.url),
        (err: unknown) =>
          isGlimpseError(err, 'GLIMPSE_E_LEDGER_UNSAFE') &&
          err.message ===
            `Expected maxmemory-policy noeviction on the Redis server at ${redis.url} but it is allkeys-lru (an evicting server can lose shards and leases)`,
        'allkeys-lru',
      );
    } finally {
      await redis.stop();
    }
  });

  test('no server listening is GLIMPSE_E_LEDGER_UNAVAILABLE', async () => {
    const port = await freePort();
    await assert.rejects(
      createJobStore(`redis://127.0.0.1:${port}/0`, { connectTimeoutMs: 1000 }),
      (err: unknown) =>
        isGlimpseError(err, 'GLIMPSE_E_LEDGER_UNAVAILABLE') && err.message.includes(`127.0.0.1:${port}`),
      'unreachable',
    );
  });

  test('jobs, leases and results survive a restart of the server (append-only file)', async () => {
    const redis = await startRedis();
    let second: Awaited<ReturnType<typeof startRedis>> | undefined;
    try {
      const store = await createJobStore(redis.url);
      await store.createJob(DEF, SHARDS);
      const a = await store.claim('photos', { worker: 'w' });
      await store.complete(a!, { rows: 5, failed: 0, files: ['x'] });
      const b = await store.claim('photos', { worker: 'w' });
      assert.equal(b?.shard.id, '1');
      await store.close();
      // Stop and start a new server on the same folder and port.
      redis.process.kill('SIGTERM');
      await new Promise<void>((r) => redis.process.once('exit', () => r()));
      second = await startRedis({ port: redis.port, dir: redis.dir });
      const again = await createJobStore(second.url);
      const records = await again.shards('photos');
      assert.deepEqual(
        records.map((r) => [r.id, r.state, r.result?.rows]),
        [
          ['0', 'DONE', 5],
          ['1', 'IN_PROGRESS', undefined],
        ],
      );
      await again.heartbeat(b!);
      await again.complete(b!, { rows: 4, failed: 0, files: [] });
      assert.equal(
        (await again.status('photos')).finished,
        true,
        'the lease held before the restart still commits',
      );
      await again.close();
    } finally {
      await second?.stop();
      await redis.stop();
    }
  });
});

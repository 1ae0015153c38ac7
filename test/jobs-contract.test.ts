/**
 * The JobStore contract, run unchanged against every ledger backend: SQLite (a real file) and BullMQ (a
 * real redis-server). Claim order, leases (expiry, heartbeats, fencing), retries with every attempt's
 * error, FAILED for good, retry-failed, reset, drop, status, and concurrent claimers in separate processes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createJobStore, LeaseLostError, type JobStore } from '../src/jobs/store.js';
import type { JobDefinition, Lease, ShardDescriptor } from '../src/jobs/types.js';
import { isGlimpseError } from '../src/errors/index.js';
import { collect, repoRoot, tempDir } from './helpers/cli.js';
import { startRedis, type RedisServer } from './helpers/redis.js';

interface Backend {
  name: string;
  setup(): Promise<{ url: string; teardown(): Promise<void> }>;
}

const BACKENDS: Backend[] = [
  {
    name: 'sqlite',
    async setup() {
      const dir = await tempDir('glimpse-ledger-');
      return {
        url: `sqlite:${join(dir, 'ledger.sqlite')}`,
        teardown: () => rm(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'bullmq',
    async setup() {
      const redis: RedisServer = await startRedis();
      return { url: redis.url, teardown: () => redis.stop() };
    },
  },
];

const LEASE_MS = 300;
let counter = 0;

function definition(overrides: Partial<JobDefinition> = {}): JobDefinition {
  counter++;
  return {
    name: `job-${process.pid}-${counter}`,
    maxAttempts: 3,
    leaseMs: LEASE_MS,
    retryDelayMs: 0,
    payload: { input: '/data/photos', shardSize: 10 },
    ...overrides,
  };
}

function rangeShards(n: number, size = 10): ShardDescriptor[] {
  const width = String(Math.max(n - 1, 0)).length;
  return Array.from({ length: n }, (_, i) => ({
    id: String(i).padStart(width, '0'),
    kind: 'range' as const,
    start: i * size,
    end: (i + 1) * size,
  }));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls claim() until it returns a lease or `ms` pass (expired leases are noticed asynchronously). */
async function claimWithin(
  store: JobStore,
  job: string,
  worker: string,
  ms = 20 * LEASE_MS,
): Promise<Lease | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const lease = await store.claim(job, { worker });
    if (lease || Date.now() > deadline) return lease;
    await sleep(25);
  }
}

/** Polls until the job has no PENDING or IN_PROGRESS shard left, claiming to let expiries be noticed. */
async function drainWithin(store: JobStore, job: string, ms = 20 * LEASE_MS): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const lease = await store.claim(job, { worker: 'drainer' });
    assert.equal(lease, undefined, `expected nothing left to claim but got shard ${lease?.shard.id}`);
    if ((await store.status(job)).finished || Date.now() > deadline) return;
    await sleep(25);
  }
}

async function rejectsLeaseLost(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(
    p,
    (err: unknown) => err instanceof LeaseLostError && isGlimpseError(err, 'GLIMPSE_E_JOB_LEASE_LOST'),
    `${what} with a lost lease must throw LeaseLostError`,
  );
}

const RESULT = { rows: 10, failed: 0, files: ['img_emb/img_emb_0.npy'] };

for (const backend of BACKENDS) {
  describe(`JobStore contract: ${backend.name}`, () => {
    let env: { url: string; teardown(): Promise<void> };
    let store: JobStore;

    before(async () => {
      env = await backend.setup();
      store = await createJobStore(env.url);
    });
    after(async () => {
      await store?.close();
      await env?.teardown();
    });

    test('createJob is idempotent; other settings conflict; unknown jobs are not found', async () => {
      const def = definition();
      assert.deepEqual(await store.createJob(def, rangeShards(3)), { created: true });
      assert.deepEqual(await store.createJob(def, rangeShards(3)), { created: false });
      assert.deepEqual(await store.getJob(def.name), def);
      assert.ok((await store.listJobs()).includes(def.name), 'listJobs names the job');
      await assert.rejects(
        store.createJob({ ...def, payload: { ...def.payload, shardSize: 20 } }, rangeShards(3)),
        (err: unknown) =>
          isGlimpseError(err, 'GLIMPSE_E_JOB_CONFLICT') &&
          /shardSize \(10 in the ledger, 20 now\)/.test(err.message),
        'a different payload conflicts and names the setting',
      );
      await assert.rejects(
        store.createJob(def, rangeShards(4)),
        (err: unknown) =>
          isGlimpseError(err, 'GLIMPSE_E_JOB_CONFLICT') &&
          /shards \(3 in the ledger, 4 now\)/.test(err.message),
        'a different shard list conflicts',
      );
      await assert.rejects(
        store.getJob('no-such-job'),
        (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_JOB_NOT_FOUND'),
        'unknown job',
      );
      await assert.rejects(
        store.claim('no-such-job', { worker: 'w' }),
        (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_JOB_NOT_FOUND'),
        'claim on an unknown job',
      );
    });

    test('bad arguments get the standard message', async () => {
      await assert.rejects(
        store.createJob(definition({ name: 'bad name!' }), rangeShards(1)),
        (err: unknown) =>
          isGlimpseError(err, 'GLIMPSE_E_ARG_INVALID') &&
          err.message ===
            'Expected a job name of 1 to 100 letters, digits, ".", "_" or "-" starting with a letter or digit for job but received "bad name!" of type string',
        'job name',
      );
      await assert.rejects(
        store.createJob(definition(), [...rangeShards(2), { id: '0', kind: 'range', start: 0, end: 1 }]),
        (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_ARG_INVALID') && /unique shard id/.test(err.message),
        'duplicate shard ids',
      );
      await assert.rejects(
        store.createJob(definition({ maxAttempts: 0 }), rangeShards(1)),
        (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_ARG_INVALID') && /maxAttempts/.test(err.message),
        'maxAttempts',
      );
    });

    test('claims come in shard order, one holder each, until none is left', async () => {
      const def = definition();
      const shards = [...rangeShards(4), { id: 'tar-x', kind: 'tar' as const, url: 's3://bucket/x.tar' }];
      await store.createJob(def, shards);
      const leases: Lease[] = [];
      for (let i = 0; i < shards.length; i++) {
        const lease = await store.claim(def.name, { worker: `w${i}` });
        assert.ok(lease, `claim ${i} returns a lease`);
        leases.push(lease);
      }
      assert.deepEqual(
        leases.map((l) => [l.index, l.shard.id, l.attempt, l.worker]),
        shards.map((s, i) => [i, s.id, 1, `w${i}`]),
      );
      assert.deepEqual(leases[4]!.shard, shards[4], 'the descriptor travels unchanged');
      assert.equal(new Set(leases.map((l) => l.token)).size, shards.length, 'every lease has its own token');
      assert.equal(await store.claim(def.name, { worker: 'late' }), undefined, 'nothing left to claim');
      const status = await store.status(def.name);
      assert.deepEqual(status.counts, { PENDING: 0, IN_PROGRESS: 5, DONE: 0, FAILED: 0 });
      assert.deepEqual(
        status.inProgress.map((p) => [p.id, p.worker, p.attempt, p.leaseExpired]),
        shards.map((s, i) => [s.id, `w${i}`, 1, false]),
      );
      for (const l of leases) await store.complete(l, { ...RESULT, rows: l.index });
      const done = await store.status(def.name);
      assert.deepEqual(done.counts, { PENDING: 0, IN_PROGRESS: 0, DONE: 5, FAILED: 0 });
      assert.equal(done.finished, true, 'finished');
      assert.equal(done.rows, 0 + 1 + 2 + 3 + 4);
      assert.equal(done.etaSeconds, 0);
      const records = await store.shards(def.name);
      assert.deepEqual(
        records.map((r) => [r.id, r.state, r.result?.rows, r.attempts.map((a) => a.outcome)]),
        shards.map((s, i) => [s.id, 'DONE', i, ['done']]),
      );
      await rejectsLeaseLost(store.complete(leases[0]!, RESULT), 'complete twice');
    });

    test('a lease that is not renewed expires: the shard comes back as a failed attempt', async () => {
      const def = definition();
      await store.createJob(def, rangeShards(1));
      const first = await store.claim(def.name, { worker: 'dead-worker' });
      assert.ok(first, 'first claim');
      assert.equal(await store.claim(def.name, { worker: 'b' }), undefined, 'held while the lease is live');
      const second = await claimWithin(store, def.name, 'b');
      assert.ok(second, 'the shard comes back after the lease expires');
      assert.equal(second.shard.id, first.shard.id);
      assert.equal(second.attempt, 2, 'the attempt number grows');
      assert.notEqual(second.token, first.token);
      const [record] = await store.shards(def.name);
      assert.equal(record?.state, 'IN_PROGRESS');
      assert.equal(record?.failures, 1, 'the expired lease counts as a failed attempt');
      assert.deepEqual(
        record?.attempts.map((a) => [a.attempt, a.worker, a.outcome, a.code]),
        [
          [1, 'dead-worker', 'lease-expired', 'GLIMPSE_E_JOB_LEASE_LOST'],
          [2, 'b', 'running', undefined],
        ],
      );
      assert.match(record?.attempts[0]?.message ?? '', /expired without a heartbeat from worker dead-worker/);

      // Fencing: the old holder can do nothing any more; the new one commits.
      await rejectsLeaseLost(store.heartbeat(first), 'heartbeat');
      await rejectsLeaseLost(store.complete(first, RESULT), 'complete');
      await rejectsLeaseLost(store.fail(first, { code: 'GLIMPSE_E_INTERNAL', message: 'x' }), 'fail');
      await rejectsLeaseLost(store.release(first), 'release');
      await store.complete(second, { ...RESULT, rows: 7 });
      const [done] = await store.shards(def.name);
      assert.equal(done?.state, 'DONE');
      assert.equal(done?.result?.rows, 7, "the new holder's result is kept");
    });

    test('heartbeats keep a lease; an expired one cannot be renewed', async () => {
      const def = definition();
      await store.createJob(def, rangeShards(1));
      let lease = await store.claim(def.name, { worker: 'a' });
      assert.ok(lease, 'claim');
      for (let i = 0; i < 8; i++) {
        await sleep(LEASE_MS / 2);
        lease = await store.heartbeat(lease);
        assert.equal(
          await store.claim(def.name, { worker: 'thief' }),
          undefined,
          `still held after heartbeat ${i}`,
        );
      }
      assert.ok(lease.expiresAt > Date.now(), 'the renewed lease ends in the future');
      await store.complete(lease, RESULT);
      const [record] = await store.shards(def.name);
      assert.deepEqual(
        record?.attempts.map((a) => a.outcome),
        ['done'],
      );

      const def2 = definition();
      await store.createJob(def2, rangeShards(1));
      const late = await store.claim(def2.name, { worker: 'slow' });
      assert.ok(late, 'claim');
      await sleep(LEASE_MS * 2);
      await rejectsLeaseLost(store.heartbeat(late), 'a heartbeat after the lease ended');
    });

    test('errors are retried up to maxAttempts, each attempt keeps its error, then FAILED for good', async () => {
      const def = definition({ maxAttempts: 3 });
      await store.createJob(def, rangeShards(3));
      let first: Lease | undefined = await store.claim(def.name, { worker: 'w1' });
      const other = await store.claim(def.name, { worker: 'w' });
      assert.equal(other?.shard.id, '1', 'shard 1 is taken by another worker');
      for (let i = 1; i <= 3; i++) {
        const lease = first ?? (await store.claim(def.name, { worker: `w${i}` }));
        first = undefined;
        assert.ok(lease, `attempt ${i}`);
        if (i > 1) assert.notEqual(lease.shard.id, '1', 'a held shard is never handed out');
        if (lease.shard.id === '2') {
          await store.complete(lease, RESULT);
          i--;
          continue;
        }
        assert.equal(lease.shard.id, '0', `attempt ${i} is shard 0`);
        assert.equal(lease.attempt, i);
        const state = await store.fail(lease, {
          code: 'GLIMPSE_E_OUTPUT_WRITE_FAILED',
          message: `disk full #${i}`,
        });
        assert.equal(state, i < 3 ? 'PENDING' : 'FAILED', `state after failure ${i}`);
        if (i < 3) {
          const status = await store.status(def.name);
          assert.equal(status.retrying, 1, 'one shard waits for a retry');
        }
      }
      const rest = await store.claim(def.name, { worker: 'w' });
      if (rest) {
        assert.equal(rest.shard.id, '2', 'only shard 2 may be left');
        await store.complete(rest, RESULT);
      }
      const [record] = await store.shards(def.name);
      assert.equal(record?.state, 'FAILED');
      assert.equal(record?.failures, 3);
      assert.deepEqual(
        record?.attempts.map((a) => [a.attempt, a.worker, a.outcome, a.code, a.message]),
        [1, 2, 3].map((i) => [i, `w${i}`, 'error', 'GLIMPSE_E_OUTPUT_WRITE_FAILED', `disk full #${i}`]),
      );
      assert.match(
        record?.reason ?? '',
        /3 attempts failed .*last: GLIMPSE_E_OUTPUT_WRITE_FAILED: disk full #3/,
      );
      const status = await store.status(def.name);
      assert.deepEqual(status.counts, { PENDING: 0, IN_PROGRESS: 1, DONE: 1, FAILED: 1 });
      assert.deepEqual(
        status.failed.map((f) => [f.id, f.attempts.length]),
        [['0', 3]],
      );
      assert.equal(
        await store.claim(def.name, { worker: 'w' }),
        undefined,
        'a FAILED shard is never claimed again',
      );
      await store.complete(other!, RESULT);
      assert.equal((await store.status(def.name)).finished, true, 'finished with one FAILED shard');
    });

    test('a non-retryable error fails the shard at once; a release does not count', async () => {
      const def = definition({ maxAttempts: 5 });
      await store.createJob(def, rangeShards(2));
      const a = await store.claim(def.name, { worker: 'w' });
      assert.ok(a, 'claim');
      assert.equal(
        await store.fail(a, { code: 'GLIMPSE_E_SOURCE_NOT_FOUND', message: 'gone' }, { retryable: false }),
        'FAILED',
      );
      const b = await store.claim(def.name, { worker: 'w' });
      assert.equal(b?.shard.id, '1');
      await store.release(b!);
      const again = await store.claim(def.name, { worker: 'w2' });
      assert.equal(again?.shard.id, '1', 'a released shard is claimable at once');
      assert.equal(again?.attempt, 2);
      const records = await store.shards(def.name);
      assert.equal(records[0]?.state, 'FAILED');
      assert.match(records[0]?.reason ?? '', /GLIMPSE_E_SOURCE_NOT_FOUND: gone/);
      assert.equal(records[1]?.failures, 0, 'a release is not a failure');
      assert.deepEqual(
        records[1]?.attempts.map((x) => x.outcome),
        ['released', 'running'],
      );
    });

    test('expired leases up to maxAttempts make a shard FAILED for good with the reason', async () => {
      const def = definition({ maxAttempts: 2 });
      await store.createJob(def, rangeShards(1));
      const first = await store.claim(def.name, { worker: 'crashy-1' });
      assert.ok(first, 'attempt 1');
      const second = await claimWithin(store, def.name, 'crashy-2');
      assert.equal(second?.attempt, 2, 'attempt 2 after the first lease expired');
      await drainWithin(store, def.name);
      const [record] = await store.shards(def.name);
      assert.equal(record?.state, 'FAILED', 'FAILED after two expired leases');
      assert.match(record?.reason ?? '', /^lease expired 2 times/);
      assert.deepEqual(
        record?.attempts.map((a) => [a.attempt, a.worker, a.outcome]),
        [
          [1, 'crashy-1', 'lease-expired'],
          [2, 'crashy-2', 'lease-expired'],
        ],
      );
      const status = await store.status(def.name);
      assert.equal(status.finished, true, 'a job whose shards are all DONE or FAILED is finished');
      assert.deepEqual(status.counts, { PENDING: 0, IN_PROGRESS: 0, DONE: 0, FAILED: 1 });
    });

    test('retry-failed gives FAILED shards a fresh set of attempts and keeps their history', async () => {
      const def = definition({ maxAttempts: 1 });
      await store.createJob(def, rangeShards(3));
      const a = await store.claim(def.name, { worker: 'w' });
      assert.equal(await store.fail(a!, { code: 'GLIMPSE_E_INTERNAL', message: 'boom' }), 'FAILED');
      const b = await store.claim(def.name, { worker: 'w' });
      await store.complete(b!, RESULT);
      assert.equal(await store.retryFailed(def.name), 1);
      assert.equal(await store.retryFailed(def.name), 0, 'nothing left to retry');
      const status = await store.status(def.name);
      assert.deepEqual(status.counts, { PENDING: 2, IN_PROGRESS: 0, DONE: 1, FAILED: 0 });
      const leases: Lease[] = [];
      for (let i = 0; i < 2; i++) leases.push((await store.claim(def.name, { worker: 'w2' }))!);
      assert.deepEqual(
        leases.map((l) => l.shard.id).sort(),
        ['0', '2'],
        'the retried shard and the untouched one',
      );
      const retried = leases.find((l) => l.shard.id === '0')!;
      assert.equal(retried.attempt, 2, 'attempt numbers keep growing');
      const [record] = await store.shards(def.name);
      assert.equal(record?.failures, 0, 'failures start again');
      assert.deepEqual(
        record?.attempts.map((x) => [x.attempt, x.outcome, x.message]),
        [
          [1, 'error', 'boom'],
          [2, 'running', undefined],
        ],
      );
    });

    test('reset puts every shard back; holders of old leases are fenced off; drop removes the job', async () => {
      const def = definition();
      await store.createJob(def, rangeShards(3));
      const a = await store.claim(def.name, { worker: 'w' });
      await store.complete(a!, RESULT);
      const b = await store.claim(def.name, { worker: 'w' });
      assert.equal(await store.reset(def.name), 3);
      assert.deepEqual((await store.status(def.name)).counts, {
        PENDING: 3,
        IN_PROGRESS: 0,
        DONE: 0,
        FAILED: 0,
      });
      await rejectsLeaseLost(store.complete(b!, RESULT), 'complete after reset');
      const again = await store.claim(def.name, { worker: 'w' });
      assert.equal(again?.shard.id, '0', 'claims start over from the first shard');
      assert.equal(again?.attempt, 1);
      assert.deepEqual(
        (await store.shards(def.name)).map((s) => s.attempts.length),
        [1, 0, 0],
        'history cleared',
      );
      assert.equal(await store.drop(def.name), true);
      assert.equal(await store.drop(def.name), false, 'dropping twice');
      await assert.rejects(
        store.status(def.name),
        (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_JOB_NOT_FOUND'),
        'status of a dropped job',
      );
      assert.ok(!(await store.listJobs()).includes(def.name), 'listJobs forgets it');
      assert.deepEqual(
        await store.createJob(def, rangeShards(2)),
        { created: true },
        'the name can be planned again',
      );
    });

    test('concurrent claimers in separate processes never get the same shard', async () => {
      const def = definition({ leaseMs: 10_000 });
      const n = 40;
      await store.createJob(def, rangeShards(n));
      const storeModule = new URL('../src/jobs/store.ts', import.meta.url).href;
      const script = `
        const { createJobStore } = await import(${JSON.stringify(storeModule)});
        const store = await createJobStore(process.env.LEDGER);
        const got = [];
        for (;;) {
          const lease = await store.claim(process.env.JOB, { worker: process.env.WORKER });
          if (lease) {
            got.push(lease.shard.id);
            await store.complete(lease, { rows: 1, failed: 0, files: [] });
            continue;
          }
          if ((await store.status(process.env.JOB)).finished) break;
          await new Promise((r) => setTimeout(r, 10));
        }
        await store.close();
        process.stdout.write(JSON.stringify(got));
      `;
      const tsx = import.meta.resolve('tsx');
      const children = Array.from({ length: 4 }, (_, i) =>
        collect(
          spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', script], {
            cwd: repoRoot,
            env: { ...process.env, LEDGER: env.url, JOB: def.name, WORKER: `p${i}` },
            stdio: ['ignore', 'pipe', 'pipe'],
          }),
        ),
      );
      const results = await Promise.all(children);
      const claimed: string[] = [];
      for (const r of results) {
        assert.equal(r.code, 0, `claimer exited with ${r.code}: ${r.stderr}`);
        claimed.push(...(JSON.parse(r.stdout) as string[]));
      }
      assert.equal(claimed.length, n, `every shard claimed exactly once (got ${claimed.length})`);
      assert.equal(new Set(claimed).size, n, 'no shard claimed twice');
      const records = await store.shards(def.name);
      assert.ok(
        records.every((r) => r.state === 'DONE' && r.attempts.length === 1),
        'every shard DONE after one attempt',
      );
    });
  });
}

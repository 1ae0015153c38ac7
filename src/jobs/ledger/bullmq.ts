/**
 * The BullMQ ledger (Redis), for workers on many machines. The only importer of `bullmq` and `ioredis`.
 *
 * A job is a BullMQ queue (named after the job), a shard is a BullMQ job (`shard-<id>`). BullMQ's
 * semantics do the heavy lifting: a claim is `getNextJob` with a lock token (the lease), a heartbeat is
 * `extendLock`, an expired lease is a stalled job that the stalled checker moves back to wait, retries
 * and backoff are BullMQ attempts, and `moveToCompleted`/`moveToFailed` check the lock token (fencing).
 *
 * Beside the queue, under `<prefix>-ledger:<job>:…`, the ledger keeps the job definition and each
 * shard's history (claims, ends of attempts, retry marks); events that need the lease are appended by a
 * Lua script that checks the lock token first. Failed attempts = errors + expired leases since the last
 * retry-failed; when they reach `maxAttempts` the shard is failed for good (`UnrecoverableError`).
 */
import { randomUUID } from 'node:crypto';
import { Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { GlimpseError } from '../../errors/index.js';
import type { JobStore } from '../store.js';
import type {
  AttemptOutcome,
  AttemptRecord,
  JobDefinition,
  JobStatus,
  Lease,
  ShardDescriptor,
  ShardRecord,
  ShardResult,
  ShardState,
} from '../types.js';
import {
  LeaseLostError,
  assertJobDefinition,
  assertJobName,
  assertSameJob,
  assertShards,
  failureReason,
  jobNotFound,
  leaseExpiredMessage,
  summarizeJob,
} from './shared.js';

/** Appends history entries only while the caller holds the shard's lock (KEYS: lock, history). */
const FENCED_PUSH = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  for i = 2, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
  return 1
end
return 0
`;

/** BullMQ error codes (finishedErrors) that mean the caller no longer holds the job. */
const LOST_CODES = new Set([-1, -2, -3, -6]);

/** A shard's history entry. */
type HistoryEvent =
  | { k: 'claim'; a: number; w: string; t: number }
  | { k: 'end'; a: number; o: Exclude<AttemptOutcome, 'running'>; c?: string; m?: string; t: number }
  | { k: 'retry'; after: number; t: number };

interface ShardData {
  index: number;
  shard: ShardDescriptor;
}

interface StoredJob {
  definition: JobDefinition;
  shards: ShardDescriptor[];
}

const BULL_STATES: readonly [string, ShardState][] = [
  ['waiting', 'PENDING'],
  ['prioritized', 'PENDING'],
  ['delayed', 'PENDING'],
  ['paused', 'PENDING'],
  ['waiting-children', 'PENDING'],
  ['active', 'IN_PROGRESS'],
  ['completed', 'DONE'],
  ['failed', 'FAILED'],
];

const bullJobId = (shardId: string): string => `shard-${shardId}`;

function parseHistory(raw: readonly string[]): HistoryEvent[] {
  const out: HistoryEvent[] = [];
  for (const line of raw) {
    try {
      out.push(JSON.parse(line) as HistoryEvent);
    } catch {
      // A line we cannot read is ignored (never written by this code).
    }
  }
  return out;
}

/** The attempt number of the last retry-failed mark (attempts up to it no longer count). */
function retryBase(events: readonly HistoryEvent[]): number {
  let base = 0;
  for (const e of events) if (e.k === 'retry') base = Math.max(base, e.after);
  return base;
}

/** Attempts (claims and their ends) from history, oldest first. */
function attemptsFrom(
  events: readonly HistoryEvent[],
): Map<number, { claim?: HistoryEvent; end?: HistoryEvent }> {
  const map = new Map<number, { claim?: HistoryEvent; end?: HistoryEvent }>();
  for (const e of events) {
    if (e.k === 'retry') continue;
    let slot = map.get(e.a);
    if (!slot) map.set(e.a, (slot = {}));
    if (e.k === 'claim') slot.claim ??= e;
    else slot.end ??= e;
  }
  return new Map([...map.entries()].sort((x, y) => x[0] - y[0]));
}

function countFailures(events: readonly HistoryEvent[]): number {
  const base = retryBase(events);
  let n = 0;
  for (const [a, slot] of attemptsFrom(events)) {
    if (a <= base || slot.end?.k !== 'end') continue;
    if (slot.end.o === 'error' || slot.end.o === 'lease-expired') n++;
  }
  return n;
}

function toRecords(events: readonly HistoryEvent[]): AttemptRecord[] {
  const out: AttemptRecord[] = [];
  for (const [a, slot] of attemptsFrom(events)) {
    const claim = slot.claim?.k === 'claim' ? slot.claim : undefined;
    const end = slot.end?.k === 'end' ? slot.end : undefined;
    const worker = claim?.w ?? 'unknown';
    out.push({
      attempt: a,
      worker,
      claimedAt: new Date(claim?.t ?? end?.t ?? 0).toISOString(),
      outcome: end?.o ?? 'running',
      ...(end?.c !== undefined ? { code: end.c } : {}),
      ...(end?.m !== undefined ? { message: end.m } : {}),
      ...(end ? { endedAt: new Date(end.t).toISOString() } : {}),
    });
  }
  return out;
}

function isLost(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' && LOST_CODES.has(code);
}

export interface BullmqJobStoreOptions {
  /** Key prefix (default `glimpse`): BullMQ keys are `<prefix>:<job>:…`, the ledger's `<prefix>-ledger:…`. */
  prefix?: string;
  /** Milliseconds to wait for the first connection (default 5000). */
  connectTimeoutMs?: number;
}

class BullmqJobStore implements JobStore {
  readonly kind = 'redis';
  private readonly queues = new Map<string, Queue>();
  private readonly workers = new Map<string, Promise<Worker>>();
  private readonly definitions = new Map<string, StoredJob>();
  /** BullMQ jobs this store claimed, by lock token (so heartbeats need no lookup). */
  private readonly held = new Map<string, Job>();
  private closed = false;
  private lastError: Error | undefined;

  constructor(
    private readonly client: Redis,
    private readonly url: string,
    readonly location: string,
    private readonly prefix: string,
  ) {}

  private key(job: string, ...parts: string[]): string {
    return [`${this.prefix}-ledger`, job, ...parts].join(':');
  }

  private get jobsKey(): string {
    return `${this.prefix}-ledger:jobs`;
  }

  private lockKey(job: string, shardId: string): string {
    return `${this.prefix}:${job}:${bullJobId(shardId)}:lock`;
  }

  private connection(): { url: string; maxRetriesPerRequest: null } {
    return { url: this.url, maxRetriesPerRequest: null };
  }

  private queue(job: string): Queue {
    let q = this.queues.get(job);
    if (!q) {
      q = new Queue(job, { connection: this.connection(), prefix: this.prefix });
      q.on('error', (err: Error) => (this.lastError = err));
      this.queues.set(job, q);
    }
    return q;
  }

  private worker(stored: StoredJob): Promise<Worker> {
    const name = stored.definition.name;
    let w = this.workers.get(name);
    if (!w) {
      w = (async () => {
        const leaseMs = stored.definition.leaseMs;
        const worker = new Worker(name, null, {
          connection: this.connection(),
          prefix: this.prefix,
          autorun: false,
          lockDuration: leaseMs,
          // Expired leases are noticed within one to two intervals after they end.
          stalledInterval: Math.max(50, Math.floor(leaseMs / 2)),
          // The ledger counts failed attempts itself (errors + expired leases), so BullMQ never gives up.
          maxStalledCount: 1_000_000,
          skipLockRenewal: true,
        });
        worker.on('error', (err: Error) => (this.lastError = err));
        await worker.waitUntilReady();
        await worker.startStalledCheckTimer();
        return worker;
      })();
      this.workers.set(name, w);
    }
    return w;
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed)
      throw new GlimpseError(
        'GLIMPSE_E_LEDGER_UNAVAILABLE',
        `Expected an open ledger for ${what} but ${this.location} was closed`,
      );
    try {
      return await fn();
    } catch (err) {
      if (err instanceof GlimpseError) throw err;
      if (isLost(err)) throw err;
      throw new GlimpseError(
        'GLIMPSE_E_LEDGER_UNAVAILABLE',
        `Expected to ${what} in the ledger ${this.location} but Redis failed: ${(err as Error).message}${
          this.lastError && this.lastError.message !== (err as Error).message
            ? ` (last connection error: ${this.lastError.message})`
            : ''
        }`,
        { cause: err },
      );
    }
  }

  private async stored(name: string): Promise<StoredJob> {
    const cached = this.definitions.get(name);
    if (cached) return cached;
    const raw = await this.client.get(this.key(name, 'definition'));
    if (raw === null) throw jobNotFound(name, this.location);
    const stored = JSON.parse(raw) as StoredJob;
    this.definitions.set(name, stored);
    return stored;
  }

  private async history(job: string, shardId: string): Promise<HistoryEvent[]> {
    return parseHistory(await this.client.lrange(this.key(job, 'history', shardId), 0, -1));
  }

  /** Appends `events` if `token` still holds the shard's lock; false when it does not. */
  private async fencedPush(
    job: string,
    shardId: string,
    token: string,
    events: HistoryEvent[],
  ): Promise<boolean> {
    const r = await this.client.eval(
      FENCED_PUSH,
      2,
      this.lockKey(job, shardId),
      this.key(job, 'history', shardId),
      token,
      ...events.map((e) => JSON.stringify(e)),
    );
    return r === 1;
  }

  private async addShards(stored: StoredJob): Promise<void> {
    const { definition, shards } = stored;
    const q = this.queue(definition.name);
    for (let i = 0; i < shards.length; i += 1000) {
      await q.addBulk(
        shards.slice(i, i + 1000).map((shard, k) => ({
          name: shard.id,
          data: { index: i + k, shard } satisfies ShardData,
          opts: {
            jobId: bullJobId(shard.id),
            attempts: definition.maxAttempts,
            ...(definition.retryDelayMs > 0
              ? { backoff: { type: 'fixed', delay: definition.retryDelayMs } }
              : {}),
            removeOnComplete: false,
            removeOnFail: false,
          },
        })),
      );
    }
  }

  async createJob(
    definition: JobDefinition,
    shards: readonly ShardDescriptor[],
  ): Promise<{ created: boolean }> {
    assertJobDefinition(definition);
    assertShards(shards);
    return this.call('create a job', async () => {
      const wanted: StoredJob = { definition, shards: [...shards] };
      const set = await this.client.set(
        this.key(definition.name, 'definition'),
        JSON.stringify(wanted),
        'NX',
      );
      const created = set === 'OK';
      if (!created) {
        const raw = await this.client.get(this.key(definition.name, 'definition'));
        if (raw === null) throw jobNotFound(definition.name, this.location);
        assertSameJob(JSON.parse(raw) as StoredJob, wanted);
      }
      await this.client.sadd(this.jobsKey, definition.name);
      // Idempotent (a job id that exists is left alone): finishes a plan that crashed half way.
      await this.addShards(wanted);
      this.definitions.set(definition.name, wanted);
      return { created };
    });
  }

  async getJob(name: string): Promise<JobDefinition> {
    assertJobName(name);
    return this.call('read a job', async () => (await this.stored(name)).definition);
  }

  async listJobs(): Promise<string[]> {
    return this.call('list jobs', async () => (await this.client.smembers(this.jobsKey)).sort());
  }

  async claim(job: string, options: { worker: string }): Promise<Lease | undefined> {
    assertJobName(job);
    const workerName = String(options.worker);
    return this.call('claim a shard', async () => {
      const stored = await this.stored(job);
      const def = stored.definition;
      const worker = await this.worker(stored);
      for (;;) {
        const token = randomUUID();
        const bull = (await worker.getNextJob(token, { block: false })) as Job<ShardData> | undefined;
        if (!bull) return undefined;
        const { shard, index } = bull.data;
        const attempt = bull.attemptsStarted;
        const now = Date.now();
        const events = await this.history(job, shard.id);
        const base = retryBase(events);
        const attempts = attemptsFrom(events);
        // Earlier claims that never ended lost their lease (the stalled checker gave the shard back).
        const expired: HistoryEvent[] = [];
        for (let a = base + 1; a < attempt; a++) {
          const slot = attempts.get(a);
          if (slot?.end) continue;
          const w = slot?.claim?.k === 'claim' ? slot.claim.w : 'unknown';
          expired.push({
            k: 'end',
            a,
            o: 'lease-expired',
            c: 'GLIMPSE_E_JOB_LEASE_LOST',
            m: leaseExpiredMessage(w, def.leaseMs),
            t: now,
          });
        }
        const all = [...events, ...expired];
        const failures = countFailures(all);
        if (failures >= def.maxAttempts) {
          if (expired.length > 0) await this.fencedPush(job, shard.id, token, expired);
          const reason = failureReason(toRecords(all), failures);
          try {
            await bull.moveToFailed(new UnrecoverableError(reason), token, false);
          } catch (err) {
            if (!isLost(err)) throw err;
          }
          continue;
        }
        const claim: HistoryEvent = { k: 'claim', a: attempt, w: workerName, t: now };
        if (!(await this.fencedPush(job, shard.id, token, [...expired, claim]))) continue;
        this.held.set(token, bull);
        const lease: Lease = {
          job,
          shard,
          index,
          attempt,
          token,
          worker: workerName,
          leaseMs: def.leaseMs,
          expiresAt: now + def.leaseMs,
        };
        return lease;
      }
    });
  }

  /** The BullMQ job behind a lease (from this store's claims, or looked up). */
  private async bullJob(lease: Lease): Promise<Job> {
    const held = this.held.get(lease.token);
    if (held) return held;
    const found = await Job.fromId(this.queue(lease.job), bullJobId(lease.shard.id));
    if (!found) throw new LeaseLostError(lease, 'the shard no longer exists (the job was reset or dropped)');
    return found;
  }

  async heartbeat(lease: Lease): Promise<Lease> {
    return this.call('renew a lease', async () => {
      const now = Date.now();
      const bull = await this.bullJob(lease);
      const ok = await bull.extendLock(lease.token, lease.leaseMs);
      if (!ok) {
        this.held.delete(lease.token);
        throw new LeaseLostError(lease, 'it expired or the shard was taken over, reset or dropped');
      }
      return { ...lease, expiresAt: now + lease.leaseMs };
    });
  }

  async complete(lease: Lease, result: ShardResult): Promise<void> {
    await this.call('complete a shard', async () => {
      const bull = await this.bullJob(lease);
      try {
        await bull.moveToCompleted(result, lease.token, false);
      } catch (err) {
        if (isLost(err))
          throw new LeaseLostError(lease, 'it expired or the shard was taken over, reset or dropped', {
            cause: err,
          });
        throw err;
      } finally {
        this.held.delete(lease.token);
      }
      const done: HistoryEvent = { k: 'end', a: lease.attempt, o: 'done', t: Date.now() };
      await this.client.rpush(this.key(lease.job, 'history', lease.shard.id), JSON.stringify(done));
    });
  }

  async fail(
    lease: Lease,
    error: { code: string; message: string },
    options: { retryable?: boolean } = {},
  ): Promise<ShardState> {
    return this.call('fail a shard', async () => {
      const def = (await this.stored(lease.job)).definition;
      const bull = await this.bullJob(lease);
      const end: HistoryEvent = {
        k: 'end',
        a: lease.attempt,
        o: 'error',
        c: error.code,
        m: error.message,
        t: Date.now(),
      };
      if (!(await this.fencedPush(lease.job, lease.shard.id, lease.token, [end]))) {
        this.held.delete(lease.token);
        throw new LeaseLostError(lease, 'it expired or the shard was taken over, reset or dropped');
      }
      const events = await this.history(lease.job, lease.shard.id);
      const failures = countFailures(events);
      const final = options.retryable === false || failures >= def.maxAttempts;
      try {
        if (final) {
          const reason = failureReason(toRecords(events), failures);
          await bull.moveToFailed(new UnrecoverableError(reason), lease.token, false);
        } else {
          await bull.moveToFailed(new Error(`${error.code}: ${error.message}`), lease.token, false);
        }
      } catch (err) {
        if (isLost(err))
          throw new LeaseLostError(lease, 'it expired or the shard was taken over, reset or dropped', {
            cause: err,
          });
        throw err;
      } finally {
        this.held.delete(lease.token);
      }
      return final ? 'FAILED' : 'PENDING';
    });
  }

  async release(lease: Lease): Promise<void> {
    await this.call('release a shard', async () => {
      const bull = await this.bullJob(lease);
      const end: HistoryEvent = { k: 'end', a: lease.attempt, o: 'released', t: Date.now() };
      if (!(await this.fencedPush(lease.job, lease.shard.id, lease.token, [end]))) {
        this.held.delete(lease.token);
        throw new LeaseLostError(lease, 'it expired or the shard was taken over, reset or dropped');
      }
      try {
        const r = await bull.moveToWait(lease.token);
        if (r < 0) throw Object.assign(new Error(`moveToWait returned ${r}`), { code: r });
      } catch (err) {
        if (isLost(err))
          throw new LeaseLostError(lease, 'it expired or the shard was taken over, reset or dropped', {
            cause: err,
          });
        throw err;
      } finally {
        this.held.delete(lease.token);
      }
    });
  }

  /** Each shard's BullMQ job and state. */
  private async bullStates(job: string): Promise<Map<string, { state: ShardState; bull: Job }>> {
    const q = this.queue(job);
    const out = new Map<string, { state: ShardState; bull: Job }>();
    for (const [type, state] of BULL_STATES) {
      const jobs = await q.getJobs([type as 'waiting'], 0, -1, true);
      for (const j of jobs) if (j?.id !== undefined) out.set(j.id, { state, bull: j });
    }
    return out;
  }

  async shards(job: string): Promise<ShardRecord[]> {
    assertJobName(job);
    return this.call('list shards', async () => {
      const stored = await this.stored(job);
      const states = await this.bullStates(job);
      const pipeline = this.client.pipeline();
      for (const s of stored.shards) pipeline.lrange(this.key(job, 'history', s.id), 0, -1);
      const histories = ((await pipeline.exec()) ?? []).map(([, v]) =>
        parseHistory(Array.isArray(v) ? (v as string[]) : []),
      );
      return stored.shards.map((descriptor, index): ShardRecord => {
        const found = states.get(bullJobId(descriptor.id));
        // A job between two lists (moving) reads as PENDING; the next read is exact.
        const state: ShardState = found?.state ?? 'PENDING';
        const events = histories[index] ?? [];
        let attempts = toRecords(events);
        const last = attempts[attempts.length - 1];
        if (last && last.outcome === 'running' && state !== 'IN_PROGRESS') {
          const finishedOn = found?.bull.finishedOn;
          const fixed: AttemptRecord =
            state === 'DONE'
              ? {
                  ...last,
                  outcome: 'done',
                  ...(finishedOn ? { endedAt: new Date(finishedOn).toISOString() } : {}),
                }
              : {
                  ...last,
                  outcome: 'lease-expired',
                  code: 'GLIMPSE_E_JOB_LEASE_LOST',
                  message: leaseExpiredMessage(last.worker, stored.definition.leaseMs),
                };
          attempts = [...attempts.slice(0, -1), fixed];
        }
        const base = retryBase(events);
        const failures = attempts.filter(
          (a) => a.attempt > base && (a.outcome === 'error' || a.outcome === 'lease-expired'),
        ).length;
        const bull = found?.bull;
        const record: ShardRecord = {
          id: descriptor.id,
          index,
          descriptor,
          state,
          failures,
          attempts,
          ...(state === 'IN_PROGRESS' && last ? { worker: last.worker } : {}),
          ...(state === 'FAILED' ? { reason: bull?.failedReason ?? failureReason(attempts, failures) } : {}),
          ...(state === 'DONE' && bull?.returnvalue ? { result: bull.returnvalue as ShardResult } : {}),
          ...((state === 'DONE' || state === 'FAILED') && bull?.finishedOn
            ? { finishedAt: new Date(bull.finishedOn).toISOString() }
            : {}),
        };
        return record;
      });
    });
  }

  async status(job: string): Promise<JobStatus> {
    const shards = await this.shards(job);
    const active = shards.filter((s) => s.state === 'IN_PROGRESS');
    const expired = await this.call('read leases', async () => {
      const out = new Set<string>();
      if (active.length === 0) return out;
      const pipeline = this.client.pipeline();
      for (const s of active) pipeline.exists(this.lockKey(job, s.id));
      const results = (await pipeline.exec()) ?? [];
      active.forEach((s, i) => {
        if (results[i]?.[1] === 0) out.add(s.id);
      });
      return out;
    });
    return summarizeJob(job, shards, Date.now(), expired);
  }

  async retryFailed(job: string): Promise<number> {
    assertJobName(job);
    return this.call('retry failed shards', async () => {
      await this.stored(job);
      const failed = await this.queue(job).getJobs(['failed'], 0, -1, true);
      let n = 0;
      for (const bull of failed) {
        if (!bull) continue;
        const data = bull.data as ShardData;
        const mark: HistoryEvent = { k: 'retry', after: bull.attemptsStarted, t: Date.now() };
        await this.client.rpush(this.key(job, 'history', data.shard.id), JSON.stringify(mark));
        await bull.retry('failed', { resetAttemptsMade: true });
        n++;
      }
      return n;
    });
  }

  private async wipe(job: string, stored: StoredJob): Promise<void> {
    await this.queue(job).obliterate({ force: true });
    const keys = stored.shards.map((s) => this.key(job, 'history', s.id));
    for (let i = 0; i < keys.length; i += 1000) await this.client.del(...keys.slice(i, i + 1000));
    for (const [token, bull] of this.held) if (bull.queueName === job) this.held.delete(token);
  }

  async reset(job: string): Promise<number> {
    assertJobName(job);
    return this.call('reset a job', async () => {
      const stored = await this.stored(job);
      await this.wipe(job, stored);
      await this.addShards(stored);
      return stored.shards.length;
    });
  }

  async drop(job: string): Promise<boolean> {
    assertJobName(job);
    return this.call('drop a job', async () => {
      let stored: StoredJob;
      try {
        stored = await this.stored(job);
      } catch (err) {
        if (err instanceof GlimpseError && err.code === 'GLIMPSE_E_JOB_NOT_FOUND') return false;
        throw err;
      }
      await this.wipe(job, stored);
      await this.client.del(this.key(job, 'definition'));
      await this.client.srem(this.jobsKey, job);
      this.definitions.delete(job);
      const w = this.workers.get(job);
      this.workers.delete(job);
      if (w) await (await w).close();
      return true;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const workers = [...this.workers.values()];
    this.workers.clear();
    for (const w of workers) {
      try {
        await (await w).close();
      } catch {
        // A worker that never connected has nothing to close.
      }
    }
    for (const q of this.queues.values()) await q.close().catch(() => undefined);
    this.queues.clear();
    this.client.disconnect();
  }
}

/** `maxmemory-policy` of the server (CONFIG GET, or INFO memory where CONFIG is not allowed). */
async function evictionPolicy(client: Redis): Promise<string | undefined> {
  try {
    const r = await client.config('GET', 'maxmemory-policy');
    if (Array.isArray(r) && typeof r[1] === 'string') return r[1];
  } catch {
    // Managed servers may rename or forbid CONFIG.
  }
  const info = await client.info('memory');
  return /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
}

/**
 * Connects to Redis and returns the BullMQ ledger. Refuses a server whose `maxmemory-policy` is not
 * `noeviction` (GLIMPSE_E_LEDGER_UNSAFE): an evicting server can silently drop shards and locks.
 *
 * @example
 *   const store = await openBullmqJobStore('redis://10.0.0.5:6379/0', { prefix: 'glimpse' });
 */
export async function openBullmqJobStore(
  url: string,
  options: BullmqJobStoreOptions = {},
): Promise<JobStore> {
  const prefix = options.prefix ?? 'glimpse';
  const location = url.replace(/\/\/([^@/]*)@/, (_m, auth: string) => `//${auth.split(':')[0] ?? ''}:***@`);
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: options.connectTimeoutMs ?? 5000,
    maxRetriesPerRequest: 2,
    retryStrategy: (times: number) => Math.min(100 * times, 2000),
  });
  client.on('error', () => undefined);
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('timed out')), options.connectTimeoutMs ?? 5000).unref(),
      ),
    ]);
  } catch (err) {
    client.disconnect();
    throw new GlimpseError(
      'GLIMPSE_E_LEDGER_UNAVAILABLE',
      `Expected a Redis server at ${location} but connecting failed: ${(err as Error).message}`,
      { cause: err, details: { ledger: location } },
    );
  }
  let policy: string | undefined;
  try {
    policy = await evictionPolicy(client);
  } catch (err) {
    client.disconnect();
    throw new GlimpseError(
      'GLIMPSE_E_LEDGER_UNAVAILABLE',
      `Expected to read the configuration of the Redis server at ${location} but ${(err as Error).message}`,
      { cause: err, details: { ledger: location } },
    );
  }
  if (policy !== 'noeviction') {
    client.disconnect();
    throw new GlimpseError(
      'GLIMPSE_E_LEDGER_UNSAFE',
      `Expected maxmemory-policy noeviction on the Redis server at ${location} but it is ${policy ?? 'unknown'} (an evicting server can lose shards and leases)`,
      { details: { ledger: location, policy: policy ?? null } },
    );
  }
  return new BullmqJobStore(client, url, location, prefix);
}

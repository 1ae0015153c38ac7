/**
 * The SQLite ledger: one file (WAL, `synchronous=FULL`), every state change in a `BEGIN IMMEDIATE`
 * transaction, so any number of local worker processes can share it. The only importer of better-sqlite3.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
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
import { SCHEMA, SCHEMA_VERSION, SQL } from './sqlite-schema.js';
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

interface ShardRow {
  idx: number;
  id: string;
  descriptor: string;
  state: ShardState;
  failures: number;
  worker: string | null;
  lease_expires_at: number | null;
  result: string | null;
  reason: string | null;
  finished_at: number | null;
}

interface AttemptRow {
  shard: number;
  attempt: number;
  worker: string;
  claimed_at: number;
  outcome: AttemptOutcome;
  code: string | null;
  message: string | null;
  ended_at: number | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();

function toAttempt(r: AttemptRow): AttemptRecord {
  return {
    attempt: r.attempt,
    worker: r.worker,
    claimedAt: iso(r.claimed_at),
    outcome: r.outcome,
    ...(r.code !== null ? { code: r.code } : {}),
    ...(r.message !== null ? { message: r.message } : {}),
    ...(r.ended_at !== null ? { endedAt: iso(r.ended_at) } : {}),
  };
}

class SqliteJobStore implements JobStore {
  readonly kind = 'sqlite';
  private readonly definitions = new Map<string, JobDefinition>();
  private closed = false;

  constructor(
    private readonly db: Database.Database,
    readonly location: string,
  ) {}

  private run<T>(what: string, fn: () => T): T {
    if (this.closed)
      throw new GlimpseError(
        'GLIMPSE_E_LEDGER_UNAVAILABLE',
        `Expected an open ledger for ${what} but ${this.location} was closed`,
      );
    try {
      return fn();
    } catch (err) {
      if (err instanceof GlimpseError) throw err;
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && code.startsWith('SQLITE_')) {
        throw new GlimpseError(
          'GLIMPSE_E_LEDGER_UNAVAILABLE',
          `Expected to ${what} in the ledger ${this.location} but SQLite failed: ${(err as Error).message} (${code})`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /** Runs `fn` in a BEGIN IMMEDIATE transaction (the write lock is taken first: no upgrade deadlocks). */
  private tx<T>(what: string, fn: () => T): T {
    return this.run(what, () => this.db.transaction(fn).immediate());
  }

  private definition(name: string): JobDefinition {
    const cached = this.definitions.get(name);
    if (cached) return cached;
    const row = this.db.prepare<[string], { definition: string }>(SQL.getJob).get(name);
    if (!row) throw jobNotFound(name, this.location);
    const def = JSON.parse(row.definition) as JobDefinition;
    this.definitions.set(name, def);
    return def;
  }

  async createJob(
    definition: JobDefinition,
    shards: readonly ShardDescriptor[],
  ): Promise<{ created: boolean }> {
    assertJobDefinition(definition);
    assertShards(shards);
    return this.tx('create a job', () => {
      const row = this.db.prepare<[string], { definition: string }>(SQL.getJob).get(definition.name);
      if (row) {
        const existing = JSON.parse(row.definition) as JobDefinition;
        const descriptors = this.db
          .prepare<[string], { descriptor: string }>(SQL.descriptors)
          .all(definition.name)
          .map((r) => JSON.parse(r.descriptor) as ShardDescriptor);
        assertSameJob({ definition: existing, shards: descriptors }, { definition, shards });
        return { created: false };
      }
      this.db
        .prepare(SQL.insertJob)
        .run(definition.name, JSON.stringify(definition), shards.length, Date.now());
      const insert = this.db.prepare(SQL.insertShard);
      shards.forEach((s, i) => insert.run(definition.name, i, s.id, JSON.stringify(s)));
      return { created: true };
    });
  }

  async getJob(name: string): Promise<JobDefinition> {
    assertJobName(name);
    return this.run('read a job', () => this.definition(name));
  }

  async listJobs(): Promise<string[]> {
    return this.run('list jobs', () =>
      this.db
        .prepare<[], { name: string }>(SQL.listJobs)
        .all()
        .map((r) => r.name),
    );
  }

  /** Expired leases → PENDING (a failed attempt) or FAILED when attempts are used up. In a transaction. */
  private expire(job: string, def: JobDefinition, now: number): void {
    const rows = this.db
      .prepare<[string, number], { idx: number; attempt: number; failures: number; worker: string | null }>(
        SQL.expired,
      )
      .all(job, now);
    for (const r of rows) {
      const worker = r.worker ?? 'unknown';
      this.db
        .prepare(SQL.endAttempt)
        .run(
          'lease-expired',
          'GLIMPSE_E_JOB_LEASE_LOST',
          leaseExpiredMessage(worker, def.leaseMs),
          now,
          job,
          r.idx,
          r.attempt,
        );
      const failures = r.failures + 1;
      if (failures >= def.maxAttempts) {
        const attempts = this.attemptsOf(job, r.idx);
        this.db.prepare(SQL.toFailed).run(failures, failureReason(attempts, failures), now, job, r.idx);
      } else {
        this.db.prepare(SQL.toPending).run(failures, now, job, r.idx);
      }
    }
  }

  private attemptsOf(job: string, idx: number): AttemptRecord[] {
    return this.db.prepare<[string, number], AttemptRow>(SQL.attemptsOf).all(job, idx).map(toAttempt);
  }

  async claim(job: string, options: { worker: string }): Promise<Lease | undefined> {
    assertJobName(job);
    const worker = String(options.worker);
    return this.tx('claim a shard', () => {
      const def = this.definition(job);
      const now = Date.now();
      this.expire(job, def, now);
      const next = this.db
        .prepare<[string, number], { idx: number; id: string; descriptor: string; attempt: number }>(SQL.next)
        .get(job, now);
      if (!next) return undefined;
      const attempt = next.attempt + 1;
      const token = randomUUID();
      const expiresAt = now + def.leaseMs;
      this.db.prepare(SQL.take).run(attempt, token, worker, expiresAt, job, next.idx);
      this.db.prepare(SQL.insertAttempt).run(job, next.idx, attempt, worker, now);
      const lease: Lease = {
        job,
        shard: JSON.parse(next.descriptor) as ShardDescriptor,
        index: next.idx,
        attempt,
        token,
        worker,
        leaseMs: def.leaseMs,
        expiresAt,
      };
      return lease;
    });
  }

  /** The holder's row, or LeaseLostError. Inside a transaction. */
  private holder(lease: Lease, now: number): { idx: number; attempt: number; failures: number } {
    const row = this.db
      .prepare<[string, number, string, number], { idx: number; attempt: number; failures: number }>(
        SQL.holder,
      )
      .get(lease.job, lease.index, lease.token, now);
    if (!row) throw new LeaseLostError(lease, 'it expired or the shard was taken over, reset or dropped');
    return row;
  }

  async heartbeat(lease: Lease): Promise<Lease> {
    return this.run('renew a lease', () => {
      const now = Date.now();
      const expiresAt = now + lease.leaseMs;
      const changed = this.db
        .prepare(SQL.renew)
        .run(expiresAt, lease.job, lease.index, lease.token, now).changes;
      if (changed !== 1)
        throw new LeaseLostError(lease, 'it expired or the shard was taken over, reset or dropped');
      return { ...lease, expiresAt };
    });
  }

  async complete(lease: Lease, result: ShardResult): Promise<void> {
    this.tx('complete a shard', () => {
      const now = Date.now();
      const row = this.holder(lease, now);
      this.db.prepare(SQL.toDone).run(JSON.stringify(result), now, lease.job, row.idx);
      this.db.prepare(SQL.endAttempt).run('done', null, null, now, lease.job, row.idx, row.attempt);
    });
  }

  async fail(
    lease: Lease,
    error: { code: string; message: string },
    options: { retryable?: boolean } = {},
  ): Promise<ShardState> {
    return this.tx('fail a shard', () => {
      const now = Date.now();
      const def = this.definition(lease.job);
      const row = this.holder(lease, now);
      this.db
        .prepare(SQL.endAttempt)
        .run('error', error.code, error.message, now, lease.job, row.idx, row.attempt);
      const failures = row.failures + 1;
      if (options.retryable === false || failures >= def.maxAttempts) {
        const reason = failureReason(this.attemptsOf(lease.job, row.idx), failures);
        this.db.prepare(SQL.toFailed).run(failures, reason, now, lease.job, row.idx);
        return 'FAILED';
      }
      this.db.prepare(SQL.toPending).run(failures, now + def.retryDelayMs, lease.job, row.idx);
      return 'PENDING';
    });
  }

  async release(lease: Lease): Promise<void> {
    this.tx('release a shard', () => {
      const now = Date.now();
      const row = this.holder(lease, now);
      this.db.prepare(SQL.endAttempt).run('released', null, null, now, lease.job, row.idx, row.attempt);
      this.db.prepare(SQL.toPending).run(row.failures, now, lease.job, row.idx);
    });
  }

  async shards(job: string): Promise<ShardRecord[]> {
    assertJobName(job);
    return this.run('list shards', () => {
      this.definition(job);
      const read = this.db.transaction(() => ({
        rows: this.db.prepare<[string], ShardRow>(SQL.allShards).all(job),
        attempts: this.db.prepare<[string], AttemptRow>(SQL.allAttempts).all(job),
      }));
      const { rows, attempts } = read.deferred();
      const byShard = new Map<number, AttemptRecord[]>();
      for (const a of attempts) {
        let list = byShard.get(a.shard);
        if (!list) byShard.set(a.shard, (list = []));
        list.push(toAttempt(a));
      }
      return rows.map((r): ShardRecord => ({
        id: r.id,
        index: r.idx,
        descriptor: JSON.parse(r.descriptor) as ShardDescriptor,
        state: r.state,
        failures: r.failures,
        attempts: byShard.get(r.idx) ?? [],
        ...(r.state === 'IN_PROGRESS' && r.worker !== null ? { worker: r.worker } : {}),
        ...(r.reason !== null && r.state === 'FAILED' ? { reason: r.reason } : {}),
        ...(r.result !== null && r.state === 'DONE' ? { result: JSON.parse(r.result) as ShardResult } : {}),
        ...(r.finished_at !== null && (r.state === 'DONE' || r.state === 'FAILED')
          ? { finishedAt: iso(r.finished_at) }
          : {}),
      }));
    });
  }

  async status(job: string): Promise<JobStatus> {
    const shards = await this.shards(job);
    const now = Date.now();
    const expired = this.run('read leases', () => {
      const rows = this.db.prepare<[string, number], { id: string }>(SQL.expiredIds).all(job, now);
      return new Set(rows.map((r) => r.id));
    });
    return summarizeJob(job, shards, now, expired);
  }

  async retryFailed(job: string): Promise<number> {
    assertJobName(job);
    return this.tx('retry failed shards', () => {
      this.definition(job);
      return this.db.prepare(SQL.retryFailed).run(job).changes;
    });
  }

  async reset(job: string): Promise<number> {
    assertJobName(job);
    return this.tx('reset a job', () => {
      this.definition(job);
      this.db.prepare(SQL.deleteAttempts).run(job);
      return this.db.prepare(SQL.reset).run(job).changes;
    });
  }

  async drop(job: string): Promise<boolean> {
    assertJobName(job);
    this.definitions.delete(job);
    return this.tx('drop a job', () => {
      this.db.prepare(SQL.deleteAttempts).run(job);
      this.db.prepare(SQL.deleteShards).run(job);
      return this.db.prepare(SQL.deleteJob).run(job).changes > 0;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}

/**
 * Opens (creating when missing) the SQLite ledger at `path`.
 *
 * @example
 *   const store = await openSqliteJobStore('/data/out/.glimpse/ledger.sqlite');
 */
export async function openSqliteJobStore(path: string): Promise<JobStore> {
  let db: Database.Database;
  try {
    mkdirSync(dirname(path), { recursive: true });
    db = new Database(path, { timeout: 30_000 });
  } catch (err) {
    throw new GlimpseError(
      'GLIMPSE_E_LEDGER_UNAVAILABLE',
      `Expected to open the SQLite ledger ${path} but ${(err as Error).message}`,
      { cause: err, details: { path } },
    );
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.transaction(() => {
      db.exec(SCHEMA);
      db.prepare(SQL.setVersion).run(String(SCHEMA_VERSION));
    }).immediate();
    const version = Number(db.prepare<[], { value: string }>(SQL.getVersion).get()?.value);
    if (version !== SCHEMA_VERSION) {
      throw new GlimpseError(
        'GLIMPSE_E_LEDGER_UNAVAILABLE',
        `Expected a ledger of schema version ${SCHEMA_VERSION} at ${path} but it has version ${version} (written by another glimpse version)`,
        { details: { path } },
      );
    }
  } catch (err) {
    db.close();
    if (err instanceof GlimpseError) throw err;
    throw new GlimpseError(
      'GLIMPSE_E_LEDGER_UNAVAILABLE',
      `Expected ${path} to be a SQLite ledger but ${(err as Error).message}`,
      { cause: err, details: { path } },
    );
  }
  return new SqliteJobStore(db, path);
}

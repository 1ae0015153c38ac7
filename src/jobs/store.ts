/**
 * The job ledger: one `JobStore` interface, one factory per datastore. SQLite (embedded, a file; safe for
 * several local worker processes) is the default; BullMQ on Redis serves workers on many machines. Both
 * pass the same contract suite (`test/jobs-contract.test.ts`).
 */
import { resolve } from 'node:path';
import { invalidParameterError } from '../core/validate.js';
import type {
  JobDefinition,
  JobStatus,
  Lease,
  ShardDescriptor,
  ShardRecord,
  ShardResult,
  ShardState,
} from './types.js';

export { LeaseLostError, summarizeJob } from './ledger/shared.js';
export type * from './types.js';

/**
 * A ledger of jobs and their shards. Every call is safe from several processes (and, for Redis, machines)
 * at once. A claim returns a `Lease`; its holder renews it (`heartbeat`) every `leaseMs / 2` and ends it
 * with `complete`, `fail` or `release`. A lease that was not renewed in time is lost: the shard goes back
 * to PENDING (the attempt counts as failed) and the old holder's calls throw `LeaseLostError` (fencing).
 */
export interface JobStore {
  /** `sqlite` or `redis`. */
  readonly kind: 'sqlite' | 'redis';
  /** Where the ledger is (a file path, or the Redis URL without its password), for messages. */
  readonly location: string;

  /**
   * Adds a job and its shards (all PENDING). Idempotent: the same definition and shards again is a no-op
   * (`created: false`, the job resumes); other settings throw GLIMPSE_E_JOB_CONFLICT.
   */
  createJob(definition: JobDefinition, shards: readonly ShardDescriptor[]): Promise<{ created: boolean }>;
  /** The job's definition; GLIMPSE_E_JOB_NOT_FOUND when there is none. */
  getJob(name: string): Promise<JobDefinition>;
  /** Names of the jobs in this ledger, sorted. */
  listJobs(): Promise<string[]>;

  /**
   * Claims the next PENDING shard (lowest first) for `worker`, or `undefined` when none is claimable now
   * (all taken, finished, or waiting for a retry delay or an expired lease to be noticed). Expired leases
   * are returned to PENDING (counted as failed attempts), or FAILED when attempts are used up.
   */
  claim(job: string, options: { worker: string }): Promise<Lease | undefined>;
  /** Renews the lease for another `leaseMs`; LeaseLostError when it is no longer held. */
  heartbeat(lease: Lease): Promise<Lease>;
  /** Marks the shard DONE with its result; LeaseLostError (and nothing changes) when the lease is lost. */
  complete(lease: Lease, result: ShardResult): Promise<void>;
  /**
   * Records the attempt's error. The shard goes back to PENDING (after `retryDelayMs`) while attempts
   * remain and `retryable` is not false, else FAILED for good. Returns the new state.
   */
  fail(
    lease: Lease,
    error: { code: string; message: string },
    options?: { retryable?: boolean },
  ): Promise<ShardState>;
  /** Gives the shard back to PENDING without counting a failure (graceful shutdown). */
  release(lease: Lease): Promise<void>;

  /** Every shard in order, with its attempts. */
  shards(job: string): Promise<ShardRecord[]>;
  /** Counts per state, speed, ETA, failed shards with reasons. */
  status(job: string): Promise<JobStatus>;
  /** FAILED shards back to PENDING with a fresh set of attempts (their history kept). Returns how many. */
  retryFailed(job: string): Promise<number>;
  /** Every shard back to PENDING, attempts and results cleared (the definition kept). Returns how many. */
  reset(job: string): Promise<number>;
  /** Removes the job and its shards from the ledger. Returns false when there was none. */
  drop(job: string): Promise<boolean>;
  /** Stops timers and closes connections (leases held are not released). */
  close(): Promise<void>;
}

/** A parsed ledger URL. */
export type LedgerLocation =
  | { readonly kind: 'sqlite'; readonly path: string }
  | { readonly kind: 'redis'; readonly url: string; readonly prefix: string };

/**
 * Parses a ledger URL: `sqlite:<path>` (or a plain path) → SQLite; `redis://[user:pass@]host:port[/db]`
 * or `rediss://…` → BullMQ on Redis (`?prefix=name` sets the key prefix, default `glimpse`).
 *
 * @example
 *   parseLedgerUrl('sqlite:out/.glimpse/ledger.sqlite'); // { kind: 'sqlite', path: '/abs/out/.glimpse/ledger.sqlite' }
 *   parseLedgerUrl('redis://10.0.0.5:6379/2');          // { kind: 'redis', url: 'redis://10.0.0.5:6379/2', prefix: 'glimpse' }
 */
export function parseLedgerUrl(url: string): LedgerLocation {
  if (typeof url !== 'string' || url.trim() === '')
    throw invalidParameterError(
      'ledger',
      'a ledger URL (sqlite:<path>, a path, or redis://host:port/db)',
      url,
    );
  if (/^rediss?:\/\//i.test(url)) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw invalidParameterError('ledger', 'a valid redis://host:port/db URL', url);
    }
    const prefix = parsed.searchParams.get('prefix') ?? 'glimpse';
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(prefix))
      throw invalidParameterError('ledger prefix', 'letters, digits, ".", "_" or "-"', prefix);
    if (parsed.pathname !== '' && parsed.pathname !== '/' && !/^\/\d+$/.test(parsed.pathname))
      throw invalidParameterError(
        'ledger',
        'a redis URL whose path is a database number (redis://host:port/0)',
        url,
      );
    parsed.search = '';
    return { kind: 'redis', url: parsed.toString(), prefix };
  }
  let path = url;
  if (/^sqlite:/i.test(path)) path = path.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
  else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path))
    throw invalidParameterError('ledger', 'a sqlite:<path>, a path, or a redis:// URL', url);
  if (path === '') throw invalidParameterError('ledger', 'a SQLite file path after sqlite:', url);
  return { kind: 'sqlite', path: resolve(path) };
}

/** Options for opening a ledger. */
export interface CreateJobStoreOptions {
  /** Redis: milliseconds to wait for the first connection (default 5000). */
  connectTimeoutMs?: number;
}

/**
 * Opens the ledger at `url` (see `parseLedgerUrl`). SQLite files are created when missing; a Redis server
 * must use `maxmemory-policy noeviction` (anything else throws GLIMPSE_E_LEDGER_UNSAFE).
 *
 * @example
 *   const store = await createJobStore('sqlite:embeddings/.glimpse/ledger.sqlite');
 *   const lease = await store.claim('photos', { worker: 'host-1:4242' });
 *   if (lease) await store.complete(lease, { rows: 10_000, failed: 0, files: [] });
 *   await store.close();
 */
export async function createJobStore(url: string, options: CreateJobStoreOptions = {}): Promise<JobStore> {
  const location = parseLedgerUrl(url);
  if (location.kind === 'sqlite') {
    const { openSqliteJobStore } = await import('./ledger/sqlite.js');
    return openSqliteJobStore(location.path);
  }
  const { openBullmqJobStore } = await import('./ledger/bullmq.js');
  return openBullmqJobStore(location.url, {
    prefix: location.prefix,
    connectTimeoutMs: options.connectTimeoutMs ?? 5000,
  });
}

/** A ledger URL with any password hidden (for logs and messages). */
export function redactLedgerUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/)([^@/]*)@/i, (_m, scheme: string, auth: string) =>
    auth.includes(':') ? `${scheme}${auth.split(':')[0]}:***@` : `${scheme}***@`,
  );
}

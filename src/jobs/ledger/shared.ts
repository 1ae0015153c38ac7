/**
 * What every ledger backend shares: the lease-lost control-flow error, validation of definitions and
 * shards, and the status summary computed from shard records.
 */
import { GlimpseError, type GlimpseErrorOptions } from '../../errors/index.js';
import {
  assertPositiveInteger,
  invalidParameterError,
  isNonNegativeInteger,
  isPlainObject,
} from '../../core/validate.js';
import type {
  AttemptRecord,
  JobDefinition,
  JobStatus,
  Lease,
  ShardDescriptor,
  ShardRecord,
  ShardState,
} from '../types.js';

/**
 * Control flow, not failure: the caller's lease on a shard is gone (it expired, or the shard was taken
 * over, reset or dropped), so it may not heartbeat, complete, fail or release it. The holder drops the
 * shard's work and moves on; whoever holds the shard now redoes it.
 *
 * @example
 *   try { await store.complete(lease, result); }
 *   catch (err) { if (err instanceof LeaseLostError) log(`shard ${lease.shard.id} was taken over`); else throw err; }
 */
export class LeaseLostError extends GlimpseError {
  constructor(
    lease: Pick<Lease, 'job' | 'shard' | 'attempt'>,
    why: string,
    options: GlimpseErrorOptions = {},
  ) {
    super(
      'GLIMPSE_E_JOB_LEASE_LOST',
      `Expected to hold the lease of shard ${lease.shard.id} of job ${lease.job} (attempt ${lease.attempt}) but ${why}`,
      {
        ...options,
        details: { job: lease.job, shard: lease.shard.id, attempt: lease.attempt, ...options.details },
      },
    );
    this.name = 'LeaseLostError';
  }
}

const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const SHARD_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** Throws the standard message unless `name` is a valid job name. */
export function assertJobName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !JOB_NAME.test(name)) {
    throw invalidParameterError(
      'job',
      'a job name of 1 to 100 letters, digits, ".", "_" or "-" starting with a letter or digit',
      name,
    );
  }
}

/** Validates a job definition (name, retry policy, payload). */
export function assertJobDefinition(definition: JobDefinition): void {
  if (!isPlainObject(definition))
    throw invalidParameterError('definition', 'a job definition object', definition);
  assertJobName(definition.name);
  assertPositiveInteger('maxAttempts', definition.maxAttempts, 1000);
  assertPositiveInteger('leaseMs', definition.leaseMs, 24 * 3600 * 1000);
  if (definition.leaseMs < 100)
    throw invalidParameterError('leaseMs', 'at least 100 milliseconds', definition.leaseMs);
  if (!isNonNegativeInteger(definition.retryDelayMs))
    throw invalidParameterError('retryDelayMs', 'a non-negative integer', definition.retryDelayMs);
  if (!isPlainObject(definition.payload))
    throw invalidParameterError('payload', 'a JSON object', definition.payload);
}

/** Validates shard descriptors: unique ids, ranges with `0 <= start < end`, tar URLs. */
export function assertShards(shards: readonly ShardDescriptor[]): void {
  if (!Array.isArray(shards) || shards.length === 0)
    throw invalidParameterError('shards', 'a non-empty array of shard descriptors', shards);
  const ids = new Set<string>();
  shards.forEach((s, i) => {
    if (!isPlainObject(s)) throw invalidParameterError(`shards[${i}]`, 'a shard descriptor', s);
    if (typeof s.id !== 'string' || !SHARD_ID.test(s.id))
      throw invalidParameterError(`shards[${i}].id`, 'a shard id of letters, digits, ".", "_" or "-"', s.id);
    if (ids.has(s.id)) throw invalidParameterError(`shards[${i}].id`, 'a unique shard id', s.id);
    ids.add(s.id);
    if (s.kind === 'range') {
      if (!isNonNegativeInteger(s.start) || !isNonNegativeInteger(s.end) || s.end <= s.start)
        throw invalidParameterError(
          `shards[${i}]`,
          'a range with integers 0 <= start < end',
          `${s.start}..${s.end}`,
        );
    } else if (s.kind === 'tar') {
      if (typeof s.url !== 'string' || s.url === '')
        throw invalidParameterError(`shards[${i}].url`, 'the URL or path of a tar file', s.url);
    } else {
      throw invalidParameterError(`shards[${i}].kind`, '"range" or "tar"', (s as { kind: unknown }).kind);
    }
  });
}

/** Canonical JSON (sorted keys) used to compare definitions and shard lists. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isPlainObject(value)) {
    const keys = Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * Throws GLIMPSE_E_JOB_CONFLICT when a job is planned again with other settings or shards than the ledger
 * holds (re-running the same command is fine: it resumes).
 */
export function assertSameJob(
  existing: { definition: JobDefinition; shards: readonly ShardDescriptor[] },
  wanted: { definition: JobDefinition; shards: readonly ShardDescriptor[] },
): void {
  const differ: string[] = [];
  for (const key of ['maxAttempts', 'leaseMs', 'retryDelayMs'] as const) {
    if (existing.definition[key] !== wanted.definition[key])
      differ.push(`${key} (${existing.definition[key]} in the ledger, ${wanted.definition[key]} now)`);
  }
  const a = existing.definition.payload;
  const b = wanted.definition.payload;
  for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (canonicalJson(a[key]) !== canonicalJson(b[key])) {
      const show = (v: unknown): string => {
        const s = canonicalJson(v);
        return s.length > 60 ? `${s.slice(0, 57)}...` : s;
      };
      differ.push(`${key} (${show(a[key])} in the ledger, ${show(b[key])} now)`);
    }
  }
  if (canonicalJson(existing.shards) !== canonicalJson(wanted.shards))
    differ.push(`shards (${existing.shards.length} in the ledger, ${wanted.shards.length} now)`);
  if (differ.length > 0) {
    throw new GlimpseError(
      'GLIMPSE_E_JOB_CONFLICT',
      `Expected job ${wanted.definition.name} to match the job of that name in the ledger but these differ: ${differ.join('; ')}`,
      { details: { job: wanted.definition.name } },
    );
  }
}

/** The error for a job the ledger does not have. */
export function jobNotFound(name: string, location: string): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_JOB_NOT_FOUND',
    `Expected a job named ${name} in the ledger ${location} but it has none`,
    {
      details: { job: name },
    },
  );
}

/**
 * Why a shard failed for good, from its attempts: "lease expired 3 times (…)" when every failed attempt
 * lost its lease, else the count and the last error.
 */
export function failureReason(
  attempts: readonly AttemptRecord[],
  failures: number,
  final?: AttemptRecord,
): string {
  const failed = attempts
    .filter((a) => a.outcome === 'error' || a.outcome === 'lease-expired')
    .slice(-failures);
  const last = final ?? failed[failed.length - 1];
  const expired = failed.filter((a) => a.outcome === 'lease-expired').length;
  if (failed.length > 0 && expired === failed.length) {
    return `lease expired ${expired} time${expired === 1 ? '' : 's'} (the worker died or stopped sending heartbeats each time)`;
  }
  const n = Math.max(failures, 1);
  const what =
    last === undefined ? 'unknown error' : `${last.code ?? 'GLIMPSE_E_INTERNAL'}: ${last.message ?? ''}`;
  return n === 1 ? `failed: ${what}` : `${n} attempts failed (${expired} lease expiries); last: ${what}`;
}

/** The message recorded for an attempt whose lease expired. */
export function leaseExpiredMessage(worker: string, leaseMs: number): string {
  return `lease of ${leaseMs} ms expired without a heartbeat from worker ${worker}`;
}

/**
 * Counts, speed and problems from shard records (every backend's `status()`).
 *
 * @example
 *   const s = summarizeJob('photos', await store.shards('photos'));
 *   console.log(s.counts.DONE, '/', s.total, 'ETA', s.etaSeconds);
 */
export function summarizeJob(
  job: string,
  shards: readonly ShardRecord[],
  now = Date.now(),
  expired: ReadonlySet<string> = new Set(),
): JobStatus {
  const counts: Record<ShardState, number> = { PENDING: 0, IN_PROGRESS: 0, DONE: 0, FAILED: 0 };
  let rows = 0;
  let failedSamples = 0;
  let firstClaim = Infinity;
  let lastFinish = -Infinity;
  let retrying = 0;
  const failed: { id: string; index: number; reason: string; attempts: readonly AttemptRecord[] }[] = [];
  const inProgress: { id: string; index: number; worker: string; attempt: number; leaseExpired: boolean }[] =
    [];
  for (const s of shards) {
    counts[s.state]++;
    for (const a of s.attempts) {
      const t = Date.parse(a.claimedAt);
      if (Number.isFinite(t)) firstClaim = Math.min(firstClaim, t);
    }
    if (s.finishedAt !== undefined && s.state !== 'PENDING') {
      const t = Date.parse(s.finishedAt);
      if (Number.isFinite(t)) lastFinish = Math.max(lastFinish, t);
    }
    if (s.state === 'DONE' && s.result) {
      rows += s.result.rows;
      failedSamples += s.result.failed;
    }
    if (s.state === 'PENDING' && s.failures > 0) retrying++;
    if (s.state === 'FAILED')
      failed.push({ id: s.id, index: s.index, reason: s.reason ?? 'unknown', attempts: s.attempts });
    if (s.state === 'IN_PROGRESS') {
      const last = s.attempts[s.attempts.length - 1];
      inProgress.push({
        id: s.id,
        index: s.index,
        worker: s.worker ?? last?.worker ?? 'unknown',
        attempt: last?.attempt ?? 0,
        leaseExpired: expired.has(s.id),
      });
    }
  }
  const finished = counts.PENDING === 0 && counts.IN_PROGRESS === 0;
  const end = finished && Number.isFinite(lastFinish) ? lastFinish : now;
  const seconds = Number.isFinite(firstClaim) ? Math.max((end - firstClaim) / 1000, 1e-3) : 0;
  const shardsPerSecond = seconds > 0 ? counts.DONE / seconds : 0;
  const rowsPerSecond = seconds > 0 ? rows / seconds : 0;
  const left = counts.PENDING + counts.IN_PROGRESS;
  const status: JobStatus = {
    job,
    total: shards.length,
    counts,
    finished,
    rows,
    failedSamples,
    shardsPerSecond,
    rowsPerSecond,
    retrying,
    failed,
    inProgress,
    ...(Number.isFinite(firstClaim) ? { startedAt: new Date(firstClaim).toISOString() } : {}),
    ...(Number.isFinite(lastFinish) ? { lastFinishedAt: new Date(lastFinish).toISOString() } : {}),
    ...(left === 0 ? { etaSeconds: 0 } : shardsPerSecond > 0 ? { etaSeconds: left / shardsPerSecond } : {}),
  };
  return status;
}

/**
 * The vocabulary of jobs and ledgers: shard descriptors, states, leases, attempts. Plain JSON data, so a
 * shard or a job definition travels unchanged between processes, machines and ledger backends.
 */

/** Shard states. `PENDING → IN_PROGRESS → DONE`; `IN_PROGRESS → FAILED → PENDING` while attempts remain. */
export const SHARD_STATES = ['PENDING', 'IN_PROGRESS', 'DONE', 'FAILED'] as const;
export type ShardState = (typeof SHARD_STATES)[number];

/**
 * One unit of work. `range`: samples `[start, end)` of the input's stable sorted order (folders,
 * manifests). `tar`: one WebDataset tar file, read whole.
 */
export type ShardDescriptor =
  | { readonly id: string; readonly kind: 'range'; readonly start: number; readonly end: number }
  | {
      readonly id: string;
      readonly kind: 'tar';
      readonly url: string;
      /** The file's size when the job was planned (a shard whose size changed is refused). */
      readonly bytes?: number;
    };

/** A JSON object (what a ledger stores for a job's payload or a shard's result). */
export type JsonObject = { readonly [key: string]: unknown };

/** What a ledger knows about a job: its retry policy and an opaque payload (the embed settings). */
export interface JobDefinition {
  /** Job name: letters, digits, `.`, `_`, `-` (1–100 characters, starting with a letter or digit). */
  readonly name: string;
  /** Failed attempts (errors and expired leases) after which a shard is FAILED for good. */
  readonly maxAttempts: number;
  /** Lease length in milliseconds; holders renew it every `leaseMs / 2`. */
  readonly leaseMs: number;
  /** Delay before a shard that failed with an error may be claimed again (0: at once). */
  readonly retryDelayMs: number;
  /** What the workers need to run a shard (plain JSON; the ledger only stores and compares it). */
  readonly payload: JsonObject;
}

/** A claim on one shard. Every ledger call about the shard presents it; a stale one is refused. */
export interface Lease {
  readonly job: string;
  readonly shard: ShardDescriptor;
  /** Position of the shard in the job (0-based); also its output partition number. */
  readonly index: number;
  /** Claim number of this shard, 1-based and increasing: the fencing token's ordinal part. */
  readonly attempt: number;
  /** Random token of this claim: only its holder may heartbeat, complete, fail or release. */
  readonly token: string;
  readonly worker: string;
  readonly leaseMs: number;
  /** When the lease ends unless renewed (ms since the epoch, the claiming machine's clock). */
  readonly expiresAt: number;
}

/** What a finished shard reports (stored with DONE, summed by status, listed by the manifest). */
export interface ShardResult {
  /** Rows written (embedded samples). */
  readonly rows: number;
  /** Samples that failed and were recorded in `failures/`. */
  readonly failed: number;
  /** Files written, relative to the output. */
  readonly files: readonly string[];
  readonly [key: string]: unknown;
}

/** How an attempt ended. `running`: the claim is (or was last seen) live. */
export type AttemptOutcome = 'running' | 'done' | 'error' | 'lease-expired' | 'released';

/** One claim of a shard and how it ended: the ledger keeps every attempt's error. */
export interface AttemptRecord {
  readonly attempt: number;
  readonly worker: string;
  readonly claimedAt: string;
  readonly outcome: AttemptOutcome;
  readonly code?: string;
  readonly message?: string;
  readonly endedAt?: string;
}

/** A shard as the ledger sees it. */
export interface ShardRecord {
  readonly id: string;
  readonly index: number;
  readonly descriptor: ShardDescriptor;
  readonly state: ShardState;
  /** Failed attempts counted against `maxAttempts` (since the last retry-failed). */
  readonly failures: number;
  /** Every attempt, oldest first. */
  readonly attempts: readonly AttemptRecord[];
  /** The worker holding it, while IN_PROGRESS. */
  readonly worker?: string;
  /** Why it is FAILED for good. */
  readonly reason?: string;
  /** What the worker reported, when DONE. */
  readonly result?: ShardResult;
  /** When it became DONE or FAILED (ISO). */
  readonly finishedAt?: string;
}

/** Counts, speed and problems of a job (`glimpse job status`). */
export interface JobStatus {
  readonly job: string;
  readonly total: number;
  readonly counts: Readonly<Record<ShardState, number>>;
  /** Every shard is DONE or FAILED. */
  readonly finished: boolean;
  /** Rows written by DONE shards. */
  readonly rows: number;
  /** Samples recorded as failed by DONE shards. */
  readonly failedSamples: number;
  /** First claim and last finish (ISO), when any. */
  readonly startedAt?: string;
  readonly lastFinishedAt?: string;
  /** DONE shards per second since the first claim. */
  readonly shardsPerSecond: number;
  /** Rows per second since the first claim. */
  readonly rowsPerSecond: number;
  /** Seconds left at the current speed, when it is known. */
  readonly etaSeconds?: number;
  /** Shards waiting for another attempt after a failed one. */
  readonly retrying: number;
  /** FAILED shards with their reason and each attempt. */
  readonly failed: readonly {
    id: string;
    index: number;
    reason: string;
    attempts: readonly AttemptRecord[];
  }[];
  /** IN_PROGRESS shards with their holder; `leaseExpired` when the lease ran out and no one took it back yet. */
  readonly inProgress: readonly {
    id: string;
    index: number;
    worker: string;
    attempt: number;
    leaseExpired: boolean;
  }[];
}

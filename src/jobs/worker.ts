/**
 * A worker: claim a shard → embed it into its own file set → complete it, until the job has no work left.
 * Leases are renewed at half their length; a lost lease aborts the shard before any file takes its final
 * name (and `complete` would be refused anyway: fencing). On abort (SIGTERM) the current shard is released.
 */
import { availableParallelism, hostname } from 'node:os';
import { GlimpseError, UnrecoverableError, isGlimpseError, toGlimpseError } from '../errors/index.js';
import { assertPositiveInteger } from '../core/validate.js';
import { DecodePool } from '../decode/pool.js';
import type { OpenedSource } from '../sources/index.js';
import type { WebDatasetSource } from '../sources/webdataset.js';
import type { StorageOptions } from '../storage/index.js';
import { openOutput, type OutputTarget } from '../sinks/output.js';
import { loadModel, type ClipModel } from '../pipeline/model.js';
import { clearShardFiles, embedShard, shardFiles } from '../pipeline/shard.js';
import { createJobStore, LeaseLostError, type JobStore } from './store.js';
import {
  embedPayload,
  inputDigest,
  JOB_OUTPUT_ENTRIES,
  openJobSource,
  type EmbedJobPayload,
} from './plan.js';
import { commitMarker, finalizeJob, type JobManifest } from './manifest.js';
import type { JobDefinition, Lease, ShardResult } from './types.js';
import type { Sample } from '../sources/types.js';

/** What a worker reports as it goes. */
export type WorkerEvent =
  | { type: 'ready'; worker: string; job: string }
  | { type: 'claimed'; worker: string; shard: string; attempt: number }
  | { type: 'done'; worker: string; shard: string; rows: number; failed: number; seconds: number }
  | { type: 'failed'; worker: string; shard: string; code: string; message: string; state: string }
  | { type: 'lost'; worker: string; shard: string; message: string }
  | { type: 'released'; worker: string; shard: string }
  | { type: 'waiting'; worker: string; message: string }
  | { type: 'finished'; worker: string; job: string; manifest: boolean };

export interface RunWorkerOptions {
  /** Ledger URL or an open store. */
  ledger: string | JobStore;
  /** Job name. */
  job: string;
  /** This worker's name in the ledger (default `<host>:<pid>`). */
  worker?: string;
  /** Stop after this many shards (default: until no work is left). */
  maxShards?: number;
  /** Stops the worker: the current shard is released, its temp files removed. */
  signal?: AbortSignal;
  /** Decode worker threads (default: cores). */
  numPreproWorkers?: number;
  /** ONNX Runtime intra-op threads (default: cores). */
  intraOpThreads?: number;
  cacheDir?: string;
  offline?: boolean;
  /** S3 endpoint and credentials, HTTP timeouts (default: the environment's, as the AWS SDK reads them). */
  storage?: StorageOptions;
  /** Parent of the local staging folder of an `s3://` output (default: the OS temp folder). */
  stagingDir?: string;
  /** Milliseconds between claims while other workers hold the remaining shards (default leaseMs / 4, at most 1 s). */
  pollMs?: number;
  /** Write `manifest.json` (and `glimpse.json`) when the job is finished (default true). */
  finalize?: boolean;
  /** Consecutive failed shards after which the worker stops with the last error (default 5). */
  maxConsecutiveFailures?: number;
  /**
   * How long claims wait out an unavailable ledger (a Redis restart) before the worker gives up, in
   * milliseconds (default: the lease length, at least 30 s). A held shard waits at most until its lease ends.
   */
  ledgerPatienceMs?: number;
  onEvent?: (event: WorkerEvent) => void;
}

export interface WorkerResult {
  readonly worker: string;
  /** Shards this worker finished. */
  readonly shards: number;
  readonly rows: number;
  readonly failedSamples: number;
  /** Shards whose lease this worker lost. */
  readonly lost: number;
  /** Shards that failed in this worker. */
  readonly failedShards: number;
  /** Why the worker stopped. */
  readonly stoppedBy: 'finished' | 'max-shards' | 'signal';
  /** The manifest, when this worker found the job finished and wrote it. */
  readonly manifest?: JobManifest;
}

/** Everything a worker loads once and reuses for every shard. */
interface WorkerContext {
  payload: EmbedJobPayload;
  /** The whole input (folder, manifests), opened once; undefined for WebDataset jobs (one tar per shard). */
  source: OpenedSource | undefined;
  model: ClipModel;
  pool: DecodePool | undefined;
  /** Where shard files go: the output folder, or a staging folder uploaded to `s3://`. */
  output: OutputTarget;
  storage: StorageOptions | undefined;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

async function openContext(definition: JobDefinition, options: RunWorkerOptions): Promise<WorkerContext> {
  const payload = embedPayload(definition);
  const storage = options.storage;
  // A WebDataset job opens each tar when its shard is claimed (its size is checked then); other inputs
  // are listed once here and must still be what the job was planned with.
  const source =
    payload.inputFormat === 'webdataset'
      ? undefined
      : await openJobSource(payload, storage !== undefined ? { storage } : {});
  let output: OutputTarget | undefined;
  try {
    if (source) {
      const digest = inputDigest(source);
      if (digest !== payload.inputDigest || (source.size ?? null) !== payload.sampleCount) {
        throw new UnrecoverableError(
          'GLIMPSE_E_JOB_INPUT_CHANGED',
          `Expected the input ${String(payload.input)} to hold the ${payload.sampleCount} samples job ${definition.name} was planned with but it now holds ${source.size ?? 'an unknown number of'} (or its files changed)`,
        );
      }
    }
    const cores = availableParallelism();
    const model = await loadModel(payload.model, {
      dtype: payload.dtype,
      intraOpThreads: options.intraOpThreads ?? cores,
      ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      ...(options.offline !== undefined ? { offline: options.offline } : {}),
    });
    if (model.fingerprint.hash !== payload.fingerprint.hash) {
      await model.close();
      throw new UnrecoverableError(
        'GLIMPSE_E_JOB_MODEL_MISMATCH',
        `Expected model ${payload.model} (${payload.dtype}) to have fingerprint ${payload.fingerprint.hash.slice(0, 12)} as when job ${definition.name} was planned but it has ${model.fingerprint.hash.slice(0, 12)}`,
      );
    }
    if (payload.enableImage) await model.visionSession();
    if (payload.enableText) {
      await model.textSession();
      await model.tokenizer();
    }
    output = await openOutput(payload.output, {
      entries: JOB_OUTPUT_ENTRIES,
      ...(storage !== undefined ? { storage } : {}),
      ...(options.stagingDir !== undefined ? { stagingDir: options.stagingDir } : {}),
    });
    const pool = payload.enableImage
      ? new DecodePool({
          preprocess: model.folder.preprocess,
          workers: options.numPreproWorkers ?? cores,
          limits: payload.limits,
          mode: payload.preprocessMode,
        })
      : undefined;
    return { payload, source, model, pool, output, storage };
  } catch (err) {
    source?.close?.();
    await output?.close();
    throw err;
  }
}

async function closeContext(ctx: WorkerContext | undefined): Promise<void> {
  if (!ctx) return;
  await ctx.pool?.close();
  await ctx.model.close();
  ctx.source?.close?.();
  await ctx.output.close();
}

/** The samples of one shard: a range of the job's source, or a tar opened for this shard alone. */
async function shardSamples(
  ctx: WorkerContext,
  lease: Lease,
  signal: AbortSignal,
): Promise<{ source: OpenedSource; read: AsyncIterable<Sample>; capacity: number; own: boolean }> {
  const shard = lease.shard;
  if (shard.kind === 'range') {
    if (!ctx.source) {
      throw new UnrecoverableError(
        'GLIMPSE_E_NOT_SUPPORTED',
        `Expected a tar shard for a WebDataset job but shard ${shard.id} is a range shard`,
      );
    }
    return {
      source: ctx.source,
      read: ctx.source.read({ start: shard.start, end: shard.end, signal }),
      capacity: shard.end - shard.start,
      own: false,
    };
  }
  if (ctx.payload.inputFormat !== 'webdataset') {
    throw new UnrecoverableError(
      'GLIMPSE_E_NOT_SUPPORTED',
      `Expected a range shard for input format ${ctx.payload.inputFormat} but shard ${shard.id} is a tar shard`,
    );
  }
  const source = await openJobSource(ctx.payload, {
    input: shard.url,
    ...(ctx.storage !== undefined ? { storage: ctx.storage } : {}),
  });
  const bytes = (source as OpenedSource & Partial<WebDatasetSource>).shardBytes?.[0];
  if (shard.bytes !== undefined && bytes !== shard.bytes) {
    source.close?.();
    throw new UnrecoverableError(
      'GLIMPSE_E_JOB_INPUT_CHANGED',
      `Expected the tar shard ${shard.url} to hold the ${shard.bytes} bytes it held when the job was planned but it holds ${bytes ?? 'an unknown number of'}`,
    );
  }
  return {
    source,
    read: source.read({ signal }),
    capacity: source.size ?? source.sizeBound ?? 1,
    own: true,
  };
}

/**
 * Embeds one claimed shard; `beforeCommit` proves the lease is still held right before files take their
 * final names (and, for an `s3://` output, again after the upload, right before the commit marker).
 */
async function runShard(
  ctx: WorkerContext,
  lease: Lease,
  signal: AbortSignal,
  beforeCommit: () => Promise<void>,
): Promise<ShardResult> {
  const { payload, output } = ctx;
  const started = performance.now();
  // Files of a shard the ledger does not call DONE are never trusted: remove them, temp files included
  // (on S3: the commit marker first, so a half-removed shard never looks committed).
  await clearShardFiles(output.dir, lease.index, payload.shardCount);
  if (output.remote)
    await output.remove([
      commitMarker(lease.index, payload.shardCount),
      ...shardFiles(lease.index, payload.shardCount),
    ]);
  const input = await shardSamples(ctx, lease, signal);
  try {
    const { stats, files } = await embedShard({
      model: ctx.model,
      pool: ctx.pool,
      samples: input.read,
      capacity: input.capacity,
      outDir: output.dir,
      partition: lease.index,
      partitionCount: payload.shardCount,
      enableImage: payload.enableImage,
      enableText: payload.enableText,
      enableMetadata: payload.enableMetadata,
      outputDtype: payload.outputDtype,
      batchSize: payload.batchSize,
      signal,
      ...(input.source.takeIssues ? { takeIssues: () => input.source.takeIssues?.() ?? [] } : {}),
      beforeCommit,
    });
    const result: ShardResult = {
      rows: stats.sample_count,
      failed: stats.failed_count,
      files,
      failuresByCode: stats.failures_by_code,
      seconds: (performance.now() - started) / 1000,
    };
    if (output.remote) {
      // Upload (stats last), prove the lease again, then the commit marker: only then may the ledger say DONE.
      await output.publish(files);
      signal.throwIfAborted();
      await beforeCommit();
      await output.writeFile(
        commitMarker(lease.index, payload.shardCount),
        JSON.stringify({
          shard: lease.shard.id,
          index: lease.index,
          rows: result.rows,
          failed: result.failed,
          files,
        }) + '\n',
      );
    }
    return result;
  } catch (err) {
    // The staging folder is this worker's own; a local output may already hold the next holder's files.
    if (output.remote)
      await clearShardFiles(output.dir, lease.index, payload.shardCount).catch(() => undefined);
    throw err;
  } finally {
    if (input.own) input.source.close?.();
  }
}

/**
 * Keeps a lease alive: renews it every `leaseMs / 2`. When it is lost (or cannot be renewed before it
 * ends) `lost` aborts the shard's signal. `renew()` renews at once (used right before the commit).
 */
class LeaseKeeper {
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private lostError: GlimpseError | undefined;
  readonly controller = new AbortController();

  constructor(
    private readonly store: JobStore,
    private lease: Lease,
  ) {
    this.timer = setInterval(() => void this.renew().catch(() => undefined), Math.max(25, lease.leaseMs / 2));
  }

  get current(): Lease {
    return this.lease;
  }

  get lost(): GlimpseError | undefined {
    return this.lostError;
  }

  /** Renews now (serialized with the timer); throws LeaseLostError once the lease is gone. */
  renew(): Promise<void> {
    const next = this.chain.then(async () => {
      if (this.lostError) throw this.lostError;
      try {
        this.lease = await this.store.heartbeat(this.lease);
      } catch (err) {
        if (err instanceof LeaseLostError || Date.now() >= this.lease.expiresAt) {
          this.lostError =
            err instanceof LeaseLostError
              ? err
              : new LeaseLostError(
                  this.lease,
                  `it could not be renewed before it ended (${(err as Error).message})`,
                  {
                    cause: err,
                  },
                );
          this.controller.abort(this.lostError);
          throw this.lostError;
        }
        // A transient ledger error: the lease is still ours until it ends; the next tick retries.
        throw err;
      }
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * Retries `call` while the ledger is unavailable (GLIMPSE_E_LEDGER_UNAVAILABLE: a Redis restart, a network
 * blip), with backoff, until `giveUpAt` (ms since the epoch) or an abort; other errors are thrown at once.
 */
async function patiently<T>(
  call: () => Promise<T>,
  giveUpAt: number,
  signal: AbortSignal | undefined,
  onWait: (message: string) => void,
): Promise<T> {
  let delay = 250;
  for (;;) {
    try {
      return await call();
    } catch (err) {
      if (
        !isGlimpseError(err, 'GLIMPSE_E_LEDGER_UNAVAILABLE') ||
        Date.now() + delay > giveUpAt ||
        signal?.aborted
      )
        throw err;
      onWait(`${err.message}; retrying in ${(delay / 1000).toFixed(2)} s`);
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 5000);
    }
  }
}

/** Test-only hook: `GLIMPSE_TEST_POISON_SHARD=<id>` kills the worker (SIGKILL) when it claims that shard. */
function poisonHook(shardId: string): void {
  if (process.env['GLIMPSE_TEST_POISON_SHARD'] === shardId) process.kill(process.pid, 'SIGKILL');
}

/**
 * Runs a worker until the job has no work left (every shard DONE or FAILED), `maxShards` are done, or
 * `signal` aborts (the current shard is then released and its temp files removed). While other workers
 * hold the last shards it polls, so shards of workers that die come back and are finished here. The
 * worker that finds the job finished writes `manifest.json` (and `glimpse.json` when every shard is DONE).
 *
 * @example
 *   const controller = new AbortController();
 *   process.once('SIGTERM', () => controller.abort());
 *   const r = await runWorker({ ledger: 'redis://10.0.0.5:6379/0', job: 'laion-part1', signal: controller.signal });
 *   console.log(`${r.shards} shards, ${r.rows} rows`);
 */
export async function runWorker(options: RunWorkerOptions): Promise<WorkerResult> {
  if (options.maxShards !== undefined) assertPositiveInteger('maxShards', options.maxShards);
  const worker = options.worker ?? `${hostname()}:${process.pid}`;
  const signal = options.signal;
  const emit = options.onEvent ?? (() => undefined);
  const store = typeof options.ledger === 'string' ? await createJobStore(options.ledger) : options.ledger;
  const ownStore = typeof options.ledger === 'string';
  let ctx: WorkerContext | undefined;
  let shards = 0;
  let rows = 0;
  let failedSamples = 0;
  let lost = 0;
  let failedShards = 0;
  let consecutiveFailures = 0;
  const maxConsecutive = options.maxConsecutiveFailures ?? 5;
  let stoppedBy: WorkerResult['stoppedBy'] = 'finished';
  try {
    const definition = await store.getJob(options.job);
    embedPayload(definition);
    const pollMs = options.pollMs ?? Math.min(1000, Math.max(25, Math.floor(definition.leaseMs / 4)));
    const patience = options.ledgerPatienceMs ?? Math.max(definition.leaseMs, 30_000);
    const onWait = (message: string): void => emit({ type: 'waiting', worker, message });
    const finishedNow = async (): Promise<boolean> =>
      (await patiently(() => store.status(options.job), Date.now() + patience, signal, onWait)).finished;
    for (;;) {
      if (signal?.aborted) {
        stoppedBy = 'signal';
        break;
      }
      if (options.maxShards !== undefined && shards >= options.maxShards) {
        stoppedBy = 'max-shards';
        break;
      }
      if (!ctx) {
        if (await finishedNow()) break;
        ctx = await openContext(definition, options);
        emit({ type: 'ready', worker, job: options.job });
        continue;
      }
      const lease = await patiently(
        () => store.claim(options.job, { worker }),
        Date.now() + patience,
        signal,
        onWait,
      );
      if (!lease) {
        if (await finishedNow()) break;
        await sleep(pollMs, signal);
        continue;
      }
      poisonHook(lease.shard.id);
      emit({ type: 'claimed', worker, shard: lease.shard.id, attempt: lease.attempt });
      const keeper = new LeaseKeeper(store, lease);
      const shardSignal = signal
        ? AbortSignal.any([signal, keeper.controller.signal])
        : keeper.controller.signal;
      try {
        const result = await runShard(ctx, lease, shardSignal, () => keeper.renew());
        keeper.stop();
        try {
          await patiently(
            () => store.complete(keeper.current, result),
            keeper.current.expiresAt,
            undefined,
            onWait,
          );
        } catch (completeErr) {
          // A completion the ledger applied but whose answer was lost (the connection dropped, the
          // server restarted) is retried and then refused: the shard is already DONE by this attempt.
          if (!(completeErr instanceof LeaseLostError) || !(await doneByAttempt(store, lease)))
            throw completeErr;
        }
        shards++;
        rows += result.rows;
        failedSamples += result.failed;
        consecutiveFailures = 0;
        emit({
          type: 'done',
          worker,
          shard: lease.shard.id,
          rows: result.rows,
          failed: result.failed,
          seconds: Number(result['seconds'] ?? 0),
        });
      } catch (err) {
        keeper.stop();
        if (keeper.lost || err instanceof LeaseLostError) {
          lost++;
          emit({
            type: 'lost',
            worker,
            shard: lease.shard.id,
            message: (keeper.lost ?? (err as Error)).message,
          });
          continue;
        }
        if (signal?.aborted) {
          try {
            await patiently(() => store.release(keeper.current), keeper.current.expiresAt, undefined, onWait);
            emit({ type: 'released', worker, shard: lease.shard.id });
          } catch (releaseErr) {
            if (!(releaseErr instanceof LeaseLostError)) throw releaseErr;
          }
          stoppedBy = 'signal';
          break;
        }
        const ge = toGlimpseError(err);
        let state: string;
        try {
          state = await patiently(
            () =>
              store.fail(
                keeper.current,
                { code: ge.code, message: ge.message },
                { retryable: !(err instanceof UnrecoverableError) },
              ),
            keeper.current.expiresAt,
            undefined,
            onWait,
          );
        } catch (failErr) {
          if (!(failErr instanceof LeaseLostError)) throw failErr;
          lost++;
          continue;
        }
        failedShards++;
        consecutiveFailures++;
        emit({ type: 'failed', worker, shard: lease.shard.id, code: ge.code, message: ge.message, state });
        if (consecutiveFailures >= maxConsecutive) {
          throw new GlimpseError(
            ge.code,
            `Expected worker ${worker} to finish shards but ${consecutiveFailures} failed in a row; the last: ${ge.message}`,
            { cause: err },
          );
        }
      }
    }
    let manifest: JobManifest | undefined;
    if (stoppedBy === 'finished' && options.finalize !== false) {
      manifest = await finalizeJob(store, options.job, {
        ...(options.storage !== undefined ? { storage: options.storage } : {}),
      });
      emit({ type: 'finished', worker, job: options.job, manifest: manifest !== undefined });
    }
    if (signal?.aborted && stoppedBy === 'signal') {
      throw new GlimpseError(
        'GLIMPSE_E_ABORTED',
        `Expected worker ${worker} to run job ${options.job} but it was stopped after ${shards} shards; the shard in progress was released`,
      );
    }
    return {
      worker,
      shards,
      rows,
      failedSamples,
      lost,
      failedShards,
      stoppedBy,
      ...(manifest ? { manifest } : {}),
    };
  } catch (err) {
    if (isGlimpseError(err)) throw err;
    throw toGlimpseError(err);
  } finally {
    await closeContext(ctx);
    if (ownStore) await store.close();
  }
}

/**
 * One log line for a worker event.
 *
 * @example
 *   formatWorkerEvent({ type: 'done', worker: 'h:1', shard: '03', rows: 3, failed: 0, seconds: 0.84 });
 *   // 'h:1: shard 03 done: 3 rows, 0 failed, 0.84 s'
 */
export function formatWorkerEvent(e: WorkerEvent): string {
  switch (e.type) {
    case 'ready':
      return `${e.worker}: ready for job ${e.job}`;
    case 'claimed':
      return `${e.worker}: shard ${e.shard} claimed (attempt ${e.attempt})`;
    case 'done':
      return `${e.worker}: shard ${e.shard} done: ${e.rows} rows, ${e.failed} failed, ${e.seconds.toFixed(2)} s`;
    case 'failed':
      return `${e.worker}: shard ${e.shard} failed (now ${e.state}): ${e.code}: ${e.message}`;
    case 'lost':
      return `${e.worker}: shard ${e.shard} dropped, lease lost: ${e.message}`;
    case 'released':
      return `${e.worker}: shard ${e.shard} released`;
    case 'waiting':
      return `${e.worker}: ${e.message}`;
    case 'finished':
      return `${e.worker}: job ${e.job} finished${e.manifest ? ', manifest.json written' : ''}`;
  }
}

/** True when the ledger records `lease`'s shard as DONE by that very attempt. */
async function doneByAttempt(
  store: JobStore,
  lease: { job: string; index: number; attempt: number },
): Promise<boolean> {
  try {
    const shard = (await store.shards(lease.job)).find((r) => r.index === lease.index);
    return (
      shard?.state === 'DONE' &&
      shard.attempts.some((a) => a.attempt === lease.attempt && a.outcome === 'done')
    );
  } catch {
    return false;
  }
}

/**
 * A sharded job on this machine: plan it, then run N worker processes on one ledger and wait. Workers
 * killed by a signal (a crash, the OOM killer, `kill -9`) are restarted; their shards come back when their
 * leases expire. Re-running the same call resumes whatever state the ledger holds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { GlimpseError, type ErrorCode, errorCatalogue } from '../errors/index.js';
import { assertPositiveInteger, isNonNegativeInteger, invalidParameterError } from '../core/validate.js';
import type { ProgressCallback } from '../core/progress.js';
import { createJobStore, type JobStore } from './store.js';
import { finalizeJob, type JobManifest } from './manifest.js';
import { defaultLedgerUrl, planJob, type PlanJobOptions, type PlannedJob } from './plan.js';
import type { JobStatus } from './types.js';

/** A local worker process started or ended. */
export type LocalWorkerEvent =
  | { type: 'start'; slot: number; pid: number }
  | {
      type: 'exit';
      slot: number;
      pid: number;
      code: number | null;
      signal: NodeJS.Signals | null;
      /** True when it will be started again (it was killed while work remained). */
      restart: boolean;
    };

export interface RunLocalJobOptions extends Omit<PlanJobOptions, 'ledger'> {
  /** Ledger URL (default: a SQLite file in the output's `.glimpse/` folder). */
  ledger?: string;
  /** Worker processes (default 1). */
  workers?: number;
  /** Decode threads per worker (default: cores / workers, at least 1). */
  numPreproWorkers?: number;
  /** ONNX Runtime threads per worker (default: cores / workers, at least 1). */
  intraOpThreads?: number;
  /** Restarts of workers killed by a signal before the job gives up (default 3 per worker). */
  maxRestarts?: number;
  /** Stops the workers (each releases its shard); the job resumes on the next run. */
  signal?: AbortSignal;
  /** Milliseconds a stopping worker gets before it is killed (default 30,000). */
  stopGraceMs?: number;
  /** Progress of the job (samples of finished shards), polled from the ledger. */
  onProgress?: ProgressCallback;
  onWorker?: (event: LocalWorkerEvent) => void;
  /** Each line a worker writes to stderr (default: copied to this process's stderr, prefixed). */
  onWorkerOutput?: (slot: number, line: string) => void;
  /** Parent of each worker's local staging folder for an `s3://` output (default: the OS temp folder). */
  stagingDir?: string;
  /** Extra environment of the worker processes. */
  env?: NodeJS.ProcessEnv;
  /** The command that starts one worker (default: this package's worker entry); ledger arguments are appended. */
  workerCommand?: readonly string[];
}

export interface LocalJobResult {
  readonly plan: PlannedJob;
  readonly status: JobStatus;
  /** Every shard DONE. */
  readonly complete: boolean;
  readonly manifest?: JobManifest;
  /** Workers restarted after being killed. */
  readonly restarts: number;
  readonly seconds: number;
}

/** `node [--import tsx] worker-main.(ts|js)`: the default worker command. */
export function defaultWorkerCommand(): string[] {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(fromSource ? './worker-main.ts' : './worker-main.js', import.meta.url));
  return fromSource
    ? [process.execPath, '--import', import.meta.resolve('tsx'), entry]
    : [process.execPath, entry];
}

function isErrorCode(code: string): code is ErrorCode {
  return code in errorCatalogue;
}

/**
 * Plans the job (or finds it planned), runs `workers` worker processes until every shard is DONE or
 * FAILED, and returns the status and manifest. Killed workers are restarted; a worker that exits with an
 * error stops the others and the error is thrown. Calling it again with the same options resumes.
 *
 * @example
 *   const r = await runLocalJob({ input: 'photos/', output: 'emb/', model: 'models/vit-b-32', workers: 4, shardSize: 5000 });
 *   if (!r.complete) console.log(r.status.failed); // shards FAILED for good, with reasons
 */
export async function runLocalJob(options: RunLocalJobOptions): Promise<LocalJobResult> {
  const started = performance.now();
  const workers = options.workers ?? 1;
  assertPositiveInteger('workers', workers, 256);
  const maxRestarts = options.maxRestarts ?? 3 * workers;
  if (!isNonNegativeInteger(maxRestarts))
    throw invalidParameterError('maxRestarts', 'a non-negative integer', maxRestarts);
  const signal = options.signal;
  if (signal?.aborted)
    throw new GlimpseError(
      'GLIMPSE_E_ABORTED',
      'Expected to run the job but it was cancelled before it began',
    );
  const ledger = options.ledger ?? defaultLedgerUrl(options.output);
  const plan = await planJob({ ...options, ledger });
  const store: JobStore = await createJobStore(ledger);
  try {
    const perWorker = Math.max(1, Math.floor(availableParallelism() / workers));
    const command = [
      ...(options.workerCommand ?? defaultWorkerCommand()),
      '--ledger',
      ledger,
      '--job',
      plan.job,
      '--threads',
      String(options.intraOpThreads ?? perWorker),
      '--decode-workers',
      String(options.numPreproWorkers ?? perWorker),
      ...(options.cacheDir !== undefined ? ['--cache-dir', options.cacheDir] : []),
      ...(options.stagingDir !== undefined ? ['--staging-dir', options.stagingDir] : []),
      ...(options.offline ? ['--offline'] : []),
    ];
    let restarts = 0;
    if (!(await store.status(plan.job)).finished) {
      restarts = await superviseWorkers(store, plan, command, workers, maxRestarts, options);
    }
    const status = await store.status(plan.job);
    const manifest = await finalizeJob(store, plan.job, {
      ...(options.storage !== undefined ? { storage: options.storage } : {}),
    });
    return {
      plan,
      status,
      complete: status.counts.DONE === status.total,
      ...(manifest ? { manifest } : {}),
      restarts,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await store.close();
  }
}

/** Starts and watches the worker processes; resolves with the number of restarts. */
async function superviseWorkers(
  store: JobStore,
  plan: PlannedJob,
  command: readonly string[],
  workers: number,
  maxRestarts: number,
  options: RunLocalJobOptions,
): Promise<number> {
  const signal = options.signal;
  const children = new Map<number, ChildProcess>();
  const tails = new Map<number, string[]>();
  let restarts = 0;
  /** Exits whose restart is being decided (the ledger is asked whether work remains). */
  let deciding = 0;
  let stopping = false;
  let failure: GlimpseError | undefined;
  let progressTimer: NodeJS.Timeout | undefined;
  const started = performance.now();
  /** Unknown for remote or gzipped WebDataset shards: the ETA then comes from shards per second. */
  const samplesTotal = plan.samples ?? undefined;
  options.onProgress?.({ type: 'start', task: 'job', total: samplesTotal });

  let settle: () => void = () => undefined;
  const allExited = new Promise<void>((resolve) => (settle = resolve));

  const stopAll = (): void => {
    if (stopping) return;
    stopping = true;
    const grace = options.stopGraceMs ?? 30_000;
    for (const child of children.values()) {
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), grace).unref();
    }
  };

  const start = (slot: number): void => {
    const [file, ...args] = command;
    const child = spawn(file!, args, {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.set(slot, child);
    tails.set(slot, []);
    if (child.pid !== undefined) options.onWorker?.({ type: 'start', slot, pid: child.pid });
    let partial = '';
    child.stderr?.on('data', (d: Buffer) => {
      partial += d.toString();
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const tail = tails.get(slot)!;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        if (options.onWorkerOutput) options.onWorkerOutput(slot, line);
        else process.stderr.write(`[worker ${slot}] ${line}\n`);
      }
    });
    child.on('error', (err) => {
      failure ??= new GlimpseError(
        'GLIMPSE_E_JOB_WORKER_CRASHED',
        `Expected to start worker ${slot} (${file}) but ${err.message}`,
        {
          cause: err,
        },
      );
    });
    child.on('close', (code, sig) => {
      children.delete(slot);
      deciding++;
      void (async () => {
        let restart = false;
        if (!stopping && failure === undefined) {
          if (sig !== null) {
            // Killed (crash, OOM, kill -9): its shard comes back when the lease expires; start another.
            const finished = await store
              .status(plan.job)
              .then((s) => s.finished)
              .catch(() => false);
            if (!finished) {
              if (restarts < maxRestarts) {
                restarts++;
                restart = true;
              } else {
                failure = new GlimpseError(
                  'GLIMPSE_E_JOB_WORKER_CRASHED',
                  `Expected local workers to finish job ${plan.job} but they were killed ${restarts + 1} times (restart budget ${maxRestarts}); last: worker ${slot} by ${sig}`,
                );
                stopAll();
              }
            }
          } else if (code !== 0) {
            const last = [...(tails.get(slot) ?? [])].reverse().find((l) => l.startsWith('error '));
            const m = /^error (GLIMPSE_E_[A-Z0-9_]+): (.*)$/.exec(last ?? '');
            const codeName = m?.[1];
            failure =
              codeName !== undefined && isErrorCode(codeName)
                ? new GlimpseError(codeName, `worker ${slot}: ${m?.[2] ?? ''}`)
                : new GlimpseError(
                    'GLIMPSE_E_JOB_WORKER_CRASHED',
                    `Expected worker ${slot} to finish but it exited with code ${code}: ${(tails.get(slot) ?? []).slice(-5).join(' | ')}`,
                  );
            stopAll();
          }
        }
        if (child.pid !== undefined)
          options.onWorker?.({ type: 'exit', slot, pid: child.pid, code, signal: sig, restart });
        deciding--;
        if (restart && !stopping) start(slot);
        if (children.size === 0 && deciding === 0) settle();
      })();
    });
  };

  const onAbort = (): void => stopAll();
  signal?.addEventListener('abort', onAbort, { once: true });
  if (options.onProgress) {
    /** Samples already finished when this run started (a resumed job): not counted in the rate. */
    const initial = await store.status(plan.job);
    const before = initial.rows + initial.failedSamples;
    progressTimer = setInterval(() => {
      void store
        .status(plan.job)
        .then((s) => {
          const seconds = Math.max((performance.now() - started) / 1000, 1e-9);
          const done = s.rows + s.failedSamples;
          const rate = (done - before) / seconds;
          options.onProgress?.({
            type: 'progress',
            task: 'job',
            done,
            failed: s.failedSamples,
            total: samplesTotal,
            rate,
            etaSeconds:
              samplesTotal === undefined
                ? s.etaSeconds
                : rate > 0
                  ? Math.max(0, samplesTotal - done) / rate
                  : undefined,
          });
        })
        .catch(() => undefined);
    }, 1000);
  }
  try {
    for (let slot = 0; slot < workers; slot++) start(slot);
    await allExited;
  } finally {
    clearInterval(progressTimer);
    signal?.removeEventListener('abort', onAbort);
  }
  if (failure) throw failure;
  if (signal?.aborted) {
    throw new GlimpseError(
      'GLIMPSE_E_ABORTED',
      `Expected job ${plan.job} to finish but it was stopped; finished shards are kept in the ledger, re-run the same command to resume`,
    );
  }
  const s = await store.status(plan.job);
  const done = s.rows + s.failedSamples;
  options.onProgress?.({
    type: 'done',
    task: 'job',
    done,
    failed: s.failedSamples,
    seconds: (performance.now() - started) / 1000,
  });
  return restarts;
}

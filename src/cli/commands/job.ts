import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { GlimpseError } from '../../errors/index.js';
import { parseByteSize } from '../../core/validate.js';
import { createJobStore, redactLedgerUrl, type JobStore } from '../../jobs/store.js';
import { defaultLedgerUrl, JOB_DEFAULTS, planJob, type PlanJobOptions } from '../../jobs/plan.js';
import { runLocalJob } from '../../jobs/local.js';
import { clearJobManifest } from '../../jobs/manifest.js';
import type { JobStatus } from '../../jobs/types.js';
import { createCliProgress } from '../progress.js';
import { inputFormatOptions, parseBoolOption, parseIntOption } from '../options.js';
import type { InputFormat } from '../../sources/index.js';
import { withSignals } from '../signals.js';

interface PlanFlags {
  inputFormat: InputFormat;
  wdsImageKey: string;
  wdsCaptionKey: string;
  urlCol?: string;
  captionCol?: string;
  saveAdditionalColumns?: boolean;
  ledger?: string;
  job: string;
  model: string;
  dtype: 'fp32' | 'fp16' | 'q8';
  shardSize?: number;
  maxAttempts?: number;
  lease?: number;
  retryDelay?: number;
  batchSize?: number;
  enableImage: boolean;
  enableText?: boolean;
  enableMetadata: boolean;
  outputDtype: 'float16' | 'float32';
  preprocess: 'exact' | 'fast';
  maxPixels?: number;
  maxImageBytes?: string;
  subsetSize?: number;
  overwrite: boolean;
  cacheDir?: string;
  offline?: boolean;
  json?: boolean;
}

interface RunFlags extends PlanFlags {
  workers?: number;
  threads?: number;
  numPreproWorkers?: number;
}

interface LedgerFlags {
  ledger?: string;
  output?: string;
  job: string;
  json?: boolean;
  drop?: boolean;
}

/** `--lease 60`, `--retry-delay 0.5`: seconds (decimals allowed) → milliseconds. */
function parseSeconds(name: string, min: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min)
      throw new InvalidArgumentError(
        `Expected a number of seconds of at least ${min} for ${name} but received ${JSON.stringify(value)}`,
      );
    return Math.round(n * 1000);
  };
}

/** The plan options (`job plan`, `job run`) as commander options. */
function planOptions(cmd: Command): Command {
  return inputFormatOptions(cmd)
    .option(
      '--ledger <url>',
      'ledger: sqlite:<path>, a path, or redis://host:port/db (default: <output>/.glimpse/ledger.sqlite)',
    )
    .option('--job <name>', 'job name', JOB_DEFAULTS.job)
    .option('--model <id|dir>', 'model folder or hub id', 'openai/clip-vit-base-patch32')
    .option('--dtype <fp32|fp16|q8>', 'ONNX precision variant', 'fp32')
    .option(
      '--shard-size <n>',
      `samples per shard (default ${JOB_DEFAULTS.shardSize})`,
      parseIntOption('--shard-size'),
    )
    .option(
      '--max-attempts <n>',
      `failed attempts (errors, expired leases) before a shard is FAILED for good (default ${JOB_DEFAULTS.maxAttempts})`,
      parseIntOption('--max-attempts'),
    )
    .option(
      '--lease <seconds>',
      `lease length, renewed every half (default ${JOB_DEFAULTS.leaseMs / 1000})`,
      parseSeconds('--lease', 0.1),
    )
    .option(
      '--retry-delay <seconds>',
      `delay before a failed shard is retried (default ${JOB_DEFAULTS.retryDelayMs / 1000})`,
      parseSeconds('--retry-delay', 0),
    )
    .option('--batch-size <n>', 'images per inference batch (default 32)', parseIntOption('--batch-size'))
    .option('--enable-image [bool]', 'embed images', parseBoolOption('--enable-image'), true)
    .option(
      '--enable-text [bool]',
      'embed captions (default: when the folder has any)',
      parseBoolOption('--enable-text'),
    )
    .option(
      '--enable-metadata [bool]',
      'write x.json keys as metadata columns',
      parseBoolOption('--enable-metadata'),
      true,
    )
    .option('--output-dtype <float16|float32>', 'npy element type', 'float16')
    .option('--preprocess <exact|fast>', 'exact = OpenAI CLIP parity; fast = libvips resize', 'exact')
    .option('--max-pixels <n>', 'largest accepted image (width × height)', parseIntOption('--max-pixels'))
    .option('--max-image-bytes <size>', 'largest accepted image file (e.g. 64M)')
    .option('--subset-size <n>', 'only the first n samples', parseIntOption('--subset-size'))
    .option('--overwrite', "replace another run's outputs in the output folder (new jobs only)", false)
    .option('--cache-dir <dir>', 'model cache folder')
    .option('--offline', 'never download models')
    .option('--json', 'print the result as JSON');
}

/** Plan options from flags (the ledger apart: `--ledger` or the output's default). */
function toPlanOptions(input: string, output: string, flags: PlanFlags): Omit<PlanJobOptions, 'ledger'> {
  const o: Omit<PlanJobOptions, 'ledger'> = {
    input,
    inputFormat: flags.inputFormat,
    output,
    job: flags.job,
    model: flags.model,
    dtype: flags.dtype,
    enableImage: flags.enableImage,
    enableText: flags.enableText ?? 'auto',
    enableMetadata: flags.enableMetadata,
    outputDtype: flags.outputDtype,
    preprocessMode: flags.preprocess,
    overwrite: flags.overwrite,
  };
  if (flags.inputFormat === 'webdataset') {
    o.wdsImageKey = flags.wdsImageKey;
    o.wdsCaptionKey = flags.wdsCaptionKey;
  }
  if (flags.urlCol !== undefined) o.urlCol = flags.urlCol;
  if (flags.captionCol !== undefined) o.captionCol = flags.captionCol;
  if (flags.saveAdditionalColumns !== undefined) o.saveAdditionalColumns = flags.saveAdditionalColumns;
  if (flags.shardSize !== undefined) o.shardSize = flags.shardSize;
  if (flags.maxAttempts !== undefined) o.maxAttempts = flags.maxAttempts;
  if (flags.lease !== undefined) o.leaseMs = flags.lease;
  if (flags.retryDelay !== undefined) o.retryDelayMs = flags.retryDelay;
  if (flags.batchSize !== undefined) o.batchSize = flags.batchSize;
  if (flags.subsetSize !== undefined) o.subsetSize = flags.subsetSize;
  if (flags.cacheDir !== undefined) o.cacheDir = flags.cacheDir;
  if (flags.offline !== undefined) o.offline = flags.offline;
  const limits: NonNullable<PlanJobOptions['limits']> = {};
  if (flags.maxPixels !== undefined) limits.maxPixels = flags.maxPixels;
  if (flags.maxImageBytes !== undefined)
    limits.maxBytes = parseByteSize('--max-image-bytes', flags.maxImageBytes);
  o.limits = limits;
  return o;
}

function ledgerOf(flags: LedgerFlags): string {
  if (flags.ledger !== undefined) return flags.ledger;
  if (flags.output !== undefined) return defaultLedgerUrl(flags.output);
  throw new GlimpseError(
    'GLIMPSE_E_ARG_INVALID',
    'Expected --ledger <url> (or --output <dir> for the SQLite ledger in that output) but received neither',
  );
}

async function withStore<T>(
  flags: LedgerFlags,
  fn: (store: JobStore, ledger: string) => Promise<T>,
): Promise<T> {
  const ledger = ledgerOf(flags);
  const store = await createJobStore(ledger);
  try {
    return await fn(store, ledger);
  } finally {
    await store.close();
  }
}

function duration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return m < 60
    ? `${m}m${String(s % 60).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/**
 * `glimpse job status` as text: counts per state, speed, ETA, shards in progress, failed shards with
 * their reason and every attempt.
 *
 * @example
 *   process.stdout.write(formatJobStatus(await store.status('photos'), 'sqlite:/data/emb/.glimpse/ledger.sqlite'));
 */
export function formatJobStatus(s: JobStatus, ledger: string): string {
  const c = s.counts;
  const lines = [
    `job ${s.job} in ${redactLedgerUrl(ledger)}: ${s.finished ? (c.FAILED > 0 ? 'finished with failed shards' : 'finished') : 'running'}`,
    `shards: ${s.total} total, ${c.DONE} DONE, ${c.IN_PROGRESS} IN_PROGRESS, ${c.PENDING} PENDING${s.retrying > 0 ? ` (${s.retrying} waiting for a retry)` : ''}, ${c.FAILED} FAILED`,
    `rows: ${s.rows} written, ${s.failedSamples} samples failed; ${s.rowsPerSecond.toFixed(1)} rows/s, ${s.shardsPerSecond.toFixed(2)} shards/s; ETA ${s.finished ? '0s' : duration(s.etaSeconds)}`,
  ];
  if (s.inProgress.length > 0) {
    lines.push('in progress:');
    for (const p of s.inProgress)
      lines.push(
        `  ${p.id}: worker ${p.worker}, attempt ${p.attempt}${p.leaseExpired ? ' (lease expired: will be retried)' : ''}`,
      );
  }
  if (s.failed.length > 0) {
    lines.push('failed:');
    for (const f of s.failed) {
      lines.push(`  ${f.id}: ${f.reason}`);
      for (const a of f.attempts)
        lines.push(
          `    attempt ${a.attempt} (${a.worker}): ${a.outcome}${a.code ? ` ${a.code}` : ''}${a.message ? `: ${a.message}` : ''}`,
        );
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * `glimpse job plan|run|status|retry-failed|reset`: sharded, resumable embed jobs on a ledger (SQLite by
 * default, Redis for many machines).
 */
export function registerJobCommand(program: Command): void {
  const job = program
    .command('job')
    .description('sharded, resumable embed jobs on a ledger: plan, run, status, retry-failed, reset');

  planOptions(
    job
      .command('plan')
      .description(
        'split an input into shards and write the job into the ledger (workers run it: glimpse worker)',
      )
      .argument('<input>', 'input folder, WebDataset shards (pattern, glob, .txt list, URL) or manifest')
      .argument('<output>', 'output folder or s3://bucket/prefix (then --ledger is required)'),
  ).action(async (input: string, output: string, flags: PlanFlags) => {
    const plan = await planJob({
      ...toPlanOptions(input, output, flags),
      ...(flags.ledger !== undefined ? { ledger: flags.ledger } : {}),
    });
    if (flags.json) {
      process.stdout.write(
        JSON.stringify({
          job: plan.job,
          ledger: redactLedgerUrl(plan.ledger),
          created: plan.created,
          shards: plan.shards,
          samples: plan.samples,
        }) + '\n',
      );
      return;
    }
    process.stdout.write(
      `${plan.created ? 'planned' : 'already planned (unchanged)'}: job ${plan.job}, ${plan.samples} samples in ${plan.shards} shards, ledger ${redactLedgerUrl(plan.ledger)}\n` +
        `run workers with: glimpse worker --ledger ${redactLedgerUrl(plan.ledger)} --job ${plan.job}\n`,
    );
  });

  planOptions(
    job
      .command('run')
      .description(
        'plan the job (or resume it) and run N local worker processes until every shard is DONE or FAILED',
      )
      .argument('<input>', 'input folder, WebDataset shards (pattern, glob, .txt list, URL) or manifest')
      .argument('<output>', 'output folder or s3://bucket/prefix (then --ledger is required)'),
  )
    .option('--workers <n>', 'worker processes (default 1)', parseIntOption('--workers'))
    .option(
      '--threads <n>',
      'inference threads per worker (default: cores / workers)',
      parseIntOption('--threads'),
    )
    .option(
      '--num-prepro-workers <n>',
      'decode threads per worker (default: cores / workers)',
      parseIntOption('--num-prepro-workers'),
    )
    .action(async (input: string, output: string, flags: RunFlags) => {
      const progress = createCliProgress();
      await withSignals(async (signal) => {
        try {
          const r = await runLocalJob({
            ...toPlanOptions(input, output, flags),
            ...(flags.ledger !== undefined ? { ledger: flags.ledger } : {}),
            ...(flags.workers !== undefined ? { workers: flags.workers } : {}),
            ...(flags.threads !== undefined ? { intraOpThreads: flags.threads } : {}),
            ...(flags.numPreproWorkers !== undefined ? { numPreproWorkers: flags.numPreproWorkers } : {}),
            signal,
            onProgress: progress.onProgress,
          });
          progress.stop();
          if (flags.json) process.stdout.write(JSON.stringify({ ...r, manifest: undefined }) + '\n');
          else process.stdout.write(formatJobStatus(r.status, r.plan.ledger));
          if (!r.complete) {
            throw new GlimpseError(
              'GLIMPSE_E_JOB_SHARDS_FAILED',
              `Expected every shard of job ${r.plan.job} to be DONE but ${r.status.counts.FAILED} FAILED for good (see above); fix the cause, then: glimpse job retry-failed --ledger ${redactLedgerUrl(r.plan.ledger)} --job ${r.plan.job}, and run again`,
            );
          }
        } finally {
          progress.stop();
        }
      });
    });

  const ledgerOptions = (cmd: Command): Command =>
    cmd
      .option('--ledger <url>', 'ledger: sqlite:<path>, a path, or redis://host:port/db')
      .option('--output <dir>', "the job's output folder (its default SQLite ledger), instead of --ledger")
      .option('--job <name>', 'job name', JOB_DEFAULTS.job);

  ledgerOptions(job.command('status').description('counts per state, speed, ETA, failed shards with reasons'))
    .option('--json', 'print the status as JSON')
    .action(async (flags: LedgerFlags) => {
      await withStore(flags, async (store, ledger) => {
        const status = await store.status(flags.job);
        process.stdout.write(flags.json ? JSON.stringify(status) + '\n' : formatJobStatus(status, ledger));
      });
    });

  ledgerOptions(
    job.command('retry-failed').description('put FAILED shards back to PENDING with a fresh set of attempts'),
  ).action(async (flags: LedgerFlags) => {
    await withStore(flags, async (store) => {
      const n = await store.retryFailed(flags.job);
      if (n > 0) await clearJobManifest(store, flags.job);
      process.stdout.write(
        `${n} failed shard(s) of job ${flags.job} back to PENDING; run workers to finish them\n`,
      );
    });
  });

  ledgerOptions(
    job
      .command('reset')
      .description(
        'put every shard back to PENDING (they are redone and their files rewritten), or --drop the job',
      ),
  )
    .option('--drop', 'remove the job from the ledger instead (its output files stay)')
    .action(async (flags: LedgerFlags) => {
      await withStore(flags, async (store) => {
        if (flags.drop) {
          const dropped = await store.drop(flags.job);
          process.stdout.write(
            dropped ? `job ${flags.job} dropped from the ledger\n` : `no job ${flags.job} in the ledger\n`,
          );
          return;
        }
        await clearJobManifest(store, flags.job);
        const n = await store.reset(flags.job);
        process.stdout.write(`${n} shard(s) of job ${flags.job} back to PENDING\n`);
      });
    });
}

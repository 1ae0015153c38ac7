/**
 * Planning a sharded embed job: list the input once, cut it into shards (stable: the same input gives the
 * same shards), fingerprint the model, and write the job with its shards into the ledger. Re-planning the
 * same job is a no-op (it resumes); planning it with other settings is a conflict.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GlimpseError, isGlimpseError } from '../errors/index.js';
import {
  assertOneOf,
  assertPositiveInteger,
  invalidParameterError,
  isNonNegativeInteger,
} from '../core/validate.js';
import { MODEL_DTYPES, type ModelDtype, type ModelFingerprint } from '../models/types.js';
import type { DecodeLimits } from '../decode/pool.js';
import type { OutputDtype } from '../sinks/clip-retrieval.js';
import { partitionName } from '../sinks/clip-retrieval.js';
import { openSource, type OpenedSource } from '../sources/index.js';
import { loadModel } from '../pipeline/model.js';
import { createJobStore, type JobStore } from './store.js';
import type { JobDefinition, ShardDescriptor } from './types.js';

/** Defaults of a sharded job. */
export const JOB_DEFAULTS = {
  job: 'embed',
  shardSize: 10_000,
  maxAttempts: 3,
  leaseMs: 60_000,
  retryDelayMs: 1_000,
} as const;

/** Files and folders of a sharded output that `overwrite` replaces. */
export const JOB_OUTPUT_ENTRIES = [
  'img_emb',
  'text_emb',
  'metadata',
  'failures',
  'stats',
  'glimpse.json',
  'manifest.json',
] as const;

/** The ledger a job uses when none is given: a SQLite file in a hidden folder of the output. */
export function defaultLedgerUrl(output: string): string {
  return `sqlite:${join(resolve(output), '.glimpse', 'ledger.sqlite')}`;
}

/** What a worker needs to run any shard of an embed job (stored in the ledger as the job's payload). */
export interface EmbedJobPayload {
  readonly kind: 'embed';
  readonly version: 1;
  /** Absolute input folder. */
  readonly input: string;
  readonly inputFormat: 'files';
  /** Absolute output folder. */
  readonly output: string;
  /** Model folder (absolute) or hub id. */
  readonly model: string;
  readonly dtype: ModelDtype;
  /** The fingerprint the planner computed; workers refuse to run with another model. */
  readonly fingerprint: ModelFingerprint;
  readonly batchSize: number;
  readonly enableImage: boolean;
  readonly enableText: boolean;
  readonly enableMetadata: boolean;
  readonly outputDtype: OutputDtype;
  readonly preprocessMode: 'exact' | 'fast';
  readonly limits: DecodeLimits;
  readonly subsetSize: number | null;
  readonly shardSize: number;
  readonly shardCount: number;
  readonly sampleCount: number;
  /** Digest of what the input listing found (sample count and file counts): a changed input is refused. */
  readonly inputDigest: string;
}

/** Options of `planJob` (and of `runLocalJob`, which plans first). */
export interface PlanJobOptions {
  /** Ledger URL (`sqlite:<path>`, a path, `redis://host:port/db`) or an open store (default: a SQLite file in the output). */
  ledger?: string | JobStore;
  /** Job name (default `embed`). */
  job?: string;
  /** Input folder. */
  input: string;
  /** Output folder. */
  output: string;
  /** Model folder or hub id. */
  model: string;
  dtype?: ModelDtype;
  /** Samples per shard (default 10,000). */
  shardSize?: number;
  /** Failed attempts (errors, expired leases) before a shard is FAILED for good (default 3). */
  maxAttempts?: number;
  /** Lease length in milliseconds, renewed every half (default 60,000). */
  leaseMs?: number;
  /** Delay before a failed shard is retried (default 1,000 ms). */
  retryDelayMs?: number;
  batchSize?: number;
  enableImage?: boolean;
  enableText?: boolean | 'auto';
  enableMetadata?: boolean;
  outputDtype?: OutputDtype;
  preprocessMode?: 'exact' | 'fast';
  limits?: DecodeLimits;
  subsetSize?: number;
  /** Replace glimpse's outputs in a non-empty output folder when the job is new (default false). */
  overwrite?: boolean;
  cacheDir?: string;
  offline?: boolean;
}

/** What `planJob` did. */
export interface PlannedJob {
  readonly job: string;
  /** The ledger URL (or the store's location). */
  readonly ledger: string;
  /** False when the job was already in the ledger (re-planning resumes it). */
  readonly created: boolean;
  readonly shards: number;
  readonly samples: number;
  readonly definition: JobDefinition;
}

/** Sample count and listing counts of an opened source, hashed: the same folder gives the same digest. */
export function inputDigest(source: OpenedSource): string {
  const counts = source.counts?.() ?? {};
  const listing = (source as { listing?: unknown }).listing ?? null;
  return createHash('sha256')
    .update(JSON.stringify({ size: source.size ?? null, counts, listing }))
    .digest('hex')
    .slice(0, 32);
}

/**
 * Range shards of `size` samples: shard i = samples `[i * shardSize, (i + 1) * shardSize)`, ids zero-padded
 * to the shard count's width so sorted ids are shard order.
 *
 * @example
 *   rangeShards(25, 10); // [{ id: '0', kind: 'range', start: 0, end: 10 }, …, { id: '2', kind: 'range', start: 20, end: 25 }]
 */
export function rangeShards(size: number, shardSize: number): ShardDescriptor[] {
  const count = Math.ceil(size / shardSize);
  return Array.from({ length: count }, (_, i) => ({
    id: partitionName(i, count),
    kind: 'range' as const,
    start: i * shardSize,
    end: Math.min(size, (i + 1) * shardSize),
  }));
}

/** Reads a job's payload back, checking it is an embed job this version can run. */
export function embedPayload(definition: JobDefinition): EmbedJobPayload {
  const p = definition.payload as Partial<EmbedJobPayload>;
  if (p.kind !== 'embed' || p.version !== 1) {
    throw new GlimpseError(
      'GLIMPSE_E_NOT_SUPPORTED',
      `Expected job ${definition.name} to be an embed job of version 1 but it is ${String(p.kind)} version ${String(p.version)}`,
    );
  }
  return p as EmbedJobPayload;
}

/** Opens the input as a job describes it. */
export async function openJobSource(payload: {
  input: string;
  enableImage: boolean;
  enableText: boolean | 'auto';
  enableMetadata: boolean;
  subsetSize: number | null;
  limits: DecodeLimits;
}): Promise<OpenedSource> {
  return openSource({
    input: payload.input,
    inputFormat: 'files',
    enableImage: payload.enableImage,
    enableText: payload.enableText,
    enableMetadata: payload.enableMetadata,
    ...(payload.subsetSize !== null ? { subsetSize: payload.subsetSize } : {}),
    ...(payload.limits.maxBytes !== undefined ? { maxImageBytes: payload.limits.maxBytes } : {}),
  });
}

function isLocalPath(p: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:\/\//i.test(p);
}

/** Refuses (or, with `overwrite`, clears) an output holding another run's files. */
async function prepareOutput(output: string, overwrite: boolean): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await readdir(output);
  } catch {
    // does not exist yet
  }
  const ours = entries.filter((e) => (JOB_OUTPUT_ENTRIES as readonly string[]).includes(e));
  if (ours.length > 0) {
    if (!overwrite) {
      throw new GlimpseError(
        'GLIMPSE_E_OUTPUT_EXISTS',
        `Expected a new or empty output folder for a new job but ${output} has ${ours.join(', ')} (pass --overwrite to replace them, or give the --ledger and --job of the run that wrote them to resume it)`,
      );
    }
    for (const e of ours) await rm(join(output, e), { recursive: true, force: true });
  }
  await mkdir(output, { recursive: true });
}

/**
 * Plans a sharded embed job: shards of `shardSize` samples of the input's stable order, the model's
 * fingerprint, the settings — all into the ledger as PENDING shards. Idempotent: planning the same job
 * again changes nothing (`created: false`), so re-running a command resumes it.
 *
 * @example
 *   const plan = await planJob({ input: 'photos/', output: 'emb/', model: 'models/vit-b-32', shardSize: 5000 });
 *   console.log(`${plan.shards} shards in ${plan.ledger}`); // 40 shards in sqlite:/…/emb/.glimpse/ledger.sqlite
 */
export async function planJob(options: PlanJobOptions): Promise<PlannedJob> {
  if (typeof options.input !== 'string' || options.input === '')
    throw invalidParameterError('input', 'an input folder', options.input);
  if (typeof options.output !== 'string' || options.output === '' || !isLocalPath(options.output))
    throw invalidParameterError('output', 'a local output folder', options.output);
  if (typeof options.model !== 'string' || options.model === '')
    throw invalidParameterError('model', 'a model folder or hub id', options.model);
  const job = options.job ?? JOB_DEFAULTS.job;
  const dtype = options.dtype ?? 'fp32';
  assertOneOf('dtype', dtype, MODEL_DTYPES);
  const shardSize = options.shardSize ?? JOB_DEFAULTS.shardSize;
  assertPositiveInteger('shardSize', shardSize);
  const batchSize = options.batchSize ?? 32;
  assertPositiveInteger('batchSize', batchSize, 4096);
  const outputDtype = options.outputDtype ?? 'float16';
  assertOneOf('outputDtype', outputDtype, ['float16', 'float32'] as const);
  const preprocessMode = options.preprocessMode ?? 'exact';
  assertOneOf('preprocessMode', preprocessMode, ['exact', 'fast'] as const);
  if (options.subsetSize !== undefined) assertPositiveInteger('subsetSize', options.subsetSize);
  const retryDelayMs = options.retryDelayMs ?? JOB_DEFAULTS.retryDelayMs;
  if (!isNonNegativeInteger(retryDelayMs))
    throw invalidParameterError('retryDelayMs', 'a non-negative integer', retryDelayMs);
  if (options.enableImage === false && options.enableText === false) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      'Expected at least one of enableImage, enableText but received both false',
    );
  }
  const input = isLocalPath(options.input) ? resolve(options.input) : options.input;
  const output = resolve(options.output);
  const modelRef =
    isLocalPath(options.model) && existsSync(options.model) ? resolve(options.model) : options.model;

  const source = await openJobSource({
    input,
    enableImage: options.enableImage ?? true,
    enableText: options.enableText ?? 'auto',
    enableMetadata: options.enableMetadata ?? true,
    subsetSize: options.subsetSize ?? null,
    limits: options.limits ?? {},
  });
  let store: JobStore | undefined;
  const ownStore = typeof options.ledger !== 'object';
  try {
    const size = source.size ?? 0;
    if (size === 0)
      throw new GlimpseError(
        'GLIMPSE_E_SOURCE_EMPTY',
        `no sample found in ${options.input}${source.emptyHint()}`,
      );
    const model = await loadModel(modelRef, {
      dtype,
      ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      ...(options.offline !== undefined ? { offline: options.offline } : {}),
    });
    const fingerprint = model.fingerprint;
    await model.close();
    const shards = rangeShards(size, shardSize);
    const payload: EmbedJobPayload = {
      kind: 'embed',
      version: 1,
      input,
      inputFormat: 'files',
      output,
      model: modelRef,
      dtype,
      fingerprint,
      batchSize,
      enableImage: source.enableImage,
      enableText: source.enableText,
      enableMetadata: options.enableMetadata ?? true,
      outputDtype,
      preprocessMode,
      limits: options.limits ?? {},
      subsetSize: options.subsetSize ?? null,
      shardSize,
      shardCount: shards.length,
      sampleCount: size,
      inputDigest: inputDigest(source),
    };
    const definition: JobDefinition = {
      name: job,
      maxAttempts: options.maxAttempts ?? JOB_DEFAULTS.maxAttempts,
      leaseMs: options.leaseMs ?? JOB_DEFAULTS.leaseMs,
      retryDelayMs,
      payload: payload as unknown as JobDefinition['payload'],
    };
    const ledger =
      typeof options.ledger === 'object'
        ? options.ledger.location
        : (options.ledger ?? defaultLedgerUrl(output));
    store = typeof options.ledger === 'object' ? options.ledger : await createJobStore(ledger);
    let exists = true;
    try {
      await store.getJob(job);
    } catch (err) {
      if (!isGlimpseError(err, 'GLIMPSE_E_JOB_NOT_FOUND')) throw err;
      exists = false;
    }
    if (!exists) await prepareOutput(output, options.overwrite ?? false);
    const { created } = await store.createJob(definition, shards);
    return { job, ledger, created, shards: shards.length, samples: size, definition };
  } finally {
    source.close?.();
    if (ownStore) await store?.close();
  }
}

/**
 * Planning a sharded embed job: list the input once, cut it into shards (stable: the same input gives the
 * same shards), fingerprint the model, and write the job with its shards into the ledger. Re-planning the
 * same job is a no-op (it resumes); planning it with other settings is a conflict.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
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
import {
  INPUT_FORMATS,
  openSource,
  type InputFormat,
  type OpenedSource,
  type OpenSourceOptions,
} from '../sources/index.js';
import type { WebDatasetSource } from '../sources/webdataset.js';
import { openOutput } from '../sinks/output.js';
import type { StorageOptions } from '../storage/index.js';
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
  'commits',
] as const;

/** The absolute folder of a local output (a path or `file://` URL); undefined for a remote one. */
function localOutputFolder(output: string): string | undefined {
  if (output.startsWith('file://')) return resolve(fileURLToPath(output));
  return isLocalPath(output) ? resolve(output) : undefined;
}

/** The ledger a job uses when none is given: a SQLite file in a hidden folder of the output. */
export function defaultLedgerUrl(output: string): string {
  const folder = localOutputFolder(output);
  if (folder === undefined) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected a ledger (--ledger sqlite:<path> or redis://host/db) for the output ${output} but received none (the default ledger is a file inside a local output folder)`,
    );
  }
  return `sqlite:${join(folder, '.glimpse', 'ledger.sqlite')}`;
}

/** How the input is read, beyond its format (WebDataset member keys, manifest columns, downloads). */
export interface JobSourceSettings {
  /** WebDataset image member extensions, in order of preference (`jpg;png`). */
  readonly wdsImageKey?: string;
  /** WebDataset caption member extension. */
  readonly wdsCaptionKey?: string;
  /** Manifest column with the image URL or path (default `url`). */
  readonly urlCol?: string;
  /** Manifest column with the caption. */
  readonly captionCol?: string;
  /** Keep the manifest's other columns as metadata. */
  readonly saveAdditionalColumns?: boolean;
  /** Manifest downloads in flight. */
  readonly downloadConcurrency?: number;
  /** Connect and idle-read timeout of one download attempt (ms). */
  readonly downloadTimeoutMs?: number;
  /** Retries of a download after a transient failure. */
  readonly downloadRetries?: number;
  readonly userAgent?: string;
}

/** What a worker needs to run any shard of an embed job (stored in the ledger as the job's payload). */
export interface EmbedJobPayload {
  readonly kind: 'embed';
  readonly version: 1;
  /**
   * The input: an absolute folder (`files`), manifest path(s) or URL(s), WebDataset shard patterns
   * (local paths made absolute, URLs as given).
   */
  readonly input: string | readonly string[];
  readonly inputFormat: InputFormat;
  /** Absolute output folder, or an `s3://bucket/prefix`. */
  readonly output: string;
  /** Format-specific reading settings (absent in jobs planned before they existed). */
  readonly source?: JobSourceSettings;
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
  /** Samples per shard (range shards; a WebDataset job has one shard per tar instead). */
  readonly shardSize: number;
  readonly shardCount: number;
  /** Samples in the input; null when only reading tells (remote or gzipped WebDataset shards). */
  readonly sampleCount: number | null;
  /** Digest of what the input listing found (sample count and file counts): a changed input is refused. */
  readonly inputDigest: string;
}

/** Options of `planJob` (and of `runLocalJob`, which plans first). */
export interface PlanJobOptions {
  /** Ledger URL (`sqlite:<path>`, a path, `redis://host:port/db`) or an open store (default: a SQLite file in the output). */
  ledger?: string | JobStore;
  /** Job name (default `embed`). */
  job?: string;
  /**
   * Input: a folder (`files`, the default); WebDataset shards (paths, brace patterns, globs, `.txt` lists,
   * `http(s)://`, `s3://`), one shard of the job per tar; manifest file(s) (parquet, CSV, TSV, JSONL).
   */
  input: string | readonly string[];
  /** Input format (default `files`). */
  inputFormat?: InputFormat;
  /** Output folder, or `s3://bucket/prefix` (then `ledger` must be given: there is no folder to hold the default one). */
  output: string;
  /** Model folder or hub id. */
  model: string;
  dtype?: ModelDtype;
  /** Samples per shard of a folder or manifest (default 10,000; a WebDataset tar is always one shard). */
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
  /** WebDataset keys, manifest columns, download settings (stored in the job: every worker reads alike). */
  wdsImageKey?: string;
  wdsCaptionKey?: string;
  urlCol?: string;
  captionCol?: string;
  saveAdditionalColumns?: boolean;
  downloadConcurrency?: number;
  downloadTimeoutMs?: number;
  downloadRetries?: number;
  userAgent?: string;
  /** S3 endpoint and credentials, HTTP timeouts for this process (never stored in the ledger). */
  storage?: StorageOptions;
}

/** What `planJob` did. */
export interface PlannedJob {
  readonly job: string;
  /** The ledger URL (or the store's location). */
  readonly ledger: string;
  /** False when the job was already in the ledger (re-planning resumes it). */
  readonly created: boolean;
  readonly shards: number;
  /** Samples in the input; null when only reading tells (remote or gzipped WebDataset shards). */
  readonly samples: number | null;
  readonly definition: JobDefinition;
}

/** Sample count and listing counts of an opened source, hashed: the same folder gives the same digest. */
export function inputDigest(source: OpenedSource): string {
  const wds = source as Partial<WebDatasetSource>;
  if (wds.shards !== undefined && wds.shardBytes !== undefined) {
    return createHash('sha256')
      .update(JSON.stringify({ shards: wds.shards, bytes: wds.shardBytes }))
      .digest('hex')
      .slice(0, 32);
  }
  const counts = source.counts?.() ?? {};
  const listing = (source as { listing?: unknown }).listing ?? null;
  // Manifests: which files, in which order (their row count is `size`).
  const files = (source as { files?: unknown }).files ?? null;
  return createHash('sha256')
    .update(JSON.stringify({ size: source.size ?? null, counts, listing, files }))
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

/**
 * Opens the input as a job describes it (or, with `input`, one shard of it: a WebDataset tar).
 *
 * @example
 *   const source = await openJobSource(embedPayload(await store.getJob('laion')), { input: lease.shard.url });
 */
export async function openJobSource(
  payload: {
    input: string | readonly string[];
    inputFormat?: InputFormat;
    source?: JobSourceSettings;
    enableImage: boolean;
    enableText: boolean | 'auto';
    enableMetadata: boolean;
    subsetSize: number | null;
    limits: DecodeLimits;
  },
  options: { input?: string; storage?: StorageOptions } = {},
): Promise<OpenedSource> {
  const open: OpenSourceOptions = {
    // Stored settings (JSON: no undefined values) — WebDataset keys, manifest columns, downloads.
    ...payload.source,
    input: options.input ?? payload.input,
    inputFormat: payload.inputFormat ?? 'files',
    enableImage: payload.enableImage,
    enableText: payload.enableText,
    enableMetadata: payload.enableMetadata,
    ...(payload.subsetSize !== null && options.input === undefined ? { subsetSize: payload.subsetSize } : {}),
    ...(payload.limits.maxBytes !== undefined ? { maxImageBytes: payload.limits.maxBytes } : {}),
    ...(options.storage !== undefined ? { storage: options.storage } : {}),
  };
  return openSource(open);
}

/** The settings of `options` that say how to read the input (stored in the payload). */
function sourceSettings(options: PlanJobOptions): JobSourceSettings {
  const keys = [
    'wdsImageKey',
    'wdsCaptionKey',
    'urlCol',
    'captionCol',
    'saveAdditionalColumns',
    'downloadConcurrency',
    'downloadTimeoutMs',
    'downloadRetries',
    'userAgent',
  ] as const;
  const out: Record<string, unknown> = {};
  for (const k of keys) if (options[k] !== undefined) out[k] = options[k];
  return out as JobSourceSettings;
}

/** Local paths made absolute (workers may start in another folder); URLs and `s3://` as given. */
function absoluteInput(input: string | readonly string[]): string | readonly string[] {
  const one = (p: string): string => (isLocalPath(p) ? resolve(p) : p);
  return typeof input === 'string' ? one(input) : input.map(one);
}

function isLocalPath(p: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:\/\//i.test(p);
}

/** Refuses (or, with `overwrite`, clears) an output holding another run's files. */
async function prepareOutput(output: string, overwrite: boolean, storage?: StorageOptions): Promise<void> {
  if (!isLocalPath(output)) {
    const target = await openOutput(output, {
      entries: JOB_OUTPUT_ENTRIES,
      ...(storage !== undefined ? { storage } : {}),
    });
    try {
      await target.prepare(overwrite);
    } finally {
      await target.close();
    }
    return;
  }
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
  const inputs = typeof options.input === 'string' ? [options.input] : options.input;
  if (!Array.isArray(inputs) || inputs.length === 0 || inputs.some((i) => typeof i !== 'string' || i === ''))
    throw invalidParameterError('input', 'an input folder, shard pattern(s) or manifest(s)', options.input);
  const inputFormat = options.inputFormat ?? 'files';
  assertOneOf('inputFormat', inputFormat, INPUT_FORMATS);
  if (typeof options.output !== 'string' || options.output === '')
    throw invalidParameterError('output', 'an output folder or s3:// URL', options.output);
  const localOutput = localOutputFolder(options.output);
  const remoteOutput = localOutput === undefined;
  if (remoteOutput && !options.output.startsWith('s3://'))
    throw invalidParameterError('output', 'a local output folder or an s3:// URL', options.output);
  if (options.ledger === undefined) defaultLedgerUrl(options.output); // refuses a remote output early
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
  if (inputFormat === 'files' && inputs.length !== 1) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected one input folder for input format "files" but received ${inputs.length} inputs`,
    );
  }
  const webdataset = inputFormat === 'webdataset';
  if (webdataset && options.subsetSize !== undefined) {
    throw new GlimpseError(
      'GLIMPSE_E_NOT_SUPPORTED',
      `Expected no subsetSize for a sharded WebDataset job (each tar is one shard, read whole) but received ${options.subsetSize}`,
    );
  }
  const input = absoluteInput(options.input);
  const output = localOutput ?? options.output.replace(/\/+$/, '');
  const modelRef =
    isLocalPath(options.model) && existsSync(options.model) ? resolve(options.model) : options.model;
  const settings = sourceSettings(options);

  const source = await openJobSource(
    {
      input,
      inputFormat,
      source: settings,
      enableImage: options.enableImage ?? true,
      enableText: options.enableText ?? 'auto',
      enableMetadata: options.enableMetadata ?? true,
      subsetSize: options.subsetSize ?? null,
      limits: options.limits ?? {},
    },
    options.storage !== undefined ? { storage: options.storage } : {},
  );
  let store: JobStore | undefined;
  const ownStore = typeof options.ledger !== 'object';
  try {
    let shards: ShardDescriptor[];
    let sampleCount: number | null;
    if (webdataset) {
      const wds = source as OpenedSource & WebDatasetSource;
      shards = wds.shards.map((url, i) => ({
        id: partitionName(i, wds.shards.length),
        kind: 'tar' as const,
        url,
        bytes: wds.shardBytes[i] ?? 0,
      }));
      sampleCount = source.size ?? null;
      if (shards.length === 0 || sampleCount === 0)
        throw new GlimpseError(
          'GLIMPSE_E_SOURCE_EMPTY',
          `no sample found in ${inputs.join(', ')}${source.emptyHint()}`,
        );
    } else {
      const size = source.size ?? 0;
      if (size === 0)
        throw new GlimpseError(
          'GLIMPSE_E_SOURCE_EMPTY',
          `no sample found in ${inputs.join(', ')}${source.emptyHint()}`,
        );
      shards = rangeShards(size, shardSize);
      sampleCount = size;
    }
    const model = await loadModel(modelRef, {
      dtype,
      ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      ...(options.offline !== undefined ? { offline: options.offline } : {}),
    });
    const fingerprint = model.fingerprint;
    await model.close();
    const payload: EmbedJobPayload = {
      kind: 'embed',
      version: 1,
      input,
      inputFormat,
      ...(inputFormat !== 'files' ? { source: settings } : {}),
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
      sampleCount,
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
    if (!exists) await prepareOutput(output, options.overwrite ?? false, options.storage);
    const { created } = await store.createJob(definition, shards);
    return { job, ledger, created, shards: shards.length, samples: sampleCount, definition };
  } finally {
    source.close?.();
    if (ownStore) await store?.close();
  }
}

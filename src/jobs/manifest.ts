/**
 * The end of a sharded job: `manifest.json` lists every shard in order with its state, rows (numbered
 * across shards), failures and files, plus the model fingerprint and settings. Only what the content of
 * the output determines is in it (no times, no attempt counts), so an interrupted and resumed job writes
 * the same manifest as an uninterrupted one. When every shard is DONE, `glimpse.json` (the same record
 * `glimpse embed` writes) is written last, so tools that import embed outputs read sharded ones too.
 */
import { partitionName } from '../sinks/clip-retrieval.js';
import { openOutput, type OutputTarget } from '../sinks/output.js';
import { shardFiles } from '../pipeline/shard.js';
import type { StorageOptions } from '../storage/index.js';
import type { ModelFingerprint } from '../models/types.js';
import type { JobStore } from './store.js';
import { embedPayload, JOB_OUTPUT_ENTRIES } from './plan.js';
import type { ShardState } from './types.js';

/**
 * The commit marker of a shard on an `s3://` output, relative to the output: written after the shard's
 * files are uploaded and before the ledger says DONE (an object store has no rename; a shard without its
 * marker is incomplete and is redone).
 *
 * @example
 *   commitMarker(3, 120); // 'commits/commit_003.json'
 */
export function commitMarker(partition: number, partitionCount: number): string {
  return `commits/commit_${partitionName(partition, partitionCount)}.json`;
}

/** Options of `finalizeJob` and `clearJobManifest`. */
export interface JobOutputOptions {
  /** S3 endpoint and credentials for an `s3://` output (default: the environment's). */
  storage?: StorageOptions;
}

async function withOutput<T>(
  output: string,
  options: JobOutputOptions,
  fn: (target: OutputTarget) => Promise<T>,
): Promise<T> {
  const target = await openOutput(output, {
    entries: JOB_OUTPUT_ENTRIES,
    ...(options.storage !== undefined ? { storage: options.storage } : {}),
  });
  try {
    return await fn(target);
  } finally {
    await target.close();
  }
}

/** One shard in `manifest.json`. */
export interface ManifestShard {
  readonly id: string;
  readonly index: number;
  /** Partition name in the file names (`img_emb/img_emb_{name}.npy`). */
  readonly name: string;
  readonly state: Extract<ShardState, 'DONE' | 'FAILED'>;
  /** Samples `[start, end)` of the input's sorted order (folders, manifests). */
  readonly samples: readonly [number, number] | null;
  /** The tar file the shard read (WebDataset jobs). */
  readonly url?: string;
  /** Number (across shards) of the shard's first row. */
  readonly first_row: number;
  readonly rows: number;
  /** Samples that failed and were recorded in `failures/`. */
  readonly failed: number;
  readonly files: readonly string[];
  /** Why the shard FAILED for good. */
  readonly reason?: string;
}

/** `manifest.json` of a sharded output. */
export interface JobManifest {
  readonly glimpse: { readonly format: 'clip-retrieval'; readonly layout: 'sharded'; readonly version: 1 };
  readonly job: string;
  /** Every shard DONE (no shard FAILED for good). */
  readonly complete: boolean;
  readonly model: ModelFingerprint;
  readonly options: Readonly<Record<string, unknown>>;
  readonly counts: {
    /** Samples of the input (for remote WebDataset shards: rows + failed samples of DONE shards). */
    readonly samples: number;
    readonly rows: number;
    readonly failed: number;
    readonly shards: number;
    readonly shards_done: number;
    readonly shards_failed: number;
  };
  readonly shards: readonly ManifestShard[];
}

/**
 * Writes `manifest.json` (and, when complete, `glimpse.json`) into the job's output once every shard is
 * DONE or FAILED; returns undefined (and writes nothing) while shards are PENDING or IN_PROGRESS. Safe to
 * call from several workers at once (the same content, renamed into place atomically).
 *
 * @example
 *   const manifest = await finalizeJob(store, 'photos');
 *   if (manifest && !manifest.complete) console.log(manifest.shards.filter((s) => s.state === 'FAILED'));
 */
export async function finalizeJob(
  store: JobStore,
  job: string,
  outputOptions: JobOutputOptions = {},
): Promise<JobManifest | undefined> {
  const definition = await store.getJob(job);
  const payload = embedPayload(definition);
  const records = await store.shards(job);
  if (records.some((r) => r.state === 'PENDING' || r.state === 'IN_PROGRESS')) return undefined;
  let row = 0;
  const shards: ManifestShard[] = records.map((r) => {
    const d = r.descriptor;
    const rows = r.state === 'DONE' ? (r.result?.rows ?? 0) : 0;
    const shard: ManifestShard = {
      id: r.id,
      index: r.index,
      name: partitionName(r.index, records.length),
      state: r.state === 'DONE' ? 'DONE' : 'FAILED',
      samples: d.kind === 'range' ? [d.start, d.end] : null,
      ...(d.kind === 'tar' ? { url: d.url } : {}),
      first_row: row,
      rows,
      failed: r.state === 'DONE' ? (r.result?.failed ?? 0) : 0,
      files: r.state === 'DONE' ? [...(r.result?.files ?? [])].sort() : [],
      ...(r.state === 'FAILED' ? { reason: r.reason ?? 'unknown' } : {}),
    };
    row += rows;
    return shard;
  });
  const done = shards.filter((s) => s.state === 'DONE');
  const options = {
    input: payload.input,
    input_format: payload.inputFormat,
    ...(payload.source !== undefined ? { source: payload.source } : {}),
    batch_size: payload.batchSize,
    enable_image: payload.enableImage,
    enable_text: payload.enableText,
    enable_metadata: payload.enableMetadata,
    shard_size: payload.shardSize,
    output_partition_count: payload.shardCount,
    subset_size: payload.subsetSize,
    output_dtype: payload.outputDtype,
    dtype: payload.dtype,
    preprocess_mode: payload.preprocessMode,
  };
  const failedSamples = done.reduce((a, s) => a + s.failed, 0);
  const samples = payload.sampleCount ?? row + failedSamples;
  const manifest: JobManifest = {
    glimpse: { format: 'clip-retrieval', layout: 'sharded', version: 1 },
    job,
    complete: done.length === shards.length,
    model: payload.fingerprint,
    options,
    counts: {
      samples,
      rows: row,
      failed: failedSamples,
      shards: shards.length,
      shards_done: done.length,
      shards_failed: shards.length - done.length,
    },
    shards,
  };
  const status = manifest.complete ? await store.status(job) : undefined;
  await withOutput(payload.output, outputOptions, async (target) => {
    // A shard FAILED for good may have left files (a worker killed while renaming or uploading): they are
    // not part of the output.
    for (const s of shards) {
      if (s.state !== 'FAILED') continue;
      await target.remove([commitMarker(s.index, shards.length), ...shardFiles(s.index, shards.length)]);
    }
    await target.writeFile('manifest.json', JSON.stringify(manifest, null, 2) + '\n');
    if (!status) return;
    await target.writeFile(
      'glimpse.json',
      JSON.stringify(
        {
          glimpse: { format: 'clip-retrieval', version: 1 },
          model: payload.fingerprint,
          options,
          counts: {
            samples,
            embedded: manifest.counts.rows,
            failed: manifest.counts.failed,
            partitions: shards.length,
          },
          partitions: shards.map((s) => ({ name: s.name, rows: s.rows, failed: s.failed })),
          job: { name: job, ledger: store.kind, shards: shards.length },
          ...(status.startedAt ? { started_at: status.startedAt } : {}),
          ...(status.lastFinishedAt ? { finished_at: status.lastFinishedAt } : {}),
        },
        null,
        2,
      ) + '\n',
    );
  });
  return manifest;
}

/**
 * Removes `manifest.json` and `glimpse.json` from a job's output: after `retry-failed` or `reset` the job
 * is no longer finished, and the worker that finishes it writes them again.
 *
 * @example
 *   await store.reset('photos');
 *   await clearJobManifest(store, 'photos');
 */
export async function clearJobManifest(
  store: JobStore,
  job: string,
  options: JobOutputOptions = {},
): Promise<void> {
  const payload = embedPayload(await store.getJob(job));
  await withOutput(payload.output, options, (target) => target.remove(['glimpse.json', 'manifest.json']));
}

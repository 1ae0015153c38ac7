/**
 * The end of a sharded job: `manifest.json` lists every shard in order with its state, rows (numbered
 * across shards), failures and files, plus the model fingerprint and settings. Only what the content of
 * the output determines is in it (no times, no attempt counts), so an interrupted and resumed job writes
 * the same manifest as an uninterrupted one. When every shard is DONE, `glimpse.json` (the same record
 * `glimpse embed` writes) is written last, so tools that import embed outputs read sharded ones too.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/fs-atomic.js';
import { partitionName } from '../sinks/clip-retrieval.js';
import type { ModelFingerprint } from '../models/types.js';
import type { JobStore } from './store.js';
import { embedPayload } from './plan.js';
import type { ShardState } from './types.js';

/** One shard in `manifest.json`. */
export interface ManifestShard {
  readonly id: string;
  readonly index: number;
  /** Partition name in the file names (`img_emb/img_emb_{name}.npy`). */
  readonly name: string;
  readonly state: Extract<ShardState, 'DONE' | 'FAILED'>;
  /** Samples `[start, end)` of the input's sorted order. */
  readonly samples: readonly [number, number] | null;
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
export async function finalizeJob(store: JobStore, job: string): Promise<JobManifest | undefined> {
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
  const manifest: JobManifest = {
    glimpse: { format: 'clip-retrieval', layout: 'sharded', version: 1 },
    job,
    complete: done.length === shards.length,
    model: payload.fingerprint,
    options,
    counts: {
      samples: payload.sampleCount,
      rows: row,
      failed: done.reduce((a, s) => a + s.failed, 0),
      shards: shards.length,
      shards_done: done.length,
      shards_failed: shards.length - done.length,
    },
    shards,
  };
  await writeFileAtomic(join(payload.output, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  if (manifest.complete) {
    const status = await store.status(job);
    await writeFileAtomic(
      join(payload.output, 'glimpse.json'),
      JSON.stringify(
        {
          glimpse: { format: 'clip-retrieval', version: 1 },
          model: payload.fingerprint,
          options,
          counts: {
            samples: payload.sampleCount,
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
  }
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
export async function clearJobManifest(store: JobStore, job: string): Promise<void> {
  const payload = embedPayload(await store.getJob(job));
  for (const name of ['glimpse.json', 'manifest.json']) await rm(join(payload.output, name), { force: true });
}

/**
 * One shard of a sharded job → its own file set in the clip-retrieval layout (partition number = shard
 * number): `img_emb/img_emb_{p}.npy`, `text_emb/text_emb_{p}.npy`, `metadata/metadata_{p}.parquet`,
 * `failures/failures_{p}.jsonl`, `stats/stats_{p}.json`. Every file is written under a temp name, fsynced
 * and renamed by `PartitionWriter`; `beforeCommit` runs between the last row and the first rename, so a
 * caller that lost its claim on the shard (fencing) stops before any final name is touched.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syncDir } from '../core/fs-atomic.js';
import type { DecodePool } from '../decode/pool.js';
import type { Sample, SourceIssue } from '../sources/types.js';
import {
  PartitionWriter,
  partitionName,
  type OutputDtype,
  type PartitionStats,
} from '../sinks/clip-retrieval.js';
import type { ClipModel } from './model.js';
import { embedIntoPartition } from './stream.js';

/** The folders of the layout and the file name of partition `{p}` in each. */
const LAYOUT: readonly [folder: string, name: (p: string) => string][] = [
  ['stats', (p) => `stats_${p}.json`],
  ['img_emb', (p) => `img_emb_${p}.npy`],
  ['text_emb', (p) => `text_emb_${p}.npy`],
  ['metadata', (p) => `metadata_${p}.parquet`],
  ['failures', (p) => `failures_${p}.jsonl`],
];

/**
 * The files a shard may have, relative to the output, `stats/` first (it is written last: a shard
 * whose stats file exists was complete when written).
 *
 * @example
 *   shardFiles(3, 120); // ['stats/stats_003.json', 'img_emb/img_emb_003.npy', 'text_emb/text_emb_003.npy', …]
 */
export function shardFiles(partition: number, partitionCount: number): string[] {
  const p = partitionName(partition, partitionCount);
  return LAYOUT.map(([folder, name]) => `${folder}/${name(p)}`);
}

/**
 * Removes every file of a shard: final names (stats first, so a half-removed shard never looks
 * complete) and temp files left by a killed writer (`.img_emb_003.npy.tmp-<pid>-<hex>`). Run before a
 * shard is (re)done: files of a shard the ledger does not call DONE are never trusted.
 *
 * @example
 *   await clearShardFiles('out/', 3, 120);
 */
export async function clearShardFiles(
  outDir: string,
  partition: number,
  partitionCount: number,
): Promise<void> {
  const p = partitionName(partition, partitionCount);
  for (const [folder, name] of LAYOUT) {
    const dir = join(outDir, folder);
    const final = name(p);
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch {
      continue;
    }
    const temp = `.${final}.tmp-`;
    let removed = false;
    for (const e of entries) {
      if (e === final || e.startsWith(temp)) {
        await rm(join(dir, e), { force: true });
        removed = true;
      }
    }
    if (removed) await syncDir(dir);
  }
}

export interface EmbedShardOptions {
  model: ClipModel;
  /** Decode workers (required when images are enabled). */
  pool: DecodePool | undefined;
  /** The shard's samples, in order. */
  samples: AsyncIterable<Sample>;
  /** An upper bound on the shard's samples (sizes the npy header placeholder). */
  capacity: number;
  /** Output folder. */
  outDir: string;
  /** Partition number of the shard (its index in the job). */
  partition: number;
  /** Shards in the job (sets the zero-padding of names). */
  partitionCount: number;
  enableImage: boolean;
  enableText: boolean;
  enableMetadata: boolean;
  outputDtype: OutputDtype;
  batchSize: number;
  signal?: AbortSignal;
  /** Input problems that are not one sample (a corrupt tar), recorded in the shard's failures file. */
  takeIssues?: () => SourceIssue[];
  /** After each batch: samples finished (written or failed) and failed in it. */
  onBatch?: (done: number, failed: number) => void;
  /** Runs after the last row, before any file is renamed into place; throwing aborts the shard. */
  beforeCommit?: () => Promise<void>;
}

export interface EmbeddedShard {
  stats: PartitionStats;
  /** Files written, relative to the output, in the order they were renamed into place. */
  files: readonly string[];
}

/**
 * Embeds one shard's samples into its own file set. Bad samples are recorded in the shard's failures
 * file; an abort (signal) or a throwing `beforeCommit` removes the temp files and renames nothing.
 *
 * @example
 *   await clearShardFiles(out, 7, 40);
 *   const { stats } = await embedShard({
 *     model, pool, samples: source.read({ start: 70_000, end: 80_000 }), capacity: 10_000,
 *     outDir: out, partition: 7, partitionCount: 40, enableImage: true, enableText: false,
 *     enableMetadata: true, outputDtype: 'float16', batchSize: 32,
 *   });
 *   console.log(`${stats.sample_count} rows`);
 */
export async function embedShard(options: EmbedShardOptions): Promise<EmbeddedShard> {
  const { model, signal } = options;
  const writer = new PartitionWriter(
    {
      outDir: options.outDir,
      enableImage: options.enableImage,
      enableText: options.enableText,
      enableMetadata: options.enableMetadata,
      outputDtype: options.outputDtype,
      partitionCount: options.partitionCount,
    },
    options.partition,
    Math.max(options.capacity, 1),
  );
  const drainIssues = (): void => {
    for (const issue of options.takeIssues?.() ?? []) writer.recordSourceIssue(issue);
  };
  let timing: Record<string, number>;
  try {
    timing = await embedIntoPartition(model, options.samples, writer, {
      pool: options.pool,
      batchSize: options.batchSize,
      enableImage: options.enableImage,
      enableText: options.enableText,
      signal,
      drainIssues,
      ...(options.onBatch ? { onBatch: options.onBatch } : {}),
    });
    drainIssues();
    signal?.throwIfAborted();
    await options.beforeCommit?.();
    signal?.throwIfAborted();
  } catch (err) {
    await writer.abort();
    throw err;
  }
  const stats = await writer.commit(timing);
  return { stats, files: [...writer.files()] };
}

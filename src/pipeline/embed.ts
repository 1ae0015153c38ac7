import { availableParallelism } from 'node:os';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { GlimpseError, isGlimpseError } from '../errors/index.js';
import { assertOneOf, assertPositiveInteger, invalidParameterError } from '../core/validate.js';
import { ProgressTracker, type ProgressCallback } from '../core/progress.js';
import { writeFileAtomic } from '../core/fs-atomic.js';
import { MODEL_DTYPES, type ModelDtype } from '../models/types.js';
import { createFolderSource } from '../sources/folder.js';
import type { Sample } from '../sources/types.js';
import { DecodePool, type DecodeLimits } from '../decode/pool.js';
import {
  PartitionWriter,
  partitionName,
  type OutputDtype,
  type PartitionStats,
} from '../sinks/clip-retrieval.js';
import { loadModel, type ClipModel } from './model.js';
import { embedSamples } from './stream.js';

/** The plain, validated description of an embed job that the CLI, the library and the server all build. */
export interface EmbedJobOptions {
  /** Input folder. */
  input: string;
  /** Output folder (must be new or empty unless `overwrite`). */
  output: string;
  /** Input format (only `files` here; WebDataset and manifests are separate sources). */
  inputFormat?: 'files';
  /** Model folder or hub id. */
  model: string;
  dtype?: ModelDtype;
  /** Images per inference batch (default 32: small enough that Ctrl-C answers within a second or two). */
  batchSize?: number;
  /** Decode worker threads (default: cores). */
  numPreproWorkers?: number;
  enableImage?: boolean;
  /** Default `auto`: on when the input has captions. */
  enableText?: boolean | 'auto';
  enableMetadata?: boolean;
  /** Samples per output partition (default 1,000,000, like clip-retrieval). */
  writeBatchSize?: number;
  /** Exact number of partitions (overrides writeBatchSize). */
  outputPartitionCount?: number;
  /** Only the first N samples. */
  subsetSize?: number;
  outputDtype?: OutputDtype;
  overwrite?: boolean;
  preprocessMode?: 'exact' | 'fast';
  limits?: DecodeLimits;
  intraOpThreads?: number;
  cacheDir?: string;
  offline?: boolean;
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
}

export interface EmbedJobResult {
  output: string;
  samples: number;
  embedded: number;
  failed: number;
  partitions: number;
  seconds: number;
  /** Images (or texts, for text-only runs) per second, end to end. */
  rate: number;
  stats: PartitionStats[];
}

/** Files and folders glimpse writes into an output folder (what `overwrite` replaces). */
const OUTPUT_ENTRIES = ['img_emb', 'text_emb', 'metadata', 'failures', 'stats', 'glimpse.json'];

function validate(
  o: EmbedJobOptions,
): Required<Pick<EmbedJobOptions, 'batchSize' | 'writeBatchSize' | 'outputDtype' | 'dtype'>> {
  if (typeof o.input !== 'string' || o.input === '')
    throw invalidParameterError('input', 'an input folder', o.input);
  if (typeof o.output !== 'string' || o.output === '')
    throw invalidParameterError('output', 'an output folder', o.output);
  if (typeof o.model !== 'string' || o.model === '')
    throw invalidParameterError('model', 'a model folder or hub id', o.model);
  if (o.inputFormat !== undefined) assertOneOf('inputFormat', o.inputFormat, ['files'] as const);
  const dtype = o.dtype ?? 'fp32';
  assertOneOf('dtype', dtype, MODEL_DTYPES);
  const batchSize = o.batchSize ?? 32;
  assertPositiveInteger('batchSize', batchSize, 4096);
  const writeBatchSize = o.writeBatchSize ?? 1_000_000;
  assertPositiveInteger('writeBatchSize', writeBatchSize);
  if (o.outputPartitionCount !== undefined)
    assertPositiveInteger('outputPartitionCount', o.outputPartitionCount);
  if (o.subsetSize !== undefined) assertPositiveInteger('subsetSize', o.subsetSize);
  if (o.numPreproWorkers !== undefined) assertPositiveInteger('numPreproWorkers', o.numPreproWorkers, 256);
  const outputDtype = o.outputDtype ?? 'float16';
  assertOneOf('outputDtype', outputDtype, ['float16', 'float32'] as const);
  if (o.enableImage === false && o.enableText === false) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      'Expected at least one of enableImage, enableText but received both false',
    );
  }
  return { batchSize, writeBatchSize, outputDtype, dtype };
}

async function prepareOutput(output: string, overwrite: boolean): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await readdir(output);
  } catch {
    // does not exist yet
  }
  if (entries.length > 0) {
    if (!overwrite) {
      throw new GlimpseError(
        'GLIMPSE_E_OUTPUT_EXISTS',
        `Expected a new or empty output folder but ${output} has ${entries.length} entries (pass --overwrite to replace its outputs)`,
      );
    }
    for (const e of entries)
      if (OUTPUT_ENTRIES.includes(e)) await rm(join(output, e), { recursive: true, force: true });
  }
  await mkdir(output, { recursive: true });
}

/**
 * Runs one embed job: folder → decode (worker threads) → inference → clip-retrieval layout.
 * Memory stays flat: a bounded window of decodes in flight, one batch in inference, embeddings streamed to
 * temp files per partition. Bad items are recorded in `failures/` and counted; they never stop the job.
 *
 * @example
 *   const r = await runEmbedJob({ input: 'photos/', output: 'out/', model: 'openai/clip-vit-base-patch32' });
 *   console.log(`${r.embedded} embedded, ${r.failed} failed`);
 */
export async function runEmbedJob(options: EmbedJobOptions): Promise<EmbedJobResult> {
  const { batchSize, writeBatchSize, outputDtype, dtype } = validate(options);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const signal = options.signal;
  if (signal?.aborted)
    throw new GlimpseError(
      'GLIMPSE_E_ABORTED',
      'Expected to start the embed job but it was cancelled before it began',
    );

  const source = await createFolderSource(options.input, {
    enableImage: options.enableImage ?? true,
    enableText: options.enableText ?? 'auto',
    enableMetadata: options.enableMetadata ?? true,
    ...(options.subsetSize !== undefined ? { subsetSize: options.subsetSize } : {}),
  });
  const total = source.size ?? 0;
  if (total === 0) {
    const hint =
      source.listing.imagesWithoutCaption > 0
        ? ` (${source.listing.imagesWithoutCaption} images have no caption; pass --enable-text false to embed them)`
        : '';
    throw new GlimpseError('GLIMPSE_E_SOURCE_EMPTY', `no sample found in ${options.input}${hint}`);
  }
  const enableImage = source.enableImage;
  const enableText = source.enableText;
  const enableMetadata = options.enableMetadata ?? true;
  await prepareOutput(options.output, options.overwrite ?? false);

  const partitionCount = options.outputPartitionCount ?? Math.ceil(total / writeBatchSize);
  const perPartition =
    options.outputPartitionCount !== undefined ? Math.ceil(total / partitionCount) : writeBatchSize;

  const model = await loadModel(options.model, {
    dtype,
    ...(options.intraOpThreads !== undefined ? { intraOpThreads: options.intraOpThreads } : {}),
    ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
    ...(options.offline !== undefined ? { offline: options.offline } : {}),
    ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
  });
  const workers = options.numPreproWorkers ?? availableParallelism();
  const pool = enableImage
    ? new DecodePool({
        preprocess: model.folder.preprocess,
        workers,
        limits: options.limits ?? {},
        mode: options.preprocessMode ?? 'exact',
      })
    : undefined;
  const tracker = new ProgressTracker('embed', total, options.onProgress);
  const stats: PartitionStats[] = [];
  let current: PartitionWriter | undefined;
  try {
    // Open sessions before the clock matters, and fail early on a broken model.
    if (enableImage) await model.visionSession();
    if (enableText) {
      await model.textSession();
      await model.tokenizer();
    }
    for (let p = 0; p < partitionCount; p++) {
      const start = p * perPartition;
      const end = Math.min(total, start + perPartition);
      if (start >= end) break;
      current = new PartitionWriter(
        { outDir: options.output, enableImage, enableText, enableMetadata, outputDtype, partitionCount },
        p,
        end - start,
      );
      const seconds = await embedRange(
        model,
        source.read({ start, end, ...(signal ? { signal } : {}) }),
        current,
        {
          pool,
          batchSize,
          enableImage,
          enableText,
          tracker,
          signal,
        },
      );
      signal?.throwIfAborted();
      stats.push(await current.commit(seconds));
      current = undefined;
    }
  } catch (err) {
    await current?.abort();
    if (signal?.aborted) {
      throw new GlimpseError(
        'GLIMPSE_E_ABORTED',
        `Expected the embed job to finish but it was cancelled after ${tracker.done} samples; finished partitions were kept, unfinished ones removed`,
        { cause: err },
      );
    }
    throw err;
  } finally {
    await pool?.close();
    await model.close();
  }

  const done = tracker.finish();
  const embedded = stats.reduce((a, s) => a + s.sample_count, 0);
  const failed = stats.reduce((a, s) => a + s.failed_count, 0);
  const seconds = (performance.now() - started) / 1000;
  const result: EmbedJobResult = {
    output: options.output,
    samples: total,
    embedded,
    failed,
    partitions: stats.length,
    seconds,
    rate: done.done / Math.max(seconds, 1e-9),
    stats,
  };
  await writeFileAtomic(
    join(options.output, 'glimpse.json'),
    JSON.stringify(
      {
        glimpse: { format: 'clip-retrieval', version: 1 },
        model: model.fingerprint,
        options: {
          input: options.input,
          input_format: 'files',
          batch_size: batchSize,
          enable_image: enableImage,
          enable_text: enableText,
          enable_metadata: enableMetadata,
          write_batch_size: writeBatchSize,
          output_partition_count: partitionCount,
          subset_size: options.subsetSize ?? null,
          output_dtype: outputDtype,
          dtype,
          preprocess_mode: options.preprocessMode ?? 'exact',
        },
        counts: {
          samples: total,
          embedded,
          failed,
          partitions: stats.length,
          images_without_caption: source.listing.imagesWithoutCaption,
        },
        partitions: stats.map((s) => ({
          name: partitionName(s.partition, partitionCount),
          rows: s.sample_count,
          failed: s.failed_count,
        })),
        started_at: startedAt,
        finished_at: new Date().toISOString(),
        seconds,
      },
      null,
      2,
    ) + '\n',
  );
  return result;
}

interface RangeContext {
  pool: DecodePool | undefined;
  batchSize: number;
  enableImage: boolean;
  enableText: boolean;
  tracker: ProgressTracker;
  signal: AbortSignal | undefined;
}

/** Embeds one partition's samples, in order, into `writer`. Returns seconds spent per stage. */
async function embedRange(
  model: ClipModel,
  samples: AsyncIterable<Sample>,
  writer: PartitionWriter,
  ctx: RangeContext,
): Promise<Record<string, number>> {
  const timing = { decode_wait: 0, image_inference: 0, text_inference: 0, write: 0 };
  for await (const batch of embedSamples(model, samples, ctx)) {
    for (const f of batch.failures) writer.recordFailure(f);
    timing.decode_wait += batch.seconds.decodeWait;
    timing.image_inference += batch.seconds.imageInference;
    timing.text_inference += batch.seconds.textInference;
    const t = performance.now();
    const meta = batch.samples.map((s) => {
      const m: { imagePath?: string; caption?: string; json?: Record<string, unknown> } = {
        imagePath: s.imagePath ?? s.key,
      };
      if (s.caption !== undefined) m.caption = s.caption;
      if (s.meta !== undefined) m.json = s.meta;
      return m;
    });
    try {
      await writer.append({
        rows: batch.samples.length,
        ...(batch.imageEmbeddings ? { imageEmbeddings: batch.imageEmbeddings } : {}),
        ...(batch.textEmbeddings ? { textEmbeddings: batch.textEmbeddings } : {}),
        meta,
      });
    } catch (err) {
      if (isGlimpseError(err)) throw err;
      throw new GlimpseError(
        'GLIMPSE_E_OUTPUT_WRITE_FAILED',
        `Expected to write embeddings but ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    timing.write += (performance.now() - t) / 1000;
    ctx.tracker.add(batch.samples.length + batch.failures.length, batch.failures.length);
  }
  return timing;
}

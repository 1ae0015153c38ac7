import { availableParallelism } from 'node:os';
import { GlimpseError } from '../errors/index.js';
import {
  assertOneOf,
  assertPositiveInteger,
  invalidParameterError,
  isNonNegativeInteger,
} from '../core/validate.js';
import { ProgressTracker, type ProgressCallback } from '../core/progress.js';
import { MODEL_DTYPES, type ModelDtype } from '../models/types.js';
import type { StorageOptions } from '../storage/index.js';
import { INPUT_FORMATS, openSource, type InputFormat, type OpenedSource } from '../sources/index.js';
import type { Sample, SourceIssue } from '../sources/types.js';
import { DecodePool, type DecodeLimits } from '../decode/pool.js';
import {
  PartitionWriter,
  partitionName,
  type OutputDtype,
  type PartitionStats,
} from '../sinks/clip-retrieval.js';
import { openOutput, type OutputTarget } from '../sinks/output.js';
import { loadModel, type ClipModel } from './model.js';
import { embedIntoPartition } from './stream.js';

/** The plain, validated description of an embed job that the CLI, the library and the server all build. */
export interface EmbedJobOptions {
  /**
   * Input: a folder (`files`); shard paths, brace patterns, globs or `.txt` lists (`webdataset`). Local
   * paths, `http(s)://` or `s3://` URLs. Several inputs as an array.
   */
  input: string | readonly string[];
  /** Output folder or `s3://bucket/prefix` (must be new or empty unless `overwrite`). */
  output: string;
  /** Input format (default `files`). */
  inputFormat?: InputFormat;
  /** WebDataset image member extensions, in order of preference (default `jpg`; e.g. `jpg;png;webp`). */
  wdsImageKey?: string;
  /** WebDataset caption member extension (default `txt`). */
  wdsCaptionKey?: string;
  /** Manifest column with the image URL or path (default `url`). */
  urlCol?: string;
  /** Manifest column with the caption (default none; text is on when given). */
  captionCol?: string;
  /** Keep a manifest's other columns as metadata (default false: only `url`). */
  saveAdditionalColumns?: boolean;
  /** Manifest downloads in flight (default 64), apart from the decode window. */
  downloadConcurrency?: number;
  /** Connect and idle-read timeout of one download attempt, in milliseconds (default 10,000 / 20,000). */
  downloadTimeoutMs?: number;
  /** Retries of a download after a transient failure: 5xx, 429, timeout, reset (default 3). */
  downloadRetries?: number;
  /** User-Agent of downloads (default `glimpse/<version>`). */
  userAgent?: string;
  /** Storage options for remote inputs and outputs (S3 endpoint and credentials, HTTP timeouts). */
  storage?: StorageOptions;
  /** Parent folder of the local staging folder of a remote output (default: the OS temp folder). */
  stagingDir?: string;
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
  /** Exact number of partitions (overrides writeBatchSize; needs a sample count known before streaming). */
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
  /** Samples read from the input (embedded + failed). */
  samples: number;
  embedded: number;
  failed: number;
  partitions: number;
  seconds: number;
  /** Images (or texts, for text-only runs) per second, end to end. */
  rate: number;
  stats: PartitionStats[];
  /** Input problems that are not one sample (corrupt shards…), also recorded in failures/. */
  sourceIssues: SourceIssue[];
}

function validate(
  o: EmbedJobOptions,
): Required<Pick<EmbedJobOptions, 'batchSize' | 'writeBatchSize' | 'outputDtype' | 'dtype' | 'inputFormat'>> {
  const inputs = typeof o.input === 'string' ? [o.input] : o.input;
  if (!Array.isArray(inputs) || inputs.length === 0 || inputs.some((i) => typeof i !== 'string' || i === ''))
    throw invalidParameterError(
      'input',
      'an input folder, file or URL (or a non-empty array of them)',
      o.input,
    );
  if (typeof o.output !== 'string' || o.output === '')
    throw invalidParameterError('output', 'an output folder or s3:// URL', o.output);
  if (typeof o.model !== 'string' || o.model === '')
    throw invalidParameterError('model', 'a model folder or hub id', o.model);
  const inputFormat = o.inputFormat ?? 'files';
  assertOneOf('inputFormat', inputFormat, INPUT_FORMATS);
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
  if (o.downloadConcurrency !== undefined)
    assertPositiveInteger('downloadConcurrency', o.downloadConcurrency, 4096);
  if (o.downloadTimeoutMs !== undefined) assertPositiveInteger('downloadTimeoutMs', o.downloadTimeoutMs);
  if (o.downloadRetries !== undefined && !isNonNegativeInteger(o.downloadRetries))
    throw invalidParameterError('downloadRetries', 'a non-negative integer', o.downloadRetries);
  const outputDtype = o.outputDtype ?? 'float16';
  assertOneOf('outputDtype', outputDtype, ['float16', 'float32'] as const);
  if (o.enableImage === false && o.enableText === false) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      'Expected at least one of enableImage, enableText but received both false',
    );
  }
  return { batchSize, writeBatchSize, outputDtype, dtype, inputFormat };
}

/** One pass over a source shared by consecutive partitions: `until(end)` stops before index `end`. */
class SampleStream {
  private head: Sample | undefined;
  private ended = false;

  constructor(private readonly iterator: AsyncIterator<Sample>) {}

  async peek(): Promise<Sample | undefined> {
    if (this.head === undefined && !this.ended) {
      const next = await this.iterator.next();
      if (next.done) this.ended = true;
      else this.head = next.value;
    }
    return this.head;
  }

  async *until(end: number): AsyncGenerator<Sample> {
    for (;;) {
      const s = await this.peek();
      if (s === undefined || s.index >= end) return;
      this.head = undefined;
      yield s;
    }
  }

  async close(): Promise<void> {
    this.ended = true;
    await this.iterator.return?.();
  }
}

function describeInput(input: string | readonly string[]): string {
  if (typeof input === 'string') return input;
  return input.length === 1 ? input[0]! : `${input[0]} (+${input.length - 1} more)`;
}

/**
 * Runs one embed job: source (folder, WebDataset shards) → decode (worker threads) → inference →
 * clip-retrieval layout, in a local folder or an S3 prefix. Memory stays flat: the source is streamed once,
 * a bounded window of decodes is in flight, one batch is in inference, and embeddings are streamed to temp
 * files per partition. Bad items are recorded in `failures/` and counted; they never stop the job.
 *
 * Partitions: when the source knows its size before streaming (folders; local uncompressed shards through
 * a header-only pre-scan), `ceil(size / writeBatchSize)` partitions (or exactly `outputPartitionCount`), as
 * clip-retrieval. Otherwise (remote shards) a partition is cut every `writeBatchSize` samples and names are
 * zero-padded for the source's upper bound on samples, so lexicographic order stays numeric order.
 *
 * @example
 *   const r = await runEmbedJob({ input: 'photos/', output: 'out/', model: 'openai/clip-vit-base-patch32' });
 *   console.log(`${r.embedded} embedded, ${r.failed} failed`);
 *   await runEmbedJob({ input: 's3://data/shards/{00000..00099}.tar', inputFormat: 'webdataset', output: 's3://data/emb', model: 'models/vit-b-32' });
 */
export async function runEmbedJob(options: EmbedJobOptions): Promise<EmbedJobResult> {
  const { batchSize, writeBatchSize, outputDtype, dtype, inputFormat } = validate(options);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const signal = options.signal;
  const aborted = (): GlimpseError =>
    new GlimpseError(
      'GLIMPSE_E_ABORTED',
      'Expected to start the embed job but it was cancelled before it began',
    );
  if (signal?.aborted) throw aborted();

  const enableMetadata = options.enableMetadata ?? true;
  const source: OpenedSource = await openSource({
    input: options.input,
    inputFormat,
    enableImage: options.enableImage ?? true,
    enableText: options.enableText ?? 'auto',
    enableMetadata,
    ...(options.subsetSize !== undefined ? { subsetSize: options.subsetSize } : {}),
    ...(options.wdsImageKey !== undefined ? { wdsImageKey: options.wdsImageKey } : {}),
    ...(options.wdsCaptionKey !== undefined ? { wdsCaptionKey: options.wdsCaptionKey } : {}),
    ...(options.limits?.maxBytes !== undefined ? { maxImageBytes: options.limits.maxBytes } : {}),
    ...(options.storage !== undefined ? { storage: options.storage } : {}),
    ...(options.urlCol !== undefined ? { urlCol: options.urlCol } : {}),
    ...(options.captionCol !== undefined ? { captionCol: options.captionCol } : {}),
    ...(options.saveAdditionalColumns !== undefined
      ? { saveAdditionalColumns: options.saveAdditionalColumns }
      : {}),
    ...(options.downloadConcurrency !== undefined
      ? { downloadConcurrency: options.downloadConcurrency }
      : {}),
    ...(options.downloadTimeoutMs !== undefined ? { downloadTimeoutMs: options.downloadTimeoutMs } : {}),
    ...(options.downloadRetries !== undefined ? { downloadRetries: options.downloadRetries } : {}),
    ...(options.userAgent !== undefined ? { userAgent: options.userAgent } : {}),
  });
  const enableImage = source.enableImage;
  const enableText = source.enableText;
  const stream = new SampleStream(source.read(signal ? { signal } : {})[Symbol.asyncIterator]());
  const issues: SourceIssue[] = [];
  const stats: PartitionStats[] = [];
  let output: OutputTarget | undefined;
  let model: ClipModel | undefined;
  let pool: DecodePool | undefined;
  let current: PartitionWriter | undefined;
  let tracker: ProgressTracker | undefined;
  try {
    // The first sample before anything is written or loaded: an empty input fails fast.
    if ((await stream.peek()) === undefined) {
      const found = source.takeIssues?.() ?? [];
      const why = found.length > 0 ? `; ${found.map((i) => `${i.code}: ${i.message}`).join('; ')}` : '';
      throw new GlimpseError(
        'GLIMPSE_E_SOURCE_EMPTY',
        `no sample found in ${describeInput(options.input)}${source.emptyHint()}${why}`,
      );
    }
    const total = source.size;
    let partitionCount: number;
    let perPartition: number;
    if (total !== undefined) {
      const known = Math.max(total, 1);
      partitionCount = options.outputPartitionCount ?? Math.ceil(known / writeBatchSize);
      perPartition =
        options.outputPartitionCount !== undefined ? Math.ceil(known / partitionCount) : writeBatchSize;
    } else {
      if (options.outputPartitionCount !== undefined) {
        throw new GlimpseError(
          'GLIMPSE_E_NOT_SUPPORTED',
          `Expected a sample count known before streaming for outputPartitionCount but ${describeInput(options.input)} is streamed (remote or compressed shards); use writeBatchSize (--write-batch-size) instead`,
        );
      }
      perPartition = writeBatchSize;
      const bound = source.sizeBound ?? Number.MAX_SAFE_INTEGER;
      partitionCount = Math.max(1, Math.ceil(bound / writeBatchSize));
    }

    output = await openOutput(options.output, {
      ...(options.storage !== undefined ? { storage: options.storage } : {}),
      ...(options.stagingDir !== undefined ? { stagingDir: options.stagingDir } : {}),
    });
    await output.prepare(options.overwrite ?? false);

    model = await loadModel(options.model, {
      dtype,
      ...(options.intraOpThreads !== undefined ? { intraOpThreads: options.intraOpThreads } : {}),
      ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
      ...(options.offline !== undefined ? { offline: options.offline } : {}),
      ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
    });
    const workers = options.numPreproWorkers ?? availableParallelism();
    pool = enableImage
      ? new DecodePool({
          preprocess: model.folder.preprocess,
          workers,
          limits: options.limits ?? {},
          mode: options.preprocessMode ?? 'exact',
        })
      : undefined;
    tracker = new ProgressTracker('embed', total, options.onProgress);
    // Open sessions before the clock matters, and fail early on a broken model.
    if (enableImage) await model.visionSession();
    if (enableText) {
      await model.textSession();
      await model.tokenizer();
    }
    const drainIssues = (writer: PartitionWriter): void => {
      for (const issue of source.takeIssues?.() ?? []) {
        issues.push(issue);
        writer.recordSourceIssue(issue);
      }
    };
    for (let p = 0; ; p++) {
      if ((await stream.peek()) === undefined) break;
      if (p >= partitionCount) {
        if (total !== undefined) break;
        throw new GlimpseError(
          'GLIMPSE_E_INTERNAL',
          `Expected at most ${partitionCount} partitions (the source's bound) but there are more samples`,
        );
      }
      const last = total !== undefined && p === partitionCount - 1;
      const end = last ? Number.POSITIVE_INFINITY : (p + 1) * perPartition;
      current = new PartitionWriter(
        { outDir: output.dir, enableImage, enableText, enableMetadata, outputDtype, partitionCount },
        p,
        perPartition,
      );
      const seconds = await embedRange(model, stream.until(end), current, {
        pool,
        batchSize,
        enableImage,
        enableText,
        tracker,
        signal,
        drainIssues,
      });
      signal?.throwIfAborted();
      // Problems found while looking for the next partition's first sample belong to this one.
      await stream.peek();
      drainIssues(current);
      const partitionStats = await current.commit(seconds);
      const files = current.files();
      current = undefined;
      await output.publish(files);
      stats.push(partitionStats);
    }

    const done = tracker.finish();
    const embedded = stats.reduce((a, s) => a + s.sample_count, 0);
    const failed = stats.reduce((a, s) => a + s.failed_count, 0);
    const seconds = (performance.now() - started) / 1000;
    const result: EmbedJobResult = {
      output: options.output,
      samples: embedded + failed,
      embedded,
      failed,
      partitions: stats.length,
      seconds,
      rate: done.done / Math.max(seconds, 1e-9),
      stats,
      sourceIssues: issues,
    };
    const info: Record<string, unknown> = {
      glimpse: { format: 'clip-retrieval', version: 1 },
      model: model.fingerprint,
      options: {
        input: options.input,
        input_format: inputFormat,
        ...(inputFormat === 'webdataset'
          ? { wds_image_key: options.wdsImageKey ?? 'jpg', wds_caption_key: options.wdsCaptionKey ?? 'txt' }
          : {}),
        ...(inputFormat !== 'files' && inputFormat !== 'webdataset'
          ? {
              url_col: options.urlCol ?? 'url',
              caption_col: options.captionCol ?? null,
              save_additional_columns: options.saveAdditionalColumns ?? false,
              download_concurrency: options.downloadConcurrency ?? 64,
            }
          : {}),
        batch_size: batchSize,
        enable_image: enableImage,
        enable_text: enableText,
        enable_metadata: enableMetadata,
        write_batch_size: writeBatchSize,
        output_partition_count: total !== undefined ? partitionCount : stats.length,
        subset_size: options.subsetSize ?? null,
        output_dtype: outputDtype,
        dtype,
        preprocess_mode: options.preprocessMode ?? 'exact',
      },
      counts: {
        samples: result.samples,
        embedded,
        failed,
        partitions: stats.length,
        ...(source.counts?.() ?? {}),
      },
      partitions: stats.map((s) => ({
        name: partitionName(s.partition, partitionCount),
        rows: s.sample_count,
        failed: s.failed_count,
      })),
      started_at: startedAt,
      finished_at: new Date().toISOString(),
      seconds,
    };
    if (issues.length > 0) info['source_issues'] = issues;
    await output.writeFile('glimpse.json', JSON.stringify(info, null, 2) + '\n');
    return result;
  } catch (err) {
    await current?.abort();
    if (signal?.aborted) {
      throw new GlimpseError(
        'GLIMPSE_E_ABORTED',
        `Expected the embed job to finish but it was cancelled after ${tracker?.done ?? 0} samples; finished partitions were kept, unfinished ones removed`,
        { cause: err },
      );
    }
    throw err;
  } finally {
    await stream.close().catch(() => undefined);
    source.close?.();
    await pool?.close();
    await model?.close();
    await output?.close();
  }
}

interface RangeContext {
  pool: DecodePool | undefined;
  batchSize: number;
  enableImage: boolean;
  enableText: boolean;
  tracker: ProgressTracker;
  signal: AbortSignal | undefined;
  /** Moves the source's pending issues into the partition. */
  drainIssues: (writer: PartitionWriter) => void;
}

/** Embeds one partition's samples, in order, into `writer`. Returns seconds spent per stage. */
function embedRange(
  model: ClipModel,
  samples: AsyncIterable<Sample>,
  writer: PartitionWriter,
  ctx: RangeContext,
): Promise<Record<string, number>> {
  return embedIntoPartition(model, samples, writer, {
    ...ctx,
    drainIssues: () => ctx.drainIssues(writer),
    onBatch: (done, failed) => ctx.tracker.add(done, failed),
  });
}

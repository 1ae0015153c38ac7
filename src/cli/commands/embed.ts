import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { GlimpseError } from '../../errors/index.js';
import { runEmbedJob, type EmbedJobOptions } from '../../pipeline/embed.js';
import { planJob, runLocalJob, type PlanJobOptions, type RunLocalJobOptions } from '../../jobs/index.js';
import type { InputFormat } from '../../sources/index.js';
import { createCliProgress } from '../progress.js';
import { inputFormatOptions, parseBoolOption, parseIntOption } from '../options.js';
import { withSignals } from '../signals.js';
import { parseByteSize } from '../../core/validate.js';

interface EmbedFlags {
  workers?: number;
  ledger?: string;
  job?: string;
  planOnly?: boolean;
  shardSize?: number;
  maxAttempts?: number;
  model: string;
  dtype: 'fp32' | 'fp16' | 'q8';
  inputFormat: InputFormat;
  wdsImageKey?: string;
  wdsCaptionKey?: string;
  urlCol?: string;
  captionCol?: string;
  saveAdditionalColumns?: boolean;
  downloadConcurrency?: number;
  downloadTimeout?: number;
  downloadRetries?: number;
  userAgent?: string;
  batchSize?: number;
  numPreproWorkers?: number;
  enableImage: boolean;
  enableText?: boolean;
  enableMetadata: boolean;
  writeBatchSize?: number;
  outputPartitionCount?: number;
  subsetSize?: number;
  outputDtype: 'float16' | 'float32';
  overwrite: boolean;
  preprocess: 'exact' | 'fast';
  maxPixels?: number;
  maxImageBytes?: string;
  threads?: number;
  cacheDir?: string;
  offline?: boolean;
  json?: boolean;
}

function parseRetries(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidArgumentError(
      `Expected a non-negative integer for --download-retries but received ${JSON.stringify(value)}`,
    );
  return n;
}

/**
 * `glimpse embed <input...> <output>`: a folder of images and captions, or WebDataset shards (local, HTTP,
 * S3) → clip-retrieval layout in a folder or an S3 prefix.
 */
export function registerEmbedCommand(program: Command): void {
  inputFormatOptions(
    program
      .command('embed')
      .description(
        'embed a folder of images (+ x.txt captions, x.json metadata), WebDataset shards or a manifest of URLs into img_emb/, text_emb/, metadata/',
      )
      .usage('[options] <input...> <output>')
      .argument(
        '<paths...>',
        'input(s) then the output: a folder; shards, brace patterns (data/{00000..00099}.tar), globs, .txt lists; manifest files; local paths, http(s):// or s3:// URLs. The output is a folder or s3://bucket/prefix',
      ),
  )
    .option('--model <id|dir>', 'model folder or hub id', 'openai/clip-vit-base-patch32')
    .option('--dtype <fp32|fp16|q8>', 'ONNX precision variant', 'fp32')
    .option(
      '--download-concurrency <n>',
      'manifest downloads in flight (default 64)',
      parseIntOption('--download-concurrency'),
    )
    .option(
      '--download-timeout <seconds>',
      'connect / idle-read timeout of one download attempt (default 10 / 20)',
      parseIntOption('--download-timeout'),
    )
    .option('--download-retries <n>', 'retries after 5xx, 429, timeouts and resets (default 3)', parseRetries)
    .option('--user-agent <ua>', 'User-Agent of downloads (default glimpse/<version>)')
    .option('--batch-size <n>', 'images per inference batch (default 32)', parseIntOption('--batch-size'))
    .option(
      '--num-prepro-workers <n>',
      'decode worker threads (default: cores)',
      parseIntOption('--num-prepro-workers'),
    )
    .option('--enable-image [bool]', 'embed images', parseBoolOption('--enable-image'), true)
    .option(
      '--enable-text [bool]',
      'embed captions (default auto: when the input has captions; for manifests, when --caption-col is given)',
      parseBoolOption('--enable-text'),
    )
    .option(
      '--enable-metadata [bool]',
      'write x.json keys as metadata columns',
      parseBoolOption('--enable-metadata'),
      true,
    )
    .option(
      '--write-batch-size <n>',
      'samples per output partition (default 1000000)',
      parseIntOption('--write-batch-size'),
    )
    .option(
      '--output-partition-count <n>',
      'exact number of partitions',
      parseIntOption('--output-partition-count'),
    )
    .option('--subset-size <n>', 'only the first n samples', parseIntOption('--subset-size'))
    .option('--output-dtype <float16|float32>', 'npy element type', 'float16')
    .option('--overwrite', 'replace the outputs of an existing output folder', false)
    .option('--preprocess <exact|fast>', 'exact = OpenAI CLIP parity; fast = libvips resize', 'exact')
    .option('--max-pixels <n>', 'largest accepted image (width × height)', parseIntOption('--max-pixels'))
    .option('--max-image-bytes <size>', 'largest accepted image file, tar member or download (e.g. 64M)')
    .option('--threads <n>', 'inference intra-op threads (default: cores)', parseIntOption('--threads'))
    .option('--cache-dir <dir>', 'model cache folder')
    .option('--offline', 'never download models')
    .option(
      '--workers <n>',
      'run a sharded, resumable job with n local worker processes (SQLite ledger in <output>/.glimpse/)',
      parseIntOption('--workers'),
    )
    .option('--ledger <url>', 'job ledger: a SQLite path or redis://host:port/db (sharded, resumable job)')
    .option('--job <name>', 'job name in the ledger (default embed)')
    .option('--plan-only', 'only plan the shards into the ledger; run them with `glimpse worker`')
    .option('--shard-size <n>', 'samples per shard (default 10000)', parseIntOption('--shard-size'))
    .option(
      '--max-attempts <n>',
      'attempts per shard before it is FAILED for good (default 3)',
      parseIntOption('--max-attempts'),
    )
    .option('--json', 'print the result as JSON')
    .action(async (paths: string[], flags: EmbedFlags) => {
      if (paths.length < 2)
        throw new GlimpseError(
          'GLIMPSE_E_ARG_INVALID',
          `Expected an input and an output but received ${paths.length} path(s)`,
        );
      const output = paths[paths.length - 1]!;
      const inputs = paths.slice(0, -1);
      const input = inputs.length === 1 ? inputs[0]! : inputs;
      const progress = createCliProgress();
      await withSignals(async (signal) => {
        const options: EmbedJobOptions = {
          input,
          output,
          model: flags.model,
          dtype: flags.dtype,
          inputFormat: flags.inputFormat,
          enableImage: flags.enableImage,
          enableText: flags.enableText ?? 'auto',
          enableMetadata: flags.enableMetadata,
          outputDtype: flags.outputDtype,
          overwrite: flags.overwrite,
          preprocessMode: flags.preprocess,
          signal,
          onProgress: progress.onProgress,
        };
        if (flags.inputFormat === 'webdataset') {
          options.wdsImageKey = flags.wdsImageKey ?? 'jpg';
          options.wdsCaptionKey = flags.wdsCaptionKey ?? 'txt';
        }
        if (flags.urlCol !== undefined) options.urlCol = flags.urlCol;
        if (flags.captionCol !== undefined) options.captionCol = flags.captionCol;
        if (flags.saveAdditionalColumns !== undefined)
          options.saveAdditionalColumns = flags.saveAdditionalColumns;
        if (flags.downloadConcurrency !== undefined) options.downloadConcurrency = flags.downloadConcurrency;
        if (flags.downloadTimeout !== undefined) options.downloadTimeoutMs = flags.downloadTimeout * 1000;
        if (flags.downloadRetries !== undefined) options.downloadRetries = flags.downloadRetries;
        if (flags.userAgent !== undefined) options.userAgent = flags.userAgent;
        if (flags.batchSize !== undefined) options.batchSize = flags.batchSize;
        if (flags.numPreproWorkers !== undefined) options.numPreproWorkers = flags.numPreproWorkers;
        if (flags.writeBatchSize !== undefined) options.writeBatchSize = flags.writeBatchSize;
        if (flags.outputPartitionCount !== undefined)
          options.outputPartitionCount = flags.outputPartitionCount;
        if (flags.subsetSize !== undefined) options.subsetSize = flags.subsetSize;
        if (flags.threads !== undefined) options.intraOpThreads = flags.threads;
        if (flags.cacheDir !== undefined) options.cacheDir = flags.cacheDir;
        if (flags.offline !== undefined) options.offline = flags.offline;
        const limits: NonNullable<EmbedJobOptions['limits']> = {};
        if (flags.maxPixels !== undefined) limits.maxPixels = flags.maxPixels;
        if (flags.maxImageBytes !== undefined)
          limits.maxBytes = parseByteSize('--max-image-bytes', flags.maxImageBytes);
        options.limits = limits;
        if (flags.workers !== undefined || flags.ledger !== undefined || flags.planOnly === true) {
          try {
            await runShardedEmbed(options, flags);
          } finally {
            progress.stop();
          }
          return;
        }
        try {
          const r = await runEmbedJob(options);
          if (flags.json) process.stdout.write(JSON.stringify({ ...r, stats: undefined }) + '\n');
          else
            process.stdout.write(
              `embedded ${r.embedded} of ${r.samples} samples into ${r.partitions} partition(s) in ${output} (${r.failed} failed, ${r.rate.toFixed(1)} samples/s)\n`,
            );
        } finally {
          progress.stop();
        }
      });
    });
}

/**
 * `embed --workers N`, `--ledger URL`, `--plan-only`: the same validated options, run as a sharded,
 * resumable job through a ledger (see docs/jobs.md). Re-running the same command resumes.
 */
async function runShardedEmbed(options: EmbedJobOptions, flags: EmbedFlags): Promise<void> {
  const plan: PlanJobOptions = {
    input: options.input,
    output: options.output,
    model: options.model,
    job: flags.job ?? 'embed',
  };
  const copy = [
    'inputFormat',
    'wdsImageKey',
    'wdsCaptionKey',
    'urlCol',
    'captionCol',
    'saveAdditionalColumns',
    'downloadConcurrency',
    'downloadTimeoutMs',
    'downloadRetries',
    'userAgent',
    'storage',
    'dtype',
    'batchSize',
    'enableImage',
    'enableText',
    'enableMetadata',
    'outputDtype',
    'preprocessMode',
    'limits',
    'subsetSize',
    'overwrite',
    'cacheDir',
  ] as const;
  for (const key of copy) {
    if (options[key] !== undefined) Object.assign(plan, { [key]: options[key] });
  }
  if (flags.ledger !== undefined) plan.ledger = flags.ledger;
  if (flags.shardSize !== undefined) plan.shardSize = flags.shardSize;
  if (flags.maxAttempts !== undefined) plan.maxAttempts = flags.maxAttempts;
  if (flags.planOnly === true) {
    const p = await planJob(plan);
    process.stdout.write(
      flags.json
        ? JSON.stringify({
            job: p.job,
            ledger: p.ledger,
            created: p.created,
            shards: p.shards,
            samples: p.samples,
          }) + '\n'
        : `planned job ${p.job}: ${p.shards} shard(s), ${p.samples} samples in ${p.ledger}${p.created ? '' : ' (already planned: resuming)'}; start workers with: glimpse worker --ledger ${p.ledger} --job ${p.job}\n`,
    );
    return;
  }
  const local: RunLocalJobOptions = { ...plan, ledger: flags.ledger, workers: flags.workers ?? 1 };
  if (flags.ledger === undefined) delete local.ledger;
  if (options.numPreproWorkers !== undefined) local.numPreproWorkers = options.numPreproWorkers;
  if (options.intraOpThreads !== undefined) local.intraOpThreads = options.intraOpThreads;
  if (options.signal !== undefined) local.signal = options.signal;
  if (options.onProgress !== undefined) local.onProgress = options.onProgress;
  const r = await runLocalJob(local);
  const s = r.status;
  if (flags.json) process.stdout.write(JSON.stringify({ complete: r.complete, status: s }) + '\n');
  else
    process.stdout.write(
      `job ${s.job}: ${s.counts.DONE}/${s.total} shard(s) done, ${s.counts.FAILED} failed for good; ${s.rows} rows, ${s.failedSamples} failed samples in ${options.output}\n`,
    );
  if (!r.complete) {
    throw new GlimpseError(
      'GLIMPSE_E_JOB_SHARDS_FAILED',
      `Expected every shard of job ${s.job} to be DONE but ${s.total - s.counts.DONE} are not (see glimpse job status ${flags.ledger !== undefined ? `--ledger ${flags.ledger}` : `--output ${options.output}`} --job ${s.job})`,
    );
  }
}

import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { GlimpseError } from '../../errors/index.js';
import { runEmbedJob, type EmbedJobOptions } from '../../pipeline/embed.js';
import { INPUT_FORMATS, type InputFormat } from '../../sources/index.js';
import { createCliProgress } from '../progress.js';
import { parseBoolOption, parseIntOption } from '../options.js';
import { withSignals } from '../signals.js';
import { parseByteSize } from '../../core/validate.js';

interface EmbedFlags {
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

function parseInputFormat(value: string): InputFormat {
  if (!(INPUT_FORMATS as readonly string[]).includes(value))
    throw new InvalidArgumentError(
      `Expected one of ${INPUT_FORMATS.join(', ')} for --input-format but received ${JSON.stringify(value)}`,
    );
  return value as InputFormat;
}

/**
 * `glimpse embed <input...> <output>`: a folder of images and captions, or WebDataset shards (local, HTTP,
 * S3) → clip-retrieval layout in a folder or an S3 prefix.
 */
export function registerEmbedCommand(program: Command): void {
  program
    .command('embed')
    .description(
      'embed a folder of images (+ x.txt captions, x.json metadata), WebDataset shards or a manifest of URLs into img_emb/, text_emb/, metadata/',
    )
    .usage('[options] <input...> <output>')
    .argument(
      '<paths...>',
      'input(s) then the output: a folder; shards, brace patterns (data/{00000..00099}.tar), globs, .txt lists; manifest files; local paths, http(s):// or s3:// URLs. The output is a folder or s3://bucket/prefix',
    )
    .option('--model <id|dir>', 'model folder or hub id', 'openai/clip-vit-base-patch32')
    .option('--dtype <fp32|fp16|q8>', 'ONNX precision variant', 'fp32')
    .option(`--input-format <${INPUT_FORMATS.join('|')}>`, 'input format', parseInputFormat, 'files')
    .option('--wds-image-key <exts>', 'WebDataset image member extension(s), first present wins', 'jpg')
    .option('--wds-caption-key <ext>', 'WebDataset caption member extension', 'txt')
    .option('--url-col <name>', 'manifest column with the image URL or path (default url)')
    .option('--caption-col <name>', 'manifest column with the caption (text is on when given)')
    .option(
      '--save-additional-columns [bool]',
      "keep the manifest's other columns as metadata",
      parseBoolOption('--save-additional-columns'),
    )
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

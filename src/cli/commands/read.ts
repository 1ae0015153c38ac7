import { InvalidArgumentError, type Command } from 'commander';
import { parseByteSize } from '../../core/validate.js';
import { EmbeddingReader, exportEmbeddings, type EmbeddingFormat } from '../../reader/index.js';
import { createCliProgress } from '../progress.js';
import { withSignals } from '../signals.js';

interface ReadFlags {
  format: EmbeddingFormat;
  metadataFolder?: string;
  metaColumns?: string;
  embeddingColumn?: string;
  start?: number;
  end?: number;
  batchSize?: number;
  export?: string;
  dtype?: 'float16' | 'float32';
  maxRam?: string;
  maxPieceSize?: string;
  parallelPieces?: number;
  json?: boolean;
  progress?: boolean;
}

function parseCount(name: string, min: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
      throw new InvalidArgumentError(
        `Expected ${min === 0 ? 'a non-negative' : 'a positive'} integer for ${name} but received ${JSON.stringify(value)}`,
      );
    }
    return n;
  };
}

function parseBytesOption(name: string): (value: string) => string {
  return (value: string) => {
    try {
      parseByteSize(name, value);
    } catch (err) {
      throw new InvalidArgumentError(err instanceof Error ? err.message : String(err));
    }
    return value;
  };
}

function human(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(2)} ${units[u]}`;
}

/**
 * `glimpse read <folder...>`: prints a collection's count, dimension and sizes (from npy headers and
 * parquet footers only), and with `--export out.npy|out.parquet` writes a row range to a new file
 * atomically. Folders may be local, `http(s)://` (directory index, index file or file URLs) or `s3://`.
 *
 * @example
 *   registerReadCommand(program);
 *   // glimpse read out/img_emb --format parquet_npy --meta-columns image_path --start 0 --end 1000 --export first.parquet
 */
export function registerReadCommand(
  program: Command,
  io: { stdout: { write(text: string): unknown } } = { stdout: process.stdout },
): void {
  program
    .command('read')
    .description('inspect an embedding collection (npy, parquet, parquet_npy) and export a row range')
    .argument('<folders...>', 'folders, index files or file URLs (local, http(s)://, s3://), read in order')
    .option('--format <npy|parquet|parquet_npy>', 'collection format', 'npy')
    .option('--metadata-folder <dir>', 'parquet_npy: metadata folder (default: the metadata folder beside)')
    .option('--meta-columns <a,b>', 'metadata columns to export with the embeddings')
    .option('--embedding-column <name>', 'parquet: embedding column', 'embedding')
    .option('--start <n>', 'first row (inclusive)', parseCount('--start', 0))
    .option('--end <n>', 'last row (exclusive)', parseCount('--end', 0))
    .option('--batch-size <n>', 'rows per batch while exporting', parseCount('--batch-size', 1))
    .option('--export <file>', 'write rows [start, end) to a new .npy or .parquet file (local or s3://)')
    .option('--dtype <float16|float32>', 'npy export dtype (default: as stored)')
    .option(
      '--max-ram <bytes>',
      'cap on bytes held while reading (e.g. 4G)',
      parseBytesOption('--max-ram'),
      '4G',
    )
    .option(
      '--max-piece-size <bytes>',
      'largest single read (e.g. 50M)',
      parseBytesOption('--max-piece-size'),
      '50M',
    )
    .option('--parallel-pieces <n>', 'reads in flight', parseCount('--parallel-pieces', 1), 8)
    .option('--no-progress', 'no progress bar while exporting')
    .option('--json', 'print the result as JSON')
    .action(async (folders: string[], flags: ReadFlags) => {
      const reader = await EmbeddingReader.open(folders, {
        format: flags.format,
        embeddingColumn: flags.embeddingColumn ?? 'embedding',
        metaColumns:
          flags.metaColumns === undefined
            ? []
            : flags.metaColumns
                .split(',')
                .map((c) => c.trim())
                .filter((c) => c !== ''),
        ...(flags.metadataFolder !== undefined ? { metadataFolder: flags.metadataFolder } : {}),
      });
      try {
        const info = {
          count: reader.count,
          dimension: reader.dimension,
          bytePerItem: reader.bytePerItem,
          totalSize: reader.totalSize,
          nbFiles: reader.nbFiles,
          maxFileSize: reader.maxFileSize,
          dtype: reader.storedDtype,
          format: reader.format,
        };
        let exported:
          { rows: number; format: 'npy' | 'parquet'; target: string; start: number; end: number } | undefined;
        if (flags.export !== undefined) {
          const target = flags.export;
          const start = flags.start ?? 0;
          const end = flags.end ?? reader.count;
          const progress =
            flags.progress === false || flags.json ? undefined : createCliProgress({ unit: 'rows' });
          try {
            const r = await withSignals((signal) =>
              exportEmbeddings(reader, target, {
                start,
                end,
                ...(flags.dtype !== undefined ? { dtype: flags.dtype } : {}),
                ...(flags.batchSize !== undefined ? { batchSize: flags.batchSize } : {}),
                read: {
                  maxRamBytes: flags.maxRam ?? '4G',
                  maxPieceSize: flags.maxPieceSize ?? '50M',
                  parallelPieces: flags.parallelPieces ?? 8,
                  signal,
                  ...(progress ? { onProgress: progress.onProgress } : {}),
                },
              }),
            );
            exported = { ...r, start, end };
          } finally {
            progress?.stop();
          }
        }
        if (flags.json) {
          io.stdout.write(JSON.stringify(exported ? { ...info, exported } : info) + '\n');
          return;
        }
        const lines = [
          `count        ${info.count}`,
          `dimension    ${info.dimension}`,
          `bytePerItem  ${info.bytePerItem}`,
          `totalSize    ${info.totalSize} (${human(info.totalSize)})`,
          `nbFiles      ${info.nbFiles}`,
          `maxFileSize  ${info.maxFileSize} (${human(info.maxFileSize)})`,
          `dtype        ${info.dtype}`,
        ];
        if (exported)
          lines.push(
            `exported     rows ${exported.start}–${exported.end} (${exported.rows}) to ${exported.target}`,
          );
        io.stdout.write(lines.join('\n') + '\n');
      } finally {
        reader.close();
      }
    });
}

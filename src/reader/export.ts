import { GlimpseError } from '../errors/index.js';
import { encodeNpyHeader } from '../formats/npy.js';
import { encodeParquet, type ParquetColumn, type ParquetColumnType } from '../formats/parquet.js';
import { openStorage, storageKind, type StorageOptions } from '../storage/index.js';
import type { EmbeddingReader } from './embedding-reader.js';
import type { EmbeddingDtype, ReadOptions } from './types.js';

export interface ExportOptions {
  /** Output format (default from the target's extension: `.npy` or `.parquet`). */
  format?: 'npy' | 'parquet';
  start?: number;
  end?: number;
  /** npy: stored dtype of the output (default the collection's). parquet always stores float32 lists. */
  dtype?: EmbeddingDtype;
  batchSize?: number;
  /** Read options passed through (pieces, memory, progress). */
  read?: Pick<
    ReadOptions,
    'maxPieceSize' | 'parallelPieces' | 'maxRamBytes' | 'showProgress' | 'onProgress' | 'signal'
  >;
  storageOptions?: StorageOptions;
}

/**
 * Writes rows `[start, end)` of a collection to one new file, atomically (temp + rename locally, one
 * object on S3): an `(n, d)` npy file streamed batch by batch, or a parquet file with an `embedding`
 * list column and the reader's metaColumns (built in memory: meant for ranges, not whole collections).
 *
 * @example
 *   const { rows } = await exportEmbeddings(reader, 'slice.npy', { start: 1000, end: 2000 });
 */
export async function exportEmbeddings(
  reader: EmbeddingReader,
  target: string,
  options: ExportOptions = {},
): Promise<{ rows: number; format: 'npy' | 'parquet'; target: string }> {
  const format =
    options.format ??
    (target.toLowerCase().endsWith('.parquet')
      ? 'parquet'
      : target.toLowerCase().endsWith('.npy')
        ? 'npy'
        : undefined);
  if (format === undefined) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected an export target ending in .npy or .parquet (or an explicit format) but received ${JSON.stringify(target)}`,
    );
  }
  if (storageKind(target) === 'http') {
    throw new GlimpseError(
      'GLIMPSE_E_NOT_SUPPORTED',
      `Expected a local path or s3:// URL to export to but received ${target}`,
    );
  }
  const start = options.start ?? 0;
  const end = options.end ?? reader.count;
  const rows = Math.max(0, end - start);
  const storage = openStorage(target, options.storageOptions);
  try {
    if (format === 'npy') {
      const dtype = options.dtype ?? reader.storedDtype;
      const batches = reader.read({
        ...options.read,
        start,
        end,
        dtype,
        batchSize: options.batchSize ?? 65_536,
      });
      async function* body(): AsyncGenerator<Uint8Array> {
        yield encodeNpyHeader(dtype, [rows, reader.dimension]);
        for await (const b of batches) {
          const data = b.embeddings.data;
          yield new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
        }
      }
      await storage.writeAtomic(target, body());
      return { rows, format, target };
    }
    const embeddings: Float32Array[] = [];
    const meta: Record<string, unknown>[] = [];
    for await (const b of reader.read({
      ...options.read,
      start,
      end,
      dtype: 'float32',
      batchSize: options.batchSize ?? 65_536,
    })) {
      const d = b.embeddings.dimension;
      for (let r = 0; r < b.embeddings.rows; r++)
        embeddings.push(b.embeddings.data.slice(r * d, (r + 1) * d) as Float32Array);
      if (b.meta) meta.push(...b.meta);
    }
    const columns: ParquetColumn[] = [{ name: 'embedding', type: 'FLOAT_LIST', data: embeddings }];
    for (const name of reader.metaColumns) {
      const values = meta.map((m) => m[name] ?? null);
      const type = inferType(values);
      columns.push({
        name,
        type,
        data: values.map((v) =>
          v === null
            ? null
            : type === 'STRING' && typeof v !== 'string'
              ? JSON.stringify(v, jsonBigint)
              : (v as string),
        ),
      });
    }
    await storage.writeAtomic(target, encodeParquet(columns));
    return { rows, format, target };
  } finally {
    storage.close();
  }
}

function inferType(values: readonly unknown[]): Exclude<ParquetColumnType, 'FLOAT_LIST'> {
  const kinds = new Set(values.filter((v) => v !== null && v !== undefined).map((v) => typeof v));
  if (kinds.size === 1) {
    if (kinds.has('bigint')) return 'INT64';
    if (kinds.has('number')) return 'DOUBLE';
    if (kinds.has('boolean')) return 'BOOLEAN';
  }
  return 'STRING';
}

function jsonBigint(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/**
 * Manifest sources: parquet, CSV, TSV or JSONL files (local, `http(s)://`, `s3://`) whose rows name an
 * image by URL or path, with an optional caption column and other columns kept as metadata. Images are
 * downloaded by a bounded window of concurrent downloads, separate from the decode window downstream.
 */
import { GlimpseError } from '../errors/index.js';
import { invalidParameterError } from '../core/validate.js';
import { readParquetColumns, readParquetMetadata, type ParquetFileInfo } from '../formats/parquet.js';
import { localPath, storageKind, type StorageOptions } from '../storage/index.js';
import { CsvParser } from './csv.js';
import { Downloader, inCompletionOrder, type DownloadOptions } from './download.js';
import { expandInputs, resolveBeside } from './shards.js';
import { StorageSet } from './storages.js';
import type { Sample, SampleSource } from './types.js';

export const MANIFEST_FORMATS = ['parquet', 'csv', 'tsv', 'jsonl'] as const;
export type ManifestFormat = (typeof MANIFEST_FORMATS)[number];

export interface ManifestSourceOptions {
  format: ManifestFormat;
  /** The column with the image URL or path (default `url`). Relative paths resolve beside the manifest. */
  urlCol?: string;
  /** The caption column (default: none). */
  captionCol?: string;
  /** Keep the other columns as metadata (default false: only `url`). */
  saveAdditionalColumns?: boolean;
  /** Samples have images (default true). */
  enableImage?: boolean;
  /** Samples have captions (default `auto`: when `captionCol` is given). */
  enableText?: boolean | 'auto';
  /** Write `url` (and the additional columns) as metadata (default true). */
  enableMetadata?: boolean;
  /** Only the first N rows. */
  subsetSize?: number;
  download?: DownloadOptions;
  /** Storage options for remote manifests and `s3://` images. */
  storage?: StorageOptions;
}

export interface ManifestSource extends SampleSource {
  readonly files: readonly string[];
  readonly enableImage: boolean;
  readonly enableText: boolean;
}

/** Rows read from parquet per range read. */
const PARQUET_ROWS = 8192;

type Row = { values: Record<string, unknown>; error?: undefined } | { values?: undefined; error: string };

/** Streams a text file's UTF-8 chunks through the storage layer. */
async function* textChunks(storages: StorageSet, url: string): AsyncGenerator<string> {
  const stream = await storages.for(url).createReadStream(url);
  const decoder = new TextDecoder('utf-8');
  try {
    for await (const chunk of stream as AsyncIterable<Uint8Array>)
      yield decoder.decode(chunk, { stream: true });
    const rest = decoder.decode();
    if (rest !== '') yield rest;
  } finally {
    stream.destroy();
  }
}

function manifestError(file: string, message: string, cause?: unknown): GlimpseError {
  return new GlimpseError('GLIMPSE_E_SOURCE_MANIFEST_INVALID', `Expected ${message} in ${file}`, {
    ...(cause !== undefined ? { cause } : {}),
    details: { manifest: file },
  });
}

async function* csvRows(storages: StorageSet, file: string, delimiter: string): AsyncGenerator<Row> {
  const parser = new CsvParser(delimiter, file);
  let header: string[] | undefined;
  const toRow = (record: string[]): Row | undefined => {
    if (header === undefined) {
      header = record;
      return undefined;
    }
    if (record.length !== header.length) {
      return { error: `the row has ${record.length} fields but the header has ${header.length}` };
    }
    const values: Record<string, unknown> = {};
    header.forEach((h, i) => (values[h] = record[i]));
    return { values };
  };
  for await (const chunk of textChunks(storages, file)) {
    for (const record of parser.push(chunk)) {
      const row = toRow(record);
      if (row) yield row;
    }
  }
  for (const record of parser.end()) {
    const row = toRow(record);
    if (row) yield row;
  }
  if (header === undefined) throw manifestError(file, 'a header row');
}

async function csvHeader(storages: StorageSet, file: string, delimiter: string): Promise<string[]> {
  const parser = new CsvParser(delimiter, file);
  for await (const chunk of textChunks(storages, file)) {
    const records = parser.push(chunk);
    if (records.length > 0) return records[0]!;
  }
  const last = parser.end();
  if (last.length > 0) return last[0]!;
  throw manifestError(file, 'a header row');
}

async function* jsonlRows(storages: StorageSet, file: string): AsyncGenerator<Row> {
  let pending = '';
  const parse = (line: string): Row | undefined => {
    const text = line.trim();
    if (text === '') return undefined;
    try {
      const v: unknown = JSON.parse(text);
      if (typeof v !== 'object' || v === null || Array.isArray(v))
        return { error: `the line is ${Array.isArray(v) ? 'an array' : typeof v}, not a JSON object` };
      return { values: v as Record<string, unknown> };
    } catch (err) {
      return { error: `the line is not JSON: ${(err as Error).message}` };
    }
  };
  for await (const chunk of textChunks(storages, file)) {
    pending += chunk;
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      const row = parse(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      if (row) yield row;
      nl = pending.indexOf('\n');
    }
  }
  const row = parse(pending);
  if (row) yield row;
}

async function* parquetRows(storages: StorageSet, file: string, info: ParquetFileInfo): AsyncGenerator<Row> {
  const reader = await storages.for(file).rangeReader(file);
  for (let start = 0; start < info.numRows; start += PARQUET_ROWS) {
    const end = Math.min(info.numRows, start + PARQUET_ROWS);
    const { columns } = await readParquetColumns(reader, { rowStart: start, rowEnd: end, info });
    const names = Object.keys(columns);
    for (let r = 0; r < end - start; r++) {
      const values: Record<string, unknown> = {};
      for (const n of names) values[n] = columns[n]![r];
      yield { values };
    }
  }
}

/**
 * Opens manifest files for streaming. The rows are counted first (the parquet footer; one parsing pass for
 * CSV, TSV and JSONL), so the size is exact. Each row becomes one sample: the image downloaded (`http(s)://`,
 * `s3://`) or read from a path, `image_path` and the `url` metadata column being the row's value. Samples
 * come in the order their downloads finish (a slow server holds up no one); a failed download is a failed
 * sample with its coded reason.
 *
 * @example
 *   const source = await createManifestSource('urls.parquet', { format: 'parquet', captionCol: 'caption', download: { concurrency: 64 } });
 *   for await (const s of source.read()) console.log(s.name, s.error?.code ?? s.imageBytes?.length);
 *   source.close?.();
 */
export async function createManifestSource(
  inputs: string | readonly string[],
  options: ManifestSourceOptions,
): Promise<ManifestSource> {
  const format = options.format;
  if (!(MANIFEST_FORMATS as readonly string[]).includes(format))
    throw invalidParameterError('format', `one of ${MANIFEST_FORMATS.join(', ')}`, format);
  const urlCol = options.urlCol ?? 'url';
  const captionCol = options.captionCol;
  const enableImage = options.enableImage ?? true;
  const enableText =
    options.enableText === 'auto' || options.enableText === undefined
      ? captionCol !== undefined
      : options.enableText;
  if (enableText && captionCol === undefined) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      'Expected a caption column (--caption-col) for a manifest with text enabled but none was given',
    );
  }
  const enableMetadata = options.enableMetadata ?? true;
  const storages = new StorageSet(options.storage);
  try {
    const files = await expandInputs(typeof inputs === 'string' ? [inputs] : inputs, storages);
    const parquetInfo = new Map<string, ParquetFileInfo>();
    const required = [...(enableImage ? [urlCol] : []), ...(enableText && captionCol ? [captionCol] : [])];
    const rowsOf = (file: string): AsyncGenerator<Row> =>
      format === 'parquet'
        ? parquetRows(storages, file, parquetInfo.get(file)!)
        : format === 'jsonl'
          ? jsonlRows(storages, file)
          : csvRows(storages, file, format === 'tsv' ? '\t' : ',');

    // Columns first (fail before any download), then the exact row count.
    let size = 0;
    /** Rows of each file: a range read skips whole files before its first row. */
    const fileRows = new Map<string, number>();
    for (const file of files) {
      let columns: string[] | undefined;
      const before = size;
      try {
        if (format === 'parquet') {
          const info = await readParquetMetadata(await storages.for(file).rangeReader(file));
          parquetInfo.set(file, info);
          columns = info.columns.map((c) => c.name);
          size += info.numRows;
        } else if (format !== 'jsonl') {
          columns = await csvHeader(storages, file, format === 'tsv' ? '\t' : ',');
        }
        if (format !== 'parquet') {
          for await (const row of rowsOf(file)) {
            if (columns === undefined && row.values !== undefined) columns = Object.keys(row.values);
            size++;
          }
        }
      } catch (err) {
        if (err instanceof GlimpseError && err.code === 'GLIMPSE_E_SOURCE_MANIFEST_INVALID') throw err;
        throw manifestError(file, `a readable ${format} manifest but ${(err as Error).message}`, err);
      }
      fileRows.set(file, size - before);
      const missing = required.filter((c) => columns !== undefined && !columns.includes(c));
      if (missing.length > 0) {
        throw manifestError(
          file,
          `the column(s) ${missing.map((m) => JSON.stringify(m)).join(', ')} (--url-col, --caption-col) but it has ${(columns ?? []).map((c) => JSON.stringify(c)).join(', ')}`,
        );
      }
    }
    if (options.subsetSize !== undefined) size = Math.min(size, options.subsetSize);
    const limit = options.subsetSize ?? Number.POSITIVE_INFINITY;

    const downloader = new Downloader({
      ...(options.download ?? {}),
      ...(options.storage ? { storage: options.storage } : {}),
    });
    const counters = { manifest_files: files.length, rows: 0, downloads: 0, download_failures: 0 };

    interface Item {
      file: string;
      row: number;
      value: Row;
    }
    /** Rows `[start, end)` (global row numbers) of the files in order; rows before `start` are not downloaded. */
    async function* items(start: number, end: number): AsyncGenerator<Item> {
      let row = 0;
      for (const file of files) {
        const rows = fileRows.get(file) ?? 0;
        if (row + rows <= start) {
          row += rows;
          continue;
        }
        for await (const value of rowsOf(file)) {
          if (row >= limit || row >= end) return;
          if (row >= start) yield { file, row, value };
          row++;
        }
      }
    }

    type Draft = { -readonly [K in keyof Sample]: Sample[K] };
    const toSample = async (item: Item): Promise<Draft> => {
      counters.rows++;
      const { file, row, value } = item;
      if (value.error !== undefined) {
        return {
          key: `${file}#${row}`,
          index: row,
          error: {
            code: 'GLIMPSE_E_SOURCE_MANIFEST_INVALID',
            message: `Expected a valid row ${row} in ${file} but ${value.error}`,
          },
        };
      }
      const raw = value.values[urlCol];
      const url = typeof raw === 'string' ? raw.trim() : raw === null || raw === undefined ? '' : String(raw);
      const sample: Draft = { key: url !== '' ? url : `${file}#${row}`, index: row };
      if (url !== '') sample.name = url;
      if (enableText && captionCol !== undefined) {
        const c = value.values[captionCol];
        if (typeof c === 'string') sample.caption = c;
        else if (typeof c === 'number' || typeof c === 'bigint' || typeof c === 'boolean')
          sample.caption = String(c);
      }
      if (enableMetadata) {
        const meta: Record<string, unknown> = {};
        if (url !== '') meta['url'] = url;
        if (options.saveAdditionalColumns) {
          for (const [k, v] of Object.entries(value.values))
            if (k !== urlCol && k !== captionCol && !(k === 'url' && url !== '')) meta[k] = v;
        }
        sample.meta = meta;
      }
      if (!enableImage) return sample;
      if (url === '') {
        sample.error = {
          code: 'GLIMPSE_E_SOURCE_MANIFEST_INVALID',
          message: `Expected an image URL or path in column ${JSON.stringify(urlCol)} of row ${row} of ${file} but it is empty`,
        };
        return sample;
      }
      const target = resolveBeside(file, url);
      if (storageKind(target) === 'local') {
        sample.imagePath = localPath(target);
        return sample;
      }
      const got = await downloader.fetch(target);
      if (got.ok) {
        counters.downloads++;
        sample.imageBytes = got.bytes;
      } else {
        counters.download_failures++;
        sample.error = { code: got.code, message: got.message };
      }
      return sample;
    };

    return {
      files,
      enableImage,
      enableText,
      size,
      counts: () => ({ ...counters }),
      close: () => {
        downloader.close();
        storages.close();
      },
      async *read(range = {}) {
        // Exactly the rows [start, end) by row number (a shard of a job), in the order their downloads finish.
        const start = range.start ?? 0;
        const end = range.end ?? Number.POSITIVE_INFINITY;
        for await (const s of inCompletionOrder(items(start, end), downloader.concurrency, toSample)) {
          range.signal?.throwIfAborted();
          yield s;
        }
      },
    };
  } catch (err) {
    storages.close();
    throw err;
  }
}

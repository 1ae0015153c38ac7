/**
 * Finds a collection's files and reads only their headers (npy) and footers (parquet): the counts,
 * dimension and checks of EmbeddingReader.init() never read embedding data.
 */
import { isTempName } from '../core/fs-atomic.js';
import { GlimpseError, isGlimpseError } from '../errors/index.js';
import {
  assertEmbeddingNpy,
  npyHeaderSize,
  parseNpyHeader,
  type EmbeddingNpyHeader,
} from '../formats/npy.js';
import { readParquetMetadata, type ParquetFileInfo } from '../formats/parquet.js';
import {
  compareNames,
  joinUrl,
  openStorage,
  parseListing,
  storageKind,
  type Storage,
  type StorageOptions,
} from '../storage/index.js';
import { join } from 'node:path';

/** A storage per backend kind, shared by every file of a reader. */
export class StoragePool {
  private readonly byKind = new Map<string, Storage>();
  constructor(private readonly options: StorageOptions | undefined) {}

  for(url: string): Storage {
    const kind = storageKind(url);
    let s = this.byKind.get(kind);
    if (!s) {
      s = openStorage(url, this.options);
      this.byKind.set(kind, s);
    }
    return s;
  }

  close(): void {
    for (const s of this.byKind.values()) s.close();
    this.byKind.clear();
  }
}

export interface FoundFile {
  readonly url: string;
  /** Size when the listing gave it. */
  readonly size: number | undefined;
}

const INDEX_FILE = /\.(json|txt)$/i;

/**
 * The files with extension `ext` of one collection entry, sorted by name:
 * - a file URL/path ending in `ext`: that file;
 * - an index file (`.json` array of names or `{files: [...]}`, or `.txt` with one name per line): the
 *   files it names, relative to its folder;
 * - a folder: its files (local readdir, S3 prefix listing, HTTP directory index).
 */
export async function findFiles(pool: StoragePool, entry: string, ext: string): Promise<FoundFile[]> {
  const storage = pool.for(entry);
  const lower = entry.toLowerCase().replace(/[?#].*$/, '');
  if (lower.endsWith(ext)) return [{ url: entry, size: undefined }];
  if (INDEX_FILE.test(lower)) {
    const text = new TextDecoder().decode(await storage.read(entry));
    const folder = entry.replace(/[?#].*$/, '').replace(/\/[^/]*$/, '');
    const base = storageKind(entry) === 'http' ? new URL(`${folder}/`) : new URL('http://index.invalid/');
    const names = parseListing(text, lower.endsWith('.json') ? 'application/json' : 'text/plain', base);
    if (names === undefined) {
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        `Expected the index file ${entry} to hold a JSON array of file names (or {"files": [...]}) or one name per line`,
        { details: { url: entry } },
      );
    }
    const dir = storageKind(entry) === 'local' ? entry.replace(/[/\\][^/\\]*$/, '') : folder;
    return names
      .filter((n) => n.toLowerCase().endsWith(ext))
      .sort(compareNames)
      .map((n) => ({ url: joinUrl(dir, n), size: undefined }));
  }
  const entries = await storage.list(entry);
  return entries
    .filter((e) => e.name.toLowerCase().endsWith(ext) && !e.name.startsWith('.') && !isTempName(e.name))
    .map((e) => ({ url: e.url, size: e.size }));
}

/** The `metadata` folder beside an embeddings folder (`out/img_emb` → `out/metadata`). */
export function siblingMetadataFolder(folder: string): string {
  const kind = storageKind(folder);
  const trimmed = folder.replace(/[/\\]+$/, '');
  if (kind === 'local' && !folder.startsWith('file://')) return join(trimmed, '..', 'metadata');
  const rootEnd = kind === 's3' ? trimmed.indexOf('/', 5) : trimmed.indexOf('/', trimmed.indexOf('//') + 2);
  const cut = trimmed.lastIndexOf('/');
  const parent = rootEnd === -1 || cut <= rootEnd - 1 ? trimmed : trimmed.slice(0, cut);
  return joinUrl(parent, 'metadata');
}

/** Reads and checks one npy header (1 range read, 2 if the header is over 4 KiB). */
export async function readNpyHeader(
  storage: Storage,
  url: string,
  size: number | undefined,
): Promise<{ header: EmbeddingNpyHeader; size: number }> {
  const known = size ?? (await storage.stat(url)).size;
  if (known < 10) {
    throw new GlimpseError(
      'GLIMPSE_E_NPY_INVALID',
      `Expected an npy header in ${url} but the file has only ${known} bytes: it is truncated`,
      { details: { source: url } },
    );
  }
  let bytes = await storage.readRange(url, 0, Math.min(known, 4096));
  const need = npyHeaderSize(bytes, url);
  if (need > bytes.length && need <= known) bytes = await storage.readRange(url, 0, need);
  const header = parseNpyHeader(bytes, url);
  assertEmbeddingNpy(header, url, known);
  return { header, size: known };
}

/** Reads one parquet footer (and the file size when unknown), naming the file on failure. */
export async function readFooter(
  storage: Storage,
  url: string,
  size: number | undefined,
): Promise<{ info: ParquetFileInfo; size: number }> {
  const reader = await storage.rangeReader(url, size);
  try {
    return { info: await readParquetMetadata(reader), size: reader.size };
  } catch (err) {
    if (isGlimpseError(err)) throw err;
    throw new GlimpseError('GLIMPSE_E_PARQUET_INVALID', `Expected a readable parquet file at ${url}`, {
      cause: err,
      details: { source: url },
    });
  }
}

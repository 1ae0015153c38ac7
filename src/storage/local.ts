import { open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { writeFileAtomic } from '../core/fs-atomic.js';
import { GlimpseError } from '../errors/index.js';
import type { RangeReader } from '../formats/parquet.js';
import { compareNames, localPath } from './url.js';
import type { ListEntry, ReadStreamOptions, StatResult, Storage, WriteBody } from './types.js';

function ioError(err: unknown, what: string, url: string): GlimpseError {
  const code = (err as { code?: string } | null)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new GlimpseError('GLIMPSE_E_STORAGE_NOT_FOUND', `Expected ${url} to exist but it does not`, {
      cause: err,
      details: { url },
    });
  }
  if (err instanceof GlimpseError) return err;
  const text = err instanceof Error ? err.message : String(err);
  return new GlimpseError('GLIMPSE_E_STORAGE_IO', `Expected to ${what} ${url} but ${text}`, {
    cause: err,
    details: { url },
  });
}

function checkRange(url: string, start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected a byte range 0 ≤ start ≤ end for ${url} but received [${start}, ${end})`,
    );
  }
}

/** Throws unless `into` is absent or exactly `end - start` bytes long. */
export function checkInto(url: string, start: number, end: number, into: Uint8Array | undefined): void {
  if (into !== undefined && into.length !== end - start) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected a buffer of ${end - start} bytes for range [${start}, ${end}) of ${url} but received ${into.length}`,
    );
  }
}

/**
 * Local files (paths or `file://` URLs). Writes go to a temp name beside the target, are fsynced and
 * renamed into place (src/core/fs-atomic.ts).
 *
 * @example
 *   const disk = new LocalStorage();
 *   const header = await disk.readRange('/data/img_emb/img_emb_0.npy', 0, 128);
 */
export class LocalStorage implements Storage {
  readonly kind = 'local' as const;

  async stat(url: string): Promise<StatResult> {
    try {
      const s = await stat(localPath(url));
      if (!s.isFile())
        throw new GlimpseError('GLIMPSE_E_STORAGE_IO', `Expected ${url} to be a file but it is not`);
      return { size: s.size, mtime: s.mtime };
    } catch (err) {
      throw ioError(err, 'stat', url);
    }
  }

  async readRange(url: string, start: number, end: number, into?: Uint8Array): Promise<Uint8Array> {
    checkRange(url, start, end);
    checkInto(url, start, end, into);
    let handle;
    try {
      handle = await open(localPath(url), 'r');
    } catch (err) {
      throw ioError(err, 'open', url);
    }
    try {
      const out = into ?? new Uint8Array(end - start);
      let filled = 0;
      while (filled < out.length) {
        const { bytesRead } = await handle.read(out, filled, out.length - filled, start + filled);
        if (bytesRead === 0) {
          throw new GlimpseError(
            'GLIMPSE_E_STORAGE_IO',
            `Expected bytes ${start}–${end} of ${url} but the file ends at ${start + filled}`,
            { details: { url, start, end } },
          );
        }
        filled += bytesRead;
      }
      return out;
    } catch (err) {
      throw ioError(err, 'read', url);
    } finally {
      await handle.close();
    }
  }

  async read(url: string): Promise<Uint8Array> {
    const { size } = await this.stat(url);
    return this.readRange(url, 0, size);
  }

  async createReadStream(url: string, options: ReadStreamOptions = {}): Promise<Readable> {
    const start = options.start ?? 0;
    if (options.end !== undefined) checkRange(url, start, options.end);
    if (options.end === start) {
      return Readable.from([]);
    }
    let handle;
    try {
      handle = await open(localPath(url), 'r');
    } catch (err) {
      throw ioError(err, 'open', url);
    }
    return handle.createReadStream({
      start,
      ...(options.end === undefined ? {} : { end: options.end - 1 }),
    });
  }

  async list(folderUrl: string): Promise<ListEntry[]> {
    const dir = localPath(folderUrl);
    let names;
    try {
      names = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      throw ioError(err, 'list', folderUrl);
    }
    const asUrl = folderUrl.startsWith('file://');
    const files = names.filter((d) => d.isFile() || d.isSymbolicLink()).map((d) => d.name);
    files.sort(compareNames);
    const out: ListEntry[] = [];
    for (const name of files) {
      const path = join(dir, name);
      try {
        const s = await stat(path);
        if (!s.isFile()) continue;
        out.push({
          url: asUrl ? folderUrl.replace(/\/+$/, '') + '/' + encodeURIComponent(name) : path,
          name,
          size: s.size,
        });
      } catch (err) {
        throw ioError(err, 'stat', path);
      }
    }
    return out;
  }

  async writeAtomic(url: string, body: WriteBody): Promise<void> {
    const path = localPath(url);
    try {
      await writeFileAtomic(path, body);
    } catch (err) {
      if (err instanceof GlimpseError) throw err;
      const text = err instanceof Error ? err.message : String(err);
      throw new GlimpseError('GLIMPSE_E_OUTPUT_WRITE_FAILED', `Expected to write ${url} but ${text}`, {
        cause: err,
        details: { url },
      });
    }
  }

  async exists(url: string): Promise<boolean> {
    try {
      await stat(localPath(url));
      return true;
    } catch {
      return false;
    }
  }

  async delete(url: string): Promise<void> {
    try {
      await rm(localPath(url), { force: true });
    } catch (err) {
      throw ioError(err, 'delete', url);
    }
  }

  async rangeReader(url: string, size?: number): Promise<RangeReader> {
    const known = size ?? (await this.stat(url)).size;
    return { name: url, size: known, readRange: (s, e) => this.readRange(url, s, e) };
  }

  close(): void {}
}

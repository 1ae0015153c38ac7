/**
 * Where an embed job's outputs go: a local folder (written in place), or an `s3://bucket/prefix` (written to
 * a local staging folder, then each finished file uploaded with `writeAtomic`; a partition counts as done
 * once its files, stats last, are uploaded).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GlimpseError } from '../errors/index.js';
import { writeFileAtomic } from '../core/fs-atomic.js';
import { joinUrl, openStorage, storageKind, type Storage, type StorageOptions } from '../storage/index.js';

/** Files and folders glimpse writes into an output (what `overwrite` replaces). */
export const OUTPUT_ENTRIES = [
  'img_emb',
  'text_emb',
  'metadata',
  'failures',
  'stats',
  'glimpse.json',
] as const;

/** Files at least this large are uploaded as streams (multipart in the storage layer), smaller ones in one PUT. */
const STREAM_UPLOAD_BYTES = 16 * 1024 * 1024;

export interface OutputTarget {
  /** The output as the user gave it (a folder or a URL). */
  readonly url: string;
  /** The local folder partition writers write into (the output itself, or a staging folder). */
  readonly dir: string;
  /** True when files are staged locally and uploaded. */
  readonly remote: boolean;
  /** Refuses a non-empty output unless `overwrite` (which removes only glimpse's own entries). */
  prepare(overwrite: boolean): Promise<void>;
  /** Makes finished files (paths relative to `dir`, in order) visible at the output; uploads them when remote. */
  publish(files: readonly string[]): Promise<void>;
  /** Writes one whole file at the output (`glimpse.json`). */
  writeFile(relative: string, data: string): Promise<void>;
  /** Removes files (paths relative to the output) from the output; missing ones are not an error. */
  remove(relatives: readonly string[]): Promise<void>;
  /** Removes the staging folder (remote) and frees clients. */
  close(): Promise<void>;
}

export interface OpenOutputOptions {
  storage?: StorageOptions;
  /** Parent of the staging folder for remote outputs (default: the OS temp folder). */
  stagingDir?: string;
  /** Top-level entries that are glimpse's own (what `prepare(true)` replaces; default OUTPUT_ENTRIES). */
  entries?: readonly string[];
}

class LocalOutput implements OutputTarget {
  readonly remote = false;
  readonly dir: string;

  constructor(
    readonly url: string,
    private readonly entries: readonly string[],
  ) {
    this.dir = url.startsWith('file://') ? new URL(url).pathname : url;
  }

  async prepare(overwrite: boolean): Promise<void> {
    let entries: string[] = [];
    try {
      entries = await readdir(this.dir);
    } catch {
      // does not exist yet
    }
    if (entries.length > 0) {
      if (!overwrite) {
        throw new GlimpseError(
          'GLIMPSE_E_OUTPUT_EXISTS',
          `Expected a new or empty output folder but ${this.url} has ${entries.length} entries (pass --overwrite to replace its outputs)`,
        );
      }
      for (const e of entries)
        if (this.entries.includes(e)) await rm(join(this.dir, e), { recursive: true, force: true });
    }
    await mkdir(this.dir, { recursive: true });
  }

  async publish(): Promise<void> {
    // Written in place, already renamed into their final names.
  }

  async writeFile(relative: string, data: string): Promise<void> {
    await writeFileAtomic(join(this.dir, relative), data);
  }

  async remove(relatives: readonly string[]): Promise<void> {
    for (const rel of relatives) await rm(join(this.dir, rel), { force: true });
  }

  async close(): Promise<void> {}
}

class RemoteOutput implements OutputTarget {
  readonly remote = true;

  constructor(
    readonly url: string,
    readonly dir: string,
    private readonly storage: Storage,
    private readonly entries: readonly string[],
  ) {}

  private async existing(): Promise<string[]> {
    const found: string[] = [];
    for (const e of await this.storage.list(this.url)) found.push(e.url);
    for (const sub of this.entries) {
      if (sub.endsWith('.json')) continue;
      for (const e of await this.storage.list(joinUrl(this.url, sub))) found.push(e.url);
    }
    return found;
  }

  async prepare(overwrite: boolean): Promise<void> {
    const found = await this.existing();
    if (found.length === 0) return;
    if (!overwrite) {
      throw new GlimpseError(
        'GLIMPSE_E_OUTPUT_EXISTS',
        `Expected a new or empty output at ${this.url} but it has ${found.length}+ objects (pass --overwrite to replace its outputs)`,
      );
    }
    const prefix = this.url.replace(/\/+$/, '') + '/';
    for (const u of found) {
      const rest = u.slice(prefix.length);
      const top = rest.split('/')[0] ?? '';
      if (this.entries.includes(top)) await this.storage.delete(u);
    }
  }

  async publish(files: readonly string[]): Promise<void> {
    for (const rel of files) {
      const local = join(this.dir, rel);
      const target = joinUrl(this.url, ...rel.split('/'));
      const { size } = await stat(local);
      await this.storage.writeAtomic(
        target,
        size < STREAM_UPLOAD_BYTES ? new Uint8Array(await readFile(local)) : createReadStream(local),
      );
      await rm(local, { force: true });
    }
  }

  async writeFile(relative: string, data: string): Promise<void> {
    await this.storage.writeAtomic(joinUrl(this.url, ...relative.split('/')), new TextEncoder().encode(data));
  }

  async remove(relatives: readonly string[]): Promise<void> {
    for (const rel of relatives) await this.storage.delete(joinUrl(this.url, ...rel.split('/')));
  }

  async close(): Promise<void> {
    this.storage.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Opens an output: a local folder or `file://` URL, or `s3://bucket/prefix`. HTTP outputs are refused
 * (glimpse only reads HTTP).
 *
 * @example
 *   const out = await openOutput('s3://bucket/embeddings', { storage: { s3: { endpoint } } });
 *   await out.prepare(false);
 *   // … write partition files under out.dir, then:
 *   await out.publish(['img_emb/img_emb_0.npy', 'stats/stats_0.json']);
 *   await out.close();
 */
export async function openOutput(url: string, options: OpenOutputOptions = {}): Promise<OutputTarget> {
  const kind = storageKind(url);
  const entries = options.entries ?? OUTPUT_ENTRIES;
  if (kind === 'local') return new LocalOutput(url, entries);
  if (kind === 'http') {
    throw new GlimpseError(
      'GLIMPSE_E_NOT_SUPPORTED',
      `Expected a local folder or an s3:// URL for the output but received ${url} (HTTP is read-only)`,
    );
  }
  const staging = await mkdtemp(join(options.stagingDir ?? tmpdir(), 'glimpse-stage-'));
  return new RemoteOutput(url.replace(/\/+$/, ''), staging, openStorage(url, options.storage ?? {}), entries);
}

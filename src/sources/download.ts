/**
 * Image downloads for manifest sources: one HTTP client (keep-alive, one socket per concurrent download),
 * connect and read timeouts, retries with exponential backoff for transient failures only, a byte cap that
 * stops the transfer, a `glimpse/<version>` User-Agent, and a coded reason for every failure. `inCompletionOrder`
 * runs a bounded window of downloads that finish in any order.
 */
import { readFileSync } from 'node:fs';
import { RetryableError, isGlimpseError, type ErrorCode } from '../errors/index.js';
import { HttpStorage, storageKind, type StorageOptions } from '../storage/index.js';
import { StorageSet } from './storages.js';

export interface DownloadOptions {
  /** Downloads in flight (default 64). */
  concurrency?: number;
  /** Milliseconds to open a connection (default 10,000). */
  connectTimeoutMs?: number;
  /** Milliseconds without a byte while waiting for headers or body (default 20,000). */
  readTimeoutMs?: number;
  /** Retries after a transient failure: 5xx, 429, a timeout, a dropped or reset connection (default 3). */
  retries?: number;
  /** First backoff in milliseconds, doubled each retry, with jitter (default 250). */
  backoffMs?: number;
  /** Largest image in bytes; the transfer stops past it (default 64 MiB). */
  maxBytes?: number;
  /** Default `glimpse/<version>`. */
  userAgent?: string;
  /** Storage options for `s3://` items. */
  storage?: StorageOptions;
}

export type DownloadResult =
  | { ok: true; bytes: Uint8Array; attempts: number }
  | { ok: false; code: ErrorCode; message: string; attempts: number };

let version: string | undefined;

/** `glimpse/<version>`, read once from package.json. */
export function defaultUserAgent(): string {
  if (version === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
        version?: string;
      };
      version = pkg.version ?? '0';
    } catch {
      version = '0';
    }
  }
  return `glimpse/${version}`;
}

/** Whether a storage failure is worth another attempt. */
function transient(err: unknown): boolean {
  if (err instanceof RetryableError) return true;
  // A body shorter than its Content-Length (a dropped connection) is transient; a 4xx, a redirect loop
  // or a missing object are not.
  return isGlimpseError(err, 'GLIMPSE_E_STORAGE_IO');
}

/**
 * Downloads images from `http(s)://` and `s3://` URLs.
 *
 * @example
 *   const dl = new Downloader({ concurrency: 64, maxBytes: 10 * 1024 * 1024 });
 *   const r = await dl.fetch('https://example.com/cat.jpg');
 *   if (!r.ok) console.log(r.code, r.message); // GLIMPSE_E_SOURCE_DOWNLOAD_FAILED … answered 404
 *   dl.close();
 */
export class Downloader {
  private readonly http: HttpStorage;
  private readonly others: StorageSet;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly maxBytes: number;
  /** Aborted by close(): downloads still running stop retrying. */
  private readonly closed = new AbortController();
  readonly concurrency: number;

  constructor(options: DownloadOptions = {}) {
    this.concurrency = options.concurrency ?? 64;
    this.retries = options.retries ?? 3;
    this.backoffMs = options.backoffMs ?? 250;
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.http = new HttpStorage({
      ...(options.storage?.http ?? {}),
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      readTimeoutMs: options.readTimeoutMs ?? 20_000,
      retries: 0,
      maxSockets: this.concurrency,
      headers: {
        ...(options.storage?.http?.headers ?? {}),
        'user-agent': options.userAgent ?? defaultUserAgent(),
      },
    });
    this.others = new StorageSet(options.storage);
  }

  /** One item: its bytes, or why it could not be downloaded (never throws, except when aborted or closed). */
  async fetch(url: string, signal?: AbortSignal): Promise<DownloadResult> {
    const storage = storageKind(url) === 'http' ? this.http : this.others.for(url);
    let last: unknown;
    let attempts = 0;
    while (attempts <= this.retries) {
      signal?.throwIfAborted();
      this.closed.signal.throwIfAborted();
      if (attempts > 0) {
        const wait = this.backoffMs * 2 ** (attempts - 1);
        await new Promise((r) => setTimeout(r, wait / 2 + Math.random() * (wait / 2)));
        this.closed.signal.throwIfAborted();
      }
      attempts++;
      try {
        const stream = await storage.createReadStream(url);
        const chunks: Uint8Array[] = [];
        let total = 0;
        try {
          for await (const chunk of stream as AsyncIterable<Uint8Array>) {
            total += chunk.length;
            if (total > this.maxBytes) {
              return {
                ok: false,
                code: 'GLIMPSE_E_IMAGE_TOO_LARGE',
                message: `Expected at most ${this.maxBytes} bytes from ${url} but it sent more (the transfer was stopped)`,
                attempts,
              };
            }
            chunks.push(chunk);
          }
        } finally {
          stream.destroy();
        }
        const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
        return { ok: true, bytes, attempts };
      } catch (err) {
        last = err;
        if (!transient(err)) break;
      }
    }
    const failure = describeFailure(url, last);
    return {
      ok: false,
      code: failure.code,
      message: attempts > 1 ? `${failure.message} (${attempts} attempts)` : failure.message,
      attempts,
    };
  }

  /** Frees sockets and clients; downloads still running fail (a rejected promise) instead of retrying. */
  close(): void {
    this.closed.abort();
    this.http.close();
    this.others.close();
  }
}

/** The coded reason recorded for a failed download. */
function describeFailure(url: string, err: unknown): { code: ErrorCode; message: string } {
  const text = err instanceof Error ? err.message : String(err);
  // Storage messages read "Expected … but <what happened>": keep what happened.
  const happened = text.replace(/^Expected .*? but /s, '');
  const status = isGlimpseError(err) ? (err.details?.['status'] as number | undefined) : undefined;
  const expected = `Expected to download ${url} but`;
  if (isGlimpseError(err, 'GLIMPSE_E_STORAGE_TIMEOUT'))
    return { code: 'GLIMPSE_E_SOURCE_DOWNLOAD_TIMEOUT', message: `${expected} it timed out: ${text}` };
  if (isGlimpseError(err, 'GLIMPSE_E_STORAGE_TOO_LARGE'))
    return { code: 'GLIMPSE_E_IMAGE_TOO_LARGE', message: text };
  if (status !== undefined)
    return {
      code: 'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED',
      message: `${expected} the server answered HTTP ${status}`,
    };
  if (/Content-Length|\baborted\b|ECONNRESET|socket hang up/i.test(text))
    return {
      code: 'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED',
      message: `${expected} the connection closed before the whole body arrived (short of its Content-Length): ${happened}`,
    };
  return { code: 'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED', message: `${expected} ${happened}` };
}

/**
 * Runs `work` on each item with at most `concurrency` in flight and yields results as they finish (so one
 * slow item never holds up the others). Pulling stops when the consumer stops pulling: at most
 * `concurrency` results wait, finished or not.
 *
 * @example
 *   for await (const r of inCompletionOrder(rows, 64, (row) => dl.fetch(row.url))) consume(r);
 */
export async function* inCompletionOrder<T, R>(
  items: AsyncIterable<T>,
  concurrency: number,
  work: (item: T) => Promise<R>,
): AsyncGenerator<R> {
  const iterator = items[Symbol.asyncIterator]();
  const inFlight = new Map<number, Promise<{ id: number; result: R }>>();
  let nextId = 0;
  let exhausted = false;
  try {
    for (;;) {
      while (!exhausted && inFlight.size < concurrency) {
        const next = await iterator.next();
        if (next.done) {
          exhausted = true;
          break;
        }
        const id = nextId++;
        inFlight.set(
          id,
          work(next.value).then((result) => ({ id, result })),
        );
      }
      if (inFlight.size === 0) return;
      const { id, result } = await Promise.race(inFlight.values());
      inFlight.delete(id);
      yield result;
    }
  } finally {
    // Stopped early (a subset, an abort): what still runs finishes on its own, its result dropped.
    for (const p of inFlight.values()) p.catch(() => undefined);
    if (!exhausted) await iterator.return?.();
  }
}

import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { GlimpseError, RetryableError } from '../errors/index.js';
import type { RangeReader } from '../formats/parquet.js';
import { checkInto } from './local.js';
import { compareNames } from './url.js';
import type { HttpStorageOptions, ListEntry, ReadStreamOptions, StatResult, Storage } from './types.js';

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Largest listing page read by list() (an HTML autoindex or a JSON/text index). */
const MAX_LISTING_BYTES = 16 * 1024 * 1024;

interface Resolved {
  readonly res: IncomingMessage;
  /** The URL after redirects. */
  readonly url: string;
}

function statusError(url: string, res: IncomingMessage, what: string): GlimpseError {
  const status = res.statusCode ?? 0;
  res.resume();
  if (status === 404 || status === 410) {
    return new GlimpseError(
      'GLIMPSE_E_STORAGE_NOT_FOUND',
      `Expected ${url} to exist but the server answered ${status}`,
      {
        details: { url, status },
      },
    );
  }
  const message =
    `Expected a 2xx answer to ${what} ${url} but the server answered ${status} ${res.statusMessage ?? ''}`.trim();
  const options = { details: { url, status } };
  // 5xx and 429 are worth retrying; other 4xx are not.
  return status >= 500 || status === 429
    ? new RetryableError('GLIMPSE_E_STORAGE_HTTP_STATUS', message, options)
    : new GlimpseError('GLIMPSE_E_STORAGE_HTTP_STATUS', message, options);
}

function timeoutError(url: string, phase: string, ms: number): RetryableError {
  return new RetryableError(
    'GLIMPSE_E_STORAGE_TIMEOUT',
    `Expected ${phase} from ${url} within ${ms} ms but none came`,
    {
      details: { url, phase, timeoutMs: ms },
    },
  );
}

function connectionError(url: string, err: unknown, what: string): GlimpseError {
  if (err instanceof GlimpseError) return err;
  const text = err instanceof Error ? err.message : String(err);
  return new RetryableError(
    'GLIMPSE_E_STORAGE_IO',
    `Expected to ${what} ${url} but the connection failed: ${text}`,
    {
      cause: err,
      details: { url },
    },
  );
}

/** `bytes a-b/total` → numbers (total may be `*`). */
function parseContentRange(
  value: string | undefined,
): { start: number; end: number; total: number | undefined } | undefined {
  const m = /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(value?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]) + 1, total: m[3] === '*' ? undefined : Number(m[3]) };
}

function contentLength(res: IncomingMessage): number | undefined {
  const v = res.headers['content-length'];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/**
 * Read-only access to files served over HTTP(S): HEAD for stat, `Range` GETs for reads (a server that
 * ignores `Range` and answers 200 still works: the body is skipped to the start and cut at the end),
 * redirects followed up to a limit, connect and idle-read timeouts, retries of idempotent reads after
 * timeouts, dropped connections and 5xx answers. Bodies shorter or longer than their Content-Length or
 * Content-Range say are detected (GLIMPSE_E_STORAGE_IO).
 *
 * Listing: a folder URL is fetched (`GET folder/`) and read as an HTML directory index (Apache, nginx
 * autoindex, `python -m http.server`: the same links fsspec's HTTP filesystem follows), a JSON array of
 * names (or `{"files": [...]}`), or a text file of one name per line. Only direct children are listed.
 *
 * @example
 *   const web = new HttpStorage({ readTimeoutMs: 10_000 });
 *   const bytes = await web.readRange('https://host/emb/img_emb/img_emb_0.npy', 0, 128);
 */
export class HttpStorage implements Storage {
  readonly kind = 'http' as const;
  private readonly connectTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private readonly maxRedirects: number;
  private readonly retries: number;
  private readonly headers: Record<string, string>;
  private readonly maxBytes: number;
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;

  constructor(options: HttpStorageOptions = {}) {
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.readTimeoutMs = options.readTimeoutMs ?? 30_000;
    this.maxRedirects = options.maxRedirects ?? 5;
    this.retries = options.retries ?? 2;
    this.headers = { ...(options.headers ?? {}) };
    this.maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    const maxSockets = options.maxSockets ?? 16;
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets });
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets });
  }

  /** One request, no redirects; resolves when headers arrive. */
  private once(url: string, method: string, headers: Record<string, string>): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      let u: URL;
      try {
        u = new URL(url);
      } catch (err) {
        reject(
          new GlimpseError(
            'GLIMPSE_E_ARG_INVALID',
            `Expected a valid URL but received ${JSON.stringify(url)}`,
            { cause: err },
          ),
        );
        return;
      }
      const secure = u.protocol === 'https:';
      const req = (secure ? https : http).request(u, {
        method,
        headers: { ...this.headers, ...headers },
        agent: secure ? this.httpsAgent : this.httpAgent,
      });
      let connectTimer: NodeJS.Timeout | undefined;
      req.on('socket', (socket) => {
        if (socket.connecting) {
          connectTimer = setTimeout(
            () => req.destroy(timeoutError(url, 'a connection', this.connectTimeoutMs)),
            this.connectTimeoutMs,
          );
          socket.once('connect', () => clearTimeout(connectTimer));
        }
      });
      req.setTimeout(this.readTimeoutMs, () =>
        req.destroy(timeoutError(url, 'response headers', this.readTimeoutMs)),
      );
      req.on('response', (res) => {
        clearTimeout(connectTimer);
        req.setTimeout(0);
        resolve(res);
      });
      req.on('error', (err) => {
        clearTimeout(connectTimer);
        reject(connectionError(url, err, `${method}`));
      });
      req.end();
    });
  }

  /** A request with redirects followed; the caller owns the response body. */
  private async request(
    url: string,
    method: string,
    headers: Record<string, string> = {},
  ): Promise<Resolved> {
    let current = url;
    for (let hop = 0; ; hop++) {
      const res = await this.once(current, method, headers);
      const location = res.headers.location;
      if (REDIRECTS.has(res.statusCode ?? 0) && location !== undefined) {
        res.resume();
        if (hop >= this.maxRedirects) {
          throw new GlimpseError(
            'GLIMPSE_E_STORAGE_REDIRECT_LIMIT',
            `Expected at most ${this.maxRedirects} redirects for ${url} but it redirects further (last to ${location})`,
            { details: { url, maxRedirects: this.maxRedirects } },
          );
        }
        current = new URL(location, current).toString();
        continue;
      }
      return { res, url: current };
    }
  }

  /** Retries `fn` after RetryableErrors (timeouts, dropped connections, 5xx), with backoff. */
  private async withRetries<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof RetryableError) || attempt >= this.retries) throw err;
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
  }

  /**
   * Reads a body: skips `skip` bytes, keeps at most `limit` bytes (then stops the download), with an
   * idle timeout. Resolves with the bytes and whether the body ended naturally.
   */
  private collect(
    url: string,
    res: IncomingMessage,
    skip: number,
    limit: number,
    expected: number | undefined,
    into?: Uint8Array,
  ): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const chunks: Uint8Array[] = [];
      let seen = 0;
      let kept = 0;
      let done = false;
      const finish = (err?: GlimpseError): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) {
          res.destroy();
          reject(err);
          return;
        }
        if (into) resolve(kept === into.length ? into : into.subarray(0, kept));
        else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, kept));
      };
      const timer = setTimeout(
        () => finish(timeoutError(url, 'body bytes', this.readTimeoutMs)),
        this.readTimeoutMs,
      );
      res.on('data', (chunk: Buffer) => {
        timer.refresh();
        const from = Math.max(0, skip - seen);
        seen += chunk.length;
        if (from < chunk.length && kept < limit) {
          const piece = chunk.subarray(from, from + Math.min(chunk.length - from, limit - kept));
          if (into) into.set(piece, kept);
          else chunks.push(piece);
          kept += piece.length;
        }
        if (kept >= limit && expected === undefined) {
          // Enough bytes from a server that ignored Range: stop downloading the rest.
          res.destroy();
          finish();
        }
      });
      res.on('end', () => {
        if (expected !== undefined && seen !== expected) {
          finish(
            new RetryableError(
              'GLIMPSE_E_STORAGE_IO',
              `Expected ${expected} body bytes from ${url} (Content-Length) but received ${seen}`,
              { details: { url, expected, received: seen } },
            ),
          );
          return;
        }
        finish();
      });
      res.on('error', (err) =>
        finish(
          done
            ? undefined
            : new RetryableError(
                'GLIMPSE_E_STORAGE_IO',
                `Expected ${expected ?? 'the whole'} body bytes from ${url} but the connection closed after ${seen}${expected !== undefined ? ' (Content-Length lies or the server dropped the connection)' : ''}: ${err.message}`,
                { cause: err, details: { url, expected, received: seen } },
              ),
        ),
      );
      res.on('close', () => {
        if (!done && !res.complete) {
          finish(
            new RetryableError(
              'GLIMPSE_E_STORAGE_IO',
              `Expected ${expected ?? 'more'} body bytes from ${url} but the connection closed after ${seen}`,
              { details: { url, expected, received: seen } },
            ),
          );
        }
      });
    });
  }

  async stat(url: string): Promise<StatResult> {
    return this.withRetries(async () => {
      const { res } = await this.request(url, 'HEAD');
      const status = res.statusCode ?? 0;
      res.resume();
      if (status >= 200 && status < 300) {
        const size = contentLength(res);
        if (size !== undefined) return withMtime(size, res);
      } else if (status !== 405 && status !== 501) {
        throw statusError(url, res, 'HEAD');
      }
      // No HEAD or no Content-Length: ask for one byte and read the total from Content-Range.
      const got = await this.request(url, 'GET', { range: 'bytes=0-0' });
      const r = got.res;
      if (r.statusCode === 206) {
        const total = parseContentRange(r.headers['content-range'])?.total;
        r.resume();
        if (total !== undefined) return withMtime(total, r);
      } else if (r.statusCode === 200) {
        const size = contentLength(r);
        r.destroy();
        if (size !== undefined) return withMtime(size, r);
      } else if (r.statusCode === 416) {
        r.resume();
        return withMtime(0, r);
      } else {
        throw statusError(url, r, 'GET');
      }
      r.destroy();
      throw new GlimpseError(
        'GLIMPSE_E_STORAGE_IO',
        `Expected the server to tell the size of ${url} but it did not`,
        {
          details: { url },
        },
      );
    });
  }

  async readRange(url: string, start: number, end: number, into?: Uint8Array): Promise<Uint8Array> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        `Expected a byte range 0 ≤ start ≤ end for ${url} but received [${start}, ${end})`,
      );
    }
    checkInto(url, start, end, into);
    if (end === start) return into ?? new Uint8Array(0);
    return this.withRetries(async () => {
      const { res } = await this.request(url, 'GET', { range: `bytes=${start}-${end - 1}` });
      const status = res.statusCode ?? 0;
      let out: Uint8Array;
      if (status === 206) {
        const cr = parseContentRange(res.headers['content-range']);
        if (!cr || cr.start !== start || cr.end !== end) {
          res.destroy();
          throw new GlimpseError(
            'GLIMPSE_E_STORAGE_IO',
            `Expected bytes ${start}–${end} of ${url} but the server sent ${res.headers['content-range'] ?? 'no Content-Range'}${cr?.total !== undefined && cr.total < end ? ` (the file has ${cr.total} bytes)` : ''}`,
            { details: { url, start, end } },
          );
        }
        const length = contentLength(res);
        if (length !== undefined && length !== end - start) {
          res.destroy();
          throw new GlimpseError(
            'GLIMPSE_E_STORAGE_IO',
            `Expected Content-Length ${end - start} for bytes ${start}–${end} of ${url} but the server sent ${length}`,
            { details: { url, start, end } },
          );
        }
        out = await this.collect(url, res, 0, end - start, end - start, into);
      } else if (status === 200) {
        // The server ignored Range: read from the start, keep [start, end), stop early.
        out = await this.collect(url, res, start, end - start, undefined, into);
      } else if (status === 416) {
        res.resume();
        throw new GlimpseError(
          'GLIMPSE_E_STORAGE_IO',
          `Expected bytes ${start}–${end} of ${url} but they are past its end`,
          {
            details: { url, start, end },
          },
        );
      } else {
        throw statusError(url, res, 'GET');
      }
      if (out.length !== end - start) {
        throw new GlimpseError(
          'GLIMPSE_E_STORAGE_IO',
          `Expected bytes ${start}–${end} of ${url} but the body ends at ${start + out.length}`,
          { details: { url, start, end } },
        );
      }
      return out;
    });
  }

  async read(url: string): Promise<Uint8Array> {
    return this.withRetries(async () => {
      const { res } = await this.request(url, 'GET');
      if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) >= 300) throw statusError(url, res, 'GET');
      const length = contentLength(res);
      if (length !== undefined && length > this.maxBytes) {
        res.destroy();
        throw new GlimpseError(
          'GLIMPSE_E_STORAGE_TOO_LARGE',
          `Expected at most ${this.maxBytes} bytes from ${url} but it has ${length}`,
          { details: { url, maxBytes: this.maxBytes, size: length } },
        );
      }
      return this.collect(url, res, 0, Number.MAX_SAFE_INTEGER, length ?? undefined).then((bytes) => {
        if (bytes.length > this.maxBytes) {
          throw new GlimpseError(
            'GLIMPSE_E_STORAGE_TOO_LARGE',
            `Expected at most ${this.maxBytes} bytes from ${url} but received more`,
            { details: { url, maxBytes: this.maxBytes } },
          );
        }
        return bytes;
      });
    });
  }

  async createReadStream(url: string, options: ReadStreamOptions = {}): Promise<Readable> {
    const start = options.start ?? 0;
    const end = options.end;
    if (end !== undefined && end <= start) return Readable.from([]);
    const range =
      start > 0 || end !== undefined ? `bytes=${start}-${end === undefined ? '' : end - 1}` : undefined;
    const { res } = await this.withRetries(() => this.request(url, 'GET', range ? { range } : {}));
    const status = res.statusCode ?? 0;
    if (status !== 200 && status !== 206) throw statusError(url, res, 'GET');
    const skip = status === 200 ? start : 0;
    const limit = end === undefined ? Number.POSITIVE_INFINITY : end - start;
    const expected = contentLength(res);
    const readTimeoutMs = this.readTimeoutMs;
    async function* body(): AsyncGenerator<Uint8Array> {
      let seen = 0;
      let kept = 0;
      const timer = setTimeout(
        () => res.destroy(timeoutError(url, 'body bytes', readTimeoutMs)),
        readTimeoutMs,
      );
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          timer.refresh();
          const from = Math.max(0, skip - seen);
          seen += chunk.length;
          if (from < chunk.length && kept < limit) {
            const piece = chunk.subarray(from, from + Math.min(chunk.length - from, limit - kept));
            kept += piece.length;
            yield piece;
          }
          if (kept >= limit) break;
        }
      } catch (err) {
        throw err instanceof GlimpseError ? err : connectionError(url, err, 'read');
      } finally {
        clearTimeout(timer);
        res.destroy();
      }
      if (kept < limit && limit !== Number.POSITIVE_INFINITY) {
        throw new GlimpseError(
          'GLIMPSE_E_STORAGE_IO',
          `Expected ${limit} bytes from ${url} but received ${kept}`,
          {
            details: { url },
          },
        );
      }
      if (limit === Number.POSITIVE_INFINITY && expected !== undefined && seen !== expected) {
        throw new GlimpseError(
          'GLIMPSE_E_STORAGE_IO',
          `Expected ${expected} body bytes from ${url} (Content-Length) but received ${seen}`,
          { details: { url } },
        );
      }
    }
    return Readable.from(body(), { objectMode: false });
  }

  async list(folderUrl: string): Promise<ListEntry[]> {
    const folder = folderUrl.endsWith('/') ? folderUrl : `${folderUrl}/`;
    const { page, type, finalUrl } = await this.withRetries(async () => {
      const { res, url } = await this.request(folder, 'GET', {
        accept: 'application/json, text/html;q=0.9, text/plain;q=0.8',
      });
      if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) >= 300) {
        const err = statusError(folder, res, 'list');
        if (err.code !== 'GLIMPSE_E_STORAGE_NOT_FOUND') throw err;
        throw new GlimpseError(
          'GLIMPSE_E_STORAGE_NOT_FOUND',
          `Expected a directory index at ${folder} but the server answered ${res.statusCode}: serve an index there, or give an index file (.json/.txt) or the file URLs`,
          { details: { url: folder, status: res.statusCode } },
        );
      }
      const bytes = await this.collect(folder, res, 0, MAX_LISTING_BYTES + 1, undefined);
      if (bytes.length > MAX_LISTING_BYTES) {
        throw new GlimpseError(
          'GLIMPSE_E_STORAGE_TOO_LARGE',
          `Expected a folder index under ${MAX_LISTING_BYTES} bytes at ${folder}`,
          {
            details: { url: folder },
          },
        );
      }
      return {
        page: new TextDecoder().decode(bytes),
        type: String(res.headers['content-type'] ?? ''),
        finalUrl: url,
      };
    });
    const base = new URL(finalUrl.endsWith('/') ? finalUrl : `${finalUrl}/`);
    const names = parseListing(page, type, base);
    if (names === undefined) {
      throw new GlimpseError(
        'GLIMPSE_E_NOT_SUPPORTED',
        `Expected ${folder} to answer with an HTML directory index, a JSON array of names or a text list of names, but it answered ${type || 'an unknown type'}. Serve a directory index there, or pass the file URLs explicitly.`,
        { details: { url: folder } },
      );
    }
    const out: ListEntry[] = [];
    const queue = [...names].sort(compareNames);
    const results = new Array<ListEntry | undefined>(queue.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < queue.length) {
        const i = next++;
        const name = queue[i]!;
        const url = new URL(name.split('/').map(encodeURIComponent).join('/'), base).toString();
        const { size } = await this.stat(url);
        results[i] = { url, name, size };
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, queue.length) }, worker));
    for (const r of results) if (r) out.push(r);
    return out;
  }

  writeAtomic(url: string): Promise<void> {
    return Promise.reject(readOnly(url));
  }

  delete(url: string): Promise<void> {
    return Promise.reject(readOnly(url));
  }

  async exists(url: string): Promise<boolean> {
    try {
      await this.stat(url);
      return true;
    } catch (err) {
      if (err instanceof GlimpseError && err.code === 'GLIMPSE_E_STORAGE_NOT_FOUND') return false;
      throw err;
    }
  }

  async rangeReader(url: string, size?: number): Promise<RangeReader> {
    const known = size ?? (await this.stat(url)).size;
    return { name: url, size: known, readRange: (s, e) => this.readRange(url, s, e) };
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

function withMtime(size: number, res: IncomingMessage): StatResult {
  const lm = res.headers['last-modified'];
  const mtime = lm === undefined ? undefined : new Date(lm);
  return mtime !== undefined && !Number.isNaN(mtime.getTime()) ? { size, mtime } : { size };
}

function readOnly(url: string): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_NOT_SUPPORTED',
    `Expected a writable location (local path or s3://) but ${url} is HTTP, which glimpse only reads`,
    { details: { url } },
  );
}

/**
 * Names of the direct children of `base` in a folder index page: HTML links, a JSON array (of names or
 * `{name}` objects, or `{files: [...]}`), or plain text lines. Undefined when the page is none of these.
 */
export function parseListing(page: string, contentType: string, base: URL): string[] | undefined {
  const type = contentType.toLowerCase();
  let candidates: string[];
  const trimmed = page.trim();
  if (
    type.includes('json') ||
    trimmed.startsWith('[') ||
    (trimmed.startsWith('{') && !type.includes('html'))
  ) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      return undefined;
    }
    const list = Array.isArray(parsed)
      ? parsed
      : typeof parsed === 'object' && parsed !== null && Array.isArray((parsed as { files?: unknown }).files)
        ? (parsed as { files: unknown[] }).files
        : undefined;
    if (!list) return undefined;
    candidates = list
      .map((v) =>
        typeof v === 'string'
          ? v
          : typeof v === 'object' && v !== null && typeof (v as { name?: unknown }).name === 'string'
            ? (v as { name: string }).name
            : '',
      )
      .filter((v) => v !== '');
    return uniqueChildren(candidates, base, false);
  }
  if (type.includes('html') || /<a\s/i.test(page)) {
    candidates = [...page.matchAll(/<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/gi)].map((m) =>
      decodeHtml(m[1] ?? m[2] ?? m[3] ?? ''),
    );
    return uniqueChildren(candidates, base, true);
  }
  if (type.includes('text/plain') || type === '') {
    candidates = page
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    return uniqueChildren(candidates, base, false);
  }
  return undefined;
}

function decodeHtml(s: string): string {
  return s
    .replace(/&amp;/g, '&')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>');
}

/** Direct children of `base` (files only), decoded, without duplicates. */
function uniqueChildren(candidates: string[], base: URL, encoded: boolean): string[] {
  const out = new Set<string>();
  for (const c of candidates) {
    if (c.startsWith('?') || c.startsWith('#') || c.startsWith('mailto:') || c.startsWith('javascript:'))
      continue;
    let u: URL;
    try {
      u = new URL(encoded ? c : c.split('/').map(encodeURIComponent).join('/'), base);
    } catch {
      continue;
    }
    if (u.origin !== base.origin || u.search !== '' || !u.pathname.startsWith(base.pathname)) continue;
    const rest = u.pathname.slice(base.pathname.length);
    if (rest === '' || rest.includes('/')) continue;
    let name: string;
    try {
      name = decodeURIComponent(rest);
    } catch {
      continue;
    }
    out.add(name);
  }
  return [...out];
}

/**
 * A real HTTP server on 127.0.0.1 that serves the Hugging Face hub's URL layout from a folder of files
 * (`<root>/<org>/<name>/<path>`), with fault injection for download tests:
 *
 * - `GET /api/models/<org>/<name>/tree/main?recursive=true`: the listing, with sizes, git blob oids and,
 *   for `.onnx*` files, `lfs: { oid: <sha256>, size }`; paginated when `pageSize` is set (Link header).
 * - `GET|HEAD /<org>/<name>/resolve/main/<path>`: JSON files directly; `.onnx*` files answer 302 to
 *   `/cdn/<org>/<name>/<path>` like the hub's LFS redirect. Range requests answer 206 (or 416).
 *
 * Only the revision `main` exists. Every request is recorded in `requests`.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { readdir, readFile, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, relative, sep } from 'node:path';

export interface RecordedRequest {
  readonly method: string;
  /** Path and query, as requested. */
  readonly url: string;
  readonly range: string | undefined;
  readonly authorization: string | undefined;
}

export interface HubFaults {
  /** Repo path → bytes after which the first content response drops the connection (once). */
  dropAfter: Map<string, number>;
  /** Repo path → the size the listing claims (the body stays the real file). */
  listedSize: Map<string, number>;
  /** Repo path → the sha256 the listing claims. */
  listedSha256: Map<string, string>;
  /** Repo path (or `tree` for the listing) → how many more requests answer 500. */
  failNext: Map<string, number>;
  /** Repo paths whose content responses ignore Range and always send the whole file with 200. */
  ignoreRange: Set<string>;
  /** Answer every listing request with 404 so clients use the revision API fallback. */
  noTreeApi: boolean;
}

export interface HubServer {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly requests: RecordedRequest[];
  readonly faults: HubFaults;
  /** Listing entries per page (0: one page). */
  pageSize: number;
  close(): Promise<void>;
}

/**
 * Starts the fake hub over `root` (folders `<org>/<name>` are repos).
 *
 * @example
 *   const hub = await startHubServer('/tmp/repos');
 *   await resolveModel('org/tiny', { hubUrl: hub.url, cacheDir });
 *   await hub.close();
 */
export async function startHubServer(root: string): Promise<HubServer> {
  const requests: RecordedRequest[] = [];
  const faults: HubFaults = {
    dropAfter: new Map(),
    listedSize: new Map(),
    listedSha256: new Map(),
    failNext: new Map(),
    ignoreRange: new Set(),
    noTreeApi: false,
  };
  const state = { pageSize: 0 };

  const takeFailure = (key: string): boolean => {
    const n = faults.failNext.get(key) ?? 0;
    if (n <= 0) return false;
    faults.failNext.set(key, n - 1);
    return true;
  };

  const server = createServer((req, res) => {
    requests.push({
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      range: req.headers.range,
      authorization: req.headers.authorization,
    });
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const parts = url.pathname.split('/').slice(1).map(decodeURIComponent);

    // /api/models/<org>/<name>/tree/<rev>  and  /api/models/<org>/<name>/revision/<rev>
    if (parts[0] === 'api' && parts[1] === 'models' && parts.length === 6) {
      const [, , org, name, kind, rev] = parts as [string, string, string, string, string, string];
      const repoDir = join(root, org, name);
      if (rev !== 'main' || !(await isDir(repoDir))) return notFound(res, 'Repository not found');
      if (kind === 'tree') {
        if (faults.noTreeApi) return notFound(res, 'Not found');
        if (takeFailure('tree')) return fail(res);
        const entries = await listing(repoDir);
        const cursor = Number(url.searchParams.get('cursor') ?? '0');
        const size = state.pageSize > 0 ? state.pageSize : entries.length;
        const page = entries.slice(cursor, cursor + size);
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (cursor + size < entries.length) {
          headers['link'] = `<${url.pathname}?recursive=true&cursor=${cursor + size}>; rel="next"`;
        }
        res.writeHead(200, headers);
        res.end(JSON.stringify(page));
        return;
      }
      if (kind === 'revision') {
        const entries = await listing(repoDir);
        const siblings = entries
          .filter((e) => e.type === 'file')
          .map((e) => ({
            rfilename: e.path,
            size: e.size,
            ...(e.lfs ? { lfs: { sha256: e.lfs.oid, size: e.lfs.size, pointerSize: 134 } } : {}),
          }));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: `${org}/${name}`, sha: 'f'.repeat(40), siblings }));
        return;
      }
      return notFound(res, 'Not found');
    }

    // /<org>/<name>/resolve/<rev>/<path...>
    if (parts.length >= 5 && parts[2] === 'resolve') {
      const [org, name, , rev] = parts as [string, string, string, string];
      const path = parts.slice(4).join('/');
      if (rev !== 'main' || !(await isFile(join(root, org, name, path))))
        return notFound(res, 'Entry not found');
      if (takeFailure(path)) return fail(res);
      if (isLfs(path)) {
        res.writeHead(302, { location: `/cdn/${org}/${name}/${path}` });
        res.end();
        return;
      }
      return sendFile(req, res, path, join(root, org, name, path));
    }

    // /cdn/<org>/<name>/<path...>
    if (parts[0] === 'cdn' && parts.length >= 4) {
      const path = parts.slice(3).join('/');
      const file = join(root, parts[1]!, parts[2]!, path);
      if (!(await isFile(file))) return notFound(res, 'No such object');
      return sendFile(req, res, path, file);
    }
    return notFound(res, 'Not found');
  }

  async function sendFile(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    file: string,
  ): Promise<void> {
    const data = await readFile(file);
    const total = data.length;
    const etag = `"${createHash('sha256').update(data).digest('hex')}"`;
    let start = 0;
    let end = total - 1;
    let status = 200;
    const range = req.headers.range;
    if (range !== undefined && !faults.ignoreRange.has(path)) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (m) {
        start = Number(m[1]);
        end = m[2] ? Math.min(Number(m[2]), total - 1) : total - 1;
        if (start >= total) {
          res.writeHead(416, { 'content-range': `bytes */${total}` });
          res.end();
          return;
        }
        status = 206;
      }
    }
    const body = data.subarray(start, end + 1);
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'content-length': body.length,
      'accept-ranges': 'bytes',
      etag,
    };
    if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${total}`;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const drop = faults.dropAfter.get(path);
    if (drop !== undefined && drop < body.length) {
      faults.dropAfter.delete(path);
      // Send the first bytes, then cut the connection as a dropped network would.
      res.write(body.subarray(0, drop), () => res.socket?.destroy());
      return;
    }
    res.end(body);
  }

  async function listing(repoDir: string): Promise<TreeEntry[]> {
    const out: TreeEntry[] = [];
    const names = (await readdir(repoDir, { recursive: true })).map(String).sort();
    for (const name of names) {
      const full = join(repoDir, name);
      const path = relative(repoDir, full).split(sep).join('/');
      const st = await stat(full);
      if (st.isDirectory()) {
        out.push({ type: 'directory', oid: gitOid(Buffer.from(path)), size: 0, path });
        continue;
      }
      const data = await readFile(full);
      const size = faults.listedSize.get(path) ?? data.length;
      const entry: TreeEntry = { type: 'file', oid: gitOid(data), size, path };
      if (isLfs(path)) {
        const sha = faults.listedSha256.get(path) ?? createHash('sha256').update(data).digest('hex');
        entry.lfs = { oid: sha, size, pointerSize: 134 };
      }
      out.push(entry);
    }
    return out;
  }

  await new Promise<void>((resolveListen) => server.listen(0, '127.0.0.1', resolveListen));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    faults,
    get pageSize() {
      return state.pageSize;
    },
    set pageSize(n: number) {
      state.pageSize = n;
    },
    close: () =>
      new Promise<void>((resolveClose) => {
        server.closeAllConnections();
        server.close(() => resolveClose());
      }),
  };
}

interface TreeEntry {
  type: 'file' | 'directory';
  oid: string;
  size: number;
  path: string;
  lfs?: { oid: string; size: number; pointerSize: number };
}

function isLfs(path: string): boolean {
  return /\.onnx(_data.*)?$/.test(path);
}

function gitOid(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

function notFound(res: ServerResponse, message: string): void {
  res.writeHead(404, { 'content-type': 'application/json', 'x-error-code': 'RepoNotFound' });
  res.end(JSON.stringify({ error: message }));
}

function fail(res: ServerResponse): void {
  res.writeHead(500, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: 'Internal Error' }));
}

async function isDir(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}

/**
 * A real node:http server on 127.0.0.1 serving a folder, for storage and reader tests. It supports Range
 * requests, HEAD, directory listings (HTML like `python -m http.server`, or JSON), and switches that make
 * it misbehave on purpose: ignore Range, redirect N times, delay answers, answer 500, lie in
 * Content-Length, refuse HEAD, stall in the middle of a body.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { readdir, readFile, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';

export interface HttpServerSwitches {
  /** Ignore Range headers and answer 200 with the whole file. */
  noRange: boolean;
  /** Redirect every request this many times (302) before serving it. */
  redirects: number;
  /** Wait this long before sending headers. */
  delayMs: number;
  /** Send half the body, then stall this long before the rest (0: no stall). */
  stallMs: number;
  /** Answer 500 to this many upcoming requests (Infinity: all). */
  fail500: number;
  /** Announce 100 more bytes than sent, then close the connection. */
  lieContentLength: boolean;
  /** Answer HEAD with 405. */
  noHead: boolean;
  /** Folder listings: HTML index, JSON array of names, or 404. */
  listing: 'html' | 'json' | 'none';
}

export interface RequestRecord {
  readonly method: string;
  readonly path: string;
  readonly range: string | undefined;
}

export interface TestHttpServer {
  /** `http://127.0.0.1:<port>` (no trailing slash). */
  readonly url: string;
  readonly switches: HttpServerSwitches;
  readonly requests: RequestRecord[];
  /** Restores every switch to normal behaviour and clears the request log. */
  reset(): void;
  close(): Promise<void>;
}

const DEFAULTS: HttpServerSwitches = {
  noRange: false,
  redirects: 0,
  delayMs: 0,
  stallMs: 0,
  fail500: 0,
  lieContentLength: false,
  noHead: false,
  listing: 'html',
};

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * Starts the server on a random port.
 *
 * @example
 *   const server = await startHttpServer(folder);
 *   server.switches.noRange = true;
 *   await server.close();
 */
export async function startHttpServer(root: string): Promise<TestHttpServer> {
  const switches: HttpServerSwitches = { ...DEFAULTS };
  const requests: RequestRecord[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    let path = decodeURIComponent(url.pathname);
    requests.push({ method: req.method ?? 'GET', path, range: req.headers.range });

    const hop = /^\/__redirect\/(\d+)(\/.*)$/.exec(path);
    const hops = hop ? Number(hop[1]) : 0;
    if (hop) path = hop[2]!;
    if (hops < switches.redirects) {
      res.writeHead(302, { location: `/__redirect/${hops + 1}${encodeURI(path)}` });
      res.end();
      return;
    }
    if (switches.delayMs > 0) await sleep(switches.delayMs);
    if (switches.fail500 > 0) {
      switches.fail500--;
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('boom');
      return;
    }
    if (req.method === 'HEAD' && switches.noHead) {
      res.writeHead(405);
      res.end();
      return;
    }
    const file = normalize(join(root, path));
    if (!file.startsWith(normalize(root))) {
      res.writeHead(403);
      res.end();
      return;
    }
    let info;
    try {
      info = await stat(file);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    if (info.isDirectory()) {
      if (!path.endsWith('/')) {
        res.writeHead(301, { location: `${encodeURI(path)}/` });
        res.end();
        return;
      }
      if (switches.listing === 'none') {
        res.writeHead(404);
        res.end();
        return;
      }
      const entries = (await readdir(file, { withFileTypes: true })).sort((a, b) =>
        a.name < b.name ? -1 : 1,
      );
      if (switches.listing === 'json') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(entries.filter((e) => e.isFile()).map((e) => e.name)));
        return;
      }
      const links = entries
        .map((e) => {
          const name = e.isDirectory() ? `${e.name}/` : e.name;
          return `<li><a href="${escapeHtml(encodeURIComponent(e.name) + (e.isDirectory() ? '/' : ''))}">${escapeHtml(name)}</a></li>`;
        })
        .join('\n');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        `<!DOCTYPE HTML><html><head><title>Directory listing for ${escapeHtml(path)}</title></head><body><h1>Directory listing for ${escapeHtml(path)}</h1><hr><ul>\n<li><a href="../">../</a></li>\n<li><a href="?C=N;O=D">sort</a></li>\n${links}\n</ul><hr></body></html>`,
      );
      return;
    }
    const data = await readFile(file);
    const size = data.length;
    let start = 0;
    let end = size;
    let status = 200;
    const headers: Record<string, string> = {
      'last-modified': info.mtime.toUTCString(),
      'content-type': 'application/octet-stream',
    };
    if (!switches.noRange) headers['accept-ranges'] = 'bytes';
    const range = req.headers.range;
    if (range !== undefined && !switches.noRange) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range);
      if (m && (m[1] !== '' || m[2] !== '')) {
        if (m[1] === '') {
          start = Math.max(0, size - Number(m[2]));
        } else {
          start = Number(m[1]);
          end = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1);
        }
        if (start >= size) {
          res.writeHead(416, { 'content-range': `bytes */${size}` });
          res.end();
          return;
        }
        status = 206;
        headers['content-range'] = `bytes ${start}-${end - 1}/${size}`;
      }
    }
    const body = data.subarray(start, end);
    if (switches.lieContentLength && req.method !== 'HEAD') {
      // Raw response: announce more bytes than we send, then close the socket.
      const socket = req.socket;
      const head = [`HTTP/1.1 ${status} ${status === 206 ? 'Partial Content' : 'OK'}`];
      for (const [k, v] of Object.entries(headers)) head.push(`${k}: ${v}`);
      head.push(`content-length: ${body.length + 100}`, 'connection: close', '', '');
      socket.write(head.join('\r\n'));
      socket.end(body);
      return;
    }
    headers['content-length'] = String(body.length);
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    if (switches.stallMs > 0 && body.length > 1) {
      const half = Math.floor(body.length / 2);
      res.write(body.subarray(0, half));
      await sleep(switches.stallMs);
      if (res.destroyed) return;
      res.end(body.subarray(half));
      return;
    }
    res.end(body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    switches,
    requests,
    reset() {
      Object.assign(switches, DEFAULTS);
      requests.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

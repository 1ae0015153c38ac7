/**
 * EmbeddingReader throughput vs the raw sequential read of the same files, from local disk and from a
 * local HTTP server, with the page cache dropped before every measured pass.
 *
 *   npx tsx bench/reader.ts --gb 4 --files 20            # builds bench/data/reader-… once, then measures
 *   npx tsx bench/reader.ts --gb 1 --files 20 --dim 512 --max-ram 512M --no-http
 *
 * Options: --gb (collection size, default 4), --files (default 20), --dim (default 768, float16),
 * --batch-size (default 65536), --max-ram (default 1G), --max-piece (default 50M), --parallel (default 8),
 * --no-http, --no-drop (do not drop caches: then the numbers are page-cache speeds), --runs (default 1).
 *
 * Cache: every measured pass runs in a fresh child process after `sync; echo 3 > /proc/sys/vm/drop_caches`
 * (root only; the script says so when it cannot), so raw and reader passes start equally cold. Peak RSS is
 * the child's `maxRSS` (the whole process, Node included). Results: a table and bench/out/reader.json.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, existsSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, open, readdir } from 'node:fs/promises';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeNpyHeader } from '../src/formats/npy.js';
import { EmbeddingReader } from '../src/reader/index.js';
import { parseByteSize } from '../src/core/validate.js';
import { benchData, machine, parseArgs, printTable, writeJson } from './common.js';

const args = parseArgs();
const self = fileURLToPath(import.meta.url);

interface PassResult {
  mode: string;
  bytes: number;
  seconds: number;
  maxRssBytes: number;
  peakBytesInFlight?: number;
  rows?: number;
}

// ---------------------------------------------------------------- child modes (one measured pass each)

async function rawLocal(files: string[]): Promise<number> {
  const buf = Buffer.allocUnsafe(8 * 1024 * 1024);
  let total = 0;
  for (const f of files) {
    const h = await open(f, 'r');
    try {
      for (;;) {
        const { bytesRead } = await h.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        total += bytesRead;
      }
    } finally {
      await h.close();
    }
  }
  return total;
}

function getStream(url: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => resolve(res));
    req.on('error', reject);
    req.end();
  });
}

async function rawHttp(urls: string[]): Promise<number> {
  let total = 0;
  for (const u of urls) {
    const res = await getStream(u);
    for await (const chunk of res as AsyncIterable<Buffer>) total += chunk.length;
  }
  return total;
}

async function viaReader(
  folder: string,
  dtype: 'float16' | 'float32',
): Promise<{ bytes: number; rows: number; peak: number }> {
  const reader = await EmbeddingReader.open(folder, { format: 'npy' });
  let rows = 0;
  let checksum = 0;
  for await (const b of reader.read({
    batchSize: Number(args.get('batch-size') ?? 65536),
    dtype,
    maxRamBytes: args.get('max-ram') ?? '1G',
    maxPieceSize: args.get('max-piece') ?? '50M',
    parallelPieces: Number(args.get('parallel') ?? 8),
  })) {
    rows += b.embeddings.rows;
    checksum += b.embeddings.data[0] ?? 0; // touch the data
  }
  if (!Number.isFinite(checksum)) console.error('checksum', checksum);
  const out = { bytes: reader.totalSize, rows, peak: reader.stats.peakBytesInFlight };
  reader.close();
  return out;
}

async function child(mode: string, target: string): Promise<void> {
  const t0 = performance.now();
  let result: Omit<PassResult, 'seconds' | 'maxRssBytes'>;
  if (mode === 'raw-local') {
    const files = (await readdir(target))
      .filter((n) => n.endsWith('.npy'))
      .sort()
      .map((n) => join(target, n));
    result = { mode, bytes: await rawLocal(files) };
  } else if (mode === 'raw-http') {
    const index = JSON.parse(await (await fetch(`${target}/index.json`)).text()) as string[];
    result = { mode, bytes: await rawHttp(index.map((n) => `${target}/${n}`)) };
  } else {
    const dtype = mode.endsWith('f32') ? 'float32' : 'float16';
    const r = await viaReader(mode.startsWith('reader-http') ? `${target}/index.json` : target, dtype);
    result = { mode, bytes: r.bytes, rows: r.rows, peakBytesInFlight: r.peak };
  }
  const seconds = (performance.now() - t0) / 1000;
  const maxRssBytes = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(JSON.stringify({ ...result, seconds, maxRssBytes }) + '\n');
}

/** A static file server with Range support that streams from disk (run in its own process). */
async function serve(folder: string): Promise<void> {
  const names = (await readdir(folder)).filter((n) => n.endsWith('.npy')).sort();
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).slice(1);
    if (path === 'index.json') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(names));
      return;
    }
    if (!names.includes(path)) {
      res.writeHead(404);
      res.end();
      return;
    }
    const file = join(folder, path);
    const size = statSync(file).size;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const end = m ? (m[2] ? Math.min(size, Number(m[2]) + 1) : size) : size;
    res.writeHead(m ? 206 : 200, {
      'content-length': String(end - start),
      'accept-ranges': 'bytes',
      ...(m ? { 'content-range': `bytes ${start}-${end - 1}/${size}` } : {}),
    });
    if (req.method === 'HEAD' || end === start) {
      res.end();
      return;
    }
    createReadStream(file, { start, end: end - 1, highWaterMark: 1024 * 1024 }).pipe(res);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
}

// ---------------------------------------------------------------- driver

function runChild(mode: string, target: string): Promise<PassResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      ['--import', 'tsx', self, '--child', mode, '--target', target, ...process.argv.slice(2)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      if (code !== 0) reject(new Error(`${mode} exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as PassResult);
    });
  });
}

function dropCaches(): boolean {
  if (args.has('no-drop')) return false;
  try {
    execFileSync('sync'); // flush dirty pages so that every cached page can be dropped
    writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

async function build(
  folder: string,
  gb: number,
  files: number,
  dim: number,
): Promise<{ rows: number; bytes: number }> {
  const bytesPerRow = dim * 2;
  const totalRows = Math.floor((gb * 1e9) / bytesPerRow);
  const rowsPerFile = Math.ceil(totalRows / files);
  await mkdir(folder, { recursive: true });
  const chunkRows = Math.max(1, Math.floor((16 * 1024 * 1024) / bytesPerRow));
  const chunk = new Uint16Array(chunkRows * dim);
  for (let i = 0; i < chunk.length; i++) chunk[i] = 0x3000 + (i % 0x0800); // finite halves in [0.125, 0.5)
  let written = 0;
  let bytes = 0;
  const width = String(files - 1).length;
  for (let p = 0; p < files && written < totalRows; p++) {
    const rows = Math.min(rowsPerFile, totalRows - written);
    const path = join(folder, `img_emb_${String(p).padStart(width, '0')}.npy`);
    const header = encodeNpyHeader('float16', [rows, dim]);
    const size = header.length + rows * bytesPerRow;
    if (!existsSync(path) || statSync(path).size !== size) {
      const h = await open(path, 'w');
      try {
        await h.write(header);
        for (let r = 0; r < rows; r += chunkRows) {
          const n = Math.min(chunkRows, rows - r);
          await h.write(new Uint8Array(chunk.buffer, 0, n * bytesPerRow));
        }
      } finally {
        await h.close();
      }
    }
    written += rows;
    bytes += size;
  }
  return { rows: written, bytes };
}

async function driver(): Promise<void> {
  const gb = Number(args.get('gb') ?? 4);
  const files = Number(args.get('files') ?? 20);
  const dim = Number(args.get('dim') ?? 768);
  const runs = Number(args.get('runs') ?? 1);
  const maxRam = parseByteSize('--max-ram', args.get('max-ram') ?? '1G');
  const folder = join(benchData, `reader-${gb}g-${files}f-d${dim}`);
  const t0 = performance.now();
  const built = await build(folder, gb, files, dim);
  console.log(
    `collection: ${folder}: ${built.rows} rows × ${dim} float16 in ${files} files, ${(built.bytes / 1e9).toFixed(2)} GB (ready in ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );

  const modes = ['raw-local', 'reader-local-f16', 'reader-local-f32'];
  let server: ReturnType<typeof spawn> | undefined;
  let base = '';
  if (!args.has('no-http')) {
    server = spawn(process.execPath, ['--import', 'tsx', self, '--serve', folder], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const port = await new Promise<string>((resolve) =>
      server!.stdout!.once('data', (c: Buffer) => resolve(c.toString().trim())),
    );
    base = `http://127.0.0.1:${port}`;
    modes.push('raw-http', 'reader-http-f16');
  }
  const results: (PassResult & { run: number; cold: boolean })[] = [];
  try {
    for (let run = 0; run < runs; run++) {
      for (const mode of modes) {
        const cold = dropCaches();
        const r = await runChild(mode, mode.includes('http') ? base : folder);
        results.push({ ...r, run, cold });
        console.log(
          `${mode}: ${(r.bytes / r.seconds / 1e6).toFixed(0)} MB/s, max RSS ${(r.maxRssBytes / 1e6).toFixed(0)} MB${cold ? '' : ' (page cache not dropped)'}`,
        );
      }
    }
  } finally {
    server?.kill();
  }
  const best = (mode: string): PassResult & { mbps: number } => {
    const rs = results.filter((r) => r.mode === mode).map((r) => ({ ...r, mbps: r.bytes / r.seconds / 1e6 }));
    return rs.sort((a, b) => b.mbps - a.mbps)[0]!;
  };
  const table = modes.map((mode) => {
    const r = best(mode);
    const raw = best(mode.includes('http') ? 'raw-http' : 'raw-local');
    return {
      mode,
      'MB/s': Math.round(r.mbps),
      'vs raw': mode.startsWith('raw') ? '' : (r.mbps / raw.mbps).toFixed(2),
      seconds: Number(r.seconds.toFixed(2)),
      'max RSS MB': Math.round(r.maxRssBytes / 1e6),
      'RSS ≤ maxRam+200MB': mode.startsWith('reader') ? String(r.maxRssBytes <= maxRam + 200e6) : '',
      'peak held MB': r.peakBytesInFlight === undefined ? '' : Math.round(r.peakBytesInFlight / 1e6),
    };
  });
  printTable(table);
  const path = await writeJson('reader.json', {
    machine: machine(),
    collection: { folder, gb, files, dim, rows: built.rows, bytes: built.bytes },
    options: {
      batchSize: Number(args.get('batch-size') ?? 65536),
      maxRam: args.get('max-ram') ?? '1G',
      maxPiece: args.get('max-piece') ?? '50M',
      parallel: Number(args.get('parallel') ?? 8),
      runs,
    },
    cacheDropped: results.every((r) => r.cold),
    results,
    table,
  });
  console.log(`wrote ${path}`);
}

if (args.has('child')) await child(args.get('child')!, args.get('target')!);
else if (args.has('serve')) await serve(args.get('serve')!);
else await driver();

/**
 * Manifest inputs (CSV, TSV, JSONL, parquet) and their downloads, against real HTTP servers on 127.0.0.1
 * (test/helpers/http-server.ts, one per misbehaviour: slow, failing then fine, redirecting, always failing,
 * hanging, lying about Content-Length) plus a small server here that records User-Agents and concurrency
 * and can send an endless body. The CSV parser is checked against Python's csv module.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { runEmbedJob } from '../src/pipeline/embed.js';
import { parseNpyHeader } from '../src/formats/npy.js';
import { CsvParser, parseCsv, defaultUserAgent, createManifestSource } from '../src/sources/index.js';
import { startHttpServer, type TestHttpServer } from './helpers/http-server.js';
import { debianPython, photosDir, run, runCli, tempDir } from './helpers/cli.js';

let modelDir: string;
let work: string;
/** Folder the HTTP servers serve: photos under p/, a big file, a text file. */
let site: string;
const servers: Record<string, TestHttpServer> = {};
let probe: { url: string; userAgents: string[]; maxInFlight: number; close: () => Promise<void> };

/** A server that answers /slow/<name> with a photo after 150 ms (counting concurrent requests) and
 * /endless with a body that never ends. */
async function startProbe(): Promise<typeof probe> {
  const userAgents: string[] = [];
  let inFlight = 0;
  const state = { maxInFlight: 0 };
  const photo = await readFile(join(photosDir, '123_456.jpg'));
  const server: Server = createServer((req, res) => {
    userAgents.push(req.headers['user-agent'] ?? '');
    if (req.url === '/endless') {
      res.writeHead(200, { 'content-type': 'image/jpeg' });
      const chunk = Buffer.alloc(64 * 1024);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
      return;
    }
    inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    setTimeout(() => {
      inFlight--;
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': photo.length });
      res.end(photo);
    }, 150);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    userAgents,
    get maxInFlight() {
      return state.maxInFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function duck(sql: string): Promise<{ columns: string[]; rows: Record<string, unknown>[] }> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  const reader = await conn.runAndReadAll(sql);
  const out = {
    columns: reader.columnNames(),
    rows: reader.getRowObjectsJson() as Record<string, unknown>[],
  };
  conn.closeSync();
  instance.closeSync();
  return out;
}

function csvField(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  work = await tempDir('glimpse-manifest-');
  site = join(work, 'site');
  await mkdir(join(site, 'p'), { recursive: true });
  for (const f of [
    '123_456.jpg',
    '208_495.jpg',
    '321_421.jpg',
    '389_535.jpg',
    '416_264.jpg',
    '456_123.jpg',
    '524_316.jpg',
  ])
    await copyFile(join(photosDir, f), join(site, 'p', f));
  await writeFile(join(site, 'p', 'big.jpg'), Buffer.alloc(2 * 1024 * 1024, 7));
  await writeFile(join(site, 'p', 'notes.txt'), 'this is not an image\n');
  for (const name of ['good', 'slow', 'flaky', 'redirect', 'broken', 'hung', 'liar'])
    servers[name] = await startHttpServer(site);
  probe = await startProbe();
});

after(async () => {
  for (const s of Object.values(servers)) await s.close();
  await probe?.close();
  await rm(work, { recursive: true, force: true });
});

describe('CSV parser (RFC 4180)', () => {
  test('quotes, escaped quotes, delimiters and newlines inside quotes, CRLF, BOM, blank lines', () => {
    const text =
      '\ufeffurl,caption\r\nhttp://x/a.jpg,"a ""quoted"", multi\r\nline caption"\r\n\r\nb.jpg,plain\nc.jpg,\n"d,1.jpg",x"y\n';
    const expected = [
      ['url', 'caption'],
      ['http://x/a.jpg', 'a "quoted", multi\r\nline caption'],
      ['b.jpg', 'plain'],
      ['c.jpg', ''],
      ['d,1.jpg', 'x"y'],
    ];
    assert.deepEqual(parseCsv(text), expected);
    // Every chunk boundary (a CR and its LF in different chunks, a "" split in two) gives the same records.
    for (let cut = 1; cut < text.length; cut++) {
      const p = new CsvParser();
      const records = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut)), ...p.end()];
      assert.deepEqual(records, expected, `cut at ${cut}`);
    }
    const oneByOne = new CsvParser();
    const records: string[][] = [];
    for (const c of text) records.push(...oneByOne.push(c));
    records.push(...oneByOne.end());
    assert.deepEqual(records, expected);
    assert.deepEqual(parseCsv('a\tb\n"1\t2"\t3', '\t'), [
      ['a', 'b'],
      ['1\t2', '3'],
    ]);
    assert.throws(() => parseCsv('a,b\n"open,1\n'), { code: 'GLIMPSE_E_SOURCE_MANIFEST_INVALID' });
  });

  test('reads what Python csv.writer writes, field for field', async () => {
    const script = [
      'import csv, io, json, random, sys',
      'random.seed(7)',
      "alphabet = ['a', 'b', ' ', ',', '\"', '\\n', '\\r\\n', 'é', '\\t', 'x']",
      "rows = [[''.join(random.choice(alphabet) for _ in range(random.randint(0, 12))) for _ in range(4)] for _ in range(300)]",
      'buf = io.StringIO()',
      'csv.writer(buf).writerows(rows)',
      'print(json.dumps({"text": buf.getvalue(), "rows": [r for r in csv.reader(io.StringIO(buf.getvalue()))]}))',
    ].join('\n');
    const { text, rows } = JSON.parse(await run(debianPython, ['-c', script])) as {
      text: string;
      rows: string[][];
    };
    // Python's reader keeps blank-field-only rows ([''] for an empty line); ours skips blank lines.
    const expected = rows.filter((r) => !(r.length === 1 && r[0] === ''));
    assert.deepEqual(parseCsv(text), expected);
  });
});

describe('manifests of URLs', () => {
  test('a CSV of URLs from servers that are slow, fail then answer, redirect, fail, hang, lie or send too much: the good rows embedded, every failure recorded with its reason', async () => {
    for (const s of Object.values(servers)) s.reset();
    servers['slow']!.switches.delayMs = 200;
    servers['flaky']!.switches.fail500 = 1;
    servers['redirect']!.switches.redirects = 2;
    servers['broken']!.switches.fail500 = Number.POSITIVE_INFINITY;
    servers['hung']!.switches.delayMs = 5000;
    servers['liar']!.switches.lieContentLength = true;
    const u = (server: string, path: string): string => `${servers[server]!.url}${path}`;
    await mkdir(join(work, 'm1', 'local'), { recursive: true });
    await copyFile(join(photosDir, 'Landscape_1.jpg'), join(work, 'm1', 'local', 'l.jpg'));
    const rows: [string, string, string][] = [
      [u('good', '/p/123_456.jpg'), 'a "quoted", multi\nline caption', 'ok'],
      [u('slow', '/p/208_495.jpg'), 'slow but in time', 'ok'],
      [u('flaky', '/p/321_421.jpg'), 'a 500, then fine', 'ok'],
      [u('redirect', '/p/389_535.jpg'), 'two redirects', 'ok'],
      ['local/l.jpg', 'a path beside the manifest', 'ok'],
      [u('good', '/p/missing.jpg'), 'not found', 'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED'],
      [u('broken', '/p/416_264.jpg'), 'always 500', 'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED'],
      [u('hung', '/p/456_123.jpg'), 'never answers in time', 'GLIMPSE_E_SOURCE_DOWNLOAD_TIMEOUT'],
      [u('liar', '/p/524_316.jpg'), 'Content-Length lies', 'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED'],
      [u('good', '/p/big.jpg'), 'too big', 'GLIMPSE_E_IMAGE_TOO_LARGE'],
      [`${probe.url}/endless`, 'endless body', 'GLIMPSE_E_IMAGE_TOO_LARGE'],
      [u('good', '/p/notes.txt'), 'not an image', 'GLIMPSE_E_IMAGE_DECODE_FAILED'],
      ['', 'no url', 'GLIMPSE_E_SOURCE_MANIFEST_INVALID'],
    ];
    const manifest = join(work, 'm1', 'urls.csv');
    await writeFile(
      manifest,
      [
        'url,caption,source',
        ...rows.map(([url, caption], i) => `${csvField(url)},${csvField(caption)},s${i}`),
      ].join('\r\n') + '\r\n',
    );
    const out = join(work, 'm1-out');
    const r = await runEmbedJob({
      input: manifest,
      inputFormat: 'csv',
      captionCol: 'caption',
      output: out,
      model: modelDir,
      numPreproWorkers: 1,
      downloadTimeoutMs: 600,
      downloadRetries: 2,
      limits: { maxBytes: 1024 * 1024 },
    });
    const good = rows.filter((row) => row[2] === 'ok');
    assert.equal(r.samples, rows.length);
    assert.equal(r.embedded, good.length);
    assert.equal(r.failed, rows.length - good.length);

    const meta = await duck(`SELECT * FROM read_parquet('${join(out, 'metadata', 'metadata_0.parquet')}')`);
    assert.deepEqual(meta.columns, ['image_path', 'caption', 'url']);
    // Rows come in the order their downloads finished; each row keeps its URL and caption together.
    const byUrl = new Map(meta.rows.map((row) => [row['url'], row]));
    assert.deepEqual([...byUrl.keys()].sort(), good.map(([url]) => url).sort());
    for (const [url, caption] of good) {
      assert.equal(byUrl.get(url)!['caption'], caption);
      assert.equal(byUrl.get(url)!['image_path'], url);
    }
    const npy = parseNpyHeader(new Uint8Array(await readFile(join(out, 'img_emb', 'img_emb_0.npy'))), 'img');
    assert.equal(npy.shape[0], good.length);

    const failures = (await readFile(join(out, 'failures', 'failures_0.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; code: string; message: string });
    const byKey = new Map(failures.map((f) => [f.key, f]));
    for (const [url, , code] of rows.filter((row) => row[2] !== 'ok')) {
      const key = url === '' ? `${manifest}#12` : url;
      assert.equal(byKey.get(key)?.code, code, `${key}: ${JSON.stringify(byKey.get(key))}`);
    }
    assert.match(byKey.get(u('good', '/p/missing.jpg'))!.message, /HTTP 404$/);
    assert.match(byKey.get(u('broken', '/p/416_264.jpg'))!.message, /HTTP 500 \(3 attempts\)$/);
    assert.match(byKey.get(u('hung', '/p/456_123.jpg'))!.message, /timed out.*600 ms.*\(3 attempts\)/);
    assert.match(
      byKey.get(u('liar', '/p/524_316.jpg'))!.message,
      /the connection closed before the whole body arrived \(short of its Content-Length\).*\(3 attempts\)$/,
    );
    assert.match(byKey.get(u('good', '/p/big.jpg'))!.message, /at most 1048576 bytes/);
    assert.match(byKey.get(`${probe.url}/endless`)!.message, /transfer was stopped/);

    // Retries only for transient failures: a 404 is asked once, a 500 three times, the flaky one twice.
    const asked = (server: string, path: string): number =>
      servers[server]!.requests.filter((q) => q.path === path).length;
    assert.equal(asked('good', '/p/missing.jpg'), 1);
    assert.equal(asked('broken', '/p/416_264.jpg'), 3);
    assert.equal(asked('flaky', '/p/321_421.jpg'), 2);

    const stats = JSON.parse(await readFile(join(out, 'stats', 'stats_0.json'), 'utf8')) as {
      failures_by_code: Record<string, number>;
    };
    assert.deepEqual(stats.failures_by_code, {
      GLIMPSE_E_SOURCE_DOWNLOAD_FAILED: 3,
      GLIMPSE_E_SOURCE_DOWNLOAD_TIMEOUT: 1,
      GLIMPSE_E_IMAGE_TOO_LARGE: 2,
      GLIMPSE_E_IMAGE_DECODE_FAILED: 1,
      GLIMPSE_E_SOURCE_MANIFEST_INVALID: 1,
    });
  });

  test('downloads run with bounded concurrency and a glimpse User-Agent; JSONL and TSV manifests; additional columns on request (CLI)', async () => {
    const n = 16;
    const jsonl = join(work, 'm2.jsonl');
    await writeFile(
      jsonl,
      Array.from({ length: n }, (_, i) =>
        JSON.stringify({
          image: `${probe.url}/slow/${i}.jpg`,
          text: `caption ${i}`,
          width: 100 + i,
          tags: { a: i },
        }),
      ).join('\n'),
    );
    probe.userAgents.length = 0;
    const out = join(work, 'm2-out');
    const r = await runCli([
      'embed',
      jsonl,
      out,
      '--input-format',
      'jsonl',
      '--url-col',
      'image',
      '--caption-col',
      'text',
      '--save-additional-columns',
      '--download-concurrency',
      '4',
      '--model',
      modelDir,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(probe.maxInFlight <= 4, `at most 4 downloads at once, saw ${probe.maxInFlight}`);
    assert.ok(probe.maxInFlight >= 2, `downloads overlap, saw ${probe.maxInFlight}`);
    assert.equal(probe.userAgents.length, n);
    assert.ok(probe.userAgents.every((ua) => ua === defaultUserAgent()));
    assert.match(defaultUserAgent(), /^glimpse\/\d+\.\d+\.\d+/);
    const meta = await duck(
      `SELECT * FROM read_parquet('${join(out, 'metadata', 'metadata_0.parquet')}') ORDER BY width`,
    );
    assert.deepEqual(meta.columns, ['image_path', 'caption', 'url', 'width', 'tags.a']);
    assert.deepEqual(
      meta.rows.map((row) => [row['url'], row['caption'], row['width']]),
      Array.from({ length: n }, (_, i) => [`${probe.url}/slow/${i}.jpg`, `caption ${i}`, String(100 + i)]),
    );

    // TSV, and a missing column fails before any download.
    const tsv = join(work, 'm3.tsv');
    await writeFile(tsv, `link\tcaption\n${servers['good']!.url}/p/123_456.jpg\tone\n`);
    const bad = await runCli([
      'embed',
      tsv,
      join(work, 'm3-out'),
      '--input-format',
      'tsv',
      '--model',
      modelDir,
    ]);
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /GLIMPSE_E_SOURCE_MANIFEST_INVALID: Expected the column\(s\) "url" .* but it has "link", "caption"/,
    );
    const ok = await runCli([
      'embed',
      tsv,
      join(work, 'm3-out'),
      '--input-format',
      'tsv',
      '--url-col',
      'link',
      '--model',
      modelDir,
      '--json',
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { embedded: number }).embedded, 1);
  });

  test('a parquet manifest (written by DuckDB) with --subset-size and partitions', async () => {
    const base = servers['good']!.url;
    servers['good']!.reset();
    const files = ['123_456.jpg', '208_495.jpg', '321_421.jpg', '389_535.jpg', '416_264.jpg'];
    const parquet = join(work, 'm4.parquet');
    const values = files.map((f, i) => `('${base}/p/${f}', 'caption ${i}', ${i})`).join(', ');
    await duck(
      `COPY (SELECT * FROM (VALUES ${values}) AS t(url, caption, n)) TO '${parquet}' (FORMAT PARQUET)`,
    );
    const out = join(work, 'm4-out');
    const r = await runEmbedJob({
      input: parquet,
      inputFormat: 'parquet',
      captionCol: 'caption',
      output: out,
      model: modelDir,
      numPreproWorkers: 1,
      subsetSize: 4,
      writeBatchSize: 2,
    });
    assert.equal(r.embedded, 4);
    assert.equal(r.partitions, 2);
    const meta = await duck(
      `SELECT url, caption FROM read_parquet('${join(out, 'metadata', '*.parquet')}') ORDER BY caption`,
    );
    assert.deepEqual(
      meta.rows.map((row) => row['url']),
      files.slice(0, 4).map((f) => `${base}/p/${f}`),
    );
    assert.equal(servers['good']!.requests.filter((q) => q.path.endsWith('416_264.jpg')).length, 0);
  });
});

describe('range reads (shards of a job)', () => {
  test('a range read yields exactly rows [start, end) by row number, downloads nothing else, whatever finishes first', async () => {
    const fast = servers['good']!;
    const slow = servers['slow']!;
    fast.reset();
    slow.reset();
    slow.switches.delayMs = 150;
    const files = ['123_456.jpg', '208_495.jpg', '321_421.jpg', '389_535.jpg', '416_264.jpg', '456_123.jpg'];
    // Even rows from the slow server: their downloads finish after the odd rows that follow them.
    const urls = files.map((f, i) => `${i % 2 === 0 ? slow.url : fast.url}/p/${f}`);
    const csv = join(work, 'range.csv');
    await writeFile(csv, 'url\n' + urls.join('\n') + '\n');
    const source = await createManifestSource(csv, { format: 'csv', enableText: false });
    try {
      const got: { index: number; key: string }[] = [];
      for await (const s of source.read({ start: 2, end: 5 })) {
        assert.ok(s.imageBytes && s.imageBytes.length > 0, `row ${s.index} was downloaded`);
        got.push({ index: s.index, key: s.key });
      }
      assert.deepEqual(
        got.map((g) => g.index).sort(),
        [2, 3, 4],
        'the rows of the range, by row number, even when a later row finishes first',
      );
      for (const g of got) assert.equal(g.key, urls[g.index], `row ${g.index} is its own URL`);
      const requested = [...fast.requests, ...slow.requests].map((q) => q.path.split('/').pop());
      assert.deepEqual(requested.sort(), files.slice(2, 5).sort(), 'only the range is downloaded');
    } finally {
      source.close?.();
      slow.reset();
    }
  });
});

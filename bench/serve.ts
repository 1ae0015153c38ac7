/**
 * bench/serve: the HTTP server under load on loopback.
 *
 *   npx tsx bench/serve.ts [--n 100000] [--dim 512] [--clients 16] [--seconds 10] [--seed 1] [--rebuild]
 *
 * Data: a collection of n random clustered unit vectors (1,000 cluster centres, nearest-neighbour cosine
 * ≈ 0.8–0.9 like CLIP embeddings) inserted through the collection library, bound to the synthesized ViT-B/32
 * model (512-d, real text and vision shapes), indexed with `buildIndex(auto)`; kept in bench/data between runs.
 * The server runs `startServer` in a child process (rate limit off, logs at warn); this process is the
 * client: `--clients` concurrent keep-alive connections, each sending its next request when the last
 * answered, for `--seconds` after a warm-up.
 *
 * Measures: vector search (top 10, held-out queries) QPS and p50/p99 latency, also with one client; text
 * search QPS and latency, next to the text model's own texts/s measured in this run (batches of 16, the
 * server's batch size, with the server idle) — the ratio says how close the server gets to the model; image
 * upload search (multipart, a 600×450 JPEG) latency with 1 and 4 clients. Prints a table and writes
 * bench/out/serve.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { benchData, machine, parseArgs, printTable, repoRoot, writeJson } from './common.js';
import { percentile, seededRandom } from '../src/search/query.js';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel } from '../src/pipeline/model.js';
import { createCollection, openCollection, openDatabase } from '../src/pipeline/collection.js';
import { buildIndex } from '../src/pipeline/collection-index.js';
import { loadServerConfig } from '../src/config/server.js';
import { startServer } from '../src/server/index.js';

const args = parseArgs();
const N = Number(args.get('n') ?? 100_000);
const DIM = Number(args.get('dim') ?? 512);
const CLIENTS = Number(args.get('clients') ?? 16);
const SECONDS = Number(args.get('seconds') ?? 10);
const SEED = Number(args.get('seed') ?? 1);
const CLUSTERS = 1000;
const QUERIES = 1000;
const COLLECTION = 'bench';
const photo = join(repoRoot, 'test/fixtures/images/photos/Landscape_1.jpg');

/** Clustered unit vectors: centre + Gaussian spread, normalized. */
function clustered(count: number, rng: ReturnType<typeof seededRandom>, centres: Float32Array): Float32Array {
  const out = new Float32Array(count * DIM);
  const spread = 0.045; // per-coordinate σ: cos(point, centre) ≈ 1/sqrt(1 + 512σ²) ≈ 0.7
  for (let i = 0; i < count; i++) {
    const c = Math.floor(rng.uniform() * CLUSTERS);
    let norm = 0;
    for (let j = 0; j < DIM; j++) {
      const v = centres[c * DIM + j]! + spread * rng.gaussian();
      out[i * DIM + j] = v;
      norm += v * v;
    }
    const inv = 1 / Math.sqrt(norm);
    for (let j = 0; j < DIM; j++) out[i * DIM + j]! *= inv;
  }
  return out;
}

function centresOf(rng: ReturnType<typeof seededRandom>): Float32Array {
  const centres = new Float32Array(CLUSTERS * DIM);
  for (let c = 0; c < CLUSTERS; c++) {
    let norm = 0;
    for (let j = 0; j < DIM; j++) {
      const v = rng.gaussian();
      centres[c * DIM + j] = v;
      norm += v * v;
    }
    for (let j = 0; j < DIM; j++) centres[c * DIM + j]! /= Math.sqrt(norm);
  }
  return centres;
}

/** The database with the collection (built once per n/dim/seed), and held-out queries. */
async function prepare(modelDir: string): Promise<{ db: string; queries: Float32Array; index: unknown }> {
  const db = join(benchData, `serve-db-n${N}-d${DIM}-s${SEED}`);
  const marker = join(db, 'READY.json');
  const rng = seededRandom(SEED);
  const centres = centresOf(rng);
  if (args.has('rebuild')) await rm(db, { recursive: true, force: true });
  let index: unknown;
  if (existsSync(marker)) {
    index = JSON.parse(await readFile(marker, 'utf8')) as unknown;
  } else {
    await rm(db, { recursive: true, force: true });
    await mkdir(db, { recursive: true });
    const model = await loadModel(modelDir, { decodeWorkers: 1 });
    const store = await openDatabase(db);
    const collection = await createCollection(store, COLLECTION, { model, modelRef: modelDir });
    const started = performance.now();
    const batch = 10_000;
    for (let start = 0; start < N; start += batch) {
      const n = Math.min(batch, N - start);
      const vectors = clustered(n, rng, centres);
      const items = Array.from({ length: n }, (_, i) => ({
        id: String(start + i),
        vector: vectors.subarray(i * DIM, (i + 1) * DIM),
        caption: `item ${start + i}`,
        metadata: { bucket: (start + i) % 100 },
      }));
      const r = await collection.upsertVectors(items, { fingerprint: model.fingerprint, mode: 'append' });
      if (r.failed > 0) throw new Error(`insert failed: ${JSON.stringify(r.failures[0])}`);
    }
    const insertSeconds = (performance.now() - started) / 1000;
    const built = await buildIndex(collection, { type: 'auto' });
    index = { ...built, insertSeconds, insertRowsPerSecond: N / insertSeconds };
    await collection.close();
    store.close();
    await model.close();
    await writeFile(marker, JSON.stringify(index, null, 2));
  }
  // Held-out queries from the same clusters (a different stream of the generator).
  const queries = clustered(QUERIES, seededRandom(SEED + 1000), centres);
  return { db, queries, index };
}

/** The child: the server, as `glimpse serve` runs it. */
async function serverChild(): Promise<void> {
  const config = await loadServerConfig({
    flags: {
      db: args.get('db'),
      model: args.get('model'),
      port: 0,
      'rateLimit.max': 0,
      logLevel: 'warn',
      ui: false,
      docs: false,
    },
  });
  const server = await startServer(config);
  process.stdout.write(`URL ${server.url}\n`);
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
}

function startChild(db: string, modelDir: string): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(repoRoot, 'bench/serve.ts'),
        '--child',
        'server',
        '--db',
        db,
        '--model',
        modelDir,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /URL (http:\/\/\S+)/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

interface Sent {
  status: number;
  ms: number;
}

function post(agent: Agent, url: URL, body: Buffer, type: string): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const req = request(
      url,
      { method: 'POST', agent, headers: { 'content-type': type, 'content-length': body.length } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - start }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface LoadResult extends Record<string, string | number> {
  test: string;
  clients: number;
  requests: number;
  errors: number;
  qps: number;
  p50Ms: number;
  p99Ms: number;
  /** Server process CPU per request (from its /metrics), and this client's. */
  serverCpuMs: number;
  clientCpuMs: number;
  /** 2 cores / (server + client CPU per request): the QPS two idle cores would give. */
  qps2Cores: number;
  /** Load average of the machine during the test (other work on the same cores). */
  load1: number;
}

/** The server process's CPU seconds, from its Prometheus metrics. */
async function serverCpuSeconds(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let total = 0;
  for (const m of text.matchAll(/^glimpse_process_cpu_(?:user|system)_seconds_total ([\d.e+-]+)$/gm))
    total += Number(m[1]);
  return total;
}

/** `clients` closed loops for `seconds` (after a short warm-up); each takes the next body in turn. */
async function load(
  test: string,
  base: string,
  url: URL,
  bodies: readonly Buffer[],
  type: string,
  clients: number,
  seconds: number,
  warmSeconds = 1,
): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  let next = 0;
  const run = async (until: number, record: boolean, out: number[], errors: { n: number }): Promise<void> => {
    while (performance.now() < until) {
      const body = bodies[next++ % bodies.length]!;
      const r = await post(agent, url, body, type);
      if (!record) continue;
      if (r.status !== 200) errors.n++;
      out.push(r.ms);
    }
  };
  const warm = performance.now() + warmSeconds * 1000;
  await Promise.all(Array.from({ length: clients }, () => run(warm, false, [], { n: 0 })));
  const latencies: number[] = [];
  const errors = { n: 0 };
  const server0 = await serverCpuSeconds(base);
  const client0 = process.cpuUsage();
  const start = performance.now();
  await Promise.all(
    Array.from({ length: clients }, () => run(start + seconds * 1000, true, latencies, errors)),
  );
  const elapsed = (performance.now() - start) / 1000;
  const client = process.cpuUsage(client0);
  const serverCpuMs = (((await serverCpuSeconds(base)) - server0) * 1000) / latencies.length;
  const clientCpuMs = (client.user + client.system) / 1000 / latencies.length;
  agent.destroy();
  return {
    test,
    clients,
    requests: latencies.length,
    errors: errors.n,
    qps: latencies.length / elapsed,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    serverCpuMs,
    clientCpuMs,
    qps2Cores: 2000 / (serverCpuMs + clientCpuMs),
    load1: loadavg()[0]!,
  };
}

function multipart(bytes: Buffer): { body: Buffer; type: string } {
  const boundary = 'glimpsebench0123456789';
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n10\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { body: Buffer.concat([head, bytes, tail]), type: `multipart/form-data; boundary=${boundary}` };
}

const WORDS = [
  'a',
  'dog',
  'cat',
  'red',
  'car',
  'on',
  'the',
  'beach',
  'at',
  'night',
  'photo',
  'of',
  'mountain',
  'lake',
  'city',
  'street',
  'two',
  'people',
  'small',
  'bird',
  'flowers',
  'in',
  'vase',
  'old',
  'house',
];

async function main(): Promise<void> {
  if (args.get('child') === 'server') return serverChild();
  const started = performance.now();
  const modelDir = await ensureSynthModel('vit-b-32', 0);
  console.log(`bench/serve: ${N} vectors of dimension ${DIM}, ${CLIENTS} clients, ${SECONDS} s per test`);
  const { db, queries, index } = await prepare(modelDir);
  console.log(`collection ready (${JSON.stringify(index)})`);

  const rng = seededRandom(SEED + 7);
  const texts = Array.from({ length: 500 }, () =>
    Array.from(
      { length: 3 + Math.floor(rng.uniform() * 8) },
      () => WORDS[Math.floor(rng.uniform() * WORDS.length)],
    ).join(' '),
  );
  const vectorBodies = Array.from({ length: QUERIES }, (_, q) =>
    Buffer.from(JSON.stringify({ vector: Array.from(queries.subarray(q * DIM, (q + 1) * DIM)), top_k: 10 })),
  );
  const textBodies = texts.map((text) => Buffer.from(JSON.stringify({ text, top_k: 10 })));
  const upload = multipart(await readFile(photo));

  const { child, url } = await startChild(db, modelDir);
  const results: LoadResult[] = [];
  try {
    const search = new URL(`${url}/v1/collections/${COLLECTION}/search`);
    const json = 'application/json';
    const short = Math.min(SECONDS, 5);
    results.push(await load('vector search', url, search, vectorBodies, json, CLIENTS, SECONDS, 2));
    results.push(await load('vector search', url, search, vectorBodies, json, 1, short));
    results.push(await load('text search', url, search, textBodies, json, CLIENTS, SECONDS, 2));
    results.push(await load('text search', url, search, textBodies, json, 1, short));
    results.push(await load('image upload search', url, search, [upload.body], upload.type, 1, short));
    results.push(await load('image upload search', url, search, [upload.body], upload.type, 4, short));
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }

  // The text model alone and the store alone, in this process, with the server stopped.
  const model = await loadModel(modelDir, { decodeWorkers: 1 });
  await model.embedTexts(texts.slice(0, 16));
  let embedded = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < 5000) {
    const at = embedded % (texts.length - 16);
    await model.embedTexts(texts.slice(at, at + 16));
    embedded += 16;
  }
  const modelCpu = process.cpuUsage(cpu0);
  const modelTextsPerSecond = embedded / ((performance.now() - t0) / 1000);
  const modelCpuMsPerText = (modelCpu.user + modelCpu.system) / 1000 / embedded;
  await model.close();
  const store = await openDatabase(db);
  const collection = await openCollection(store, COLLECTION);
  const defaults = collection.table.searchDefaults;
  let searched = 0;
  const storeCpu0 = process.cpuUsage();
  const s0 = performance.now();
  while (performance.now() - s0 < 5000) {
    const q = searched % QUERIES;
    await collection.table.search({ vector: queries.subarray(q * DIM, (q + 1) * DIM), k: 10, ...defaults });
    searched++;
  }
  const storeCpu = process.cpuUsage(storeCpu0);
  const storeCpuMsPerSearch = (storeCpu.user + storeCpu.system) / 1000 / searched;
  await collection.close();
  store.close();

  const vector = results.find((r) => r.test === 'vector search' && r.clients === CLIENTS)!;
  const text = results.find((r) => r.test === 'text search' && r.clients === CLIENTS)!;
  const round = (v: number, d = 1): number => Math.round(v * 10 ** d) / 10 ** d;
  printTable(
    results.map((r) => ({
      ...r,
      qps: round(r.qps),
      p50Ms: round(r.p50Ms),
      p99Ms: round(r.p99Ms),
      serverCpuMs: round(r.serverCpuMs, 2),
      clientCpuMs: round(r.clientCpuMs, 2),
      qps2Cores: round(r.qps2Cores),
      load1: round(r.load1),
    })),
  );
  const ratio = text.qps / modelTextsPerSecond;
  const ratioCpu = (modelCpuMsPerText / text.serverCpuMs) * 1;
  console.log(
    `store alone (collection.table.search, in process): ${storeCpuMsPerSearch.toFixed(2)} CPU ms per search; the server spends ${vector.serverCpuMs.toFixed(2)} per vector search`,
  );
  console.log(
    `text model alone: ${modelTextsPerSecond.toFixed(1)} texts/s (batches of 16, ${modelCpuMsPerText.toFixed(2)} CPU ms a text); text search: ${text.qps.toFixed(1)} QPS = ${(ratio * 100).toFixed(0)}% of it (${(ratioCpu * 100).toFixed(0)}% by CPU per text)`,
  );
  const targetMet = vector.qps >= 500 && vector.p99Ms <= 20;
  console.log(
    `target (vector search ≥ 500 QPS at p99 ≤ 20 ms on 2 cores): ${targetMet ? 'met' : 'NOT met'} (measured ${vector.qps.toFixed(0)} QPS, p99 ${vector.p99Ms.toFixed(1)} ms, load average ${vector.load1.toFixed(1)}; ${vector.qps2Cores.toFixed(0)} QPS projected on 2 idle cores)`,
  );
  const path = await writeJson('serve.json', {
    machine: machine(),
    n: N,
    dimension: DIM,
    clients: CLIENTS,
    secondsPerTest: SECONDS,
    index,
    results,
    modelTextsPerSecond,
    modelCpuMsPerText,
    storeCpuMsPerSearch,
    textSearchToModelRatio: ratio,
    textSearchToModelRatioByCpu: ratioCpu,
    target: { vectorQps: 500, vectorP99Ms: 20, met: targetMet },
    seconds: (performance.now() - started) / 1000,
  });
  console.log(`wrote ${path}`);
}

await main();

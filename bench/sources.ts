/**
 * bench/sources: end-to-end images/s of `runEmbedJob` from each source on the same images, with the
 * synthesized ViT-B/32 model:
 *   - folder: the images as files (the reference);
 *   - webdataset: the same images in local tar shards (streamed, never extracted) → ratio to folder, target ≥ 0.95;
 *   - manifest: a CSV of their URLs on a local HTTP server, 64 downloads in flight → ratio to folder (do
 *     downloads starve inference?), plus the download path alone (its ceiling here).
 * Each measurement runs in its own child process (peak RSS is that run's alone); rounds alternate the
 * sources. Reported: median and best images/s, ratios to the folder paired within a round (the machine's
 * load drifts), and CPU ms per image (all threads; robust to other processes on a shared machine).
 *
 *   npx tsx bench/sources.ts [--images 510] [--dtype fp32] [--rounds 3] [--concurrency 64] [--batch 32]
 */
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { pack } from 'tar-stream';
import type { ModelDtype } from '../src/models/types.js';
import { benchData, machine, median, parseArgs, printTable, repoRoot, writeJson } from './common.js';

const args = parseArgs();
const child = args.get('child');
const dataDir = join(benchData, 'sources');
const imagesDir = join(dataDir, 'images');
const shardsDir = join(dataDir, 'shards');
const PER_SHARD = 100;

interface ChildResult {
  items: number;
  failed: number;
  seconds: number;
  rate: number;
  /** CPU milliseconds of the whole process (all threads) per item: robust to other load on the machine. */
  cpuMsPerItem: number;
  maxRssMB: number;
}

function report(items: number, failed: number, seconds: number): void {
  const cpu = process.cpuUsage();
  const r: ChildResult = {
    items,
    failed,
    seconds,
    rate: items / seconds,
    cpuMsPerItem: (cpu.user + cpu.system) / 1000 / Math.max(items, 1),
    maxRssMB: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
}

async function runChild(): Promise<void> {
  const dtype = (args.get('dtype') ?? 'fp32') as ModelDtype;
  const modelDir = args.get('model')!;
  const batch = Number(args.get('batch') ?? 32);
  const concurrency = Number(args.get('concurrency') ?? 64);
  const out = join(dataDir, `out-${child}`);
  await rm(out, { recursive: true, force: true });
  if (child === 'download') {
    const { Downloader, inCompletionOrder } = await import('../src/sources/download.js');
    const urls = (await readFile(join(dataDir, 'manifest.csv'), 'utf8')).trim().split('\n').slice(1);
    const dl = new Downloader({ concurrency });
    async function* items(): AsyncGenerator<string> {
      yield* urls;
    }
    const t = performance.now();
    let ok = 0;
    let failed = 0;
    for await (const r of inCompletionOrder(items(), concurrency, (u) => dl.fetch(u))) {
      if (r.ok) ok++;
      else failed++;
    }
    report(ok, failed, (performance.now() - t) / 1000);
    dl.close();
    return;
  }
  const { runEmbedJob } = await import('../src/pipeline/embed.js');
  const common = { output: out, model: modelDir, dtype, batchSize: batch, enableText: false as const };
  const t = performance.now();
  const r =
    child === 'folder'
      ? await runEmbedJob({ ...common, input: imagesDir })
      : child === 'webdataset'
        ? await runEmbedJob({
            ...common,
            input: join(shardsDir, '*.tar'),
            inputFormat: 'webdataset',
            wdsImageKey: 'jpg;jpeg;webp;png',
          })
        : await runEmbedJob({
            ...common,
            input: join(dataDir, 'manifest.csv'),
            inputFormat: 'csv',
            downloadConcurrency: concurrency,
          });
  report(r.embedded, r.failed, (performance.now() - t) / 1000);
}

/** ≥ n images (the shared photos copied under distinct names) with an x.json each, and the same in shards. */
async function prepare(n: number): Promise<string[]> {
  const photosDir = join(repoRoot, 'test/fixtures/images/photos');
  const photos = (await readdir(photosDir)).filter((f) => !f.startsWith('.')).sort();
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const src = photos[i % photos.length]!;
    names.push(`img_${String(i).padStart(5, '0')}.${src.split('.').pop()!.toLowerCase()}`);
  }
  const existing = await readdir(imagesDir).catch(() => [] as string[]);
  if (existing.filter((f) => !f.endsWith('.json')).length !== n) {
    await rm(dataDir, { recursive: true, force: true });
    await mkdir(imagesDir, { recursive: true });
    for (let i = 0; i < n; i++) {
      await copyFile(join(photosDir, photos[i % photos.length]!), join(imagesDir, names[i]!));
      const stem = names[i]!.replace(/\.[^.]+$/, '');
      await writeFile(
        join(imagesDir, `${stem}.json`),
        JSON.stringify({ source: photos[i % photos.length], i }),
      );
    }
  }
  // Shards: the same files, `<stem>.<ext>` + `<stem>.json`, PER_SHARD samples each. The folder's image
  // extensions vary (jpg, jpeg, webp), so the WebDataset image key lists them all.
  const shardCount = Math.ceil(n / PER_SHARD);
  const haveShards = (await readdir(shardsDir).catch(() => [] as string[])).length === shardCount;
  if (!haveShards) {
    await rm(shardsDir, { recursive: true, force: true });
    await mkdir(shardsDir, { recursive: true });
    for (let s = 0; s < shardCount; s++) {
      const p = pack();
      const chunks: Buffer[] = [];
      const done = (async () => {
        for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
      })();
      for (const name of names.slice(s * PER_SHARD, (s + 1) * PER_SHARD)) {
        const stem = name.replace(/\.[^.]+$/, '');
        p.entry({ name }, await readFile(join(imagesDir, name)));
        p.entry({ name: `${stem}.json` }, await readFile(join(imagesDir, `${stem}.json`)));
      }
      p.finalize();
      await done;
      await writeFile(join(shardsDir, `${String(s).padStart(5, '0')}.tar`), Buffer.concat(chunks));
    }
  }
  return names;
}

/** A static file server for the manifest (keep-alive; its CPU is shared with the run, as a sidecar's is). */
async function serve(dir: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    const file = join(dir, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    if (!file.startsWith(dir)) {
      res.writeHead(403).end();
      return;
    }
    stat(file).then(
      (s) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': s.size });
        createReadStream(file).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function runProcess(kind: string, extra: string[]): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'bench/sources.ts'), '--child', kind, ...extra],
      {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) reject(new Error(`${kind} child failed (${code}): ${out}`));
      else resolve(JSON.parse(line.slice(7)) as ChildResult);
    });
  });
}

async function main(): Promise<void> {
  const n = Number(args.get('images') ?? 510);
  const dtype = args.get('dtype') ?? 'fp32';
  const rounds = Number(args.get('rounds') ?? 3);
  const concurrency = Number(args.get('concurrency') ?? 64);
  const batch = args.get('batch') ?? '32';
  const { ensureSynthModel } = await import('../src/models/synth/index.js');
  const modelDir = await ensureSynthModel('vit-b-32', 0);
  const names = await prepare(n);
  const server = await serve(imagesDir);
  await writeFile(
    join(dataDir, 'manifest.csv'),
    ['url', ...names.map((f) => `${server.url}/${f}`)].join('\n') + '\n',
  );
  const extra = [
    '--model',
    modelDir,
    '--dtype',
    dtype,
    '--batch',
    batch,
    '--concurrency',
    String(concurrency),
  ];
  const kinds = ['folder', 'webdataset', 'manifest'] as const;
  const results: Record<string, ChildResult[]> = { folder: [], webdataset: [], manifest: [], download: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const k of kinds) {
        const res = await runProcess(k, extra);
        console.error(
          `round ${r + 1} ${k}: ${res.rate.toFixed(2)} images/s (${res.items} in ${res.seconds.toFixed(1)} s)`,
        );
        results[k]!.push(res);
      }
    }
    results['download']!.push(await runProcess('download', extra));
  } finally {
    await server.close();
  }
  const rate = (k: string): number => median(results[k]!.map((x) => x.rate));
  const best = (k: string): number => Math.max(...results[k]!.map((x) => x.rate));
  const cpu = (k: string): number => median(results[k]!.map((x) => x.cpuMsPerItem));
  // Ratios paired within a round (the machine's load drifts between rounds), then the median.
  const paired = (k: string): number =>
    median(results[k]!.map((x, i) => x.rate / results['folder']![i]!.rate));
  const rows = [...kinds, 'download' as const].map((k) => ({
    source: k === 'download' ? `downloads only (${concurrency} in flight)` : k,
    images: results[k]![0]!.items,
    failed: results[k]![0]!.failed,
    'images/s median': rate(k),
    'images/s best': best(k),
    'CPU ms/image': cpu(k),
    'vs folder (paired)': k === 'download' ? '—' : paired(k).toFixed(3),
    'vs folder (CPU)': k === 'download' ? '—' : (cpu('folder') / cpu(k)).toFixed(3),
    'peak RSS MB': Math.round(median(results[k]!.map((x) => x.maxRssMB))),
  }));
  printTable(rows);
  const wdsRatio = paired('webdataset');
  const manifestRatio = paired('manifest');
  console.log(
    `\nwebdataset/folder ${wdsRatio.toFixed(3)} (target ≥ 0.95: ${wdsRatio >= 0.95 ? 'met' : 'NOT met'}; CPU per image ${(cpu('folder') / cpu('webdataset')).toFixed(3)}); manifest/folder ${manifestRatio.toFixed(3)}; downloads alone ${(rate('download') / rate('folder')).toFixed(1)}× the end-to-end rate; load average ${loadavg()[0]!.toFixed(1)} on ${machine()['cpus'] as number} cores`,
  );
  const path = await writeJson('sources.json', {
    machine: { ...machine(), loadavg: loadavg() },
    model: 'synth vit-b-32 seed 0',
    dtype,
    batch: Number(batch),
    images: n,
    shards: Math.ceil(n / PER_SHARD),
    downloadConcurrency: concurrency,
    rounds,
    results,
    medians: Object.fromEntries(Object.keys(results).map((k) => [k, rate(k)])),
    cpuMsPerImage: Object.fromEntries(Object.keys(results).map((k) => [k, cpu(k)])),
    ratios: {
      webdatasetToFolder: wdsRatio,
      manifestToFolder: manifestRatio,
      webdatasetToFolderCpu: cpu('folder') / cpu('webdataset'),
      manifestToFolderCpu: cpu('folder') / cpu('manifest'),
      downloadOnlyToFolder: rate('download') / rate('folder'),
    },
  });
  console.log(`wrote ${path}`);
}

if (child !== undefined) await runChild();
else await main();

/**
 * bench/jobs: what sharded jobs cost and give.
 *
 *   npx tsx bench/jobs.ts [--shards 300] [--images 300] [--shard-size 25] [--repeat 2] [--skip-embed]
 *
 * (a) ledger overhead per shard (claim + heartbeat + complete, no embedding) for each backend: SQLite (a
 * file, WAL, synchronous=FULL) and BullMQ on a local redis-server (append-only file), one worker and four
 * concurrent claimers; (b) images/s of a sharded job with 1 and 2 local worker processes on the synthesized
 * ViT-B/32 model over ~300 photos (copies of test/fixtures/images/photos under bench/data), next to its
 * peer measured in the same run: one `glimpse embed` process (runEmbedJob) on the same photos.
 * Prints a table; writes bench/out/jobs.json.
 */
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { createJobStore, type JobStore } from '../src/jobs/store.js';
import { runLocalJob } from '../src/jobs/local.js';
import { runEmbedJob } from '../src/pipeline/embed.js';
import { ensureSynthModel } from '../src/models/synth/index.js';
import type { JobDefinition, ShardDescriptor } from '../src/jobs/types.js';
import { startRedis } from '../test/helpers/redis.js';
import { tempDir } from '../test/helpers/cli.js';
import { benchData, machine, median, parseArgs, printTable, repoRoot, writeJson } from './common.js';

const args = parseArgs();
const SHARDS = Number(args.get('shards') ?? 300);
const IMAGES = Number(args.get('images') ?? 300);
const SHARD_SIZE = Number(args.get('shard-size') ?? 25);
/** Each throughput run is repeated; the fastest counts (the machine is shared, noise only slows runs down). */
const REPEAT = Number(args.get('repeat') ?? 2);

async function fastest(fn: () => Promise<number>): Promise<{ seconds: number; images: number }> {
  let best = { seconds: Infinity, images: 0 };
  for (let i = 0; i < REPEAT; i++) {
    const t = performance.now();
    const images = await fn();
    const seconds = (performance.now() - t) / 1000;
    if (seconds < best.seconds) best = { seconds, images };
  }
  return best;
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function shardList(n: number): ShardDescriptor[] {
  const width = String(n - 1).length;
  return Array.from({ length: n }, (_, i) => ({
    id: String(i).padStart(width, '0'),
    kind: 'range' as const,
    start: i * 10,
    end: (i + 1) * 10,
  }));
}

/** One claimer: claim → heartbeat → complete until nothing is left; per-shard milliseconds. */
async function claimLoop(store: JobStore, job: string, worker: string): Promise<number[]> {
  const times: number[] = [];
  for (;;) {
    const t = performance.now();
    const lease = await store.claim(job, { worker });
    if (!lease) return times;
    const renewed = await store.heartbeat(lease);
    await store.complete(renewed, { rows: 10, failed: 0, files: [] });
    times.push(performance.now() - t);
  }
}

async function ledgerOverhead(name: string, url: string): Promise<Record<string, string | number>[]> {
  const rows: Record<string, string | number>[] = [];
  for (const claimers of [1, 4]) {
    const stores = await Promise.all(Array.from({ length: claimers }, () => createJobStore(url)));
    const job = `bench-${claimers}-${Date.now()}`;
    const definition: JobDefinition = {
      name: job,
      maxAttempts: 3,
      leaseMs: 60_000,
      retryDelayMs: 0,
      payload: {},
    };
    await stores[0]!.createJob(definition, shardList(SHARDS));
    const t = performance.now();
    const per = (await Promise.all(stores.map((s, i) => claimLoop(s, job, `w${i}`)))).flat();
    const seconds = (performance.now() - t) / 1000;
    const status = await stores[0]!.status(job);
    if (status.counts.DONE !== SHARDS)
      throw new Error(`expected ${SHARDS} DONE, got ${JSON.stringify(status.counts)}`);
    await stores[0]!.drop(job);
    for (const s of stores) await s.close();
    rows.push({
      ledger: name,
      claimers,
      shards: SHARDS,
      'ms/shard median': median(per),
      'ms/shard p95': percentile(per, 95),
      'shards/s': SHARDS / seconds,
    });
  }
  return rows;
}

async function photos(): Promise<string> {
  const dir = join(benchData, 'jobs-photos');
  const src = join(repoRoot, 'test', 'fixtures', 'images', 'photos');
  const names = (await readdir(src)).filter((f) => !f.startsWith('.')).sort();
  const have = await readdir(dir).catch(() => [] as string[]);
  if (have.length !== IMAGES) {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    for (let i = 0; i < IMAGES; i++) {
      const n = names[i % names.length]!;
      await copyFile(join(src, n), join(dir, `${String(i).padStart(4, '0')}_${n}`));
    }
  }
  return dir;
}

async function main(): Promise<void> {
  const results: Record<string, unknown> = {
    machine: machine(),
    shards: SHARDS,
    images: IMAGES,
    shardSize: SHARD_SIZE,
  };

  // (a) ledger overhead per shard.
  const work = await tempDir('glimpse-bench-jobs-');
  const redis = await startRedis();
  const overhead: Record<string, string | number>[] = [];
  try {
    overhead.push(...(await ledgerOverhead('sqlite', `sqlite:${join(work, 'ledger.sqlite')}`)));
    overhead.push(...(await ledgerOverhead('bullmq (redis)', redis.url)));
  } finally {
    await redis.stop();
  }
  console.log('\n(a) ledger overhead per shard (claim + heartbeat + complete, no embedding)');
  printTable(overhead);
  results['ledger'] = overhead;

  // (b) images/s: one embed process vs a sharded job with 1 and 2 worker processes.
  if (!args.has('skip-embed')) {
    const model = await ensureSynthModel('vit-b-32', 0);
    const input = await photos();
    const cores = availableParallelism();
    const runs: Record<string, string | number>[] = [];
    {
      const out = join(work, 'embed');
      const { seconds, images } = await fastest(
        async () => (await runEmbedJob({ input, output: out, model, overwrite: true })).embedded,
      );
      runs.push({
        run: 'glimpse embed (1 process, peer)',
        processes: 1,
        threads: cores,
        images,
        seconds,
        'images/s': images / seconds,
      });
    }
    for (const workers of [1, 2]) {
      const out = join(work, `job-${workers}`);
      const { seconds, images } = await fastest(async () => {
        await rm(out, { recursive: true, force: true });
        const r = await runLocalJob({
          input,
          output: out,
          model,
          workers,
          shardSize: SHARD_SIZE,
          onWorkerOutput: () => undefined,
        });
        return r.status.rows;
      });
      runs.push({
        run: `sharded job, ${workers} worker${workers > 1 ? 's' : ''}`,
        processes: workers,
        threads: Math.max(1, Math.floor(cores / workers)),
        images,
        seconds,
        'images/s': images / seconds,
      });
    }
    console.log(
      `\n(b) images/s, synthesized ViT-B/32 (fp32), ${IMAGES} photos, shards of ${SHARD_SIZE}, ${cores} cores (wall time incl. worker start-up, fastest of ${REPEAT})`,
    );
    printTable(runs);
    results['throughput'] = runs;
  }
  await rm(work, { recursive: true, force: true });
  const path = await writeJson('jobs.json', results);
  console.log(`\nwrote ${path}`);
}

await main();

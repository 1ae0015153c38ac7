/**
 * Chaos, for each ledger: 42 shards, 4 local worker processes, at least 10 `kill -9` of random workers at
 * random moments (each restarted by the supervisor), and a poison shard that kills its worker every time
 * it is claimed. At the end every other sample is embedded exactly once (0 missing, 0 duplicate rows
 * across shards), no shard is stuck, no temp file is left, every npy/parquet pair agrees, and the poison
 * shard is FAILED for good because its lease expired on every attempt.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { parseNpyHeader } from '../src/formats/npy.js';
import { rangeReaderFromBytes, readParquetColumns } from '../src/formats/parquet.js';
import { isTempName } from '../src/core/fs-atomic.js';
import { createJobStore } from '../src/jobs/store.js';
import { runLocalJob, type LocalJobResult } from '../src/jobs/local.js';
import { photosDir, tempDir } from './helpers/cli.js';
import { startRedis, type RedisServer } from './helpers/redis.js';

const SMALL = [
  '123_456.jpg',
  '208_495.jpg',
  '321_421.jpg',
  '389_535.jpg',
  '416_264.jpg',
  '456_123.jpg',
  '524_316.jpg',
];
const LARGE = 'flowers.jpeg';
const SHARDS = 42;
const SHARD_SIZE = 3;
const POISON = '07';
const LEASE_MS = 2000;
const MAX_ATTEMPTS = 4;
const KILLS = 10;
/** Kills at random moments; the others come a moment after a claim. */
const RANDOM_KILLS = 4;
const MAX_KILLS = 14;

let modelDir: string;
let work: string;
let input: string;
let inputPaths: string[];

/** A small seeded PRNG (mulberry32): the seed is printed, so a failing run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name).slice(dir.length + 1));
  }
  return out.sort();
}

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  work = await tempDir('glimpse-chaos-');
  input = join(work, 'input');
  await mkdir(input);
  inputPaths = [];
  for (let i = 0; i < SHARDS * SHARD_SIZE; i++) {
    const name = `img_${String(i).padStart(3, '0')}.jpg`;
    // One large photo per shard, so a shard takes long enough to be killed in the middle of it.
    const photo = i % SHARD_SIZE === 0 ? LARGE : SMALL[i % SMALL.length]!;
    await copyFile(join(photosDir, photo), join(input, name));
    inputPaths.push(join(input, name));
  }
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Backend {
  name: string;
  ledger(out: string): Promise<{ url: string; stop(): Promise<void> }>;
}

const BACKENDS: Backend[] = [
  {
    name: 'sqlite',
    async ledger(out) {
      return { url: `sqlite:${join(out, '.glimpse', 'ledger.sqlite')}`, stop: async () => undefined };
    },
  },
  {
    name: 'bullmq',
    async ledger() {
      const redis: RedisServer = await startRedis();
      return { url: redis.url, stop: () => redis.stop() };
    },
  },
];

for (const backend of BACKENDS) {
  describe(`chaos: ${backend.name} ledger`, () => {
    test(`${KILLS}+ kill -9 of random workers and a poison shard: every sample exactly once`, async (t) => {
      const out = join(work, `out-${backend.name}`);
      const ledger = await backend.ledger(out);
      const seed = Number(process.env['GLIMPSE_CHAOS_SEED'] ?? Date.now() % 1_000_000);
      t.diagnostic(`seed ${seed} (GLIMPSE_CHAOS_SEED=${seed} replays the kill schedule)`);
      const random = prng(seed);
      const live = new Map<number, number>(); // slot → pid
      const dead = new Set<number>(); // pids that exited
      const current = new Map<number, string>(); // slot → shard it works on
      const shardKills = new Map<string, number>(); // at most 2 per shard: only the poison shard may fail
      let kills = 0;
      let midShard = 0;
      let finished = false;
      const log: string[] = [];
      const kill = (slot: number, pid: number | undefined, why: string): void => {
        if (finished || kills >= MAX_KILLS || pid === undefined || dead.has(pid) || live.get(slot) !== pid)
          return;
        const shard = current.get(slot);
        if (shard !== undefined && (shardKills.get(shard) ?? 0) >= 2) return;
        try {
          process.kill(pid, 'SIGKILL');
          kills++;
          if (shard !== undefined) shardKills.set(shard, (shardKills.get(shard) ?? 0) + 1);
          if (why === 'mid-shard') midShard++;
          log.push(`killed slot ${slot} pid ${pid} (${why})`);
        } catch {
          // It exited on its own in the meantime.
        }
      };
      try {
        const job = runLocalJob({
          ledger: ledger.url,
          job: `chaos-${backend.name}`,
          input,
          output: out,
          model: modelDir,
          shardSize: SHARD_SIZE,
          workers: 4,
          leaseMs: LEASE_MS,
          maxAttempts: MAX_ATTEMPTS,
          retryDelayMs: 0,
          batchSize: 2,
          intraOpThreads: 1,
          numPreproWorkers: 1,
          maxRestarts: 200,
          env: { GLIMPSE_TEST_POISON_SHARD: POISON },
          onWorker: (e) => {
            if (e.type === 'start') live.set(e.slot, e.pid);
            else {
              dead.add(e.pid);
              if (live.get(e.slot) === e.pid) live.delete(e.slot);
            }
          },
          onWorkerOutput: (slot, line) => {
            log.push(`[${slot}] ${line}`);
            // Often, a moment after a claim: kill -9 in the middle of a shard (a large photo leads each shard).
            const claimed = / shard (\S+) claimed /.exec(line);
            if (claimed) current.set(slot, claimed[1]!);
            else if (/ done: /.test(line)) current.delete(slot);
            if (claimed && random() < 0.5) {
              const pid = live.get(slot);
              setTimeout(() => kill(slot, pid, 'mid-shard'), random() * 50);
            }
          },
        }).finally(() => (finished = true));

        // And at random moments (starting up, between shards, mid-shard), a few times.
        const killer = (async () => {
          for (let i = 0; i < RANDOM_KILLS && !finished; i++) {
            await new Promise((r) => setTimeout(r, 500 + random() * 2500));
            const slots = [...live.keys()];
            const slot = slots[Math.floor(random() * slots.length)];
            if (slot !== undefined) kill(slot, live.get(slot), 'random moment');
          }
        })();

        let result: LocalJobResult;
        try {
          result = await job;
        } catch (err) {
          throw new Error(`job failed: ${(err as Error).message}\n${log.slice(-40).join('\n')}`, {
            cause: err,
          });
        }
        await killer;
        assert.ok(kills >= KILLS, `at least ${KILLS} workers killed (got ${kills}; the job ended first)`);
        assert.ok(
          result.restarts >= KILLS,
          `killed workers were restarted (${result.restarts} restarts for ${kills} kills and the poison shard's deaths)`,
        );

        // No shard stuck: all DONE except the poison shard, FAILED for good with its reason.
        assert.deepEqual(result.status.counts, { PENDING: 0, IN_PROGRESS: 0, DONE: SHARDS - 1, FAILED: 1 });
        assert.equal(result.complete, false, 'not complete: one shard failed');
        const store = await createJobStore(ledger.url);
        try {
          const records = await store.shards(`chaos-${backend.name}`);
          const interrupted = records.filter(
            (r) => r.id !== POISON && r.attempts.some((a) => a.outcome === 'lease-expired'),
          ).length;
          t.diagnostic(
            `${kills} kills (${midShard} just after a claim), ${result.restarts} restarts, ${interrupted} shards redone after a kill`,
          );
          if (process.env['CHAOS_DEBUG']) console.error(log.join('\n'));
          assert.ok(interrupted >= 1, `some kills hit a worker in the middle of a shard:\n${log.join('\n')}`);
          const poison = records.find((s) => s.id === POISON);
          assert.equal(poison?.state, 'FAILED');
          assert.match(poison?.reason ?? '', new RegExp(`^lease expired ${MAX_ATTEMPTS} times`));
          assert.deepEqual(
            poison?.attempts.map((a) => a.outcome),
            Array(MAX_ATTEMPTS).fill('lease-expired'),
            'each attempt kept: its lease expired',
          );
        } finally {
          await store.close();
        }
        const manifest = result.manifest!;
        assert.ok(manifest, 'manifest written');
        assert.equal(manifest.complete, false);
        assert.equal(manifest.counts.shards_failed, 1);
        assert.match(manifest.shards.find((s) => s.id === POISON)?.reason ?? '', /lease expired/);

        // Every sample outside the poison shard exactly once, across all shards.
        const files = await walk(out);
        const temps = files.filter((f) => isTempName(f.split('/').pop()!));
        assert.deepEqual(temps, [], 'no temp file left');
        const paths: string[] = [];
        for (const f of files.filter((n) => n.startsWith('metadata/'))) {
          const name = f.slice('metadata/metadata_'.length, -'.parquet'.length);
          assert.notEqual(name, POISON, 'no file for the poison shard');
          const bytes = new Uint8Array(await readFile(join(out, f)));
          const { columns } = await readParquetColumns(rangeReaderFromBytes(bytes), {
            columns: ['image_path'],
          });
          const rows = columns['image_path']!.map(String);
          const npy = new Uint8Array(await readFile(join(out, 'img_emb', `img_emb_${name}.npy`)));
          const header = parseNpyHeader(npy, f);
          assert.equal(header.shape[0], rows.length, `${f}: npy rows = parquet rows`);
          assert.equal(
            npy.length,
            header.headerLength + rows.length * header.shape[1]! * 2,
            `${f}: npy size`,
          );
          paths.push(...rows);
        }
        const poisonIndex = Number(POISON);
        const expected = inputPaths.filter(
          (_, i) => i < poisonIndex * SHARD_SIZE || i >= (poisonIndex + 1) * SHARD_SIZE,
        );
        assert.equal(
          new Set(paths).size,
          paths.length,
          `no duplicate row (${paths.length - new Set(paths).size} duplicates)`,
        );
        const missing = expected.filter((p) => !paths.includes(p));
        assert.deepEqual(missing, [], 'no missing sample');
        assert.equal(paths.length, expected.length);
        assert.deepEqual(paths, expected, 'rows in shard order = input order');
        for (const s of manifest.shards.filter((x) => x.state === 'DONE')) {
          for (const f of s.files) assert.ok(files.includes(f), `manifest file ${f} exists`);
        }
      } finally {
        await ledger.stop();
      }
    });
  });
}

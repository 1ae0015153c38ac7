/**
 * The job CLI (`glimpse job plan|run|status|retry-failed|reset`, `glimpse worker`) as processes: plan on
 * Redis and two separate workers (the multi-machine shape), SIGTERM releasing the shard in progress, a job
 * ending with a FAILED shard, retry-failed, reset and drop. The commands are registered by a small entry
 * (until the lead wires them into src/cli/main.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { isTempName } from '../src/core/fs-atomic.js';
import { createJobStore } from '../src/jobs/store.js';
import type { JobStatus } from '../src/jobs/types.js';
import { collect, photosDir, repoRoot, tempDir, type CliResult } from './helpers/cli.js';
import { startRedis, type RedisServer } from './helpers/redis.js';

const PHOTOS = [
  '123_456.jpg',
  '208_495.jpg',
  '321_421.jpg',
  '389_535.jpg',
  '416_264.jpg',
  '456_123.jpg',
  '524_316.jpg',
  'low-contrast.jpg',
  'testimgl.jpg',
  'gamma_dalai_lama_gray.jpg',
  'flowers.jpeg',
  'Landscape_9.jpg',
  'Landscape_1.jpg',
];

const ENTRY = `
import { Command, CommanderError } from 'commander';
const { registerJobCommand } = await import(${JSON.stringify(new URL('../src/cli/commands/job.ts', import.meta.url).href)});
const { registerWorkerCommand } = await import(${JSON.stringify(new URL('../src/cli/commands/worker.ts', import.meta.url).href)});
const { isGlimpseError } = await import(${JSON.stringify(new URL('../src/errors/index.ts', import.meta.url).href)});
const program = new Command().name('glimpse').exitOverride();
registerJobCommand(program);
registerWorkerCommand(program);
try {
  await program.parseAsync(process.argv.slice(1), { from: 'user' });
} catch (err) {
  if (err instanceof CommanderError) process.exitCode = err.exitCode;
  else if (isGlimpseError(err)) {
    process.stderr.write('error ' + err.code + ': ' + err.message + '\\n');
    process.exitCode = err.code === 'GLIMPSE_E_ABORTED' ? 130 : 1;
  } else {
    process.stderr.write('error GLIMPSE_E_INTERNAL: ' + (err && err.stack ? err.stack : String(err)) + '\\n');
    process.exitCode = 1;
  }
}
`;

function start(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(
    process.execPath,
    ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', ENTRY, ...args],
    {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
}

function glimpse(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return collect(start(args, env));
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name).slice(dir.length + 1));
  }
  return out.sort();
}

let modelDir: string;
let work: string;
let input: string;

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  work = await tempDir('glimpse-jobs-cli-');
  input = join(work, 'input');
  await mkdir(input);
  for (const f of PHOTOS) await copyFile(join(photosDir, f), join(input, f));
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('glimpse job and glimpse worker', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  test('plan on Redis, then two separate workers finish the job (the multi-machine shape)', async () => {
    const out = join(work, 'redis-out');
    const plan = await glimpse([
      'job',
      'plan',
      input,
      out,
      '--ledger',
      redis.url,
      '--job',
      'cli-redis',
      '--shard-size',
      '4',
      '--model',
      modelDir,
    ]);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(
      plan.stdout,
      /^planned: job cli-redis, 13 samples in 4 shards, ledger redis:\/\/127\.0\.0\.1:\d+\/0\n/,
    );
    assert.match(
      plan.stdout,
      new RegExp(
        `run workers with: glimpse worker --ledger redis://127.0.0.1:${redis.port}/0 --job cli-redis`,
      ),
    );
    const again = await glimpse([
      'job',
      'plan',
      input,
      out,
      '--ledger',
      redis.url,
      '--job',
      'cli-redis',
      '--shard-size',
      '4',
      '--model',
      modelDir,
    ]);
    assert.match(again.stdout, /^already planned \(unchanged\)/, 'planning again resumes');

    const workerArgs = [
      'worker',
      '--ledger',
      redis.url,
      '--job',
      'cli-redis',
      '--threads',
      '1',
      '--num-prepro-workers',
      '1',
      '--json',
    ];
    const [a, b] = await Promise.all([
      glimpse([...workerArgs, '--worker-id', 'machine-a']),
      glimpse([...workerArgs, '--worker-id', 'machine-b']),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const ra = JSON.parse(a.stdout) as { shards: number; stoppedBy: string };
    const rb = JSON.parse(b.stdout) as { shards: number; stoppedBy: string };
    assert.equal(ra.shards + rb.shards, 4, 'every shard done once between the two workers');
    assert.equal(ra.stoppedBy, 'finished');

    const status = await glimpse(['job', 'status', '--ledger', redis.url, '--job', 'cli-redis', '--json']);
    const s = JSON.parse(status.stdout) as JobStatus;
    assert.equal(s.finished, true, 'finished');
    assert.deepEqual(s.counts, { PENDING: 0, IN_PROGRESS: 0, DONE: 4, FAILED: 0 });
    assert.equal(s.rows, 13);
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { complete: boolean };
    assert.equal(manifest.complete, true);
  });

  test('SIGTERM: the worker releases its shard, removes its temp files and exits 130; job run resumes', async () => {
    const out = join(work, 'sigterm-out');
    const plan = await glimpse([
      'job',
      'plan',
      input,
      out,
      '--shard-size',
      '13',
      '--batch-size',
      '1',
      '--model',
      modelDir,
    ]);
    assert.equal(plan.code, 0, plan.stderr);
    const ledger = `sqlite:${join(out, '.glimpse', 'ledger.sqlite')}`;
    const child = start(['worker', '--ledger', ledger, '--threads', '1', '--num-prepro-workers', '1']);
    const done = collect(child);
    await new Promise<void>((resolve) => {
      let seen = '';
      child.stderr!.on('data', (d: Buffer) => {
        seen += d.toString();
        if (/shard 0 claimed/.test(seen)) resolve();
      });
    });
    child.kill('SIGTERM');
    const r = await done;
    assert.equal(r.code, 130, `exit code 130 after SIGTERM: ${r.stderr}`);
    assert.match(r.stderr, /shard 0 released/);
    assert.match(r.stderr, /error GLIMPSE_E_ABORTED/);
    const store = await createJobStore(ledger);
    try {
      const [shard] = await store.shards('embed');
      assert.equal(shard?.state, 'PENDING', 'back to PENDING at once (no lease expiry needed)');
      assert.deepEqual(
        shard?.attempts.map((x) => x.outcome),
        ['released'],
      );
      assert.equal(shard?.failures, 0, 'a release is not a failure');
    } finally {
      await store.close();
    }
    const files = existsSync(out) ? await walk(out) : [];
    assert.ok(!files.some((f) => isTempName(f.split('/').pop()!)), `no temp file: ${files.join(', ')}`);
    assert.ok(!files.some((f) => f.startsWith('img_emb/')), 'nothing renamed into place');

    const run = await glimpse([
      'job',
      'run',
      input,
      out,
      '--shard-size',
      '13',
      '--batch-size',
      '1',
      '--model',
      modelDir,
      '--threads',
      '1',
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /job embed in sqlite:.*: finished\n/);
    assert.match(run.stdout, /shards: 1 total, 1 DONE, 0 IN_PROGRESS, 0 PENDING, 0 FAILED/);
  });

  test('a job with a poison shard ends FAILED with its reason; retry-failed, reset and drop', async () => {
    const out = join(work, 'poison-out');
    const common = [
      input,
      out,
      '--shard-size',
      '5',
      '--model',
      modelDir,
      '--lease',
      '1',
      '--max-attempts',
      '2',
      '--threads',
      '1',
    ];
    const run = await glimpse(['job', 'run', ...common, '--workers', '1'], {
      GLIMPSE_TEST_POISON_SHARD: '1',
    });
    assert.equal(run.code, 1, `exit code 1: ${run.stderr}`);
    assert.match(
      run.stderr,
      /error GLIMPSE_E_JOB_SHARDS_FAILED: Expected every shard of job embed to be DONE but 1 FAILED/,
    );
    assert.match(run.stdout, /shards: 3 total, 2 DONE, 0 IN_PROGRESS, 0 PENDING, 1 FAILED/);
    assert.match(run.stdout, /failed:\n {2}1: lease expired 2 times/);
    assert.match(run.stdout, /attempt 1 \([^)]+\): lease-expired GLIMPSE_E_JOB_LEASE_LOST/);
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { complete: boolean };
    assert.equal(manifest.complete, false, 'manifest says incomplete');
    assert.ok(!existsSync(join(out, 'glimpse.json')), 'no glimpse.json for an incomplete job');

    const retry = await glimpse(['job', 'retry-failed', '--output', out]);
    assert.equal(retry.code, 0, retry.stderr);
    assert.equal(
      retry.stdout,
      '1 failed shard(s) of job embed back to PENDING; run workers to finish them\n',
    );
    assert.ok(!existsSync(join(out, 'manifest.json')), 'the stale manifest is removed');
    const rerun = await glimpse(['job', 'run', ...common]);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.ok(existsSync(join(out, 'glimpse.json')), 'complete now');

    const reset = await glimpse(['job', 'reset', '--output', out]);
    assert.equal(reset.stdout, '3 shard(s) of job embed back to PENDING\n');
    const status = await glimpse(['job', 'status', '--output', out]);
    assert.match(status.stdout, /shards: 3 total, 0 DONE, 0 IN_PROGRESS, 3 PENDING, 0 FAILED/);
    const drop = await glimpse(['job', 'reset', '--output', out, '--drop']);
    assert.equal(drop.stdout, 'job embed dropped from the ledger\n');
    const gone = await glimpse(['job', 'status', '--output', out]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /^error GLIMPSE_E_JOB_NOT_FOUND: Expected a job named embed in the ledger /);
  });

  test('bad arguments', async () => {
    const none = await glimpse(['job', 'status']);
    assert.equal(none.code, 1);
    assert.equal(
      none.stderr,
      'error GLIMPSE_E_ARG_INVALID: Expected --ledger <url> (or --output <dir> for the SQLite ledger in that output) but received neither\n',
    );
    const lease = await glimpse(['job', 'plan', input, join(work, 'x'), '--lease', '0']);
    assert.notEqual(lease.code, 0);
    assert.match(lease.stderr, /Expected a number of seconds of at least 0\.1 for --lease but received "0"/);
    const worker = await glimpse(['worker']);
    assert.notEqual(worker.code, 0);
    assert.match(worker.stderr, /required option '--ledger <url>' not specified/);
  });
});

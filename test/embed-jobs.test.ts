/** `glimpse embed --workers N` and `--plan-only` + `glimpse worker`: the embed command drives the job ledger. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { photosDir, runCli, tempDir } from './helpers/cli.js';

const IMAGES = [
  '123_456.jpg',
  '208_495.jpg',
  '321_421.jpg',
  '389_535.jpg',
  '416_264.jpg',
  '456_123.jpg',
  '524_316.jpg',
];
let modelDir: string;
let work: string;
let input: string;

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  work = await tempDir('glimpse-embed-jobs-');
  input = join(work, 'in');
  await mkdir(input);
  for (const f of IMAGES) await copyFile(join(photosDir, f), join(input, f));
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function manifestRows(out: string): Promise<number> {
  const m = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { shards: { rows: number }[] };
  return m.shards.reduce((a, s) => a + s.rows, 0);
}

test('embed --workers 2 runs a sharded job: one file set per shard, every sample once', async () => {
  const out = join(work, 'out-workers');
  const r = await runCli(['embed', input, out, '--model', modelDir, '--workers', '2', '--shard-size', '3']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /3\/3 shard\(s\) done/);
  assert.deepEqual((await readdir(join(out, 'img_emb'))).sort(), [
    'img_emb_0.npy',
    'img_emb_1.npy',
    'img_emb_2.npy',
  ]);
  assert.equal(await manifestRows(out), IMAGES.length);
  // Re-running the same command resumes a finished job: nothing to do, same result.
  const again = await runCli([
    'embed',
    input,
    out,
    '--model',
    modelDir,
    '--workers',
    '2',
    '--shard-size',
    '3',
  ]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(await manifestRows(out), IMAGES.length);
});

test('embed --plan-only then glimpse worker completes the job', async () => {
  const out = join(work, 'out-plan');
  const ledger = join(work, 'ledger.sqlite');
  const plan = await runCli([
    'embed',
    input,
    out,
    '--model',
    modelDir,
    '--plan-only',
    '--ledger',
    ledger,
    '--job',
    'photos',
    '--shard-size',
    '4',
  ]);
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, /planned job photos: 2 shard\(s\), 7 samples/);
  const worker = await runCli(['worker', '--ledger', ledger, '--job', 'photos']);
  assert.equal(worker.code, 0, worker.stderr);
  assert.equal(await manifestRows(out), IMAGES.length);
  const status = await runCli(['job', 'status', '--ledger', ledger, '--job', 'photos']);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /DONE/);
});

test('a sharded job of input format files takes one input folder', async () => {
  const r = await runCli(['embed', input, input, join(work, 'x'), '--model', modelDir, '--workers', '2']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /GLIMPSE_E_ARG_INVALID: Expected one input folder for input format "files"/);
});

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProgressEvent } from '../src/core/progress.js';
import { isGlimpseError, type GlimpseError } from '../src/errors/index.js';
import { loadModelFolder } from '../src/models/folder.js';
import { hashFile } from '../src/models/fingerprint.js';
import {
  isHubId,
  modelCacheFolder,
  resolveHubSettings,
  resolveModel,
  type ResolveModelOptions,
} from '../src/models/hub.js';
import { startHubServer, type HubServer } from './helpers/hub-server.js';

const CONFIG = {
  model_type: 'clip',
  projection_dim: 512,
  text_config: { max_position_embeddings: 77, projection_dim: 512 },
  vision_config: { image_size: 224, patch_size: 32, projection_dim: 512 },
};
const PREPROCESSOR = {
  crop_size: { height: 224, width: 224 },
  do_normalize: true,
  image_processor_type: 'CLIPImageProcessor',
  resample: 3,
  size: { shortest_edge: 224 },
};
const TOKENIZER = { version: '1.0', model: { type: 'BPE', vocab: {}, merges: [] } };
const JSON_FILES = ['config.json', 'preprocessor_config.json', 'tokenizer.json'];

let work: string;
let repos: string;
let hub: HubServer;
/** The repo files of org/tiny, by path. */
const files = new Map<string, Buffer>();

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'glimpse-hub-'));
  repos = join(work, 'repos');
  // org/tiny: fp32 and q8 (the fp32 vision model with external data), plus a README that is never fetched.
  const tiny: Record<string, Buffer> = {
    'config.json': Buffer.from(JSON.stringify(CONFIG)),
    'preprocessor_config.json': Buffer.from(JSON.stringify(PREPROCESSOR)),
    'tokenizer.json': Buffer.from(JSON.stringify(TOKENIZER)),
    'README.md': Buffer.from('# tiny\n'),
    'onnx/vision_model.onnx': randomBytes(40_000),
    'onnx/vision_model.onnx_data': randomBytes(30_000),
    'onnx/text_model.onnx': randomBytes(50_000),
    'onnx/vision_model_quantized.onnx': randomBytes(12_000),
    'onnx/text_model_quantized.onnx': randomBytes(15_000),
  };
  for (const [path, data] of Object.entries(tiny)) {
    files.set(path, data);
    await mkdir(join(repos, 'org', 'tiny', path, '..'), { recursive: true });
    await writeFile(join(repos, 'org', 'tiny', path), data);
  }
  hub = await startHubServer(repos);
});

after(async () => {
  await hub.close();
  await rm(work, { recursive: true, force: true });
});

let cacheCount = 0;
/** A fresh cache folder and the options pointing at the fake hub (fast retries, no environment). */
function fresh(extra: ResolveModelOptions = {}): { cacheDir: string; options: ResolveModelOptions } {
  const cacheDir = join(work, `cache-${++cacheCount}`);
  return {
    cacheDir,
    options: {
      cacheDir,
      hubUrl: hub.url,
      offline: false,
      token: 'hf_secret_token',
      retryDelayMs: 1,
      ...extra,
    },
  };
}

function requestsSince(mark: number): typeof hub.requests {
  return hub.requests.slice(mark);
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<GlimpseError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isGlimpseError(err), `expected a GlimpseError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.ok(!err.message.includes('hf_secret_token'), 'the token must never appear in messages');
    return err;
  }
  assert.fail(`expected ${code} but it resolved`);
}

async function assertSameBytes(dir: string, paths: readonly string[]): Promise<void> {
  for (const path of paths) assert.deepEqual(await readFile(join(dir, path)), files.get(path), path);
}

async function listTree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

test('downloads the files of a dtype (following the CDN redirect), then resolves from the cache without network', async () => {
  const { cacheDir, options } = fresh();
  const events: ProgressEvent[] = [];
  const mark = hub.requests.length;
  const dir = await resolveModel('org/tiny', { ...options, onProgress: (e) => events.push(e) });
  assert.equal(dir, join(cacheDir, 'models', 'org--tiny', 'main'));
  assert.equal(dir, modelCacheFolder('org/tiny', { cacheDir }));
  await assertSameBytes(dir, [
    ...JSON_FILES,
    'onnx/vision_model.onnx',
    'onnx/vision_model.onnx_data',
    'onnx/text_model.onnx',
  ]);
  const tree = await listTree(dir);
  assert.ok(!tree.includes('README.md') && !tree.includes('onnx/text_model_quantized.onnx'), tree.join(' '));
  assert.ok(
    !tree.some((f) => f.endsWith('.part') || f.includes('.tmp-') || f.endsWith('.lock')),
    tree.join(' '),
  );

  const seen = requestsSince(mark);
  assert.ok(
    seen.some((r) => r.url === '/cdn/org/tiny/onnx/text_model.onnx'),
    'followed the LFS redirect',
  );
  assert.ok(seen.every((r) => r.url.startsWith('/cdn/') || r.authorization === 'Bearer hf_secret_token'));

  // Progress: per file, loaded only grows and ends at the total.
  const byFile = new Map<string, number[]>();
  for (const e of events) {
    assert.equal(e.type, 'download');
    if (e.type !== 'download') continue;
    assert.equal(e.total, files.get(e.file)!.length);
    byFile.set(e.file, [...(byFile.get(e.file) ?? []), e.loaded]);
  }
  assert.equal(byFile.size, 6);
  for (const [file, loaded] of byFile) {
    assert.deepEqual(
      loaded,
      [...loaded].sort((a, b) => a - b),
      file,
    );
    assert.equal(loaded.at(-1), files.get(file)!.length, file);
  }

  // Complete in the cache: no request at all, even with the network on.
  const mark2 = hub.requests.length;
  assert.equal(await resolveModel('org/tiny', options), dir);
  assert.deepEqual(requestsSince(mark2), []);

  // The folder loads, its id comes from the cache metadata, and the hashes verified while
  // downloading seed the fingerprint cache.
  const model = await loadModelFolder(dir);
  assert.equal(model.id, 'org/tiny');
  assert.equal(
    model.fingerprint.files['onnx/vision_model.onnx_data'],
    await hashFile(join(dir, 'onnx/vision_model.onnx_data')),
  );
  const hashCache = JSON.parse(await readFile(join(dir, '.glimpse-hashes.json'), 'utf8')) as {
    files: object;
  };
  assert.ok('onnx/text_model.onnx' in hashCache.files);

  // Another dtype into the same folder fetches only its two ONNX files.
  const mark3 = hub.requests.length;
  await resolveModel('org/tiny', { ...options, dtype: 'q8' });
  const fetched = requestsSince(mark3)
    .filter((r) => r.url.startsWith('/cdn/') || r.url.includes('/resolve/'))
    .map((r) => r.url);
  assert.deepEqual(fetched, [
    '/org/tiny/resolve/main/onnx/vision_model_quantized.onnx',
    '/cdn/org/tiny/onnx/vision_model_quantized.onnx',
    '/org/tiny/resolve/main/onnx/text_model_quantized.onnx',
    '/cdn/org/tiny/onnx/text_model_quantized.onnx',
  ]);
  assert.equal((await loadModelFolder(dir, { dtype: 'q8' })).dtype, 'q8');
});

test('a dropped connection is resumed with a Range request and ends with the right bytes', async () => {
  const { options } = fresh();
  hub.faults.dropAfter.set('onnx/text_model.onnx', 20_000);
  const mark = hub.requests.length;
  const dir = await resolveModel('org/tiny', options);
  await assertSameBytes(dir, ['onnx/text_model.onnx']);
  const cdn = requestsSince(mark).filter((r) => r.url === '/cdn/org/tiny/onnx/text_model.onnx');
  assert.equal(cdn.length, 2);
  assert.equal(cdn[0]!.range, undefined);
  const start = Number(/^bytes=(\d+)-$/.exec(cdn[1]!.range ?? '')?.[1]);
  assert.ok(start > 0 && start <= 20_000, `resumed from ${cdn[1]!.range}`);
  assert.ok(!(await listTree(dir)).some((f) => f.endsWith('.part')));
});

test('a .part left by an earlier run is continued from its size; a 200 answer restarts it', async () => {
  const { options } = fresh();
  const dir = modelCacheFolder('org/tiny', { cacheDir: options.cacheDir });
  const text = files.get('onnx/text_model.onnx')!;
  await mkdir(join(dir, 'onnx'), { recursive: true });
  await writeFile(join(dir, 'onnx/text_model.onnx.part'), text.subarray(0, 12_345));
  // A stale part whose server ignores Range: the whole file comes back with 200 and replaces it.
  const vision = files.get('onnx/vision_model.onnx')!;
  await writeFile(
    join(dir, 'onnx/vision_model.onnx.part'),
    Buffer.concat([Buffer.from('garbage!'), vision.subarray(8, 999)]),
  );
  hub.faults.ignoreRange.add('onnx/vision_model.onnx');
  const mark = hub.requests.length;
  try {
    await resolveModel('org/tiny', options);
  } finally {
    hub.faults.ignoreRange.delete('onnx/vision_model.onnx');
  }
  const cdn = requestsSince(mark).filter((r) => r.url.startsWith('/cdn/'));
  assert.equal(cdn.find((r) => r.url.endsWith('/text_model.onnx'))?.range, 'bytes=12345-');
  assert.equal(cdn.find((r) => r.url.endsWith('/vision_model.onnx'))?.range, 'bytes=999-');
  await assertSameBytes(dir, ['onnx/text_model.onnx', 'onnx/vision_model.onnx']);
});

test('a listing that lies about the size is an integrity error and leaves no final or partial file', async () => {
  const { options } = fresh();
  hub.faults.listedSize.set('onnx/text_model.onnx', 49_000);
  try {
    const err = await rejectsWith(resolveModel('org/tiny', options), 'GLIMPSE_E_MODEL_INTEGRITY');
    assert.match(
      err.message,
      /^Expected onnx\/text_model\.onnx of org\/tiny to match the hub's listing but the hub sent more than the 49000 bytes its listing says/,
    );
  } finally {
    hub.faults.listedSize.delete('onnx/text_model.onnx');
  }
  const dir = modelCacheFolder('org/tiny', { cacheDir: options.cacheDir });
  const tree = await listTree(dir);
  assert.ok(
    !tree.includes('onnx/text_model.onnx') && !tree.includes('onnx/text_model.onnx.part'),
    tree.join(' '),
  );

  // Shorter than the body says, and a wrong sha256: the same error, nothing left behind.
  hub.faults.listedSize.set('onnx/text_model.onnx', 51_000);
  hub.faults.listedSha256.set('onnx/vision_model.onnx', '0'.repeat(64));
  try {
    const err = await rejectsWith(resolveModel('org/tiny', options), 'GLIMPSE_E_MODEL_INTEGRITY');
    assert.match(
      err.message,
      /onnx\/vision_model\.onnx .*its sha256 is [0-9a-f]{64}, the listing says 0{64}/,
    );
    hub.faults.listedSha256.delete('onnx/vision_model.onnx');
    const err2 = await rejectsWith(resolveModel('org/tiny', options), 'GLIMPSE_E_MODEL_INTEGRITY');
    assert.match(err2.message, /the hub sent 50000 bytes, its listing says 51000/);
  } finally {
    hub.faults.listedSize.delete('onnx/text_model.onnx');
    hub.faults.listedSha256.delete('onnx/vision_model.onnx');
  }
  const after = await listTree(dir);
  assert.ok(
    !after.some((f) => f.startsWith('onnx/text_model.onnx') || f.startsWith('onnx/vision_model.onnx.')),
    after.join(' '),
  );
});

test('a missing repo is MODEL_NOT_FOUND; a path-like argument that does not exist too', async () => {
  const { options } = fresh();
  const err = await rejectsWith(resolveModel('org/nothing-here', options), 'GLIMPSE_E_MODEL_NOT_FOUND');
  assert.match(
    err.message,
    /^Expected model org\/nothing-here at http:\/\/127\.0\.0\.1:\d+ \(revision main\) but the hub answered 404$/,
  );
  const err2 = await rejectsWith(
    resolveModel('./no/such/model-folder', options),
    'GLIMPSE_E_MODEL_NOT_FOUND',
  );
  assert.match(
    err2.message,
    /no\/such\/model-folder does not exist and "\.\/no\/such\/model-folder" is not a hub id/,
  );
});

test('500s are retried until they stop; a hub that keeps failing is DOWNLOAD_FAILED naming folder and files', async () => {
  const { options } = fresh();
  hub.faults.failNext.set('tree', 2);
  hub.faults.failNext.set('onnx/text_model.onnx', 2);
  const mark = hub.requests.length;
  const dir = await resolveModel('org/tiny', options);
  await assertSameBytes(dir, ['onnx/text_model.onnx']);
  const seen = requestsSince(mark);
  assert.equal(seen.filter((r) => r.url.startsWith('/api/models/org/tiny/tree/main')).length, 3);
  assert.equal(seen.filter((r) => r.url === '/org/tiny/resolve/main/onnx/text_model.onnx').length, 3);

  const second = fresh({ attempts: 3 });
  hub.faults.failNext.set('onnx/vision_model.onnx', 10);
  try {
    const err = await rejectsWith(
      resolveModel('org/tiny', second.options),
      'GLIMPSE_E_MODEL_DOWNLOAD_FAILED',
    );
    const folder = modelCacheFolder('org/tiny', { cacheDir: second.cacheDir });
    assert.ok(err.message.includes(`into ${folder}: `), err.message);
    assert.match(err.message, /downloading onnx\/vision_model\.onnx failed: the hub answered 500/);
    assert.deepEqual(err.details?.['files'], [
      'onnx/vision_model.onnx',
      'onnx/vision_model.onnx_data',
      'onnx/text_model.onnx',
    ]);
  } finally {
    hub.faults.failNext.delete('onnx/vision_model.onnx');
  }
});

test('offline: no request is made and the error names the folder and every missing file', async () => {
  const { cacheDir, options } = fresh({ offline: true });
  const mark = hub.requests.length;
  const err = await rejectsWith(
    resolveModel('org/tiny', { ...options, dtype: 'fp16' }),
    'GLIMPSE_E_MODEL_OFFLINE',
  );
  assert.deepEqual(requestsSince(mark), []);
  const folder = join(cacheDir, 'models', 'org--tiny', 'main');
  assert.equal(
    err.message,
    `Expected model org/tiny (fp16, revision main) in ${folder} but it lacks config.json, preprocessor_config.json, tokenizer.json, onnx/vision_model_fp16.onnx, onnx/text_model_fp16.onnx and downloads are off (offline). Copy these files from the hub repo org/tiny into ${folder}: config.json, preprocessor_config.json, tokenizer.json, onnx/vision_model_fp16.onnx, onnx/text_model_fp16.onnx`,
  );

  // Offline with a complete cache works; a saved listing makes the check exact (external data too).
  await resolveModel('org/tiny', { ...options, offline: false });
  assert.equal(await resolveModel('org/tiny', options), folder);
  await rm(join(folder, 'onnx/vision_model.onnx_data'));
  const mark2 = hub.requests.length;
  const err2 = await rejectsWith(resolveModel('org/tiny', options), 'GLIMPSE_E_MODEL_OFFLINE');
  assert.deepEqual(err2.details?.['files'], ['onnx/vision_model.onnx_data']);
  assert.deepEqual(requestsSince(mark2), []);

  // The environment switches it on too.
  assert.equal(resolveHubSettings({}, { HF_HUB_OFFLINE: '1' }).offline, true);
  assert.equal(resolveHubSettings({}, { GLIMPSE_OFFLINE: 'true' }).offline, true);
  assert.equal(resolveHubSettings({}, { GLIMPSE_OFFLINE: '0' }).offline, false);
});

test('a hub that cannot be reached is DOWNLOAD_FAILED naming the folder and the files to copy', async () => {
  const port = await new Promise<number>((resolvePort) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolvePort(p));
    });
  });
  const { cacheDir, options } = fresh({ hubUrl: `http://127.0.0.1:${port}`, attempts: 2 });
  const err = await rejectsWith(
    resolveModel('org/tiny', { ...options, dtype: 'q8' }),
    'GLIMPSE_E_MODEL_DOWNLOAD_FAILED',
  );
  const folder = join(cacheDir, 'models', 'org--tiny', 'main');
  assert.ok(
    err.message.endsWith(
      `Re-run to resume, or copy these files from the hub repo org/tiny into ${folder}: config.json, preprocessor_config.json, tokenizer.json, onnx/vision_model_quantized.onnx, onnx/text_model_quantized.onnx`,
    ),
    err.message,
  );
  assert.match(err.message, /listing its files failed: the request to .* failed/);
});

test('a dtype the repo lacks is DTYPE_UNAVAILABLE listing what it has', async () => {
  const { options } = fresh();
  const err = await rejectsWith(
    resolveModel('org/tiny', { ...options, dtype: 'fp16' }),
    'GLIMPSE_E_MODEL_DTYPE_UNAVAILABLE',
  );
  assert.match(
    err.message,
    /for dtype fp16 in org\/tiny at .* but they do not exist; dtypes present: fp32, q8$/,
  );
});

test('paginated listings and the revision API fallback list the same files', async () => {
  hub.pageSize = 3;
  const a = fresh();
  const mark = hub.requests.length;
  try {
    await assertSameBytes(await resolveModel('org/tiny', a.options), ['onnx/vision_model.onnx_data']);
  } finally {
    hub.pageSize = 0;
  }
  assert.ok(requestsSince(mark).filter((r) => r.url.includes('/tree/main')).length >= 4);

  hub.faults.noTreeApi = true;
  const b = fresh({ dtype: 'q8' });
  try {
    await assertSameBytes(await resolveModel('org/tiny', b.options), [
      'onnx/text_model_quantized.onnx',
      'tokenizer.json',
    ]);
  } finally {
    hub.faults.noTreeApi = false;
  }
});

test('two concurrent resolves of one model download each file once and both succeed', async () => {
  const { options } = fresh();
  const mark = hub.requests.length;
  const [a, b] = await Promise.all([resolveModel('org/tiny', options), resolveModel('org/tiny', options)]);
  assert.equal(a, b);
  await assertSameBytes(a, [
    ...JSON_FILES,
    'onnx/vision_model.onnx',
    'onnx/vision_model.onnx_data',
    'onnx/text_model.onnx',
  ]);
  const cdn = requestsSince(mark).filter((r) => r.url.startsWith('/cdn/'));
  assert.equal(cdn.length, 3);
  assert.equal(new Set(cdn.map((r) => r.url)).size, 3);
});

test('a stale lock left by a dead process is taken over', async () => {
  const { options } = fresh();
  const dir = modelCacheFolder('org/tiny', { cacheDir: options.cacheDir });
  await mkdir(dir, { recursive: true });
  // pid 2^22+1 is above Linux's pid_max default, so no such process exists.
  const { hostname } = await import('node:os');
  await writeFile(join(dir, '.glimpse-download.lock'), JSON.stringify({ pid: 4_194_305, host: hostname() }));
  await assertSameBytes(await resolveModel('org/tiny', options), ['config.json']);
  await assert.rejects(stat(join(dir, '.glimpse-download.lock')), { code: 'ENOENT' });
});

test('local paths are used as they are; ids and settings are validated', async () => {
  const local = join(work, 'some-local-folder');
  await mkdir(local, { recursive: true });
  const mark = hub.requests.length;
  assert.equal(await resolveModel(local, { hubUrl: hub.url }), local);
  assert.deepEqual(requestsSince(mark), []);
  assert.ok(isHubId('openai/clip-vit-base-patch32'));
  for (const bad of ['openai', 'a/b/c', '../x', 'a--b/c', 'org/name.', '/abs/path'])
    assert.ok(!isHubId(bad), bad);
  const s = resolveHubSettings(
    {},
    { HF_ENDPOINT: 'https://mirror.example/', GLIMPSE_CACHE_DIR: '/tmp/g', HF_TOKEN: 't' },
  );
  assert.equal(s.hubUrl, 'https://mirror.example');
  assert.equal(s.cacheDir, '/tmp/g');
  assert.equal(s.token, 't');
  assert.equal(s.revision, 'main');
  assert.equal(
    resolveHubSettings({}, { GLIMPSE_HUB_URL: 'http://a', HF_ENDPOINT: 'http://b' }).hubUrl,
    'http://a',
  );
  assert.equal(
    modelCacheFolder('o/n', { cacheDir: '/c', revision: 'refs/pr/1' }),
    '/c/models/o--n/refs--pr--1',
  );
  await rejectsWith(resolveModel('org/tiny', { revision: '../x', hubUrl: hub.url }), 'GLIMPSE_E_ARG_INVALID');
  await rejectsWith(resolveModel('org/tiny', { hubUrl: 'ftp://x' }), 'GLIMPSE_E_ARG_INVALID');
});

test('CLI: model pull downloads through the fake hub; model info prints the folder, as text and JSON', async () => {
  const { Command } = await import('commander');
  const { registerModelPullCommand } = await import('../src/cli/commands/model-pull.js');
  const { registerModelInfoCommand } = await import('../src/cli/commands/model-info.js');
  const { cacheDir } = fresh();
  const lines: string[] = [];
  const program = new Command().exitOverride();
  const model = program.command('model');
  registerModelPullCommand(model, (line) => lines.push(line));
  registerModelInfoCommand(model, (line) => lines.push(line));

  const argv = ['node', 'glimpse', 'model'];
  await program.parseAsync([
    ...argv,
    'pull',
    'org/tiny',
    '--dtype',
    'q8',
    '--cache-dir',
    cacheDir,
    '--hub-url',
    hub.url,
  ]);
  const dir = join(cacheDir, 'models', 'org--tiny', 'main');
  assert.equal(lines[0]?.startsWith(`pulled org/tiny (q8) into ${dir} in `), true, lines[0]);
  assert.match(lines[1] ?? '', /^fingerprint [0-9a-f]{12} {2}dimension 512$/);

  lines.length = 0;
  await program.parseAsync([...argv, 'info', 'org/tiny', '--cache-dir', cacheDir, '--json']);
  const info = JSON.parse(lines.join('\n')) as {
    id: string;
    dtype: string;
    dtypes: string[];
    config: { projectionDim: number; contextLength: number };
    files: { path: string; size: number }[];
    fingerprint: { short: string; hash: string };
  };
  assert.equal(info.id, 'org/tiny');
  assert.equal(info.dtype, 'q8');
  assert.deepEqual(info.dtypes, ['q8']);
  assert.equal(info.config.projectionDim, 512);
  assert.equal(info.config.contextLength, 77);
  assert.deepEqual(
    info.files.map((f) => [f.path, f.size]),
    [
      ['config.json', files.get('config.json')!.length],
      ['preprocessor_config.json', files.get('preprocessor_config.json')!.length],
      ['tokenizer.json', files.get('tokenizer.json')!.length],
      ['onnx/text_model_quantized.onnx', 15_000],
      ['onnx/vision_model_quantized.onnx', 12_000],
    ],
  );
  assert.equal(info.fingerprint.short, info.fingerprint.hash.slice(0, 12));

  lines.length = 0;
  await program.parseAsync([...argv, 'info', dir]);
  assert.ok(lines.includes('dimension    512'), lines.join('\n'));
  assert.ok(
    lines.includes(`fingerprint  ${info.fingerprint.short} (${info.fingerprint.hash})`),
    lines.join('\n'),
  );
  assert.ok(
    lines.some((l) => /^ {2}onnx\/vision_model_quantized\.onnx +11\.7 KiB$/.test(l)),
    lines.join('\n'),
  );

  const err = await rejectsWith(
    program.parseAsync([...argv, 'info', 'org/not-pulled', '--cache-dir', cacheDir]),
    'GLIMPSE_E_MODEL_NOT_FOUND',
  );
  assert.match(err.message, /run `glimpse model pull org\/not-pulled` first$/);
});

test('a cancelled resolve is GLIMPSE_E_ABORTED', async () => {
  const { options } = fresh();
  const controller = new AbortController();
  controller.abort(new Error('received SIGINT'));
  await rejectsWith(resolveModel('org/tiny', { ...options, signal: controller.signal }), 'GLIMPSE_E_ABORTED');
});

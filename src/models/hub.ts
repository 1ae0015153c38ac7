/**
 * Resolves a model argument to a local folder: a path that exists is used as is; a hub id
 * (`org/name`) is looked up in the cache and downloaded from the hub when files are missing.
 *
 * Cache layout (one folder per id and revision, files at their repo paths):
 *
 * ```
 * <cacheDir>/models/<org>--<name>/<revision>/      revision "/" → "--" (refs/pr/1 → refs--pr--1)
 *   config.json, preprocessor_config.json, tokenizer.json
 *   onnx/vision_model[_fp16|_quantized].onnx[_data], onnx/text_model[...].onnx[_data]
 *   onnx/<file>.part              a resumable download in progress (LFS files, checked by sha256)
 *   .glimpse-model.json           { id, revision, hubUrl, files: { path: { size, sha256? } } } from the listing
 *   .glimpse-hashes.json          sha256 cache (fingerprint.ts), filled from verified downloads
 *   .glimpse-download.lock        held by the process downloading into this folder
 * ```
 *
 * Once the files for a dtype are there, resolving needs no network: a revision such as `main` is
 * fetched once and not updated (delete the folder, or pull another revision, to update).
 *
 * Downloads: the file list comes from `GET {hub}/api/models/{id}/tree/{revision}?recursive=true`
 * (falling back to `/api/models/{id}/revision/{revision}?blobs=true`); each file is fetched from
 * `{hub}/{id}/resolve/{revision}/{path}` following redirects (LFS files go to a CDN). LFS files are
 * written to `<file>.part`, resumed with `Range` after a dropped connection or a killed process, and
 * renamed into place only after their size and sha256 match the listing; other files go to a unique
 * temp name and are checked by size. A lock file keeps two processes from downloading into one folder
 * at once; the checks before each rename mean a final file is never partial or corrupt even if the lock
 * is broken.
 */
import { createHash, type Hash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, utimes, type FileHandle } from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GlimpseError, isGlimpseError, toGlimpseError } from '../errors/index.js';
import { syncDir, tempPathFor, writeFileAtomic } from '../core/fs-atomic.js';
import { describeValue, isPlainObject } from '../core/validate.js';
import type { ProgressCallback } from '../core/progress.js';
import { cachedFileHash, recordFileHashes } from './fingerprint.js';
import { MODEL_JSON_FILES, MODEL_META_FILE, onnxFilesFor, requiredModelFiles } from './folder.js';
import { MODEL_DTYPES, type ModelDtype } from './types.js';

export const DEFAULT_HUB_URL = 'https://huggingface.co';
export const DEFAULT_REVISION = 'main';
const LOCK_FILE = '.glimpse-download.lock';
/** A lock whose holder has not touched it for this long is considered abandoned. */
const LOCK_STALE_MS = 60_000;
const LOCK_HEARTBEAT_MS = 5_000;
const LOCK_POLL_MS = 200;
const PROGRESS_INTERVAL_MS = 100;

export interface ResolveModelOptions {
  /** Which ONNX files to fetch (default fp32). */
  dtype?: ModelDtype;
  /** Cache root (default `$GLIMPSE_CACHE_DIR`, else `~/.cache/glimpse`). */
  cacheDir?: string;
  /** Hub address (default `$GLIMPSE_HUB_URL`, else `$HF_ENDPOINT`, else https://huggingface.co). */
  hubUrl?: string;
  /** Branch, tag or commit (default main). */
  revision?: string;
  /** Never touch the network (default: `$GLIMPSE_OFFLINE` or `$HF_HUB_OFFLINE` set to 1/true/yes/on). */
  offline?: boolean;
  /** Bearer token for private or gated repos (default `$HF_TOKEN`); never logged or put in messages. */
  token?: string;
  /** Receives `{ type: 'download', file, loaded, total }` events. */
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
  /** Attempts per request before giving up (default 5). */
  attempts?: number;
  /** Delay before the first retry in ms, doubled on each further one (default 500). */
  retryDelayMs?: number;
}

/** ResolveModelOptions with every default filled in from the environment. */
export interface HubSettings {
  readonly dtype: ModelDtype;
  readonly cacheDir: string;
  readonly hubUrl: string;
  readonly revision: string;
  readonly offline: boolean;
  readonly token: string | undefined;
  readonly attempts: number;
  readonly retryDelayMs: number;
}

/** One file of a hub repo, from its listing. */
export interface HubFile {
  readonly path: string;
  readonly size: number;
  /** sha256 (hex) of the content, known for LFS files. */
  readonly sha256?: string;
}

/**
 * Fills in the defaults of ResolveModelOptions from `env` (the environment variables named there).
 *
 * @example
 *   resolveHubSettings({}, { HF_ENDPOINT: 'https://hf-mirror.com', HF_HUB_OFFLINE: '1' });
 *   // { hubUrl: 'https://hf-mirror.com', offline: true, cacheDir: '/home/me/.cache/glimpse', ... }
 */
export function resolveHubSettings(
  options: ResolveModelOptions = {},
  env: Readonly<Record<string, string | undefined>> = process.env,
): HubSettings {
  const dtype = options.dtype ?? 'fp32';
  if (!(MODEL_DTYPES as readonly string[]).includes(dtype)) {
    throw argError('dtype', MODEL_DTYPES.map((d) => JSON.stringify(d)).join(', '), dtype);
  }
  const revision = options.revision ?? DEFAULT_REVISION;
  if (!isRevision(revision)) throw argError('revision', 'a branch, tag or commit name', revision);
  const hubUrl = (
    options.hubUrl ??
    nonEmpty(env['GLIMPSE_HUB_URL']) ??
    nonEmpty(env['HF_ENDPOINT']) ??
    DEFAULT_HUB_URL
  )
    .trim()
    .replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+/.test(hubUrl)) throw argError('hubUrl', 'an http(s) URL', hubUrl);
  const cacheDir = resolve(
    options.cacheDir ?? nonEmpty(env['GLIMPSE_CACHE_DIR']) ?? join(homedir(), '.cache', 'glimpse'),
  );
  const offline = options.offline ?? (isTruthy(env['GLIMPSE_OFFLINE']) || isTruthy(env['HF_HUB_OFFLINE']));
  const token = options.token ?? nonEmpty(env['HF_TOKEN']) ?? nonEmpty(env['HUGGING_FACE_HUB_TOKEN']);
  const attempts = options.attempts ?? 5;
  if (!Number.isInteger(attempts) || attempts < 1) throw argError('attempts', 'a positive integer', attempts);
  const retryDelayMs = options.retryDelayMs ?? 500;
  if (!Number.isFinite(retryDelayMs) || retryDelayMs < 0) {
    throw argError('retryDelayMs', 'a non-negative number', retryDelayMs);
  }
  return Object.freeze({ dtype, cacheDir, hubUrl, revision, offline, token, attempts, retryDelayMs });
}

/**
 * True for a hub repo id `org/name` (letters, digits, `-`, `_`, `.`; no `--` or `..`).
 *
 * @example
 *   isHubId('openai/clip-vit-base-patch32'); // true
 *   isHubId('./models/clip'); // false
 */
export function isHubId(value: string): boolean {
  return (
    /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value) &&
    !value.includes('--') &&
    !value.includes('..') &&
    !/[.]$/.test(value)
  );
}

/**
 * The cache folder of a hub id at a revision: `<cacheDir>/models/<org>--<name>/<revision>`.
 *
 * @example
 *   modelCacheFolder('openai/clip-vit-base-patch32', { cacheDir: '/c' }); // '/c/models/openai--clip-vit-base-patch32/main'
 */
export function modelCacheFolder(id: string, options: { cacheDir?: string; revision?: string } = {}): string {
  if (!isHubId(id)) throw argError('id', 'a hub id such as "openai/clip-vit-base-patch32"', id);
  const settings = resolveHubSettings({ cacheDir: options.cacheDir, revision: options.revision });
  return join(settings.cacheDir, 'models', id.replace('/', '--'), settings.revision.replaceAll('/', '--'));
}

/**
 * Resolves a model argument to a local folder, downloading from the hub what the cache lacks. A path
 * that exists is returned as is (resolved); `org/name` is a hub id. The folder is not validated here:
 * pass it to loadModelFolder.
 *
 * @example
 *   const dir = await resolveModel('openai/clip-vit-base-patch32', { dtype: 'q8', onProgress: console.log });
 *   const model = await loadModelFolder(dir, { dtype: 'q8' });
 */
export async function resolveModel(idOrPath: string, options: ResolveModelOptions = {}): Promise<string> {
  if (typeof idOrPath !== 'string' || idOrPath.length === 0) {
    throw argError('model', 'a model folder or a hub id such as "openai/clip-vit-base-patch32"', idOrPath);
  }
  const settings = resolveHubSettings(options);
  const local = resolve(idOrPath.startsWith('~/') ? join(homedir(), idOrPath.slice(2)) : idOrPath);
  if (await exists(local)) return local;
  if (!isHubId(idOrPath)) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_NOT_FOUND',
      `Expected a model folder or a hub id such as "openai/clip-vit-base-patch32" but ${local} does not exist and ${JSON.stringify(idOrPath)} is not a hub id`,
      { details: { path: local } },
    );
  }
  const id = idOrPath;
  const dir = modelCacheFolder(id, settings);

  const known = await missingFromCache(dir, settings.dtype);
  if (known.missing.length === 0) return dir;
  if (settings.offline) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_OFFLINE',
      `Expected model ${id} (${settings.dtype}, revision ${settings.revision}) in ${dir} but it lacks ${known.missing.join(', ')} and downloads are off (offline). Copy these files from the hub repo ${id} into ${dir}: ${known.missing.join(', ')}`,
      { details: { id, folder: dir, files: known.missing } },
    );
  }

  const ctx: DownloadContext = { id, dir, settings, onProgress: options.onProgress, signal: options.signal };
  try {
    await download(ctx, known.missing);
  } catch (err) {
    if (options.signal?.aborted === true && !isGlimpseError(err, 'GLIMPSE_E_ABORTED')) {
      throw new GlimpseError(
        'GLIMPSE_E_ABORTED',
        `Expected the download of ${id} into ${dir} to finish but it was cancelled; re-run to resume`,
        { cause: err, details: { id, folder: dir } },
      );
    }
    throw err;
  }
  return dir;
}

/** Takes the folder's lock, lists the repo and downloads what the dtype needs and the folder lacks. */
async function download(ctx: DownloadContext, knownMissing: readonly string[]): Promise<void> {
  const { id, dir, settings } = ctx;
  await mkdir(dir, { recursive: true });
  const release = await acquireLock(dir, ctx.signal);
  try {
    // Another process may have finished the job while this one waited for the lock.
    if ((await missingFromCache(dir, settings.dtype)).missing.length === 0) return;
    let listing: HubFile[];
    try {
      listing = await listHubFiles(ctx);
    } catch (err) {
      throw asDownloadError(err, ctx, knownMissing, 'listing its files failed', true);
    }
    const needed = selectModelFiles(
      listing,
      settings.dtype,
      `${id} at ${settings.hubUrl} (revision ${settings.revision})`,
    );
    await writeMeta(dir, id, settings, listing);
    const hashes: Record<string, string> = {};
    for (const file of needed) {
      if (await isComplete(dir, file)) continue;
      try {
        hashes[file.path] = await downloadFile(file, ctx);
      } catch (err) {
        await recordFileHashes(dir, hashes);
        const left = [];
        for (const f of needed) if (!(await isComplete(dir, f))) left.push(f.path);
        throw asDownloadError(err, ctx, left, `downloading ${file.path} failed`, false);
      }
    }
    if (Object.keys(hashes).length > 0) await recordFileHashes(dir, hashes);
  } finally {
    await release();
  }
}

/**
 * Picks the files a dtype needs from a repo listing: the JSON files, the two ONNX files and their
 * external data files (`<file>.onnx_data`, `<file>.onnx_data_1`, ...). `where` names the repo in errors.
 *
 * @example
 *   selectModelFiles(listing, 'q8', 'openai/clip-vit-base-patch32').map((f) => f.path);
 *   // ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'onnx/vision_model_quantized.onnx', 'onnx/text_model_quantized.onnx']
 */
export function selectModelFiles(listing: readonly HubFile[], dtype: ModelDtype, where: string): HubFile[] {
  const byPath = new Map(listing.map((f) => [f.path, f]));
  const onnx = onnxFilesFor(dtype);
  if (!byPath.has(onnx.vision) && !byPath.has(onnx.text)) {
    const available = MODEL_DTYPES.filter((d) => {
      const o = onnxFilesFor(d);
      return byPath.has(o.vision) && byPath.has(o.text);
    });
    if (available.length > 0) {
      throw new GlimpseError(
        'GLIMPSE_E_MODEL_DTYPE_UNAVAILABLE',
        `Expected ${onnx.vision} and ${onnx.text} for dtype ${dtype} in ${where} but they do not exist; dtypes present: ${available.join(', ')}`,
        { details: { dtype, available } },
      );
    }
  }
  const picked: HubFile[] = [];
  for (const path of requiredModelFiles(dtype)) {
    const file = byPath.get(path);
    if (file === undefined) {
      throw new GlimpseError(
        'GLIMPSE_E_MODEL_FILE_MISSING',
        `Expected file ${path} in ${where} but it does not exist`,
        {
          details: { file: path },
        },
      );
    }
    picked.push(file);
    // External weights right after their graph.
    if (path.endsWith('.onnx')) {
      for (const f of listing) {
        if (f.path === `${path}_data` || f.path.startsWith(`${path}_data_`) || f.path === `${path}.data`) {
          picked.push(f);
        }
      }
    }
  }
  return picked;
}

// --- cache state ---------------------------------------------------------------------------------

interface Meta {
  files: Map<string, HubFile>;
}

/** What the cache folder lacks for a dtype, judged without the network (by the saved listing when any). */
async function missingFromCache(dir: string, dtype: ModelDtype): Promise<{ missing: string[] }> {
  const meta = await readMeta(dir);
  let needed: HubFile[];
  if (meta !== undefined) {
    try {
      needed = selectModelFiles([...meta.files.values()], dtype, dir);
    } catch {
      // The saved listing lacks this dtype: let the hub (or the offline message) decide.
      needed = requiredModelFiles(dtype).map((path) => ({ path, size: -1 }));
    }
  } else {
    needed = requiredModelFiles(dtype).map((path) => ({ path, size: -1 }));
  }
  const missing: string[] = [];
  for (const f of needed) if (!(await isComplete(dir, f))) missing.push(f.path);
  return { missing };
}

/** A final file is complete when it has the listed size (and, when cached, the listed sha256). */
async function isComplete(dir: string, file: HubFile): Promise<boolean> {
  const st = await stat(join(dir, file.path)).catch(() => undefined);
  if (st === undefined || !st.isFile()) return false;
  if (file.size >= 0 && st.size !== file.size) return false;
  if (file.sha256 !== undefined) {
    const cached = await cachedFileHash(dir, file.path);
    if (cached !== undefined && cached !== file.sha256) return false;
  }
  return true;
}

async function readMeta(dir: string): Promise<Meta | undefined> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(join(dir, MODEL_META_FILE), 'utf8'));
  } catch {
    return undefined;
  }
  if (!isPlainObject(parsed) || !isPlainObject(parsed['files'])) return undefined;
  const files = new Map<string, HubFile>();
  for (const [path, entry] of Object.entries(parsed['files'])) {
    if (!isPlainObject(entry) || typeof entry['size'] !== 'number') continue;
    const sha = entry['sha256'];
    files.set(
      path,
      typeof sha === 'string' ? { path, size: entry['size'], sha256: sha } : { path, size: entry['size'] },
    );
  }
  return { files };
}

/** Saves the model-relevant part of the listing (JSON files and onnx/), so offline checks know sizes. */
async function writeMeta(
  dir: string,
  id: string,
  settings: HubSettings,
  listing: readonly HubFile[],
): Promise<void> {
  const files: Record<string, { size: number; sha256?: string }> = {};
  for (const f of listing) {
    if (!MODEL_JSON_FILES.includes(f.path) && !f.path.startsWith('onnx/')) continue;
    files[f.path] = f.sha256 === undefined ? { size: f.size } : { size: f.size, sha256: f.sha256 };
  }
  const meta = { id, revision: settings.revision, hubUrl: settings.hubUrl, files };
  await writeFileAtomic(join(dir, MODEL_META_FILE), `${JSON.stringify(meta, null, 2)}\n`);
}

// --- hub HTTP --------------------------------------------------------------------------------------

interface DownloadContext {
  readonly id: string;
  readonly dir: string;
  readonly settings: HubSettings;
  readonly onProgress: ProgressCallback | undefined;
  readonly signal: AbortSignal | undefined;
}

/** A failure worth retrying (network error, 5xx, 429, dropped body). */
class TransientError extends Error {
  override readonly name = 'TransientError';
}

/** A definite HTTP answer that retrying cannot change. */
class HttpStatusError extends Error {
  override readonly name = 'HttpStatusError';
  constructor(
    readonly status: number,
    readonly url: string,
  ) {
    super(`the hub answered ${status} for ${url}`);
  }
}

function headersFor(settings: HubSettings, extra: Record<string, string> = {}): Record<string, string> {
  const headers: Record<string, string> = { 'user-agent': 'glimpse', ...extra };
  if (settings.token !== undefined) headers['authorization'] = `Bearer ${settings.token}`;
  return headers;
}

/** Redirects followed per request (the hub sends LFS files to a CDN). */
const MAX_REDIRECTS = 10;
/** A socket idle for this long is a dropped connection. */
const IDLE_TIMEOUT_MS = 60_000;

/**
 * One GET: follows redirects (dropping the token when the origin changes) and resolves with the
 * response on a 2xx or a status in `accept`; throws TransientError or HttpStatusError otherwise.
 * node:http rather than fetch: its 'data' events hand over every byte received before a connection
 * drops, so a resumed download loses nothing (a web stream discards its queue on error).
 */
async function request(
  url: string,
  ctx: DownloadContext,
  extraHeaders: Record<string, string> = {},
  accept: readonly number[] = [],
): Promise<IncomingMessage> {
  let current = new URL(url);
  let headers = headersFor(ctx.settings, extraHeaders);
  for (let redirects = 0; ; redirects++) {
    const res = await get(current, headers, ctx.signal);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (status >= 300 && status < 400 && location !== undefined) {
      res.resume();
      if (redirects >= MAX_REDIRECTS) throw new HttpStatusError(status, `${url} (too many redirects)`);
      const next = new URL(location, current);
      if (next.origin !== current.origin) {
        const { authorization: _dropped, ...rest } = headers;
        headers = rest;
      }
      current = next;
      continue;
    }
    if ((status >= 200 && status < 300) || accept.includes(status)) return res;
    res.resume();
    if (status >= 500 || status === 429 || status === 408) {
      throw new TransientError(`the hub answered ${status} for ${current.toString()}`);
    }
    throw new HttpStatusError(status, current.toString());
  }
}

function get(
  url: URL,
  headers: Record<string, string>,
  signal: AbortSignal | undefined,
): Promise<IncomingMessage> {
  return new Promise((resolveResponse, reject) => {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      reject(new HttpStatusError(0, `${url.toString()} (not http or https)`));
      return;
    }
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, { method: 'GET', headers, signal }, resolveResponse);
    req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error(`no data for ${IDLE_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err) => {
      if (signal?.aborted === true) reject(err);
      else
        reject(
          new TransientError(`the request to ${url.toString()} failed: ${errorText(err)}`, { cause: err }),
        );
    });
    req.end();
  });
}

/** Runs `fn` up to `attempts` times, with doubling delays, while it throws TransientError. */
async function withRetries<T>(ctx: DownloadContext, fn: () => Promise<T>): Promise<T> {
  let delay = ctx.settings.retryDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof TransientError) || attempt >= ctx.settings.attempts) throw err;
      await sleep(delay, undefined, { signal: ctx.signal });
      delay = Math.min(delay * 2, 30_000);
    }
  }
}

/** Lists the repo's files (tree API, paginated by Link headers; revision API as fallback). */
async function listHubFiles(ctx: DownloadContext): Promise<HubFile[]> {
  const { hubUrl, revision } = ctx.settings;
  const rev = encodeURIComponent(revision);
  let url: string | undefined = `${hubUrl}/api/models/${ctx.id}/tree/${rev}?recursive=true`;
  const files: HubFile[] = [];
  try {
    while (url !== undefined) {
      const pageUrl: string = url;
      const { body, next } = await withRetries(ctx, async () => {
        const res = await request(pageUrl, ctx);
        const link = res.headers.link;
        const next = nextLink(Array.isArray(link) ? link.join(',') : (link ?? null), pageUrl);
        return { body: await readJsonBody(res, pageUrl), next };
      });
      if (!Array.isArray(body))
        throw new Error(`Expected a JSON array from ${pageUrl} but received ${describeValue(body)}`);
      for (const entry of body) {
        const file = treeEntryToFile(entry);
        if (file !== undefined) files.push(file);
      }
      url = next;
    }
    return files;
  } catch (err) {
    if (!(err instanceof HttpStatusError) || err.status !== 404) throw err;
  }
  // Fallback: the older revision API with siblings (blobs=true adds sizes and LFS hashes).
  const fallback = `${hubUrl}/api/models/${ctx.id}/revision/${rev}?blobs=true`;
  const body = await withRetries(ctx, async () => readJsonBody(await request(fallback, ctx), fallback));
  if (!isPlainObject(body) || !Array.isArray(body['siblings'])) {
    throw new Error(`Expected siblings from ${fallback} but received ${describeValue(body)}`);
  }
  for (const s of body['siblings']) {
    if (!isPlainObject(s) || typeof s['rfilename'] !== 'string') continue;
    const lfs = isPlainObject(s['lfs']) ? s['lfs'] : undefined;
    const size =
      typeof s['size'] === 'number' ? s['size'] : typeof lfs?.['size'] === 'number' ? lfs['size'] : -1;
    const sha = typeof lfs?.['sha256'] === 'string' ? lfs['sha256'] : undefined;
    files.push(
      sha === undefined ? { path: s['rfilename'], size } : { path: s['rfilename'], size, sha256: sha },
    );
  }
  return files;
}

function treeEntryToFile(entry: unknown): HubFile | undefined {
  if (!isPlainObject(entry) || entry['type'] !== 'file' || typeof entry['path'] !== 'string')
    return undefined;
  const lfs = isPlainObject(entry['lfs']) ? entry['lfs'] : undefined;
  const size =
    typeof lfs?.['size'] === 'number' ? lfs['size'] : typeof entry['size'] === 'number' ? entry['size'] : -1;
  const oid = lfs?.['oid'] ?? lfs?.['sha256'];
  const sha256 = typeof oid === 'string' && /^[0-9a-f]{64}$/.test(oid) ? oid : undefined;
  return sha256 === undefined ? { path: entry['path'], size } : { path: entry['path'], size, sha256 };
}

async function readJsonBody(res: IncomingMessage, url: string): Promise<unknown> {
  let text = '';
  try {
    res.setEncoding('utf8');
    for await (const chunk of res) text += chunk as string;
  } catch (err) {
    throw new TransientError(`reading ${url} failed: ${errorText(err)}`, { cause: err });
  }
  if (!res.complete) throw new TransientError(`reading ${url} failed: the connection dropped`);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error(`Expected JSON from ${url} but received ${describeValue(text)}`);
  }
}

function nextLink(header: string | null, base: string): string | undefined {
  if (header === null) return undefined;
  for (const part of header.split(',')) {
    const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(part);
    if (m?.[1] !== undefined) return new URL(m[1], base).toString();
  }
  return undefined;
}

/**
 * Downloads one file into the cache folder and returns its sha256. LFS files (sha256 known) resume
 * from `<file>.part`; others go to a unique temp name. Nothing is renamed into place unchecked.
 */
async function downloadFile(file: HubFile, ctx: DownloadContext): Promise<string> {
  const final = join(ctx.dir, file.path);
  await mkdir(dirname(final), { recursive: true });
  const resumable = file.sha256 !== undefined && file.size >= 0;
  const part = resumable ? `${final}.part` : tempPathFor(final);
  const url = `${ctx.settings.hubUrl}/${ctx.id}/resolve/${encodeURIComponent(ctx.settings.revision)}/${file.path
    .split('/')
    .map(encodeURIComponent)
    .join('/')}`;
  const progress = progressReporter(file, ctx.onProgress);
  try {
    const sha256 = await withRetries(ctx, () => fetchInto(ctx, url, part, file, resumable, progress));
    if (file.sha256 !== undefined && sha256 !== file.sha256) {
      throw integrityError(ctx, file, `its sha256 is ${sha256}, the listing says ${file.sha256}`);
    }
    await rename(part, final);
    await syncDir(dirname(final));
    progress(file.size, true);
    return sha256;
  } catch (err) {
    // A resumable part survives transient failures and cancellation (the next run continues it);
    // anything that failed a check, and every non-resumable temp file, is removed.
    if (!resumable || isGlimpseError(err, 'GLIMPSE_E_MODEL_INTEGRITY') || err instanceof HttpStatusError) {
      await rm(part, { force: true });
    }
    throw err;
  }
}

/** One attempt: fetches (the rest of) the file into `part`; returns the sha256 of the whole part. */
async function fetchInto(
  ctx: DownloadContext,
  url: string,
  part: string,
  file: HubFile,
  resumable: boolean,
  progress: ProgressReporter,
): Promise<string> {
  let offset = resumable ? ((await stat(part).catch(() => undefined))?.size ?? 0) : 0;
  if (offset > file.size) {
    await rm(part, { force: true });
    offset = 0;
  }
  if (offset > 0 && offset === file.size) return hashPrefix(part);

  // Everything asynchronous happens before the request: between the response and receive()
  // attaching its listeners there must be no await, or a connection that drops meanwhile would go
  // unnoticed (its 'close' already emitted).
  const prefix = offset > 0 ? await hashPrefixState(part) : undefined;
  const handle = await open(part, offset > 0 ? 'r+' : 'w');
  let digest = '';
  let restart: string | undefined;
  try {
    const res = await request(url, ctx, offset > 0 ? { range: `bytes=${offset}-` } : {}, [416]);
    let append = false;
    if (res.statusCode === 416) {
      restart = `the hub refused the range bytes=${offset}- for ${file.path}`;
    } else if (offset > 0 && res.statusCode === 206) {
      const start = /^bytes (\d+)-/.exec(res.headers['content-range'] ?? '')?.[1];
      append = start !== undefined && Number(start) === offset;
      if (!append) restart = `the hub answered a different range than bytes=${offset}- for ${file.path}`;
    }
    if (restart !== undefined) {
      res.resume();
    } else {
      // 206 from our offset: append. 200 (the server ignored Range, or no part): the whole file anew.
      const hash = append && prefix !== undefined ? prefix : createHash('sha256');
      const first = append ? offset : 0;
      const loaded = await receive(
        res,
        handle,
        hash,
        first,
        append ? Promise.resolve() : handle.truncate(0),
        file,
        ctx,
        progress,
      );
      await handle.sync();
      if (file.size >= 0 && loaded !== file.size) {
        throw integrityError(ctx, file, `the hub sent ${loaded} bytes, its listing says ${file.size}`);
      }
      digest = hash.digest('hex');
    }
  } finally {
    await handle.close();
  }
  if (restart !== undefined) {
    // Our part does not fit what the server has: drop it and start over on the next attempt.
    await rm(part, { force: true });
    throw new TransientError(restart);
  }
  return digest;
}

/**
 * Writes the response body to `handle` in order, hashing it; resolves with the bytes now in the file.
 * Every byte received is written even when the connection then drops (TransientError after the
 * writes). Reading pauses while more than 8 MiB wait for the disk.
 */
function receive(
  res: IncomingMessage,
  handle: FileHandle,
  hash: Hash,
  start: number,
  initial: Promise<void>,
  file: HubFile,
  ctx: DownloadContext,
  progress: ProgressReporter,
): Promise<number> {
  return new Promise((resolveDone, reject) => {
    let loaded = start;
    let written = start;
    let pending = 0;
    let failure: unknown;
    let writes = initial;
    const finish = (err?: unknown): void => {
      writes.then(
        () => (err === undefined ? resolveDone(written) : reject(err)),
        (writeErr: unknown) => reject(writeErr),
      );
    };
    res.on('data', (chunk: Buffer) => {
      if (failure !== undefined) return;
      if (file.size >= 0 && loaded + chunk.length > file.size) {
        failure = integrityError(ctx, file, `the hub sent more than the ${file.size} bytes its listing says`);
        res.destroy();
        return;
      }
      loaded += chunk.length;
      hash.update(chunk);
      pending += chunk.length;
      if (pending > 8 << 20) res.pause();
      writes = writes.then(async () => {
        await handle.write(chunk, 0, chunk.length, written);
        written += chunk.length;
        pending -= chunk.length;
        if (res.isPaused() && pending < 1 << 20) res.resume();
        progress(written);
      });
    });
    res.on('end', () => {
      if (failure === undefined && !res.complete) {
        failure = new TransientError(`the connection dropped after ${loaded} bytes of ${file.path}`);
      }
      finish(failure);
    });
    res.on('error', (err) => {
      if (failure === undefined) {
        failure =
          ctx.signal?.aborted === true
            ? err
            : new TransientError(
                `the connection dropped after ${loaded} bytes of ${file.path}: ${errorText(err)}`,
                {
                  cause: err,
                },
              );
      }
    });
    res.on('close', () => {
      if (failure === undefined && !res.complete) {
        failure = new TransientError(`the connection dropped after ${loaded} bytes of ${file.path}`);
      }
      finish(failure);
    });
    if (res.destroyed && !res.readableEnded) {
      // Closed before these listeners existed (should not happen: no await precedes this call).
      finish(new TransientError(`the connection dropped before the body of ${file.path}`));
    }
  });
}

async function hashPrefixState(path: string): Promise<Hash> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash;
}

async function hashPrefix(path: string): Promise<string> {
  return (await hashPrefixState(path)).digest('hex');
}

type ProgressReporter = (loaded: number, force?: boolean) => void;

/** Emits download events at most every 100 ms, never going backwards, always the final one. */
function progressReporter(file: HubFile, onProgress: ProgressCallback | undefined): ProgressReporter {
  let last = -1;
  let lastAt = 0;
  return (loaded: number, force = false) => {
    if (onProgress === undefined || loaded <= last) return;
    const now = performance.now();
    if (!force && last >= 0 && loaded !== file.size && now - lastAt < PROGRESS_INTERVAL_MS) return;
    last = loaded;
    lastAt = now;
    onProgress({ type: 'download', file: file.path, loaded, total: file.size >= 0 ? file.size : undefined });
  };
}

function integrityError(ctx: DownloadContext, file: HubFile, what: string): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_MODEL_INTEGRITY',
    `Expected ${file.path} of ${ctx.id} to match the hub's listing but ${what}; the partial file was removed`,
    { details: { id: ctx.id, folder: ctx.dir, file: file.path } },
  );
}

/** Turns a listing or download failure into a coded error naming the folder and the files to fill. */
function asDownloadError(
  err: unknown,
  ctx: DownloadContext,
  files: readonly string[],
  what: string,
  listing: boolean,
): GlimpseError {
  if (isGlimpseError(err)) return err;
  if (ctx.signal?.aborted === true || (err instanceof Error && err.name === 'AbortError'))
    return toGlimpseError(err);
  const where = `${ctx.settings.hubUrl} (revision ${ctx.settings.revision})`;
  const fill = `Re-run to resume, or copy these files from the hub repo ${ctx.id} into ${ctx.dir}: ${files.join(', ')}`;
  const details = { id: ctx.id, folder: ctx.dir, files: [...files] };
  if (err instanceof HttpStatusError && (err.status === 404 || err.status === 401) && listing) {
    const auth = ctx.settings.token === undefined ? ' (a private or gated repo needs HF_TOKEN)' : '';
    return new GlimpseError(
      'GLIMPSE_E_MODEL_NOT_FOUND',
      `Expected model ${ctx.id} at ${where} but the hub answered ${err.status}${auth}`,
      { cause: err, details },
    );
  }
  const reason =
    err instanceof HttpStatusError && (err.status === 401 || err.status === 403)
      ? `${err.message} (check HF_TOKEN for private or gated repos)`
      : errorText(err);
  return new GlimpseError(
    'GLIMPSE_E_MODEL_DOWNLOAD_FAILED',
    `Expected to download model ${ctx.id} from ${where} but ${what}: ${reason}. ${fill}`,
    { cause: err, details },
  );
}

// --- lock ------------------------------------------------------------------------------------------

/**
 * Takes the folder's download lock (waiting while a live holder has it), and returns its release.
 * A lock is abandoned when its holder's process is gone (same host) or it has not been touched for a
 * minute (the holder touches it every 5 s).
 */
async function acquireLock(dir: string, signal: AbortSignal | undefined): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  const host = hostname();
  for (;;) {
    signal?.throwIfAborted();
    try {
      const handle = await open(path, 'wx');
      try {
        await handle.writeFile(JSON.stringify({ pid: process.pid, host, since: new Date().toISOString() }));
      } finally {
        await handle.close();
      }
      const timer = setInterval(() => {
        const now = new Date();
        utimes(path, now, now).catch(() => undefined);
      }, LOCK_HEARTBEAT_MS);
      timer.unref();
      return async () => {
        clearInterval(timer);
        await rm(path, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (await lockIsStale(path, host)) {
      await rm(path, { force: true });
      continue;
    }
    await sleep(LOCK_POLL_MS, undefined, { signal });
  }
}

async function lockIsStale(path: string, host: string): Promise<boolean> {
  try {
    const [text, st] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    if (Date.now() - st.mtimeMs > LOCK_STALE_MS) return true;
    const holder: unknown = JSON.parse(text);
    if (isPlainObject(holder) && holder['host'] === host && typeof holder['pid'] === 'number') {
      return !processAlive(holder['pid']);
    }
    return false;
  } catch {
    // Vanished (released) or half-written: try again shortly.
    return false;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// --- small helpers -----------------------------------------------------------------------------------

function argError(name: string, expected: string, actual: unknown): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_ARG_INVALID',
    `Expected ${expected} for ${name} but received ${describeValue(actual)}`,
    {
      details: { parameter: name },
    },
  );
}

function isRevision(value: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(value) && !value.includes('..') && !value.includes('--');
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

function isTruthy(value: string | undefined): boolean {
  return value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}

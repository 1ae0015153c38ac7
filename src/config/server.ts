/**
 * The server's configuration: one table of fields (key, environment variable, type, default, meaning),
 * merged from defaults < YAML file < environment (`GLIMPSE_*`) < flags, validated once (one error that lists
 * every problem, each with where the value came from), then deeply frozen. docs/server.md documents the
 * same table, and a test keeps the two in step.
 */
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { GlimpseError } from '../errors/index.js';
import { describeValue, isPlainObject, parseByteSize } from '../core/validate.js';

export type ServerDtype = 'fp32' | 'fp16' | 'q8';
export type AuthProtect = 'writes' | 'all';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** The validated, frozen server configuration. */
export interface ServerConfig {
  readonly host: string;
  readonly port: number;
  /** LanceDB database (folder or s3:// URI) holding the collections. */
  readonly db: string;
  readonly model: string;
  readonly dtype: ServerDtype;
  /** ONNX Runtime intra-op threads (0: the library's default). */
  readonly threads: number;
  readonly offline: boolean;
  /** Model cache folder ('' : the library's default). */
  readonly cacheDir: string;
  /** Collections the clip-retrieval routes list, in order (the first is the default); empty: all, by name. */
  readonly indices: readonly string[];
  /** Local paths the server may read (inserts by path, images of results); absolute, real paths. */
  readonly allowedRoots: readonly string[];
  readonly fetch: {
    /** Let URLs reach private, loopback and link-local addresses (never do this on a shared host). */
    readonly allowPrivate: boolean;
    /** Address ranges URLs may reach even though they are not public (`10.1.0.0/16`, `127.0.0.1/32`). */
    readonly allowedCidrs: readonly string[];
    readonly timeoutMs: number;
    readonly maxRedirects: number;
  };
  readonly limits: {
    /** Largest request body (JSON with base64 images included); larger bodies get 413 before being read. */
    readonly bodyBytes: number;
    /** Largest single image: an uploaded file, a decoded base64 string, a downloaded URL, a local file. */
    readonly imageBytes: number;
    /** Largest decoded image (width × height). */
    readonly maxPixels: number;
    /** Largest `top_k` / `num_result_ids`. */
    readonly maxResults: number;
    /** Most items in one insert request. */
    readonly maxBatch: number;
    /** Most files in one multipart request. */
    readonly maxFiles: number;
  };
  readonly auth: {
    readonly apiKeys: readonly string[];
    /** What keys protect when there are any: writes only, or every route but /health and the UI. */
    readonly protect: AuthProtect;
  };
  readonly rateLimit: {
    /** Requests per client address per window (0: no limit). */
    readonly max: number;
    readonly windowMs: number;
  };
  /** Origins allowed to call the REST routes from a browser (`*`: any); clip-retrieval routes are always open. */
  readonly cors: { readonly origins: readonly string[] };
  readonly ui: boolean;
  readonly docs: boolean;
  readonly metrics: boolean;
  readonly logLevel: LogLevel;
  readonly trustProxy: boolean;
}

type Kind =
  | { type: 'string'; allowEmpty?: boolean }
  | { type: 'int'; min: number; max: number }
  | { type: 'bytes'; min: number }
  | { type: 'bool' }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'list'; item: 'string' | 'cidr' | 'origin' | 'path' | 'name' };

/** One configuration field: its dotted key, environment variable, type, default and meaning. */
export interface ConfigField {
  readonly key: string;
  readonly env: string;
  readonly kind: Kind;
  readonly default: unknown;
  readonly doc: string;
}

const f = (key: string, kind: Kind, def: unknown, doc: string, env?: string): ConfigField => ({
  key,
  env:
    env ??
    `GLIMPSE_${key
      .replace(/\./g, '_')
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .toUpperCase()}`,
  kind,
  default: def,
  doc,
});

/**
 * Every server configuration field, in documentation order.
 *
 * @example
 *   SERVER_CONFIG_FIELDS.find((f) => f.key === 'limits.bodyBytes')?.env; // 'GLIMPSE_LIMITS_BODY_BYTES'
 */
export const SERVER_CONFIG_FIELDS: readonly ConfigField[] = [
  f('host', { type: 'string' }, '127.0.0.1', 'address to listen on (`0.0.0.0` for every interface)'),
  f('port', { type: 'int', min: 0, max: 65535 }, 8080, 'TCP port (0: any free port)'),
  f(
    'db',
    { type: 'string' },
    './glimpse-db',
    'LanceDB database holding the collections (folder or `s3://…`)',
  ),
  f(
    'model',
    { type: 'string' },
    'openai/clip-vit-base-patch32',
    'model folder or hub id used to embed queries and inserts',
  ),
  f('dtype', { type: 'enum', values: ['fp32', 'fp16', 'q8'] }, 'fp32', 'ONNX precision variant of the model'),
  f('threads', { type: 'int', min: 0, max: 1024 }, 0, 'ONNX Runtime threads (0: library default)'),
  f('offline', { type: 'bool' }, false, 'never download the model'),
  f('cacheDir', { type: 'string', allowEmpty: true }, '', 'model cache folder (empty: `~/.cache/glimpse`)'),
  f(
    'indices',
    { type: 'list', item: 'name' },
    [],
    'collections the clip-retrieval routes list, in this order (the first is the default index); empty: every collection, by name',
  ),
  f(
    'allowedRoots',
    { type: 'list', item: 'path' },
    [],
    'folders whose files the server may read (insert by path, result images); none by default',
  ),
  f(
    'fetch.allowPrivate',
    { type: 'bool' },
    false,
    'let image URLs reach private, loopback and link-local addresses',
  ),
  f(
    'fetch.allowedCidrs',
    { type: 'list', item: 'cidr' },
    [],
    'non-public address ranges image URLs may reach anyway (`10.0.0.0/8`, `127.0.0.1/32`)',
  ),
  f(
    'fetch.timeoutMs',
    { type: 'int', min: 100, max: 600_000 },
    10_000,
    'time cap for one image download, redirects included',
  ),
  f(
    'fetch.maxRedirects',
    { type: 'int', min: 0, max: 20 },
    3,
    'redirects followed (each hop is checked again)',
  ),
  f(
    'limits.bodyBytes',
    { type: 'bytes', min: 1024 },
    16 * 1024 * 1024,
    'largest request body (413 before reading more)',
  ),
  f(
    'limits.imageBytes',
    { type: 'bytes', min: 1024 },
    10 * 1024 * 1024,
    'largest image: upload, decoded base64, download or local file',
  ),
  f(
    'limits.maxPixels',
    { type: 'int', min: 1, max: 2 ** 32 },
    50_000_000,
    'largest decoded image (width × height)',
  ),
  f('limits.maxResults', { type: 'int', min: 1, max: 100_000 }, 10_000, 'largest `top_k` / `num_result_ids`'),
  f('limits.maxBatch', { type: 'int', min: 1, max: 100_000 }, 256, 'most items in one insert request'),
  f('limits.maxFiles', { type: 'int', min: 1, max: 10_000 }, 64, 'most files in one multipart request'),
  f(
    'auth.apiKeys',
    { type: 'list', item: 'string' },
    [],
    'API keys (none: no authentication); never logged',
    'GLIMPSE_API_KEYS',
  ),
  f(
    'auth.protect',
    { type: 'enum', values: ['writes', 'all'] },
    'writes',
    'what the keys protect: `writes`, or `all` routes but /health and the UI',
  ),
  f(
    'rateLimit.max',
    { type: 'int', min: 0, max: 10_000_000 },
    600,
    'requests per client address per window (0: off)',
  ),
  f('rateLimit.windowMs', { type: 'int', min: 1000, max: 86_400_000 }, 60_000, 'rate-limit window'),
  f(
    'cors.origins',
    { type: 'list', item: 'origin' },
    [],
    'origins allowed to call the REST routes (`*`: any)',
  ),
  f('ui', { type: 'bool' }, true, 'serve the web UI at `/`'),
  f('docs', { type: 'bool' }, true, 'serve the OpenAPI document and interactive docs at `/docs`'),
  f('metrics', { type: 'bool' }, true, 'serve Prometheus metrics at `/metrics`'),
  f(
    'logLevel',
    { type: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    'info',
    'request log level (JSON lines on stdout)',
  ),
  f(
    'trustProxy',
    { type: 'bool' },
    false,
    'take client addresses from `X-Forwarded-For` (behind a reverse proxy)',
  ),
];

const BY_KEY = new Map(SERVER_CONFIG_FIELDS.map((field) => [field.key, field]));

/** Where a value came from, as error messages name it. */
interface Sourced {
  value: unknown;
  origin: string;
}

/** The layers to merge: a YAML file path (or its parsed content), the environment and flags. */
export interface ServerConfigSources {
  /** Path of a YAML file. */
  file?: string;
  /** An already-parsed file (for tests and programmatic use); `fileLabel` names it in messages. */
  fileContent?: unknown;
  fileLabel?: string;
  /** Environment (only `GLIMPSE_*` variables of the table are read). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Flags by dotted key (`{ host: '0.0.0.0', 'limits.bodyBytes': '2M' }`); `flagNames` names them in messages. */
  flags?: Readonly<Record<string, unknown>>;
  flagNames?: Readonly<Record<string, string>>;
  /** Check that the `allowedRoots` folders exist (default true). */
  checkPaths?: boolean;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Flattens a parsed YAML object into dotted keys; unknown keys are reported. */
function flattenFile(content: unknown, label: string, out: Map<string, Sourced>, problems: string[]): void {
  if (content === null || content === undefined) return;
  if (!isPlainObject(content)) {
    problems.push(`${label}: expected a mapping of settings but received ${describeValue(content)}`);
    return;
  }
  const walk = (obj: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix === '' ? k : `${prefix}.${k}`;
      if (BY_KEY.has(key)) {
        out.set(key, { value: v, origin: `file ${label}` });
      } else if (isPlainObject(v) && SERVER_CONFIG_FIELDS.some((field) => field.key.startsWith(`${key}.`))) {
        walk(v, key);
      } else {
        const near = SERVER_CONFIG_FIELDS.map((field) => field.key).find(
          (known) => known.toLowerCase() === key.toLowerCase().replace(/[_-]/g, ''),
        );
        problems.push(`${key}: unknown setting (file ${label})${near ? `; did you mean ${near}?` : ''}`);
      }
    }
  };
  walk(content, '');
}

/** YAML text → plain values (mappings as objects, sequences as arrays). */
function fromYaml(text: string): unknown {
  return parseYaml(text) as unknown;
}

function parseBool(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(s)) return true;
    if (['false', '0', 'no', 'off'].includes(s)) return false;
  }
  return undefined;
}

function splitList(v: unknown): unknown[] | undefined {
  if (Array.isArray(v)) return v;
  if (typeof v === 'string') {
    return v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  }
  return undefined;
}

/**
 * True for `a.b.c.d/n` and IPv6 `x::/n` ranges (and plain addresses).
 *
 * @example
 *   isCidr('10.0.0.0/8'); // true
 *   isCidr('10.0.0.0/33'); // false
 */
export function isCidr(text: string): boolean {
  const [addr, prefix, extra] = text.split('/');
  if (addr === undefined || extra !== undefined) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

function isOrigin(text: string): boolean {
  if (text === '*') return true;
  try {
    const u = new URL(text);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === text.replace(/\/$/, '');
  } catch {
    return false;
  }
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

/** Validates one value; returns the typed value or pushes a problem. */
function coerce(field: ConfigField, src: Sourced, problems: string[]): unknown {
  const { value, origin } = src;
  const bad = (expected: string, actual: unknown = value): undefined => {
    problems.push(`${field.key}: expected ${expected} but received ${describeValue(actual)} (${origin})`);
    return undefined;
  };
  const kind = field.kind;
  switch (kind.type) {
    case 'string': {
      if (typeof value !== 'string' || (!kind.allowEmpty && value.trim() === ''))
        return bad('a non-empty string');
      return value;
    }
    case 'int': {
      const n = typeof value === 'string' && /^\s*-?\d+\s*$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < kind.min || n > kind.max)
        return bad(`an integer from ${kind.min} to ${kind.max}`);
      return n;
    }
    case 'bytes': {
      try {
        const n = parseByteSize(field.key, value);
        if (n < kind.min) return bad(`at least ${kind.min} bytes`);
        return n;
      } catch {
        return bad('a byte size such as 16M, 512K or 1000000');
      }
    }
    case 'bool': {
      const b = parseBool(value);
      return b === undefined ? bad('true or false') : b;
    }
    case 'enum': {
      if (typeof value !== 'string' || !kind.values.includes(value))
        return bad(`one of ${kind.values.map((v) => JSON.stringify(v)).join(', ')}`);
      return value;
    }
    case 'list': {
      const items = splitList(value);
      if (items === undefined) return bad('a list (YAML sequence or comma-separated text)');
      const out: string[] = [];
      items.forEach((item, i) => {
        const where = `${field.key}[${i}]`;
        if (typeof item !== 'string' || item.trim() === '') {
          problems.push(
            `${where}: expected a non-empty string but received ${describeValue(item)} (${origin})`,
          );
          return;
        }
        if (kind.item === 'cidr' && !isCidr(item)) {
          problems.push(
            `${where}: expected an IP address or range such as 10.0.0.0/8 but received ${describeValue(item)} (${origin})`,
          );
          return;
        }
        if (kind.item === 'name' && !NAME_RE.test(item)) {
          problems.push(
            `${where}: expected a collection name (letters, digits, "_", "-") but received ${describeValue(item)} (${origin})`,
          );
          return;
        }
        if (kind.item === 'origin' && !isOrigin(item)) {
          problems.push(
            `${where}: expected "*" or an origin such as https://example.com but received ${describeValue(item)} (${origin})`,
          );
          return;
        }
        out.push(
          kind.item === 'path' ? resolve(item) : kind.item === 'origin' ? item.replace(/\/$/, '') : item,
        );
      });
      return out;
    }
  }
}

function setPath(target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let obj = target;
  for (const p of parts.slice(0, -1)) {
    obj[p] ??= {};
    obj = obj[p] as Record<string, unknown>;
  }
  obj[parts[parts.length - 1]!] = value;
}

/**
 * Merges defaults < file < environment < flags, validates every field, and returns the frozen
 * configuration; throws GLIMPSE_E_CONFIG_INVALID listing every problem (with where each value came from).
 *
 * @example
 *   const config = await loadServerConfig({
 *     file: 'glimpse.yaml',
 *     env: process.env,
 *     flags: { port: '9000', indices: ['laion', 'photos'] },
 *   });
 *   config.limits.bodyBytes; // 16777216 unless changed
 */
export async function loadServerConfig(sources: ServerConfigSources = {}): Promise<ServerConfig> {
  const problems: string[] = [];
  const values = new Map<string, Sourced>();
  for (const field of SERVER_CONFIG_FIELDS)
    values.set(field.key, { value: field.default, origin: 'default' });

  if (sources.file !== undefined) {
    let text: string | undefined;
    try {
      text = await readFile(sources.file, 'utf8');
    } catch (err) {
      problems.push(
        `config file ${sources.file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    if (text !== undefined) {
      try {
        flattenFile(fromYaml(text), sources.file, values, problems);
      } catch (err) {
        problems.push(
          `config file ${sources.file}: not valid YAML (${(err as Error).message.split('\n')[0]})`,
        );
      }
    }
  }
  if (sources.fileContent !== undefined) {
    flattenFile(sources.fileContent, sources.fileLabel ?? '<config>', values, problems);
  }
  const env = sources.env ?? {};
  for (const field of SERVER_CONFIG_FIELDS) {
    const v = env[field.env];
    if (v !== undefined) values.set(field.key, { value: v, origin: `env ${field.env}` });
  }
  for (const [key, value] of Object.entries(sources.flags ?? {})) {
    if (value === undefined) continue;
    const name = sources.flagNames?.[key] ?? `--set ${key}`;
    if (!BY_KEY.has(key)) {
      problems.push(`${key}: unknown setting (flag ${name})`);
      continue;
    }
    values.set(key, { value, origin: `flag ${name}` });
  }

  const out: Record<string, unknown> = {};
  for (const field of SERVER_CONFIG_FIELDS) {
    const v = coerce(field, values.get(field.key)!, problems);
    setPath(out, field.key, v);
  }
  const config = out as unknown as ServerConfig;

  if (sources.checkPaths ?? true) {
    const dirs: [string, string][] = [
      ...(Array.isArray(config.allowedRoots)
        ? config.allowedRoots.map((p, i): [string, string] => [`allowedRoots[${i}]`, p])
        : []),
    ];
    for (const [where, dir] of dirs) {
      try {
        if (!(await stat(dir)).isDirectory())
          problems.push(`${where}: expected a folder but ${dir} is a file`);
      } catch {
        problems.push(`${where}: expected an existing folder but ${dir} does not exist`);
      }
    }
  }
  if (problems.length > 0) {
    throw new GlimpseError(
      'GLIMPSE_E_CONFIG_INVALID',
      `Expected a valid server configuration but found ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
      { details: { problems } },
    );
  }
  return deepFreeze(config);
}

/**
 * The configuration as it may be logged or shown: API keys replaced by their count.
 *
 * @example
 *   logger.info({ config: redactConfig(config) }, 'starting');
 */
export function redactConfig(config: ServerConfig): Record<string, unknown> {
  return { ...config, auth: { ...config.auth, apiKeys: `[${config.auth.apiKeys.length} hidden]` } };
}

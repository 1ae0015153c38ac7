/**
 * Input specs → the list of files or URLs to read, in order: brace patterns (`data/{00000..00099}.tar`,
 * `{a,b}`), globs (`data/*.tar`, local, S3 and HTTP directory indexes), several specs, and `.txt` list files
 * (one spec per line). Used for WebDataset shards and manifest files.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { GlimpseError } from '../errors/index.js';
import { compareNames, localPath, storageKind } from '../storage/index.js';
import type { StorageSet } from './storages.js';

/** Most names one spec may expand to (a typo like `{0..99999999}` fails instead of eating memory). */
const MAX_EXPANSION = 1_000_000;

/** Index of the `}` that closes the `{` at `open`, or -1. */
function closingBrace(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}') {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

/** Splits a brace body on its top-level commas. */
function topLevelCommas(body: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '{') depth++;
    else if (c === '}') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(body.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(body.slice(start));
  return parts;
}

/** `a..b` (integers, zero-padded when either end has a leading zero) → the names, or undefined. */
function rangeItems(body: string): string[] | undefined {
  const m = /^(-?\d+)\.\.(-?\d+)(?:\.\.(\d+))?$/.exec(body);
  if (!m) return undefined;
  const [a, b] = [m[1]!, m[2]!];
  const step = m[3] === undefined ? 1 : Number(m[3]);
  const from = Number(a);
  const to = Number(b);
  const count = Math.floor(Math.abs(to - from) / Math.max(step, 1)) + 1;
  if (step < 1 || count > MAX_EXPANSION) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected a brace range of at most ${MAX_EXPANSION} items with a positive step but received {${body}}`,
    );
  }
  const padded = /^-?0\d/.test(a) || /^-?0\d/.test(b);
  const width = padded ? Math.max(a.replace('-', '').length, b.replace('-', '').length) : 0;
  const out: string[] = [];
  const dir = to >= from ? 1 : -1;
  for (let k = 0, v = from; k < count; k++, v += dir * step) {
    const digits = String(Math.abs(v)).padStart(width, '0');
    out.push(v < 0 ? `-${digits}` : digits);
  }
  return out;
}

/**
 * Expands bash-style braces: comma lists `{a,b,c}` and integer ranges `{0..9}`, `{00000..00099}`
 * (zero-padded to the wider end), `{0..10..2}`; nested braces work; a brace without a comma or a range
 * stays literal.
 *
 * @example
 *   expandBraces('data/{00000..00002}.tar'); // ['data/00000.tar', 'data/00001.tar', 'data/00002.tar']
 *   expandBraces('{train,val}-{0..1}.tar');   // ['train-0.tar', 'train-1.tar', 'val-0.tar', 'val-1.tar']
 */
export function expandBraces(pattern: string): string[] {
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] !== '{') continue;
    const close = closingBrace(pattern, i);
    if (close < 0) break;
    const body = pattern.slice(i + 1, close);
    const items = rangeItems(body) ?? (body.includes(',') ? topLevelCommas(body) : undefined);
    if (items === undefined) continue;
    const head = pattern.slice(0, i);
    const tails = expandBraces(pattern.slice(close + 1));
    const out: string[] = [];
    for (const item of items) {
      for (const expanded of expandBraces(item)) {
        for (const tail of tails) {
          out.push(head + expanded + tail);
          if (out.length > MAX_EXPANSION) {
            throw new GlimpseError(
              'GLIMPSE_E_ARG_INVALID',
              `Expected a brace pattern of at most ${MAX_EXPANSION} names but ${JSON.stringify(pattern)} expands to more`,
            );
          }
        }
      }
    }
    return out;
  }
  return [pattern];
}

/** True when a name segment has glob characters (`*`, `?`, `[…]`). */
function isGlob(segment: string, kind: 'local' | 's3' | 'http'): boolean {
  // In URLs `?` starts the query string: only `*` and `[…]` are globs there.
  return kind === 'http' ? /[*[]/.test(segment) : /[*?[]/.test(segment);
}

/**
 * A glob segment as a regular expression: `*` any run of characters except `/`, `?` one character,
 * `[abc]` / `[!abc]` / `[a-z]` a class; everything else literal.
 */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let cls = glob.slice(i + 1, end);
      if (cls.startsWith('!')) cls = '^' + cls.slice(1);
      re += `[${cls.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

async function expandLocalGlob(pattern: string): Promise<string[]> {
  const path = localPath(pattern);
  const absolute = path.startsWith('/');
  const segments = path.split('/').filter((s, i) => s !== '' || i === 0);
  let bases: string[] = [absolute ? '/' : '.'];
  const first = absolute ? 1 : 0;
  for (let i = first; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    const next: string[] = [];
    if (!isGlob(seg, 'local')) {
      for (const b of bases) next.push(b === '.' && !absolute && i === 0 ? seg : join(b, seg));
    } else {
      const re = globToRegExp(seg);
      for (const b of bases) {
        let entries;
        try {
          entries = await readdir(b, { withFileTypes: true });
        } catch {
          continue;
        }
        const names = entries
          .filter((e) => re.test(e.name) && !(e.name.startsWith('.') && !seg.startsWith('.')))
          .filter((e) => (last ? e.isFile() || e.isSymbolicLink() : e.isDirectory()))
          .map((e) => e.name)
          .sort(compareNames);
        for (const n of names) next.push(b === '.' && !absolute && i === 0 ? n : join(b, n));
      }
    }
    bases = next;
  }
  return bases;
}

async function expandRemoteGlob(pattern: string, storages: StorageSet): Promise<string[]> {
  const kind = storageKind(pattern) === 's3' ? 's3' : 'http';
  const cut = pattern.lastIndexOf('/');
  const folder = pattern.slice(0, cut + 1);
  const glob = pattern.slice(cut + 1);
  const schemeEnd = pattern.indexOf('://') + 3;
  const folderPath = folder.slice(schemeEnd);
  const folderHasGlob = folderPath.split('/').some((s) => isGlob(s, kind));
  if (folderHasGlob) {
    throw new GlimpseError(
      'GLIMPSE_E_NOT_SUPPORTED',
      `Expected glob characters only in the last name of ${pattern} (remote folders are listed one level) but the folder part has some`,
    );
  }
  const re = globToRegExp(kind === 'http' ? decodeURIComponent(glob) : glob);
  const entries = await storages.for(folder).list(folder);
  return entries.filter((e) => re.test(e.name)).map((e) => e.url);
}

/**
 * Where a relative path found in a file (a list file's line, a manifest's path column) points: beside that
 * file. Absolute paths and URLs stay as they are.
 *
 * @example
 *   resolveBeside('s3://b/lists/train.txt', 'shards/0.tar'); // 's3://b/lists/shards/0.tar'
 */
export function resolveBeside(listUrl: string, line: string): string {
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(line) || line.startsWith('/')) return line;
  const kind = storageKind(listUrl);
  if (kind === 'http') return new URL(line, listUrl).toString();
  const cut = listUrl.lastIndexOf('/');
  return cut < 0 ? line : listUrl.slice(0, cut + 1) + line;
}

export interface ExpandInputsOptions {
  /** Read `*.txt` specs as list files (one spec per line; `#` comments). Default false. */
  listFiles?: boolean;
}

/**
 * Expands input specs into files or URLs, in order: each spec's braces, then its glob (sorted matches;
 * remote globs list the folder, so only the last name may have glob characters), then, with `listFiles`,
 * `.txt` specs read as lists of specs (relative lines resolve beside the list file). A spec that matches
 * nothing fails with GLIMPSE_E_SOURCE_NOT_FOUND.
 *
 * @example
 *   await expandInputs(['shards/{00000..00003}.tar', 's3://bucket/more/*.tar'], storages);
 */
export async function expandInputs(
  specs: readonly string[],
  storages: StorageSet,
  options: ExpandInputsOptions = {},
): Promise<string[]> {
  const out: string[] = [];
  for (const spec of specs) {
    for (const name of expandBraces(spec)) {
      const kind = storageKind(name);
      const matches = isGlob(name.slice(name.indexOf('://') + 1), kind)
        ? kind === 'local'
          ? await expandLocalGlob(name)
          : await expandRemoteGlob(name, storages)
        : [name];
      if (matches.length === 0) {
        throw new GlimpseError(
          'GLIMPSE_E_SOURCE_NOT_FOUND',
          `Expected ${JSON.stringify(name)} to match at least one file but it matches none`,
        );
      }
      for (const m of matches) {
        if (options.listFiles && /\.txt$/i.test(m)) {
          let text: string;
          try {
            text = new TextDecoder().decode(await storages.for(m).read(m));
          } catch (err) {
            throw new GlimpseError(
              'GLIMPSE_E_SOURCE_NOT_FOUND',
              `Expected a readable list file at ${m} but ${(err as Error).message}`,
              { cause: err },
            );
          }
          const lines = text
            .split(/\r?\n/)
            .map((l) => l.trim())
            .filter((l) => l !== '' && !l.startsWith('#'))
            .map((l) => resolveBeside(m, l));
          out.push(...(await expandInputs(lines, storages, { listFiles: false })));
        } else out.push(m);
      }
    }
  }
  return out;
}

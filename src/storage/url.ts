import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GlimpseError } from '../errors/index.js';
import type { StorageKind } from './types.js';

/**
 * Which backend a URL belongs to: `s3://…` → s3, `http(s)://…` → http, `file://…` and plain paths →
 * local. Other schemes throw GLIMPSE_E_STORAGE_UNSUPPORTED_SCHEME.
 *
 * @example
 *   storageKind('s3://bucket/emb/img_emb_0.npy'); // 's3'
 */
export function storageKind(url: string): StorageKind {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(url);
  if (!m) return 'local';
  const scheme = m[1]!.toLowerCase();
  if (scheme === 's3') return 's3';
  if (scheme === 'http' || scheme === 'https') return 'http';
  if (scheme === 'file') return 'local';
  throw new GlimpseError(
    'GLIMPSE_E_STORAGE_UNSUPPORTED_SCHEME',
    `Expected a local path, file://, http(s):// or s3:// URL but received ${JSON.stringify(url)}`,
    { details: { scheme } },
  );
}

/** A local path from a path or a `file://` URL. */
export function localPath(url: string): string {
  return url.startsWith('file://') ? fileURLToPath(url) : url;
}

/**
 * Appends names to a folder URL or path (URL-encoding each name for http(s)).
 *
 * @example
 *   joinUrl('s3://bucket/emb/', 'img_emb', 'img_emb_0.npy'); // 's3://bucket/emb/img_emb/img_emb_0.npy'
 */
export function joinUrl(base: string, ...names: string[]): string {
  const kind = storageKind(base);
  if (kind === 'local' && !base.startsWith('file://')) return join(base, ...names);
  let out = base.replace(/\/+$/, '');
  for (const name of names) {
    const clean = name.replace(/^\/+|\/+$/g, '');
    if (clean === '') continue;
    out += '/' + (kind === 'http' ? clean.split('/').map(encodeURIComponent).join('/') : clean);
  }
  return out;
}

/**
 * The last name of a URL or path (decoded for http(s)).
 *
 * @example
 *   urlBasename('https://host/emb/img_emb_0.npy?x=1'); // 'img_emb_0.npy'
 */
export function urlBasename(url: string): string {
  const kind = storageKind(url);
  if (kind === 'local') return basename(localPath(url));
  const path = kind === 'http' ? new URL(url).pathname : url.slice('s3://'.length);
  const name = path.replace(/\/+$/, '').split('/').pop() ?? '';
  return kind === 'http' ? decodeURIComponent(name) : name;
}

/**
 * Bucket and key of an `s3://bucket/key` URL.
 *
 * @example
 *   parseS3Url('s3://bucket/a/b.npy'); // { bucket: 'bucket', key: 'a/b.npy' }
 */
export function parseS3Url(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/i.exec(url);
  if (!m || m[1] === '') {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected an s3://bucket/key URL but received ${JSON.stringify(url)}`,
    );
  }
  return { bucket: m[1]!, key: m[2]! };
}

/** Compares names by UTF-16 code units, the order clip-retrieval's sorted() gives for ASCII names. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

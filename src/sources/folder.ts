import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { GlimpseError } from '../errors/index.js';
import type { Sample, SampleSource } from './types.js';

/**
 * Extensions (lower case) of the image formats the decoder reads. Matching is case-insensitive.
 * Formats the decoder turns out not to read (a BMP variant, say) are recorded per item, never fatal.
 */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  'jpg',
  'jpeg',
  'jpe',
  'jfif',
  'png',
  'apng',
  'webp',
  'avif',
  'gif',
  'tif',
  'tiff',
  'heic',
  'heif',
  'bmp',
  'jp2',
  'jxl',
]);

export interface FolderSourceOptions {
  /** Samples must have an image (default true). */
  enableImage?: boolean;
  /** Samples must have a caption (`x.txt`) (default `auto`: true when the folder has any caption). */
  enableText?: boolean | 'auto';
  /** Read `x.json` as metadata (default true). */
  enableMetadata?: boolean;
  /** Only the first N samples in order. */
  subsetSize?: number;
}

interface Entry {
  image?: string;
  caption?: string;
  json?: string;
}

/** What listing found, before filtering by the enabled modalities. */
export interface FolderListing {
  readonly images: number;
  readonly captions: number;
  /** Images skipped because text is enabled and they have no caption. */
  readonly imagesWithoutCaption: number;
  /** sha256 (hex, 32 characters) of the samples' keys in order: a renamed, added or removed file changes it. */
  readonly keysDigest: string;
}

/**
 * Image folder source: recursive, every decoder format (case-insensitive extensions), `x.txt` as the
 * caption and `x.json` as the metadata of `x.<ext>`, in stable sorted order of relative paths.
 * `key` and `imagePath` are the path as found under the input folder (the folder as given, joined).
 *
 * @example
 *   const source = await createFolderSource('photos/', { enableText: false });
 *   for await (const s of source.read()) console.log(s.key, s.imagePath);
 */
function digestKeys(keys: readonly string[]): string {
  const hash = createHash('sha256');
  for (const k of keys) hash.update(k).update('\n');
  return hash.digest('hex').slice(0, 32);
}

export async function createFolderSource(
  folder: string,
  options: FolderSourceOptions = {},
): Promise<SampleSource & { listing: FolderListing; enableImage: boolean; enableText: boolean }> {
  const enableImage = options.enableImage ?? true;
  let enableText = options.enableText ?? 'auto';
  const enableMetadata = options.enableMetadata ?? true;
  let info;
  try {
    info = await stat(folder);
  } catch (err) {
    throw new GlimpseError(
      'GLIMPSE_E_SOURCE_NOT_FOUND',
      `Expected an input folder at ${folder} but it does not exist`,
      {
        cause: err,
      },
    );
  }
  if (!info.isDirectory()) {
    throw new GlimpseError(
      'GLIMPSE_E_SOURCE_NOT_FOUND',
      `Expected an input folder at ${folder} but it is not a folder`,
    );
  }

  const names = (await readdir(folder, { recursive: true, withFileTypes: true }))
    .filter((d) => d.isFile())
    .map((d) =>
      relative(folder, join(d.parentPath ?? d.path, d.name))
        .split(sep)
        .join('/'),
    );
  names.sort();

  // Group by stem (relative path without its last extension); images keep their full name as key.
  const byStem = new Map<string, Entry>();
  const images: { stem: string; rel: string }[] = [];
  for (const rel of names) {
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    if (base.startsWith('.')) continue; // hidden files and our own temp files
    const dot = rel.lastIndexOf('.');
    if (dot <= rel.lastIndexOf('/')) continue;
    const ext = rel.slice(dot + 1).toLowerCase();
    const stem = rel.slice(0, dot);
    let entry = byStem.get(stem);
    if (!entry) byStem.set(stem, (entry = {}));
    if (IMAGE_EXTENSIONS.has(ext)) images.push({ stem, rel });
    else if (ext === 'txt') entry.caption = rel;
    else if (ext === 'json') entry.json = rel;
  }

  let captions = 0;
  for (const e of byStem.values()) if (e.caption !== undefined) captions++;
  if (enableText === 'auto') enableText = captions > 0;
  const samples: { key: string; image?: string; caption?: string; json?: string }[] = [];
  let imagesWithoutCaption = 0;
  if (enableImage) {
    for (const { stem, rel } of images) {
      const entry = byStem.get(stem)!;
      if (enableText && entry.caption === undefined) {
        imagesWithoutCaption++;
        continue;
      }
      const s: { key: string; image?: string; caption?: string; json?: string } = { key: rel, image: rel };
      if (enableText && entry.caption !== undefined) s.caption = entry.caption;
      if (enableMetadata && entry.json !== undefined) s.json = entry.json;
      samples.push(s);
    }
  } else if (enableText) {
    for (const [stem, entry] of [...byStem.entries()].sort((a, b) =>
      a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0,
    )) {
      if (entry.caption === undefined) continue;
      const s: { key: string; caption?: string; json?: string } = { key: stem, caption: entry.caption };
      if (enableMetadata && entry.json !== undefined) s.json = entry.json;
      samples.push(s);
    }
  }
  const limited = options.subsetSize !== undefined ? samples.slice(0, options.subsetSize) : samples;
  const prefix = (rel: string): string => join(folder, rel);

  return {
    size: limited.length,
    enableImage,
    enableText,
    listing: {
      images: images.length,
      captions,
      imagesWithoutCaption,
      keysDigest: digestKeys(limited.map((x) => x.key)),
    },
    async *read(range = {}) {
      const start = range.start ?? 0;
      const end = Math.min(range.end ?? limited.length, limited.length);
      for (let i = start; i < end; i++) {
        if (range.signal?.aborted) return;
        const s = limited[i]!;
        let caption: string | undefined;
        let meta: Record<string, unknown> | undefined;
        let error: { code: string; message: string } | undefined;
        if (s.caption !== undefined) {
          try {
            caption = await readFile(prefix(s.caption), 'utf8');
          } catch (err) {
            error = {
              code: 'GLIMPSE_E_SOURCE_SIDECAR_INVALID',
              message: `Expected a readable caption file ${prefix(s.caption)} but reading failed: ${(err as Error).message}`,
            };
          }
        }
        if (s.json !== undefined && error === undefined) {
          try {
            const parsed: unknown = JSON.parse(await readFile(prefix(s.json), 'utf8'));
            if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
              throw new Error(
                `the top level is ${Array.isArray(parsed) ? 'an array' : typeof parsed}, not an object`,
              );
            }
            meta = parsed as Record<string, unknown>;
          } catch (err) {
            error = {
              code: 'GLIMPSE_E_SOURCE_SIDECAR_INVALID',
              message: `Expected a JSON object in ${prefix(s.json)} but ${(err as Error).message}`,
            };
          }
        }
        const sample: { -readonly [K in keyof Sample]: Sample[K] } = { key: prefix(s.key), index: i };
        if (s.image !== undefined) sample.imagePath = prefix(s.image);
        if (caption !== undefined) sample.caption = caption;
        if (meta !== undefined) sample.meta = meta;
        if (error !== undefined) sample.error = error;
        yield sample;
      }
    },
  };
}

/**
 * `filter` (clip-retrieval's `filter`): query a collection by text or image and copy the images of the hits
 * (their `image_path`) into a folder, best first, with `results.jsonl` beside them. Fixes upstream's two
 * bugs: names never collide (a clash gets `_1`, `_2`… before the extension; nothing is overwritten), and
 * only real hits are copied when there are fewer than asked (never a wrong or repeated file).
 */
import { constants } from 'node:fs';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { GlimpseError } from '../errors/index.js';
import { invalidParameterError } from '../core/validate.js';
import { writeFileAtomic } from '../core/fs-atomic.js';
import type { ClipModel, LoadModelOptions } from './model.js';
import { openCollection, type DatabaseRef, type SearchHit } from './collection.js';

export interface FilterToFolderOptions {
  /** Text query (clip-retrieval's `--query`). */
  query?: string;
  /** Or an image file (path or URL) as the query. */
  image?: string;
  /** Model for the query (default: the collection's). */
  model?: ClipModel | string;
  modelOptions?: LoadModelOptions;
  /** Keep the best N hits (default 100; with `threshold`, at most N). */
  numResults?: number;
  /** Keep every hit with similarity ≥ threshold (up to `numResults`, default then 10,000). */
  threshold?: number;
  /** Also restrict hits with a structured metadata filter. */
  filter?: unknown;
  /** Output folder (created; files already there are never overwritten). */
  out: string;
}

/** One line of results.jsonl. */
export interface FilterRecord {
  readonly rank: number;
  readonly id: string;
  readonly score: number;
  readonly image_path: string | null;
  /** The copy's name inside the output folder, when copied. */
  readonly file: string | null;
  readonly error?: { code: string; message: string };
  readonly metadata: Record<string, unknown>;
}

export interface FilterToFolderResult {
  readonly out: string;
  readonly hits: number;
  readonly copied: number;
  readonly failed: number;
  readonly resultsFile: string;
  readonly records: readonly FilterRecord[];
}

/** A free name in `taken` for `name`: itself, else `stem_1.ext`, `stem_2.ext`, … */
function freeName(name: string, taken: Set<string>): string {
  const ext = extname(name);
  const stem = name.slice(0, name.length - ext.length);
  let candidate = name;
  for (let i = 1; taken.has(candidate.toLowerCase()); i++) candidate = `${stem}_${i}${ext}`;
  taken.add(candidate.toLowerCase());
  return candidate;
}

/**
 * Runs the query and copies each hit's image into `out`, best first. A hit whose image cannot be copied is
 * recorded in results.jsonl with GLIMPSE_E_FILTER_COPY_FAILED; the others are copied.
 *
 * @example
 *   const r = await filterToFolder('data/db', 'photos', { query: 'a cat', numResults: 20, out: 'cats/' });
 *   console.log(`${r.copied} images in cats/ (results.jsonl beside them)`);
 */
export async function filterToFolder(
  db: DatabaseRef,
  name: string,
  options: FilterToFolderOptions,
): Promise<FilterToFolderResult> {
  if (typeof options?.out !== 'string' || options.out === '')
    throw invalidParameterError('out', 'an output folder', options?.out);
  if ((options.query === undefined) === (options.image === undefined)) {
    throw new GlimpseError(
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
      `Expected exactly one of query, image for filter but received ${options.query === undefined ? 'neither' : 'both'}`,
    );
  }
  if (
    options.threshold !== undefined &&
    (typeof options.threshold !== 'number' || !Number.isFinite(options.threshold))
  )
    throw invalidParameterError('threshold', 'a finite number', options.threshold);
  const numResults = options.numResults ?? (options.threshold !== undefined ? 10_000 : 100);
  if (!Number.isInteger(numResults) || numResults <= 0 || numResults > 10_000)
    throw invalidParameterError('numResults', 'an integer from 1 to 10000', numResults);

  const collection = await openCollection(db, name);
  let hits: SearchHit[];
  try {
    hits = await collection.search({
      ...(options.query !== undefined ? { text: options.query } : { image: options.image! }),
      ...(options.model !== undefined ? { model: options.model } : {}),
      ...(options.modelOptions !== undefined ? { modelOptions: options.modelOptions } : {}),
      ...(options.filter !== undefined ? { filter: options.filter } : {}),
      ...(options.threshold !== undefined ? { minScore: options.threshold } : {}),
      topK: numResults,
    });
  } finally {
    await collection.close();
  }

  await mkdir(options.out, { recursive: true });
  const taken = new Set((await readdir(options.out)).map((n) => n.toLowerCase()));
  taken.add('results.jsonl');
  const records: FilterRecord[] = [];
  let copied = 0;
  for (const [rank, hit] of hits.entries()) {
    const imagePath = typeof hit.metadata['image_path'] === 'string' ? hit.metadata['image_path'] : null;
    const base = {
      rank: rank + 1,
      id: hit.id,
      score: hit.score,
      image_path: imagePath,
      metadata: hit.metadata,
    };
    if (imagePath === null) {
      records.push({
        ...base,
        file: null,
        error: {
          code: 'GLIMPSE_E_FILTER_COPY_FAILED',
          message: `Expected an image_path for hit ${hit.id} but it has none`,
        },
      });
      continue;
    }
    const file = freeName(basename(imagePath) || `${hit.id}`, taken);
    try {
      await copyFile(imagePath, join(options.out, file), constants.COPYFILE_EXCL);
      copied++;
      records.push({ ...base, file });
    } catch (err) {
      taken.delete(file.toLowerCase());
      records.push({
        ...base,
        file: null,
        error: {
          code: 'GLIMPSE_E_FILTER_COPY_FAILED',
          message: `Expected to copy ${imagePath} (hit ${hit.id}) into ${options.out} but ${(err as Error).message}`,
        },
      });
    }
  }
  const resultsFile = join(options.out, 'results.jsonl');
  await writeFileAtomic(
    resultsFile,
    records.map((r) => JSON.stringify(r)).join('\n') + (records.length > 0 ? '\n' : ''),
  );
  return { out: options.out, hits: hits.length, copied, failed: hits.length - copied, resultsFile, records };
}

import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { GlimpseError } from '../../errors/index.js';
import { openCollection, type SearchHit, type SearchOptions } from '../../pipeline/collection.js';
import { parseVectorFile } from '../../search/query.js';
import { parseIntOption } from '../options.js';
import { addDbOptions, print, withDbFlags, type DbFlags } from './collection.js';

interface SearchFlags extends DbFlags {
  text?: string;
  image?: string;
  vector?: string;
  topK: number;
  filter?: string;
  model?: string;
  dtype?: 'fp32' | 'fp16' | 'q8';
  minScore?: number;
  exact?: boolean;
  nprobes?: number;
  ef?: number;
  refineFactor?: number;
  cacheDir?: string;
  offline?: boolean;
  json?: boolean;
}

export function parseNumberOption(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n))
      throw new InvalidArgumentError(`Expected a number for ${name} but received ${JSON.stringify(value)}`);
    return n;
  };
}

/** Results as text: rank, score, id, then image_path / caption when present. */
export function formatHits(hits: readonly SearchHit[]): string {
  if (hits.length === 0) return 'no result';
  return hits
    .map((h, i) => {
      const extra = [h.metadata['image_path'], h.metadata['caption']].filter(
        (v) => typeof v === 'string' && v !== '',
      );
      return `${String(i + 1).padStart(3)}  ${h.score.toFixed(4)}  ${h.id}${extra.length > 0 ? `  ${extra.join('  ')}` : ''}`;
    })
    .join('\n');
}

/** `glimpse search <collection> --text … | --image … | --vector …`. */
export function registerSearchCommand(program: Command): void {
  addDbOptions(
    program
      .command('search')
      .description('search a collection by text, image or vector, with a structured metadata filter')
      .argument('<collection>', 'collection name')
      .option('--text <text>', 'text query')
      .option('--image <path|url>', 'image query')
      .option('--vector <file>', 'vector query: an .npy file (one row) or a JSON array of numbers')
      .option('--top-k <n>', 'results to return', parseIntOption('--top-k'), 10)
      .option(
        '--filter <json>',
        'structured filter, e.g. {"and":[{"eq":["url","x"]},{"range":["width",{"gte":100}]}]}',
      )
      .option('--min-score <s>', 'only results with cosine similarity ≥ s', parseNumberOption('--min-score'))
      .option('--model <id|dir>', "model for text and image queries (default: the collection's)")
      .option('--dtype <fp32|fp16|q8>', "ONNX precision variant (default: the collection's)")
      .option('--exact', 'exact search (ignore the index)')
      .option(
        '--nprobes <n>',
        'IVF partitions to probe (default: stored with the index)',
        parseIntOption('--nprobes'),
      )
      .option('--ef <n>', 'HNSW search list size (default: stored with the index)', parseIntOption('--ef'))
      .option(
        '--refine-factor <n>',
        're-rank n×k candidates exactly (IVF_PQ)',
        parseIntOption('--refine-factor'),
      )
      .option('--cache-dir <dir>', 'model cache folder')
      .option('--offline', 'never download models')
      .option('--json', 'print the results as a JSON array of {id, score, metadata}'),
  ).action(async (collection: string, flags: SearchFlags) => {
    await runSearchCommand(collection, flags);
  });
}

/** The action of `glimpse search`. */
export async function runSearchCommand(collection: string, flags: SearchFlags): Promise<SearchHit[]> {
  const given = [flags.text, flags.image, flags.vector].filter((q) => q !== undefined).length;
  if (given !== 1) {
    throw new GlimpseError(
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
      `Expected exactly one of --text, --image, --vector but received ${given === 0 ? 'none' : given}`,
    );
  }
  const options: SearchOptions = { topK: flags.topK };
  if (flags.text !== undefined) options.text = flags.text;
  if (flags.image !== undefined) options.image = flags.image;
  if (flags.vector !== undefined)
    options.vector = parseVectorFile(new Uint8Array(await readFile(flags.vector)), flags.vector);
  if (flags.filter !== undefined) options.filter = flags.filter;
  if (flags.minScore !== undefined) options.minScore = flags.minScore;
  if (flags.exact) options.exact = true;
  if (flags.nprobes !== undefined) options.nprobes = flags.nprobes;
  if (flags.ef !== undefined) options.ef = flags.ef;
  if (flags.refineFactor !== undefined) options.refineFactor = flags.refineFactor;
  if (flags.model !== undefined) options.model = flags.model;
  options.modelOptions = {
    ...(flags.dtype !== undefined ? { dtype: flags.dtype } : {}),
    ...(flags.cacheDir !== undefined ? { cacheDir: flags.cacheDir } : {}),
    ...(flags.offline !== undefined ? { offline: flags.offline } : {}),
  };
  const hits = await withDbFlags(flags, async (db) => {
    const c = await openCollection(db, collection);
    try {
      return await c.search(options);
    } finally {
      await c.close();
    }
  });
  print(flags.json ? JSON.stringify(hits) : formatHits(hits));
  return hits;
}

import type { Command } from 'commander';
import {
  filterToFolder,
  type FilterToFolderOptions,
  type FilterToFolderResult,
} from '../../pipeline/collection-filter.js';
import { parseIntOption } from '../options.js';
import { addDbOptions, print, withDbFlags, type DbFlags } from './collection.js';
import { parseNumberOption } from './search.js';

interface FilterFlags extends DbFlags {
  query?: string;
  image?: string;
  numResults?: number;
  threshold?: number;
  filter?: string;
  out: string;
  model?: string;
  dtype?: 'fp32' | 'fp16' | 'q8';
  cacheDir?: string;
  offline?: boolean;
  json?: boolean;
}

/** `glimpse filter <collection> --query … | --image … --out DIR`: copy the matching images into a folder. */
export function registerFilterCommand(program: Command): void {
  addDbOptions(
    program
      .command('filter')
      .description(
        "copy the images matching a text or image query into a folder (clip-retrieval's filter), with results.jsonl",
      )
      .argument('<collection>', 'collection name')
      .option('--query <text>', 'text query')
      .option('--image <path>', 'image query (a file or URL)')
      .option('--num-results <n>', 'the best n hits (default 100)', parseIntOption('--num-results'))
      .option(
        '--threshold <s>',
        'every hit with cosine similarity ≥ s (at most --num-results, default 10000)',
        parseNumberOption('--threshold'),
      )
      .option('--filter <json>', 'structured metadata filter')
      .requiredOption('--out <dir>', 'output folder (created; existing files are never overwritten)')
      .option('--model <id|dir>', "model for the query (default: the collection's)")
      .option('--dtype <fp32|fp16|q8>', "ONNX precision variant (default: the collection's)")
      .option('--cache-dir <dir>', 'model cache folder')
      .option('--offline', 'never download models')
      .option('--json', 'print the result as JSON'),
  ).action(async (collection: string, flags: FilterFlags) => {
    await runFilterCommand(collection, flags);
  });
}

/** The action of `glimpse filter`. */
export async function runFilterCommand(
  collection: string,
  flags: FilterFlags,
): Promise<FilterToFolderResult> {
  const options: FilterToFolderOptions = {
    out: flags.out,
    modelOptions: {
      ...(flags.dtype !== undefined ? { dtype: flags.dtype } : {}),
      ...(flags.cacheDir !== undefined ? { cacheDir: flags.cacheDir } : {}),
      ...(flags.offline !== undefined ? { offline: flags.offline } : {}),
    },
  };
  if (flags.query !== undefined) options.query = flags.query;
  if (flags.image !== undefined) options.image = flags.image;
  if (flags.numResults !== undefined) options.numResults = flags.numResults;
  if (flags.threshold !== undefined) options.threshold = flags.threshold;
  if (flags.filter !== undefined) options.filter = flags.filter;
  if (flags.model !== undefined) options.model = flags.model;
  const r = await withDbFlags(flags, (db) => filterToFolder(db, collection, options));
  if (flags.json) print(JSON.stringify({ ...r, records: undefined }));
  else {
    print(
      `copied ${r.copied} of ${r.hits} hits into ${r.out} (${r.failed} failed); results in ${r.resultsFile}`,
    );
    for (const rec of r.records)
      if (rec.error) process.stderr.write(`failed ${rec.id}: ${rec.error.code}: ${rec.error.message}\n`);
  }
  return r;
}

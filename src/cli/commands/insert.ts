import type { Command } from 'commander';
import { insertFiles, type InsertFilesOptions, type InsertResult } from '../../pipeline/collection-insert.js';
import { createCliProgress } from '../progress.js';
import { parseIntOption } from '../options.js';
import { withSignals } from '../signals.js';
import { addDbOptions, print, withDbFlags, type DbFlags } from './collection.js';

interface InsertFlags extends DbFlags {
  model?: string;
  dtype?: 'fp32' | 'fp16' | 'q8';
  idCol?: string;
  batchSize?: number;
  numPreproWorkers?: number;
  threads?: number;
  preprocess: 'exact' | 'fast';
  cacheDir?: string;
  offline?: boolean;
  json?: boolean;
}

/** Prints an insert or import result: counts, then each failure on stderr (the first 20 unless --json). */
export function reportWrite(
  verb: string,
  r: Pick<
    InsertResult,
    'collection' | 'inserted' | 'updated' | 'failed' | 'failures' | 'created' | 'seconds'
  >,
  json: boolean | undefined,
): void {
  if (json) return print(JSON.stringify(r));
  if (r.created) print(`created collection ${r.collection}`);
  print(
    `${verb} ${r.inserted + r.updated} rows into ${r.collection} (${r.inserted} new, ${r.updated} replaced, ${r.failed} failed) in ${r.seconds.toFixed(1)} s`,
  );
  for (const f of r.failures.slice(0, 20)) process.stderr.write(`failed ${f.key}: ${f.code}: ${f.message}\n`);
  if (r.failures.length > 20)
    process.stderr.write(`… and ${r.failures.length - 20} more failures (--json lists all)\n`);
}

/** `glimpse insert <collection> <images…|folder>`: embed images and upsert them into a collection. */
export function registerInsertCommand(program: Command): void {
  addDbOptions(
    program
      .command('insert')
      .description(
        'embed images (files or folders, with x.txt captions and x.json metadata) and upsert them into a collection',
      )
      .argument('<collection>', 'collection name (created, bound to --model, when missing)')
      .argument('<inputs...>', 'image files or folders')
      .option('--model <id|dir>', "model folder or hub id (default: the collection's model)")
      .option('--dtype <fp32|fp16|q8>', "ONNX precision variant (default: the collection's, else fp32)")
      .option('--id-col <key>', 'take ids from this metadata key instead of the file path')
      .option('--batch-size <n>', 'images per inference batch (default 32)', parseIntOption('--batch-size'))
      .option(
        '--num-prepro-workers <n>',
        'decode worker threads (default: cores)',
        parseIntOption('--num-prepro-workers'),
      )
      .option('--threads <n>', 'inference intra-op threads (default: cores)', parseIntOption('--threads'))
      .option('--preprocess <exact|fast>', 'exact = OpenAI CLIP parity; fast = libvips resize', 'exact')
      .option('--cache-dir <dir>', 'model cache folder')
      .option('--offline', 'never download models')
      .option('--json', 'print the result (with every failure) as JSON'),
  ).action(async (collection: string, inputs: string[], flags: InsertFlags) => {
    await runInsertCommand(collection, inputs, flags);
  });
}

/** The action of `glimpse insert`. */
export async function runInsertCommand(
  collection: string,
  inputs: string[],
  flags: InsertFlags,
): Promise<InsertResult> {
  const progress = createCliProgress({ unit: 'images' });
  try {
    return await withSignals((signal) =>
      withDbFlags(flags, async (db) => {
        const options: InsertFilesOptions = {
          ...(flags.dtype !== undefined ? { dtype: flags.dtype } : {}),
          preprocessMode: flags.preprocess,
          signal,
          onProgress: progress.onProgress,
        };
        if (flags.model !== undefined) options.model = flags.model;
        if (flags.idCol !== undefined) options.idColumn = flags.idCol;
        if (flags.batchSize !== undefined) options.batchSize = flags.batchSize;
        if (flags.numPreproWorkers !== undefined) options.numPreproWorkers = flags.numPreproWorkers;
        if (flags.threads !== undefined) options.intraOpThreads = flags.threads;
        if (flags.cacheDir !== undefined) options.cacheDir = flags.cacheDir;
        if (flags.offline !== undefined) options.offline = flags.offline;
        const r = await insertFiles(db, collection, inputs, options);
        progress.stop();
        reportWrite('inserted', r, flags.json);
        return r;
      }),
    );
  } finally {
    progress.stop();
  }
}

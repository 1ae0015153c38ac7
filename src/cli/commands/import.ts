import type { Command } from 'commander';
import { importEmbeddings, type ImportOptions, type ImportResult } from '../../pipeline/collection-import.js';
import { createCliProgress } from '../progress.js';
import { withSignals } from '../signals.js';
import { addDbOptions, print, withDbFlags, type DbFlags } from './collection.js';
import { reportWrite } from './insert.js';

interface ImportFlags extends DbFlags {
  model?: string;
  allowUnknownModel?: boolean;
  modality: 'image' | 'text';
  idCol?: string;
  cacheDir?: string;
  offline?: boolean;
  json?: boolean;
}

/** `glimpse import <collection> <embeddings-folder>`: bulk-load a clip-retrieval layout folder. */
export function registerImportCommand(program: Command): void {
  addDbOptions(
    program
      .command('import')
      .description(
        'bulk-load a clip-retrieval embeddings folder (img_emb/*.npy + metadata/*.parquet) into a collection, without re-embedding',
      )
      .argument('<collection>', 'collection name (created when missing)')
      .argument('<folder>', 'embeddings folder (local, http(s):// or s3://)')
      .option(
        '--model <id|dir>',
        'the model that made the vectors (checked against glimpse.json when present)',
      )
      .option(
        '--allow-unknown-model',
        'import vectors whose model is not known (no glimpse.json, no --model)',
      )
      .option('--modality <image|text>', 'img_emb/ or text_emb/', 'image')
      .option('--id-col <column>', 'take ids from this metadata column instead of row numbers')
      .option('--cache-dir <dir>', 'model cache folder')
      .option('--offline', 'never download models')
      .option('--json', 'print the result as JSON'),
  ).action(async (collection: string, folder: string, flags: ImportFlags) => {
    await runImportCommand(collection, folder, flags);
  });
}

/** The action of `glimpse import`. */
export async function runImportCommand(
  collection: string,
  folder: string,
  flags: ImportFlags,
): Promise<ImportResult> {
  const progress = createCliProgress({ unit: 'rows' });
  try {
    return await withSignals((signal) =>
      withDbFlags(flags, async (db) => {
        const options: ImportOptions = { modality: flags.modality, signal, onProgress: progress.onProgress };
        if (flags.model !== undefined) options.model = flags.model;
        if (flags.allowUnknownModel) options.allowUnknownModel = true;
        if (flags.idCol !== undefined) options.idColumn = flags.idCol;
        if (flags.cacheDir !== undefined) options.cacheDir = flags.cacheDir;
        if (flags.offline !== undefined) options.offline = flags.offline;
        const r = await importEmbeddings(db, collection, folder, options);
        progress.stop();
        reportWrite('imported', r, flags.json);
        if (!flags.json)
          print(
            `${r.rows} rows from ${r.files} file(s), model ${r.model ?? 'unknown'}, ${r.rate.toFixed(0)} rows/s`,
          );
        return r;
      }),
    );
  } finally {
    progress.stop();
  }
}

import { InvalidArgumentError, type Command } from 'commander';
import { GlimpseError } from '../../errors/index.js';
import {
  collectionStats,
  createCollection,
  deleteCollection,
  listCollections,
  openDatabase,
  type CollectionStats,
} from '../../pipeline/collection.js';
import type { VectorStore } from '../../index/lancedb.js';
import { parseIntOption } from '../options.js';

/** Flags every collection command takes. */
export interface DbFlags {
  db: string;
  storageOption?: string[];
}

/** The database default: `$GLIMPSE_DB`, else `glimpse-db` in the current folder. */
export function defaultDb(): string {
  return process.env['GLIMPSE_DB'] ?? 'glimpse-db';
}

function collectOption(value: string, previous: string[] | undefined): string[] {
  if (!/^[^=]+=/.test(value))
    throw new InvalidArgumentError(
      `Expected key=value for --storage-option but received ${JSON.stringify(value)}`,
    );
  return [...(previous ?? []), value];
}

/** Adds `--db` and `--storage-option` to a command. */
export function addDbOptions(command: Command): Command {
  return command
    .option(
      '--db <dir|s3://…>',
      'collection database: a folder or an s3:// prefix (default $GLIMPSE_DB or ./glimpse-db)',
      defaultDb(),
    )
    .option(
      '--storage-option <key=value>',
      'object-store option passed to LanceDB (repeatable: region=…, endpoint=…, aws_access_key_id=…)',
      collectOption,
    );
}

/** Opens the database the flags name. */
export async function openDbFromFlags(flags: DbFlags): Promise<VectorStore> {
  const storageOptions: Record<string, string> = {};
  for (const kv of flags.storageOption ?? []) {
    const at = kv.indexOf('=');
    storageOptions[kv.slice(0, at)] = kv.slice(at + 1);
  }
  return openDatabase(flags.db, Object.keys(storageOptions).length > 0 ? { storageOptions } : {});
}

/** Runs `fn` with the flags' database, closed after. */
export async function withDbFlags<T>(flags: DbFlags, fn: (db: VectorStore) => Promise<T>): Promise<T> {
  const db = await openDbFromFlags(flags);
  try {
    return await fn(db);
  } finally {
    db.close();
  }
}

export function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(1)} KiB`;
}

/** Human-readable collection statistics. */
export function formatStats(s: CollectionStats): string {
  const lines = [
    `collection ${s.name}`,
    `  rows        ${s.rows}`,
    `  dimension   ${s.dimension}`,
    `  model       ${s.model === null ? 'unknown (vectors imported unchecked)' : `${s.model} (${s.modelId}${s.fingerprint ? `, ${s.fingerprint.dtype}` : ''})`}`,
    `  model ref   ${s.modelRef ?? '—'}`,
    `  size        ${formatBytes(s.bytes)} in ${s.fragments} fragment(s), version ${s.version}`,
    `  index       ${
      s.index === null
        ? 'none (exact search)'
        : `${s.index.type}, ${s.index.indexedRows} rows indexed, ${s.index.unindexedRows} not yet (searched exactly)${Object.keys(s.index.search).length > 0 ? `, search ${JSON.stringify(s.index.search)}` : ''}`
    }`,
    `  columns     ${s.columns.map((c) => `${c.key} (${c.type})`).join(', ')}`,
  ];
  return lines.join('\n');
}

interface CreateFlags extends DbFlags {
  model?: string;
  dtype: 'fp32' | 'fp16' | 'q8';
  dimension?: number;
  allowUnknownModel?: boolean;
  cacheDir?: string;
  offline?: boolean;
  json?: boolean;
}

/** `glimpse collection create|list|stats|delete`. */
export function registerCollectionCommand(program: Command): void {
  const collection = program
    .command('collection')
    .description('collections of vectors: create, list, stats, delete');

  addDbOptions(
    collection
      .command('create')
      .description('create an empty collection bound to one model (its fingerprint and dimension)')
      .argument('<name>', 'collection name (letters, digits, _ and -)')
      .option('--model <id|dir>', 'the model whose vectors the collection holds')
      .option('--dtype <fp32|fp16|q8>', 'ONNX precision variant (part of the fingerprint)', 'fp32')
      .option('--dimension <n>', 'vector size, for --allow-unknown-model', parseIntOption('--dimension'))
      .option('--allow-unknown-model', 'a collection for vectors of an unknown model (needs --dimension)')
      .option('--cache-dir <dir>', 'model cache folder')
      .option('--offline', 'never download models')
      .option('--json', 'print the collection as JSON'),
  ).action(async (name: string, flags: CreateFlags) => {
    await runCollectionCreate(name, flags);
  });

  addDbOptions(
    collection
      .command('list')
      .description('list the collections of the database')
      .option('--json', 'print JSON'),
  ).action(async (flags: DbFlags & { json?: boolean }) => {
    const list = await withDbFlags(flags, (db) => listCollections(db));
    if (flags.json) return print(JSON.stringify(list));
    if (list.length === 0) return print(`no collection in ${flags.db}`);
    const w = Math.max(4, ...list.map((c) => c.name.length));
    print(`${'name'.padEnd(w)}  ${'rows'.padStart(10)}  ${'dim'.padStart(5)}  model`);
    for (const c of list)
      print(
        `${c.name.padEnd(w)}  ${String(c.rows).padStart(10)}  ${String(c.dimension).padStart(5)}  ${c.model === null ? 'unknown' : `${c.model} (${c.modelId})`}`,
      );
  });

  addDbOptions(
    collection
      .command('stats')
      .description('rows, size, model, columns and index of a collection')
      .argument('<name>', 'collection name')
      .option('--json', 'print JSON'),
  ).action(async (name: string, flags: DbFlags & { json?: boolean }) => {
    const s = await withDbFlags(flags, (db) => collectionStats(db, name));
    print(flags.json ? JSON.stringify(s) : formatStats(s));
  });

  addDbOptions(
    collection
      .command('delete')
      .description('delete a collection and its data')
      .argument('<name>', 'collection name'),
  ).action(async (name: string, flags: DbFlags) => {
    await withDbFlags(flags, (db) => deleteCollection(db, name));
    print(`deleted collection ${name}`);
  });
}

/** The action of `glimpse collection create`. */
export async function runCollectionCreate(name: string, flags: CreateFlags): Promise<void> {
  if ((flags.model === undefined) === !flags.allowUnknownModel) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected exactly one of --model, --allow-unknown-model but received ${flags.model === undefined ? 'neither' : 'both'}`,
    );
  }
  if (flags.allowUnknownModel && flags.dimension === undefined) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      'Expected --dimension with --allow-unknown-model but received none',
    );
  }
  const s = await withDbFlags(flags, async (db) => {
    const c =
      flags.model !== undefined
        ? await createCollection(db, name, {
            model: flags.model,
            modelOptions: {
              dtype: flags.dtype,
              ...(flags.cacheDir !== undefined ? { cacheDir: flags.cacheDir } : {}),
              ...(flags.offline !== undefined ? { offline: flags.offline } : {}),
            },
            ...(flags.dimension !== undefined ? { dimension: flags.dimension } : {}),
          })
        : await createCollection(db, name, { fingerprint: null, dimension: flags.dimension! });
    try {
      return await c.stats();
    } finally {
      await c.close();
    }
  });
  print(
    flags.json
      ? JSON.stringify(s)
      : `created collection ${name} (dimension ${s.dimension}, model ${s.model === null ? 'unknown' : `${s.model} ${s.modelId}`}) in ${flags.db}`,
  );
}

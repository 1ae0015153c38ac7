import type { Command } from 'commander';
import { GlimpseError } from '../../errors/index.js';
import { assertOneOf } from '../../core/validate.js';
import { INDEX_TYPES, type IndexParams, type IndexType } from '../../index/auto.js';
import { openCollection } from '../../pipeline/collection.js';
import {
  buildIndex,
  evalIndex,
  type EvalIndexOptions,
  type IndexBuildResult,
  type IndexEvalResult,
} from '../../pipeline/collection-index.js';
import { parseIntOption } from '../options.js';
import { addDbOptions, print, withDbFlags, type DbFlags } from './collection.js';

interface IndexFlags extends DbFlags {
  type: string;
  maxMemory: string;
  partitions?: number;
  subVectors?: number;
  numBits?: number;
  m?: number;
  efConstruction?: number;
  sampleRate?: number;
  nprobes?: number;
  ef?: number;
  refineFactor?: number;
  json?: boolean;
}

interface EvalFlags extends DbFlags {
  k: number;
  queries: number;
  seed: number;
  nprobes?: number;
  ef?: number;
  refineFactor?: number;
  sweep?: boolean;
  json?: boolean;
}

/** `glimpse index <collection>` (build) and `glimpse index eval <collection>` (recall@k). */
export function registerIndexCommand(program: Command): void {
  const index = addDbOptions(
    program
      .command('index')
      .description(
        'build the vector index of a collection (auto: flat when small, else HNSW or IVF_PQ sized to the memory budget)',
      )
      .argument('<collection>', 'collection name')
      .option('--type <auto|flat|ivf_pq|hnsw>', 'index type (hnsw is LanceDB IVF_HNSW_SQ)', 'auto')
      .option('--max-memory <size>', 'memory budget for the index (e.g. 4G)', '4G')
      .option('--partitions <n>', 'IVF partitions', parseIntOption('--partitions'))
      .option('--sub-vectors <n>', 'PQ sub-vectors (ivf_pq)', parseIntOption('--sub-vectors'))
      .option('--num-bits <n>', 'PQ bits per code, 4 or 8 (ivf_pq)', parseIntOption('--num-bits'))
      .option('--m <n>', 'HNSW neighbours per node (hnsw)', parseIntOption('--m'))
      .option('--ef-construction <n>', 'HNSW build list size (hnsw)', parseIntOption('--ef-construction'))
      .option('--sample-rate <n>', 'k-means training rows per partition', parseIntOption('--sample-rate'))
      .option('--nprobes <n>', 'default partitions probed per search', parseIntOption('--nprobes'))
      .option('--ef <n>', 'default HNSW search list size', parseIntOption('--ef'))
      .option(
        '--refine-factor <n>',
        'default exact re-ranking of n×k PQ candidates',
        parseIntOption('--refine-factor'),
      )
      .option('--json', 'print the result as JSON'),
  ).action(async (collection: string, flags: IndexFlags) => {
    await runIndexCommand(collection, flags);
  });

  addDbOptions(
    index
      .command('eval')
      .description('measure recall@k of the index against exact search on held-out-like queries')
      .argument('<collection>', 'collection name')
      .option('--k <n>', 'neighbours compared', parseIntOption('--k'), 10)
      .option('--queries <n>', 'queries (stored vectors, perturbed)', parseIntOption('--queries'), 100)
      .option('--seed <n>', 'seed of the query sample', (v) => Number(v), 0)
      .option(
        '--nprobes <n>',
        'partitions probed (default: stored with the index)',
        parseIntOption('--nprobes'),
      )
      .option('--ef <n>', 'HNSW search list size (default: stored with the index)', parseIntOption('--ef'))
      .option('--refine-factor <n>', 'exact re-ranking of n×k candidates', parseIntOption('--refine-factor'))
      .option('--sweep', 'also try a ladder of nprobes / ef / refine factors')
      .option('--json', 'print the result as JSON'),
  ).action(async (collection: string, flags: EvalFlags, command: Command) => {
    // `index` has --db too and, parsing first, takes `--db` given after `eval`: use its value then.
    const parent = command.parent;
    for (const key of ['db', 'storageOption'] as const) {
      if (
        parent &&
        command.getOptionValueSource(key) !== 'cli' &&
        parent.getOptionValueSource(key) === 'cli'
      ) {
        (flags as unknown as Record<string, unknown>)[key] = parent.opts()[key];
      }
    }
    await runIndexEvalCommand(collection, flags);
  });
}

/** The action of `glimpse index`. */
export async function runIndexCommand(collection: string, flags: IndexFlags): Promise<IndexBuildResult> {
  assertOneOf('--type', flags.type, INDEX_TYPES);
  const params: IndexParams = {};
  if (flags.partitions !== undefined) params.numPartitions = flags.partitions;
  if (flags.subVectors !== undefined) params.numSubVectors = flags.subVectors;
  if (flags.numBits !== undefined) {
    if (flags.numBits !== 4 && flags.numBits !== 8)
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        `Expected 4 or 8 for --num-bits but received ${flags.numBits}`,
      );
    params.numBits = flags.numBits;
  }
  if (flags.m !== undefined) params.m = flags.m;
  if (flags.efConstruction !== undefined) params.efConstruction = flags.efConstruction;
  if (flags.sampleRate !== undefined) params.sampleRate = flags.sampleRate;
  if (flags.nprobes !== undefined) params.nprobes = flags.nprobes;
  if (flags.ef !== undefined) params.ef = flags.ef;
  if (flags.refineFactor !== undefined) params.refineFactor = flags.refineFactor;
  const r = await withDbFlags(flags, async (db) => {
    const c = await openCollection(db, collection);
    try {
      return await buildIndex(c, { type: flags.type as IndexType, maxMemory: flags.maxMemory, params });
    } finally {
      await c.close();
    }
  });
  if (flags.json) print(JSON.stringify(r));
  else {
    print(`chose ${r.reason}`);
    print(
      r.config === undefined
        ? `${collection}: no vector index (exact search), ${r.rows} rows`
        : `${collection}: built ${r.type} ${JSON.stringify(r.config)} over ${r.rows} rows in ${r.seconds.toFixed(1)} s; search defaults ${JSON.stringify(r.search)}`,
    );
  }
  return r;
}

/** The action of `glimpse index eval`. */
export async function runIndexEvalCommand(collection: string, flags: EvalFlags): Promise<IndexEvalResult> {
  const options: EvalIndexOptions = { k: flags.k, queries: flags.queries, seed: flags.seed };
  if (flags.nprobes !== undefined) options.nprobes = flags.nprobes;
  if (flags.ef !== undefined) options.ef = flags.ef;
  if (flags.refineFactor !== undefined) options.refineFactor = flags.refineFactor;
  if (flags.sweep) options.sweep = true;
  const r = await withDbFlags(flags, async (db) => {
    const c = await openCollection(db, collection);
    try {
      return await evalIndex(c, options);
    } finally {
      await c.close();
    }
  });
  if (flags.json) print(JSON.stringify(r));
  else {
    print(
      `recall@${r.k} ${r.recall.toFixed(4)} over ${r.queries} queries (${r.index ?? 'no index: exact search'}, params ${JSON.stringify(r.params)}); latency p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms; exact search p50 ${r.exactP50Ms.toFixed(2)} ms`,
    );
    print(`method: ${r.method}`);
    for (const p of r.sweep)
      print(
        `  ${JSON.stringify(p.params).padEnd(40)} recall@${r.k} ${p.recall.toFixed(4)}  p50 ${p.p50Ms.toFixed(2)} ms  p99 ${p.p99Ms.toFixed(2)} ms`,
      );
  }
  return r;
}

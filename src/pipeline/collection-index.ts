/**
 * Vector indexes of a collection: build one (`auto` chooses by size and memory budget, see
 * index/auto.ts) and measure its recall@k against exact search on held-out-like queries.
 *
 * Recall method: `queries` stored vectors are drawn at random (seeded); each is perturbed with Gaussian
 * noise to a cosine of about 0.9 with its source and renormalized, so queries are near the data but not in
 * it. The source row is then excluded from both the exact and the approximate results (we ask for k+1 and
 * drop it), as if it had been held out: recall@k = |approximate top-k ∩ exact top-k| / k, averaged.
 */
import { invalidParameterError, parseByteSize } from '../core/validate.js';
import { planIndex, type IndexParams, type IndexPlan, type IndexType } from '../index/auto.js';
import type { VectorIndexConfig } from '../index/lancedb.js';
import type { SearchDefaults } from '../index/schema.js';
import { percentile, perturbVector, recallAtK, seededRandom } from '../search/query.js';
import type { Collection } from './collection.js';

export interface BuildIndexOptions {
  /** `auto` (default), `flat` (no index: exact search), `ivf_pq` or `hnsw` (LanceDB's IVF_HNSW_SQ). */
  type?: IndexType;
  /** Memory budget for the index: bytes or a size such as `4G` (default 4G). */
  maxMemory?: number | string;
  /** Overrides of the planned parameters. */
  params?: IndexParams;
}

export interface IndexBuildResult {
  readonly collection: string;
  readonly type: 'flat' | 'ivf_pq' | 'hnsw';
  /** What was chosen and why. */
  readonly reason: string;
  readonly config: VectorIndexConfig | undefined;
  readonly search: SearchDefaults;
  readonly rows: number;
  readonly estimatedBytes: number;
  readonly seconds: number;
}

/**
 * Builds (or replaces, or for `flat` drops) the collection's vector index and stores the search
 * parameters that go with it. Rows added later are searchable at once (LanceDB searches them exactly
 * beside the index) until `optimize()` folds them in.
 *
 * @example
 *   const r = await buildIndex(collection, { type: 'auto', maxMemory: '4G' });
 *   console.log(r.reason); // 'hnsw: 1000000 rows is above the flat limit …'
 */
export async function buildIndex(
  collection: Collection,
  options: BuildIndexOptions = {},
): Promise<IndexBuildResult> {
  const rows = await collection.count();
  const maxMemoryBytes =
    options.maxMemory === undefined ? undefined : parseByteSize('maxMemory', options.maxMemory);
  const plan: IndexPlan = planIndex({
    rows,
    dimension: collection.dimension,
    type: options.type ?? 'auto',
    ...(maxMemoryBytes !== undefined ? { maxMemoryBytes } : {}),
    ...(options.params !== undefined ? { params: options.params } : {}),
  });
  const started = performance.now();
  if (plan.config === undefined) await collection.table.dropVectorIndex();
  else await collection.table.createVectorIndex(plan.config, plan.search);
  return {
    collection: collection.name,
    type: plan.type,
    reason: plan.reason,
    config: plan.config,
    search: plan.search,
    rows,
    estimatedBytes: plan.estimatedBytes,
    seconds: (performance.now() - started) / 1000,
  };
}

export interface EvalIndexOptions {
  /** Neighbours compared (default 10). */
  k?: number;
  /** Queries (default 100, at most the rows − 1). */
  queries?: number;
  /** Seed of the query sample and noise (default 0). */
  seed?: number;
  /** Cosine between a query and its source row (default 0.9). */
  similarity?: number;
  /** Search parameters to evaluate (default: those stored with the index). */
  nprobes?: number;
  ef?: number;
  refineFactor?: number;
  /** Also evaluate a ladder of settings (nprobes / ef / refine factor) around the defaults. */
  sweep?: boolean;
}

export interface RecallPoint {
  readonly params: SearchDefaults;
  readonly recall: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface IndexEvalResult {
  readonly collection: string;
  /** LanceDB's index type, or null when there is none (then recall is 1 by definition). */
  readonly index: string | null;
  readonly k: number;
  readonly queries: number;
  readonly recall: number;
  readonly params: SearchDefaults;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly exactP50Ms: number;
  readonly exactP99Ms: number;
  /** How the queries were made and matched. */
  readonly method: string;
  readonly sweep: readonly RecallPoint[];
}

/**
 * Measures recall@k of the collection's index against exact search (see the module comment for the
 * method), with per-query latencies, optionally over a sweep of search parameters.
 *
 * @example
 *   const e = await evalIndex(collection, { k: 10, queries: 200 });
 *   console.log(`recall@10 ${e.recall.toFixed(3)} at p50 ${e.p50Ms.toFixed(2)} ms`);
 */
export async function evalIndex(
  collection: Collection,
  options: EvalIndexOptions = {},
): Promise<IndexEvalResult> {
  const k = options.k ?? 10;
  if (!Number.isInteger(k) || k <= 0 || k > 1000)
    throw invalidParameterError('k', 'an integer from 1 to 1000', k);
  const similarity = options.similarity ?? 0.9;
  if (!(similarity > 0 && similarity <= 1))
    throw invalidParameterError('similarity', 'a number in (0, 1]', similarity);
  const rows = await collection.count();
  const queries = Math.min(options.queries ?? 100, Math.max(0, rows - 1));
  if (!Number.isInteger(queries) || queries <= 0)
    throw invalidParameterError(
      'queries',
      `a positive integer (the collection has ${rows} rows)`,
      options.queries ?? queries,
    );
  const rng = seededRandom(options.seed ?? 0);
  const offsets = new Set<number>();
  while (offsets.size < queries) offsets.add(Math.floor(rng.uniform() * rows));
  const sources = await collection.table.takeOffsets([...offsets]);
  const qs = sources.map((s) => ({ id: s.id, vector: perturbVector(s.vector!, similarity, rng) }));
  const table = collection.table;
  const run = async (
    params: SearchDefaults & { exact?: boolean },
  ): Promise<{ ids: string[][]; ms: number[] }> => {
    const ids: string[][] = [];
    const ms: number[] = [];
    for (const q of qs) {
      const t = performance.now();
      const hits = await table.search({ vector: q.vector, k: k + 1, keys: [], ...params });
      ms.push(performance.now() - t);
      ids.push(
        hits
          .map((h) => h.id)
          .filter((id) => id !== q.id)
          .slice(0, k),
      );
    }
    return { ids, ms };
  };
  const exact = await run({ exact: true });
  const index = await table.vectorIndex();
  const stored = table.searchDefaults;
  const params: SearchDefaults = {
    ...stored,
    ...(options.nprobes !== undefined ? { nprobes: options.nprobes } : {}),
    ...(options.ef !== undefined ? { ef: options.ef } : {}),
    ...(options.refineFactor !== undefined ? { refineFactor: options.refineFactor } : {}),
  };
  const measure = async (p: SearchDefaults): Promise<RecallPoint> => {
    const r = await run(p);
    return {
      params: p,
      recall: recallAtK(exact.ids, r.ids, k),
      p50Ms: percentile(r.ms, 50),
      p99Ms: percentile(r.ms, 99),
    };
  };
  const main = await measure(params);
  const sweep: RecallPoint[] = [];
  if (options.sweep && index) {
    for (const p of sweepParams(index.type, params)) sweep.push(await measure(p));
  }
  return {
    collection: collection.name,
    index: index ? index.type : null,
    k,
    queries,
    recall: main.recall,
    params,
    p50Ms: main.p50Ms,
    p99Ms: main.p99Ms,
    exactP50Ms: percentile(exact.ms, 50),
    exactP99Ms: percentile(exact.ms, 99),
    method: `${queries} stored vectors (seed ${options.seed ?? 0}) perturbed with Gaussian noise to cosine ≈ ${similarity} with their source, renormalized; the source row is excluded from exact and approximate results (held out); recall@${k} = share of the exact top-${k} found by the index`,
    sweep,
  };
}

/** Settings to try around the defaults: more probes / a longer HNSW list / more refinement. */
function sweepParams(type: string, base: SearchDefaults): SearchDefaults[] {
  const out: SearchDefaults[] = [];
  if (/HNSW/i.test(type)) {
    for (const ef of [16, 32, 64, 128, 256, 512]) out.push({ ...base, ef });
  } else {
    const probes = [1, 2, 4, 8, 16, 32, 64, 128];
    for (const nprobes of probes)
      for (const refineFactor of [1, 5, 10, 20]) out.push({ ...base, nprobes, refineFactor });
  }
  return out;
}

/**
 * Which vector index to build, as a pure function of the collection's size, dimension and memory budget,
 * with the reason in words. The thresholds and defaults come from bench/search.ts on this project's 2-core
 * machine (docs/search.md has the figures):
 *
 * - flat (no index) while exact search is fast enough: below FLAT_MAX_ROWS (20,000) rows.
 * - IVF_HNSW_SQ (LanceDB's HNSW over 8-bit scalar-quantized vectors) when its memory fits the budget: the
 *   best latency at recall@10 ≥ 0.95 in our measurements.
 * - IVF_PQ otherwise, with as many PQ sub-vectors as the budget allows, and a refine step (exact re-ranking
 *   of the PQ candidates) so recall stays high.
 */
import { invalidParameterError } from '../core/validate.js';
import type { VectorIndexConfig } from './lancedb.js';
import type { SearchDefaults } from './schema.js';

export type IndexType = 'auto' | 'flat' | 'ivf_pq' | 'hnsw';
export const INDEX_TYPES: readonly IndexType[] = ['auto', 'flat', 'ivf_pq', 'hnsw'];

/**
 * Below this many rows, `auto` keeps exact (flat) search: LanceDB's exact scan of 512-d vectors took 50–130 ms
 * per query at 100,000 rows on this machine (≈ 10–25 ms at 20,000), while an HNSW index answers in ≈ 2 ms.
 */
export const FLAT_MAX_ROWS = 20_000;
/** Default memory budget for the index (clip-retrieval's `max_index_memory_usage`). */
export const DEFAULT_MAX_MEMORY = 4 * 1024 ** 3;
/**
 * Rows per IVF partition of IVF_HNSW_SQ. One graph is best below this: at 100,000 rows, 2 partitions built no
 * faster (10.5 s vs 10.3 s) and needed both probed to match the recall of one.
 */
const HNSW_ROWS_PER_PARTITION = 1_000_000;

/** Optional overrides of the index parameters. */
export interface IndexParams {
  numPartitions?: number;
  numSubVectors?: number;
  numBits?: number;
  m?: number;
  efConstruction?: number;
  sampleRate?: number;
  maxIterations?: number;
  nprobes?: number;
  ef?: number;
  refineFactor?: number;
}

export interface IndexPlanInput {
  rows: number;
  dimension: number;
  type?: IndexType;
  /** Bytes the index may take in memory (default 4 GiB). */
  maxMemoryBytes?: number;
  params?: IndexParams;
}

/** What to build, why, and how to search it. */
export interface IndexPlan {
  readonly type: 'flat' | 'ivf_pq' | 'hnsw';
  /** What LanceDB builds (undefined for flat). */
  readonly config: VectorIndexConfig | undefined;
  /** Search parameters stored with the index. */
  readonly search: SearchDefaults;
  /** Estimated bytes of the index in memory. */
  readonly estimatedBytes: number;
  /** One or two sentences: what was chosen and why. */
  readonly reason: string;
}

/** Estimated in-memory bytes of IVF_HNSW_SQ: 1 byte per dimension, ~2m neighbour ids, row id, overhead. */
export function hnswBytes(rows: number, dimension: number, m: number): number {
  return rows * (dimension + 2 * m * 4 + 8 + 48);
}

/** Estimated in-memory bytes of IVF_PQ: one byte per sub-vector (8-bit codes) and the row id. */
export function ivfPqBytes(rows: number, subVectors: number, numBits = 8): number {
  return rows * (Math.ceil((subVectors * numBits) / 8) + 8);
}

function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(0)} KiB`;
}

/** Sub-vector counts LanceDB's SIMD paths handle well: d/8, d/16 (8 or 16 values each), then d/32; larger first. */
function subVectorChoices(dimension: number): number[] {
  const out: number[] = [];
  for (const per of [8, 16, 32]) if (dimension % per === 0) out.push(dimension / per);
  return out.length > 0 ? out : [1];
}

function positive(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isInteger(v) || v <= 0))
    throw invalidParameterError(name, 'a positive integer', v);
}

/**
 * Plans the vector index: `auto` picks flat, HNSW or IVF_PQ by size and budget; explicit types get
 * defaults sized to the collection. Parameters in `params` override the defaults.
 *
 * @example
 *   planIndex({ rows: 1_000_000, dimension: 512, maxMemoryBytes: 4 * 1024 ** 3 }).reason;
 *   // 'hnsw: 1000000 rows is above the flat limit (20000) and IVF_HNSW_SQ needs about 664 MiB, within the 4.0 GiB budget'
 */
export function planIndex(input: IndexPlanInput): IndexPlan {
  const { rows, dimension } = input;
  const type = input.type ?? 'auto';
  const budget = input.maxMemoryBytes ?? DEFAULT_MAX_MEMORY;
  const p = input.params ?? {};
  for (const [k, v] of Object.entries(p)) positive(k, v as number | undefined);
  if (!Number.isInteger(rows) || rows < 0)
    throw invalidParameterError('rows', 'a non-negative integer', rows);
  if (!Number.isFinite(budget) || budget <= 0)
    throw invalidParameterError('maxMemory', 'a positive byte size', budget);

  // HNSW defaults, measured at 100,000 × 512 (bench/search.ts, 2 shared cores): m=16, efConstruction=120 built
  // in 9.5 s (efConstruction 60: 7.3 s; FAISS HNSW M=32: 21 s) and reached recall@10 0.995 at ef=128 with a 2×
  // exact re-ranking (the 8-bit SQ codes alone cap recall near 0.95; efConstruction 60 tops out at 0.987),
  // p50 1.9 ms.
  const m = p.m ?? 16;
  const hnsw = (why: string): IndexPlan => {
    const numPartitions = p.numPartitions ?? Math.max(1, Math.ceil(rows / HNSW_ROWS_PER_PARTITION));
    const bytes = hnswBytes(rows, dimension, m);
    return {
      type: 'hnsw',
      config: {
        type: 'hnsw',
        numPartitions,
        m,
        efConstruction: p.efConstruction ?? 120,
        ...(p.sampleRate !== undefined ? { sampleRate: p.sampleRate } : {}),
        ...(p.maxIterations !== undefined ? { maxIterations: p.maxIterations } : {}),
      },
      // At 1,000,000 rows ef=128 gave recall@10 0.949 and ef=256 0.961 (p50 3.7 ms): larger graphs need a longer list.
      search: {
        nprobes: p.nprobes ?? numPartitions,
        ef: p.ef ?? (rows > 250_000 ? 256 : 128),
        refineFactor: p.refineFactor ?? 2,
      },
      estimatedBytes: bytes,
      reason: why,
    };
  };
  const ivfPq = (why: (subVectors: number, bytes: number) => string): IndexPlan => {
    const choices = subVectorChoices(dimension);
    const numBits = p.numBits ?? 8;
    const subVectors =
      p.numSubVectors ??
      choices.find((s) => ivfPqBytes(rows, s, numBits) <= budget) ??
      choices[choices.length - 1]!;
    // √n / 3 partitions, 64 training rows each, 20 k-means rounds: at 100,000 × 512 the build took 38 s
    // instead of 350 s with LanceDB's √n / 256 / 50, and recall@10 was 0.993 at nprobes 8, refine 10.
    const numPartitions = p.numPartitions ?? Math.max(1, Math.min(4096, Math.round(Math.sqrt(rows) / 3)));
    const bytes = ivfPqBytes(rows, subVectors, numBits);
    return {
      type: 'ivf_pq',
      config: {
        type: 'ivf_pq',
        numPartitions,
        numSubVectors: subVectors,
        sampleRate: p.sampleRate ?? 64,
        maxIterations: p.maxIterations ?? 20,
        ...(p.numBits !== undefined ? { numBits: p.numBits } : {}),
      },
      // PQ codes alone rank poorly on CLIP-like data (recall@10 0.27 at 64 sub-vectors); re-ranking 10 × k
      // candidates with the stored vectors brings it to 0.99.
      search: {
        nprobes:
          p.nprobes ?? Math.max(1, Math.min(numPartitions, Math.max(8, Math.ceil(numPartitions / 16)))),
        refineFactor: p.refineFactor ?? 10,
      },
      estimatedBytes: bytes,
      reason: why(subVectors, bytes),
    };
  };

  switch (type) {
    case 'flat':
      return {
        type: 'flat',
        config: undefined,
        search: {},
        estimatedBytes: 0,
        reason: 'flat: asked for; every search compares the query with every row (exact)',
      };
    case 'hnsw':
      return hnsw(
        `hnsw: asked for; IVF_HNSW_SQ with m=${m} needs about ${formatBytes(hnswBytes(rows, dimension, m))}`,
      );
    case 'ivf_pq':
      return ivfPq((s, b) => `ivf_pq: asked for; ${s} sub-vectors need about ${formatBytes(b)}`);
    case 'auto':
      break;
    default:
      throw invalidParameterError('type', `one of ${INDEX_TYPES.join(', ')}`, type);
  }
  if (rows < FLAT_MAX_ROWS) {
    return {
      type: 'flat',
      config: undefined,
      search: {},
      estimatedBytes: 0,
      reason: `flat: ${rows} rows is below ${FLAT_MAX_ROWS}, where exact search is fast enough and needs no index`,
    };
  }
  const hBytes = hnswBytes(rows, dimension, m);
  if (hBytes <= budget) {
    return hnsw(
      `hnsw: ${rows} rows is above the flat limit (${FLAT_MAX_ROWS}) and IVF_HNSW_SQ needs about ${formatBytes(hBytes)}, within the ${formatBytes(budget)} budget`,
    );
  }
  return ivfPq(
    (s, b) =>
      `ivf_pq: IVF_HNSW_SQ would need about ${formatBytes(hBytes)}, over the ${formatBytes(budget)} budget; IVF_PQ with ${s} sub-vectors needs about ${formatBytes(b)}${b > budget ? ' (still over budget: the smallest PQ that works)' : ''}`,
  );
}

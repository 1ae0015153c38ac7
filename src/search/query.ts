/**
 * Query vectors and results: normalizing and parsing query vectors (`--vector file.npy|json`), turning
 * distances into scores, and the pieces of recall evaluation (seeded query perturbation, recall@k).
 */
import { GlimpseError } from '../errors/index.js';
import { describeValue } from '../core/validate.js';
import { assertEmbeddingNpy, float16ToFloat32, parseNpyHeader } from '../formats/npy.js';

/**
 * Cosine similarity from LanceDB's dot distance on normalized vectors (`distance = 1 - dot`):
 * higher is better, 1 is identical.
 *
 * @example
 *   scoreFromDistance(0.25); // 0.75
 */
export function scoreFromDistance(distance: number): number {
  return 1 - distance;
}

/**
 * A unit-length copy of a query vector; GLIMPSE_E_SEARCH_QUERY_INVALID for non-finite or zero vectors, and
 * when `dimension` is given and differs.
 *
 * @example
 *   normalizeQuery([3, 4]); // Float32Array [0.6, 0.8]
 */
export function normalizeQuery(vector: ArrayLike<number>, dimension?: number): Float32Array {
  if (dimension !== undefined && vector.length !== dimension) {
    throw new GlimpseError(
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
      `Expected a query vector of dimension ${dimension} but received ${vector.length} values`,
    );
  }
  const out = new Float32Array(vector.length);
  let norm = 0;
  for (let i = 0; i < vector.length; i++) {
    const v = vector[i]!;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new GlimpseError(
        'GLIMPSE_E_SEARCH_QUERY_INVALID',
        `Expected finite numbers in the query vector but received ${describeValue(v)} at ${i}`,
      );
    }
    out[i] = v;
    norm += v * v;
  }
  if (vector.length === 0 || norm === 0) {
    throw new GlimpseError(
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
      'Expected a non-zero query vector but received a vector of norm 0',
    );
  }
  const inv = 1 / Math.sqrt(norm);
  for (let i = 0; i < out.length; i++) out[i]! *= inv;
  return out;
}

/** L2-normalizes each row of a `[n, d]` matrix in place (rows of norm 0 are left as they are). */
export function normalizeRows(data: Float32Array, dimension: number): Float32Array {
  for (let r = 0; r < data.length; r += dimension) {
    let norm = 0;
    for (let j = r; j < r + dimension; j++) norm += data[j]! * data[j]!;
    if (norm === 0 || !Number.isFinite(norm)) continue;
    const inv = 1 / Math.sqrt(norm);
    for (let j = r; j < r + dimension; j++) data[j]! *= inv;
  }
  return data;
}

/**
 * Reads a query vector from a file's bytes: a NumPy `.npy` (1-D, or 2-D with one row; float16/32) or JSON
 * (an array of numbers, or `{"vector": […]}`).
 *
 * @example
 *   parseVectorFile(await readFile('q.json'), 'q.json'); // Float32Array(512)
 */
export function parseVectorFile(bytes: Uint8Array, name: string): Float32Array {
  if (bytes.length >= 6 && bytes[0] === 0x93 && bytes[1] === 0x4e) {
    const header = parseNpyHeader(bytes, name);
    const shape = header.shape.length === 1 ? [1, header.shape[0]!] : header.shape;
    const h = { ...header, shape };
    assertEmbeddingNpy(h, name, bytes.length);
    if (h.shape[0] !== 1) {
      throw new GlimpseError(
        'GLIMPSE_E_SEARCH_QUERY_INVALID',
        `Expected one vector in ${name} but it holds ${h.shape[0]} rows`,
      );
    }
    const body = bytes.slice(h.headerLength, h.headerLength + h.dataLength);
    return h.dtype === 'float16'
      ? float16ToFloat32(new Uint16Array(body.buffer, 0, h.shape[1]))
      : new Float32Array(body.buffer, 0, h.shape[1]);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new GlimpseError(
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
      `Expected an .npy file or a JSON array of numbers in ${name} but it is neither`,
    );
  }
  const arr =
    parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)['vector']
      : parsed;
  if (!Array.isArray(arr) || !arr.every((v) => typeof v === 'number')) {
    throw new GlimpseError(
      'GLIMPSE_E_SEARCH_QUERY_INVALID',
      `Expected a JSON array of numbers (or {"vector": [...]}) in ${name} but received ${describeValue(arr)}`,
    );
  }
  return Float32Array.from(arr as number[]);
}

/** A small seeded PRNG (mulberry32) with a Gaussian (Box–Muller): reproducible query perturbations. */
export function seededRandom(seed: number): { uniform: () => number; gaussian: () => number } {
  let s = seed >>> 0;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const gaussian = (): number => {
    const u = Math.max(uniform(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
  return { uniform, gaussian };
}

/**
 * A held-out-like query from a stored vector: `normalize(v + σ·g)` with Gaussian noise `g` scaled so the
 * expected cosine between query and source is `similarity` (σ = sqrt((1/s² − 1)/d)).
 *
 * @example
 *   const q = perturbVector(stored, 0.9, rng); // cos(q, stored) ≈ 0.9
 */
export function perturbVector(
  vector: Float32Array,
  similarity: number,
  rng: { gaussian: () => number },
): Float32Array {
  const d = vector.length;
  const sigma = Math.sqrt((1 / (similarity * similarity) - 1) / d);
  const out = new Float32Array(d);
  for (let i = 0; i < d; i++) out[i] = vector[i]! + sigma * rng.gaussian();
  return normalizeRows(out, d);
}

/**
 * Recall@k of approximate results against exact ones: the share of the exact top-k ids the approximate
 * top-k found, averaged over queries.
 *
 * @example
 *   recallAtK([['a', 'b']], [['b', 'c']], 2); // 0.5
 */
export function recallAtK(
  exact: readonly (readonly string[])[],
  approximate: readonly (readonly string[])[],
  k: number,
): number {
  let found = 0;
  let total = 0;
  exact.forEach((truth, q) => {
    const want = truth.slice(0, k);
    const got = new Set((approximate[q] ?? []).slice(0, k));
    for (const id of want) if (got.has(id)) found++;
    total += want.length;
  });
  return total === 0 ? 1 : found / total;
}

/** The p-th percentile (0–100) of numbers (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

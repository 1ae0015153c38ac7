/**
 * Vector indexes: the auto plan (flat / HNSW / IVF_PQ by size and memory budget, with its reason), IVF_PQ
 * and IVF_HNSW_SQ builds on a few thousand clustered unit vectors, recall@k against exact search, and rows
 * inserted after a build searchable at once.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { FLAT_MAX_ROWS, planIndex } from '../src/index/auto.js';
import { createCollection, openDatabase, type Collection } from '../src/pipeline/collection.js';
import { buildIndex, evalIndex } from '../src/pipeline/collection-index.js';
import { seededRandom } from '../src/search/query.js';
import type { VectorStore } from '../src/index/lancedb.js';
import { tempDir } from './helpers/cli.js';

const D = 32;

/** n unit vectors around `clusters` random centres (nearest-neighbour cosine well above noise). */
function clustered(n: number, clusters: number, seed: number): Float32Array[] {
  const rng = seededRandom(seed);
  const centres = Array.from({ length: clusters }, () =>
    Float32Array.from({ length: D }, () => rng.gaussian()),
  );
  return Array.from({ length: n }, () => {
    const c = centres[Math.floor(rng.uniform() * clusters)]!;
    const v = Float32Array.from({ length: D }, (_, j) => c[j]! + 0.6 * rng.gaussian());
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  });
}

describe('planIndex (auto)', () => {
  test('flat when small, HNSW within the budget, IVF_PQ sized to a tight budget; reasons say why', () => {
    const small = planIndex({ rows: 5000, dimension: 512 });
    assert.equal(small.type, 'flat');
    assert.equal(small.config, undefined);
    assert.match(small.reason, /^flat: 5000 rows is below 20000/);
    const big = planIndex({ rows: 1_000_000, dimension: 512, maxMemoryBytes: 4 * 1024 ** 3 });
    assert.equal(big.type, 'hnsw');
    assert.deepEqual(big.search, { nprobes: 1, ef: 256, refineFactor: 2 });
    assert.deepEqual(planIndex({ rows: 100_000, dimension: 512 }).search, {
      nprobes: 1,
      ef: 128,
      refineFactor: 2,
    });
    assert.match(
      big.reason,
      /^hnsw: 1000000 rows is above the flat limit \(20000\) and IVF_HNSW_SQ needs about [\d.]+ MiB, within the 4\.0 GiB budget$/,
    );
    const tight = planIndex({ rows: 1_000_000, dimension: 512, maxMemoryBytes: 100 * 1024 ** 2 });
    assert.equal(tight.type, 'ivf_pq');
    assert.ok(
      tight.config?.type === 'ivf_pq' && tight.config.numSubVectors === 64,
      JSON.stringify(tight.config),
    );
    assert.ok(tight.estimatedBytes <= 100 * 1024 ** 2);
    assert.ok(tight.search.refineFactor !== undefined && tight.search.nprobes !== undefined);
    assert.match(
      tight.reason,
      /^ivf_pq: IVF_HNSW_SQ would need about .* over the 100\.0 MiB budget; IVF_PQ with 64 sub-vectors/,
    );
    const forced = planIndex({ rows: 10, dimension: 64, type: 'hnsw', params: { m: 8, ef: 50 } });
    assert.ok(forced.config?.type === 'hnsw' && forced.config.m === 8);
    assert.equal(forced.search.ef, 50);
    assert.equal(planIndex({ rows: FLAT_MAX_ROWS, dimension: 64 }).type, 'hnsw');
    assert.throws(
      () => planIndex({ rows: 10, dimension: 64, params: { m: -1 } }),
      /Expected a positive integer for m/,
    );
  });
});

describe('vector indexes on a LanceDB collection', () => {
  let dir: string;
  let db: VectorStore;
  let c: Collection;
  const vectors = clustered(3000, 40, 1);

  before(async () => {
    dir = await tempDir('glimpse-index-');
    db = await openDatabase(dir);
    c = await createCollection(db, 'vecs', { fingerprint: null, dimension: D });
    const r = await c.upsertVectors(
      vectors.map((v, i) => ({ id: `v${i}`, vector: v, metadata: { group: i % 2 === 0 ? 'even' : 'odd' } })),
      { mode: 'append' },
    );
    assert.equal(r.inserted, 3000);
  });

  after(async () => {
    await c.close();
    db.close();
    await rm(dir, { recursive: true, force: true });
  });

  const newRowsAreSearchable = async (prefix: string): Promise<void> => {
    const fresh = clustered(5, 3, 99);
    await c.upsertVectors(
      fresh.map((v, i) => ({ id: `${prefix}${i}`, vector: v, metadata: { group: 'new' } })),
    );
    const stats = await c.stats();
    assert.ok(stats.index !== null && stats.index.unindexedRows === 5, JSON.stringify(stats.index));
    for (const [i, v] of fresh.entries()) {
      const hits = await c.search({ vector: v, topK: 3 });
      assert.equal(hits[0]!.id, `${prefix}${i}`);
      assert.ok(hits[0]!.score > 0.9999);
    }
    assert.deepEqual(
      (await c.search({ vector: fresh[0]!, topK: 10, filter: { eq: ['group', 'new'] } }))
        .map((h) => h.id)
        .sort(),
      [0, 1, 2, 3, 4].map((i) => `${prefix}${i}`),
    );
    assert.equal(await c.deleteWhere({ eq: ['group', 'new'] }), 5);
  };

  test('ivf_pq: built with its search defaults, recall@10 measured against exact search, new rows found', async () => {
    const built = await buildIndex(c, { type: 'ivf_pq', params: { numPartitions: 8, numSubVectors: 8 } });
    assert.equal(built.type, 'ivf_pq');
    assert.equal(built.rows, 3000);
    assert.match(built.reason, /^ivf_pq: asked for; 8 sub-vectors need about/);
    const stats = await c.stats();
    assert.equal(stats.index?.type, 'IVF_PQ');
    assert.equal(stats.index?.indexedRows, 3000);
    assert.deepEqual(stats.index?.search, built.search);

    const e = await evalIndex(c, { k: 10, queries: 50 });
    assert.equal(e.index, 'IVF_PQ');
    assert.equal(e.queries, 50);
    assert.ok(e.recall >= 0.8 && e.recall <= 1, `recall ${e.recall}`);
    assert.match(e.method, /source row is excluded/);
    // Fewer probes and no refinement can only lose neighbours.
    const coarse = await evalIndex(c, { k: 10, queries: 50, nprobes: 1, refineFactor: 1 });
    assert.ok(coarse.recall < e.recall, `${coarse.recall} vs ${e.recall}`);
    await newRowsAreSearchable('pq');
  });

  test('hnsw (IVF_HNSW_SQ): recall@10 and new rows found; flat drops the index (recall 1)', async () => {
    const built = await buildIndex(c, { type: 'hnsw', params: { m: 8, efConstruction: 50 } });
    assert.equal(built.type, 'hnsw');
    assert.equal((await c.stats()).index?.type, 'IVF_HNSW_SQ');
    const e = await evalIndex(c, { k: 10, queries: 50, sweep: true });
    assert.ok(e.recall >= 0.8, `recall ${e.recall}`);
    assert.ok(e.sweep.length > 0 && e.sweep.every((p) => p.params.ef !== undefined));
    await newRowsAreSearchable('hnsw');
    // More results than the stored ef: ef is raised to k for the query.
    assert.equal((await c.search({ vector: vectors[0]!, topK: 200 })).length, 200);

    const flat = await buildIndex(c, { type: 'flat' });
    assert.equal(flat.config, undefined);
    assert.equal((await c.stats()).index, null);
    const exact = await evalIndex(c, { k: 10, queries: 20 });
    assert.equal(exact.index, null);
    assert.equal(exact.recall, 1);
    // auto on 3000 rows: flat.
    const auto = await buildIndex(c);
    assert.equal(auto.type, 'flat');
    assert.match(auto.reason, /below 20000/);
  });
});

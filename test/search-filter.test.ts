/**
 * Structured filters: validation against the collection's columns, compilation to LanceDB SQL, and
 * injection strings matched literally on a real LanceDB table.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { compileFilter, idsPredicate, sqlNumberLiteral, type FilterColumn } from '../src/search/filter.js';
import { createCollection, openDatabase, type Collection } from '../src/pipeline/collection.js';
import type { VectorStore } from '../src/index/lancedb.js';
import { isGlimpseError } from '../src/errors/index.js';
import { tempDir } from './helpers/cli.js';

const COLUMNS: FilterColumn[] = [
  { key: 'id', column: 'id', type: 'string' },
  { key: 'url', column: 'url', type: 'string' },
  { key: 'exif.width', column: 'exif_width', type: 'number' },
  { key: 'nsfw', column: 'nsfw', type: 'boolean' },
];

function filterError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isGlimpseError(err, 'GLIMPSE_E_FILTER_INVALID'), String(err));
    assert.equal(err.status, 400);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('compileFilter', () => {
  test('compiles every operator with null-safe comparisons', () => {
    assert.equal(compileFilter({ eq: ['url', 'x'] }, COLUMNS), "(`url` IS NOT NULL AND `url` = 'x')");
    assert.equal(compileFilter({ ne: ['nsfw', true] }, COLUMNS), '(`nsfw` IS NOT NULL AND `nsfw` <> TRUE)');
    assert.equal(
      compileFilter({ range: ['exif.width', { gte: 100, lt: 200.5 }] }, COLUMNS),
      '(`exif_width` IS NOT NULL AND `exif_width` >= 100 AND `exif_width` < 200.5)',
    );
    assert.equal(
      compileFilter({ in: ['url', ['a', 'b']] }, COLUMNS),
      "(`url` IS NOT NULL AND `url` IN ('a', 'b'))",
    );
    assert.equal(
      compileFilter(
        {
          and: [
            { eq: ['url', 'x'] },
            { or: [{ gt: ['exif.width', 1] }, { is_null: 'exif.width' }] },
            { not: { eq: ['id', 'k'] } },
          ],
        },
        COLUMNS,
      ),
      "((`url` IS NOT NULL AND `url` = 'x') AND ((`exif_width` IS NOT NULL AND `exif_width` > 1) OR (`exif_width` IS NULL)) AND (NOT (`id` IS NOT NULL AND `id` = 'k')))",
    );
    assert.equal(compileFilter('{"not_null":"url"}', COLUMNS), '(`url` IS NOT NULL)');
  });

  test('escapes every string: quotes doubled, backslashes and comments inert', () => {
    assert.equal(
      compileFilter({ eq: ['url', "O'Brien"] }, COLUMNS),
      "(`url` IS NOT NULL AND `url` = 'O''Brien')",
    );
    assert.equal(
      compileFilter({ eq: ['url', "x' OR 1=1 --"] }, COLUMNS),
      "(`url` IS NOT NULL AND `url` = 'x'' OR 1=1 --')",
    );
    assert.equal(idsPredicate(["a'b", 'c']), "`id` IN ('a''b', 'c')");
  });

  test('numbers must be finite and print as SQL literals', () => {
    assert.equal(sqlNumberLiteral(1e21), '1e+21');
    assert.equal(sqlNumberLiteral(-0), '0');
    assert.equal(sqlNumberLiteral(1e-7), '1e-7');
    filterError(
      () => compileFilter({ gt: ['exif.width', Number.NaN] }, COLUMNS),
      /finite number \(column exif\.width holds numbers\) at filter\.gt\[1\]/,
    );
    filterError(() => compileFilter({ gt: ['exif.width', Infinity] }, COLUMNS), /finite number/);
  });

  test('unknown columns, wrong value types and bad shapes are coded 400 errors with a path', () => {
    filterError(
      () => compileFilter({ eq: ['nope', 'x'] }, COLUMNS),
      /columns \("id", "url", "exif.width", "nsfw"\) at filter\.eq\[0\] but received "nope"/,
    );
    filterError(
      () => compileFilter({ eq: ['exif.width', '100'] }, COLUMNS),
      /^Expected a finite number \(column exif\.width holds numbers\) at filter\.eq\[1\] but received "100" of type string$/,
    );
    filterError(() => compileFilter({ eq: ['url', 3] }, COLUMNS), /a string \(column url holds strings\)/);
    filterError(() => compileFilter({ in: ['nsfw', [true, 'no']] }, COLUMNS), /filter\.in\[1\]\[1\]/);
    filterError(() => compileFilter({ gt: ['nsfw', true] }, COLUMNS), /holds booleans/);
    filterError(() => compileFilter({ and: [] }, COLUMNS), /non-empty array of filters at filter\.and/);
    filterError(() => compileFilter({ eq: ['url', 'x'], ne: ['url', 'y'] }, COLUMNS), /exactly one operator/);
    filterError(() => compileFilter({ like: ['url', 'x%'] }, COLUMNS), /exactly one operator/);
    filterError(
      () => compileFilter({ range: ['exif.width', { gt: 1, gte: 2 }] }, COLUMNS),
      /at most one lower bound/,
    );
    filterError(() => compileFilter({ range: ['exif.width', {}] }, COLUMNS), /one or two of the bounds/);
    filterError(() => compileFilter('{"eq": [', COLUMNS), /not JSON/);
    filterError(() => compileFilter(['eq'], COLUMNS), /an object with one operator/);
    filterError(() => compileFilter({ eq: ['vector', 'x'] }, COLUMNS), /at filter\.eq\[0\]/);
    let deep: unknown = { eq: ['url', 'x'] };
    for (let i = 0; i < 40; i++) deep = { not: deep };
    filterError(() => compileFilter(deep, COLUMNS), /levels deep/);
  });
});

describe('filters on a real LanceDB collection', () => {
  let dir: string;
  let db: VectorStore;
  let c: Collection;
  const rows = [
    { id: 'obrien', url: "O'Brien", width: 100, tag: 'a', nsfw: false },
    { id: 'inject', url: "x' OR 1=1 --", width: 200, tag: 'b', nsfw: true },
    { id: 'plain', url: 'x', width: 300, tag: 'c', nsfw: false },
    { id: 'slash', url: 'back\\slash', width: null, tag: 'a', nsfw: null },
    { id: 'nourl', url: null, width: 50, tag: null, nsfw: false },
  ];

  before(async () => {
    dir = await tempDir('glimpse-filter-');
    db = await openDatabase(dir);
    c = await createCollection(db, 'f', { fingerprint: null, dimension: 4 });
    const r = await c.upsertVectors(
      rows.map((row, i) => ({
        id: row.id,
        vector: [1, i / 10, 0, 0],
        metadata: { url: row.url, exif: { width: row.width }, tag: row.tag, nsfw: row.nsfw },
      })),
    );
    assert.equal(r.inserted, rows.length);
  });

  after(async () => {
    await c.close();
    db.close();
    await rm(dir, { recursive: true, force: true });
  });

  const ids = async (filter: unknown): Promise<string[]> =>
    (await c.search({ vector: [1, 0, 0, 0], topK: 100, filter })).map((h) => h.id).sort();

  test("O'Brien and x' OR 1=1 -- match literally, never as SQL", async () => {
    assert.deepEqual(await ids({ eq: ['url', "O'Brien"] }), ['obrien']);
    assert.deepEqual(await ids({ eq: ['url', "x' OR 1=1 --"] }), ['inject']);
    assert.deepEqual(await ids({ in: ['url', ["O'Brien", "x' OR 1=1 --"]] }), ['inject', 'obrien']);
    assert.deepEqual(await ids({ eq: ['url', "x' OR '1'='1"] }), []);
    assert.deepEqual(await ids({ eq: ['url', 'back\\slash'] }), ['slash']);
    assert.equal(await c.count({ eq: ['url', "x' OR 1=1 --"] }), 1);
    assert.equal(await c.count({ eq: ['id', "obrien' OR '1'='1"] }), 0);
  });

  test('the example filter of the brief, ranges, in, not (nulls included), nested keys', async () => {
    assert.deepEqual(
      await ids({
        and: [
          { eq: ['url', 'x'] },
          { range: ['exif.width', { gte: 100 }] },
          { in: ['tag', ['a', 'b', 'c']] },
          { not: { eq: ['nsfw', true] } },
        ],
      }),
      ['plain'],
    );
    assert.deepEqual(await ids({ range: ['exif.width', { gt: 50, lte: 200 }] }), ['inject', 'obrien']);
    assert.deepEqual(await ids({ not: { eq: ['tag', 'a'] } }), ['inject', 'nourl', 'plain']);
    assert.deepEqual(await ids({ is_null: 'url' }), ['nourl']);
    assert.deepEqual(await ids({ ne: ['nsfw', true] }), ['nourl', 'obrien', 'plain']);
    assert.deepEqual(await ids({ or: [{ eq: ['tag', 'b'] }, { lt: ['exif.width', 60] }] }), [
      'inject',
      'nourl',
    ]);
  });

  test('filters are validated against the collection: unknown column and wrong type are 400', async () => {
    await assert.rejects(
      () => c.search({ vector: [1, 0, 0, 0], filter: { eq: ['width', 1] } }),
      (err: unknown) => {
        assert.ok(isGlimpseError(err, 'GLIMPSE_E_FILTER_INVALID'));
        assert.match(err.message, /"exif\.width"/);
        return true;
      },
    );
    await assert.rejects(
      () => c.search({ vector: [1, 0, 0, 0], filter: { eq: ['exif.width', '100'] } }),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_FILTER_INVALID') && err.status === 400,
    );
  });

  test('delete by filter uses the same escaping', async () => {
    assert.equal(await c.deleteWhere({ eq: ['url', "x' OR 1=1 --"] }), 1);
    assert.equal(await c.count(), rows.length - 1);
    assert.equal(await c.deleteIds(["O'Brien", "obrien' OR '1'='1"]), 0);
    assert.equal(await c.count(), rows.length - 1);
  });
});

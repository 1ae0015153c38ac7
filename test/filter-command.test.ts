/**
 * `glimpse filter` (library: filterToFolder): copies the hits' images best first, never overwriting and
 * never colliding (suffixes), only real hits when there are fewer than asked, results.jsonl beside them,
 * failed copies recorded.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { insertFiles } from '../src/pipeline/collection-insert.js';
import { filterToFolder, type FilterRecord } from '../src/pipeline/collection-filter.js';
import { isGlimpseError } from '../src/errors/index.js';
import { photosDir, tempDir } from './helpers/cli.js';

let work: string;
let db: string;
let input: string;

const LAYOUT: [string, string][] = [
  ['sub1/a.jpg', '123_456.jpg'],
  ['sub2/a.jpg', '456_123.jpg'],
  ['sub3/A.JPG', '208_495.jpg'],
  ['b.jpg', '416_264.jpg'],
  ['c.jpg', '389_535.jpg'],
];

before(async () => {
  const modelDir = await ensureSynthModel('tiny', 0);
  work = await tempDir('glimpse-filter-cmd-');
  db = join(work, 'db');
  input = join(work, 'photos');
  for (const [rel, src] of LAYOUT) {
    await mkdir(join(input, rel, '..'), { recursive: true });
    await copyFile(join(photosDir, src), join(input, rel));
  }
  const r = await insertFiles(db, 'pics', [input], { model: modelDir, numPreproWorkers: 1 });
  assert.equal(r.inserted, LAYOUT.length);
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function records(out: string): Promise<FilterRecord[]> {
  return (await readFile(join(out, 'results.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as FilterRecord);
}

describe('filterToFolder', () => {
  test('fewer results than asked: exactly the hits, no name collision, nothing overwritten, the right bytes', async () => {
    const out = join(work, 'out-all');
    await mkdir(out);
    await writeFile(join(out, 'b.jpg'), 'a file of the user');
    const r = await filterToFolder(db, 'pics', { query: 'a photo', numResults: 100, out });
    assert.deepEqual([r.hits, r.copied, r.failed], [5, 5, 0]);
    // Three images named a.jpg / A.JPG (which one gets the plain name depends on the ranking).
    const names = (await readdir(out)).map((n) => n.toLowerCase()).sort();
    assert.deepEqual(names, ['a.jpg', 'a_1.jpg', 'a_2.jpg', 'b.jpg', 'b_1.jpg', 'c.jpg', 'results.jsonl']);
    assert.equal(await readFile(join(out, 'b.jpg'), 'utf8'), 'a file of the user');
    const recs = await records(out);
    assert.equal(recs.length, 5);
    assert.deepEqual(
      recs.map((x) => x.rank),
      [1, 2, 3, 4, 5],
    );
    for (let i = 1; i < recs.length; i++) assert.ok(recs[i - 1]!.score >= recs[i]!.score);
    // Every copy is byte for byte the image of its hit.
    for (const rec of recs) {
      assert.ok(rec.file !== null);
      assert.deepEqual(await readFile(join(out, rec.file)), await readFile(rec.image_path!));
      assert.equal(rec.image_path, join(input, rec.id));
    }
    assert.deepEqual(recs.map((x) => x.id).sort(), LAYOUT.map(([rel]) => rel).sort());
  });

  test('num-results and threshold keep the best hits only', async () => {
    const top2 = await filterToFolder(db, 'pics', {
      query: 'a photo',
      numResults: 2,
      out: join(work, 'top2'),
    });
    assert.equal(top2.copied, 2);
    const all = await records(join(work, 'out-all'));
    assert.deepEqual(
      (await records(join(work, 'top2'))).map((x) => x.id),
      all.slice(0, 2).map((x) => x.id),
    );
    const close = await filterToFolder(db, 'pics', {
      image: join(input, 'c.jpg'),
      threshold: 0.9999,
      out: join(work, 'close'),
    });
    assert.equal(close.hits, 1);
    assert.deepEqual((await readdir(join(work, 'close'))).sort(), ['c.jpg', 'results.jsonl']);
    const none = await filterToFolder(db, 'pics', {
      query: 'a photo',
      threshold: 1.5,
      out: join(work, 'none'),
    });
    assert.equal(none.hits, 0);
    assert.equal(await readFile(join(work, 'none/results.jsonl'), 'utf8'), '');
  });

  test('a hit whose image is gone is recorded with its code; the others are copied', async () => {
    await rm(join(input, 'b.jpg'));
    const out = join(work, 'gone');
    const r = await filterToFolder(db, 'pics', { query: 'a photo', out });
    assert.deepEqual([r.hits, r.copied, r.failed], [5, 4, 1]);
    const failed = (await records(out)).filter((x) => x.error !== undefined);
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.id, 'b.jpg');
    assert.equal(failed[0]!.error!.code, 'GLIMPSE_E_FILTER_COPY_FAILED');
    assert.equal(failed[0]!.file, null);
    assert.ok(!(await readdir(out)).includes('b.jpg'));
    await assert.rejects(
      () => filterToFolder(db, 'pics', { query: 'x', image: 'y.jpg', out }),
      (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_SEARCH_QUERY_INVALID'),
    );
  });
});

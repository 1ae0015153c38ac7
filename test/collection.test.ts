/**
 * Collections end to end on the tiny synthesized model and real photos: create → insert (through the
 * embedding pipeline) → search by text, image and vector with filters → upsert → delete → stats; model
 * binding (a second model is refused), metadata typing, failures recorded and counted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel, type ClipModel } from '../src/pipeline/model.js';
import {
  collectionStats,
  createCollection,
  deleteCollection,
  listCollections,
  openCollection,
  openDatabase,
} from '../src/pipeline/collection.js';
import { insertFiles } from '../src/pipeline/collection-insert.js';
import { isGlimpseError, type ErrorCode } from '../src/errors/index.js';
import { photosDir, tempDir } from './helpers/cli.js';

const PHOTOS = ['123_456.jpg', '456_123.jpg', '208_495.jpg', '416_264.jpg', '389_535.jpg', '321_421.jpg'];

let work: string;
let db: string;
let input: string;
let modelDir: string;
let otherModelDir: string;
let model: ClipModel;

function coded(code: ErrorCode, status?: number): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isGlimpseError(err, code), `expected ${code} but got ${String(err)}`);
    if (status !== undefined) assert.equal(err.status, status);
    return true;
  };
}

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  otherModelDir = await ensureSynthModel('tiny', 1);
  model = await loadModel(modelDir, { decodeWorkers: 1 });
  work = await tempDir('glimpse-collection-');
  db = join(work, 'db');
  input = join(work, 'photos');
  await mkdir(join(input, 'sub'), { recursive: true });
  for (const [i, name] of PHOTOS.entries()) {
    const rel = i < 4 ? name : `sub/${name}`;
    await copyFile(join(photosDir, name), join(input, rel));
    const stem = rel.replace(/\.jpg$/, '');
    await writeFile(
      join(input, `${stem}.json`),
      JSON.stringify({
        key: `k${i}`,
        url: i === 0 ? "O'Brien" : i === 1 ? "x' OR 1=1 --" : `https://example.com/${i}`,
        exif: { width: 100 * (i + 1) },
        tag: i % 2 === 0 ? 'even' : 'odd',
        id: `sidecar-${i}`,
      }),
    );
    if (i < 3) await writeFile(join(input, `${stem}.txt`), `caption ${i}`);
  }
  await writeFile(join(input, 'broken.jpg'), new Uint8Array([0xff, 0xd8, 0xff, 0x00, 1, 2, 3]));
});

after(async () => {
  await model?.close();
  await rm(work, { recursive: true, force: true });
});

describe('collections', () => {
  test('create, list, stats; names, duplicates and missing collections are coded errors', async () => {
    const c = await createCollection(db, 'photos', { model: modelDir });
    assert.equal(c.dimension, 64);
    assert.equal(c.fingerprint?.hash, model.fingerprint.hash);
    assert.deepEqual(
      c.columns.map((k) => k.key),
      ['id', 'image_path', 'caption'],
    );
    await c.close();
    await assert.rejects(
      () => createCollection(db, 'photos', { model: modelDir }),
      coded('GLIMPSE_E_COLLECTION_EXISTS', 409),
    );
    await assert.rejects(
      () => createCollection(db, '../escape', { model: modelDir }),
      coded('GLIMPSE_E_COLLECTION_NAME_INVALID', 400),
    );
    await assert.rejects(() => openCollection(db, 'missing'), coded('GLIMPSE_E_COLLECTION_NOT_FOUND', 404));
    await assert.rejects(() => collectionStats(db, 'missing'), coded('GLIMPSE_E_COLLECTION_NOT_FOUND', 404));
    const list = await listCollections(db);
    assert.deepEqual(list, [
      {
        name: 'photos',
        rows: 0,
        dimension: 64,
        model: model.fingerprint.hash.slice(0, 12),
        modelId: model.fingerprint.id,
      },
    ]);
  });

  test('insert embeds through the pipeline: path ids, captions, flattened sidecars, failures recorded', async () => {
    const events: string[] = [];
    const r = await insertFiles(db, 'photos', [input], {
      batchSize: 4,
      numPreproWorkers: 1,
      onProgress: (e) => events.push(e.type),
    });
    assert.equal(r.items, 7);
    assert.equal(r.inserted, 6);
    assert.equal(r.updated, 0);
    assert.equal(r.failed, 1);
    assert.equal(r.failures[0]!.key, 'broken.jpg');
    assert.match(r.failures[0]!.code, /^GLIMPSE_E_IMAGE_/);
    assert.equal(events[0], 'start');
    assert.equal(events.at(-1), 'done');

    const s = await collectionStats(db, 'photos');
    assert.equal(s.rows, 6);
    assert.deepEqual(
      s.columns.map((c) => `${c.key}:${c.type}`),
      [
        'id:string',
        'image_path:string',
        'caption:string',
        'key:string',
        'url:string',
        'exif.width:number',
        'tag:string',
        'meta.id:string',
      ],
    );
    assert.equal(s.index, null);

    const c = await openCollection(db, 'photos');
    try {
      // Image search: the photo itself comes first with similarity 1.
      const hits = await c.search({ image: join(photosDir, '389_535.jpg'), topK: 3 });
      assert.equal(hits[0]!.id, 'sub/389_535.jpg');
      assert.ok(hits[0]!.score > 0.999, String(hits[0]!.score));
      assert.ok(hits[1]!.score <= hits[0]!.score);
      assert.equal(hits[0]!.metadata['image_path'], join(input, 'sub/389_535.jpg'));
      assert.equal(hits[0]!.metadata['exif.width'], 500);
      assert.equal(hits[0]!.metadata['meta.id'], 'sidecar-4');
      assert.equal(hits[0]!.metadata['caption'], null);

      // Vector search with the model's own embedding gives the same answer.
      const v = (await model.embedImages([join(photosDir, '123_456.jpg')])).data;
      const byVector = await c.search({ vector: v, topK: 1 });
      assert.equal(byVector[0]!.id, '123_456.jpg');
      assert.equal(byVector[0]!.metadata['caption'], 'caption 0');
      assert.equal(byVector[0]!.metadata['url'], "O'Brien");

      // Text search with a filter: every hit satisfies it, scores are cosine similarities best first.
      const text = await c.search({
        text: 'a photo of a cat',
        topK: 10,
        filter: { and: [{ eq: ['tag', 'even'] }, { range: ['exif.width', { gte: 200 }] }] },
      });
      assert.deepEqual(text.map((h) => h.id).sort(), ['208_495.jpg', 'sub/389_535.jpg']);
      const t = (await model.embedTexts(['a photo of a cat'])).data;
      for (const h of text) {
        const stored = (await model.embedImages([h.metadata['image_path'] as string])).data;
        let dot = 0;
        for (let i = 0; i < 64; i++) dot += t[i]! * stored[i]!;
        assert.ok(Math.abs(dot - h.score) < 1e-4, `${dot} vs ${h.score}`);
      }
      assert.ok(text[0]!.score >= text[1]!.score);

      // The injection strings are plain values here too.
      const obrien = await c.search({ vector: v, topK: 10, filter: { eq: ['url', "O'Brien"] } });
      assert.deepEqual(
        obrien.map((h) => h.id),
        ['123_456.jpg'],
      );
      const inject = await c.search({ vector: v, topK: 10, filter: { eq: ['url', "x' OR 1=1 --"] } });
      assert.deepEqual(
        inject.map((h) => h.id),
        ['456_123.jpg'],
      );

      // minScore keeps only close hits.
      const close = await c.search({ vector: v, topK: 10, minScore: 0.999 });
      assert.deepEqual(
        close.map((h) => h.id),
        ['123_456.jpg'],
      );

      await assert.rejects(() => c.search({ topK: 3 }), coded('GLIMPSE_E_SEARCH_QUERY_INVALID', 400));
      await assert.rejects(
        () => c.search({ vector: [1, 2], topK: 3 }),
        coded('GLIMPSE_E_SEARCH_QUERY_INVALID', 400),
      );
      await assert.rejects(
        () => c.search({ vector: new Float32Array(64), topK: 3 }),
        coded('GLIMPSE_E_SEARCH_QUERY_INVALID'),
      );
    } finally {
      await c.close();
    }
  });

  test('inserting the same files again replaces them (upsert by id); --id-col takes ids from metadata', async () => {
    const again = await insertFiles(db, 'photos', [join(input, '123_456.jpg'), join(input, '456_123.jpg')], {
      numPreproWorkers: 1,
    });
    assert.equal(again.failed, 0);
    // Single files get the path as given as id: new ids here.
    assert.equal(again.inserted, 2);
    const folder = await insertFiles(db, 'photos', [input], { numPreproWorkers: 1 });
    assert.equal(folder.inserted, 0);
    assert.equal(folder.updated, 6);
    assert.equal(await (await openCollection(db, 'photos')).count(), 8);

    const byKey = await insertFiles(db, 'by-key', [input], {
      model: modelDir,
      idColumn: 'key',
      numPreproWorkers: 1,
    });
    assert.equal(byKey.created, true);
    assert.equal(byKey.inserted, 6);
    const c = await openCollection(db, 'by-key');
    const ids = (await c.search({ vector: new Float32Array(64).fill(1), topK: 100 })).map((h) => h.id).sort();
    await c.close();
    assert.deepEqual(ids, ['k0', 'k1', 'k2', 'k3', 'k4', 'k5']);
    const noKey = await insertFiles(db, 'by-key', [input], { idColumn: 'missing', numPreproWorkers: 1 });
    assert.equal(noKey.inserted + noKey.updated, 0);
    const idFailures = noKey.failures.filter((f) => f.code === 'GLIMPSE_E_COLLECTION_ITEM_INVALID');
    assert.equal(idFailures.length, 6);
    assert.match(idFailures[0]!.message, /metadata key missing \(the id column\)/);
  });

  test('a collection is bound to one model: vectors, inserts and queries of another are refused', async () => {
    const other = await loadModel(otherModelDir, { decodeWorkers: 1 });
    try {
      assert.notEqual(other.fingerprint.hash, model.fingerprint.hash);
      await assert.rejects(
        () => insertFiles(db, 'photos', [input], { model: otherModelDir, numPreproWorkers: 1 }),
        coded('GLIMPSE_E_COLLECTION_MODEL_MISMATCH', 409),
      );
      const c = await openCollection(db, 'photos');
      try {
        const v = Array.from({ length: 64 }, (_, i) => Math.sin(i));
        await assert.rejects(
          () => c.upsertVectors([{ id: 'x', vector: v }], { fingerprint: other.fingerprint }),
          coded('GLIMPSE_E_COLLECTION_MODEL_MISMATCH', 409),
        );
        await assert.rejects(
          () => c.upsertVectors([{ id: 'x', vector: v }]),
          coded('GLIMPSE_E_COLLECTION_MODEL_MISMATCH'),
        );
        await assert.rejects(
          () => c.search({ text: 'a dog', model: other }),
          coded('GLIMPSE_E_COLLECTION_MODEL_MISMATCH'),
        );
        assert.equal(await c.count(), 8);
        // The same model's vectors go in; the caller may also vouch for unknown vectors.
        const ok = await c.upsertVectors([{ id: 'x', vector: v, metadata: { tag: 'manual' } }], {
          fingerprint: model.fingerprint,
        });
        assert.equal(ok.inserted, 1);
        const vouched = await c.upsertVectors([{ id: 'y', vector: v }], { allowUnknownModel: true });
        assert.equal(vouched.inserted, 1);
      } finally {
        await c.close();
      }
    } finally {
      await other.close();
    }
  });

  test('metadata values must fit their column type; bad items are recorded, the rest stored', async () => {
    const store = await openDatabase(db);
    const c = await createCollection(store, 'typed', { fingerprint: null, dimension: 3 });
    const r = await c.upsertVectors([
      {
        id: 'a',
        vector: [1, 0, 0],
        metadata: { n: 1, flag: true, s: 'x', nested: { deep: { k: 2 } }, list: [1, 2] },
      },
      { id: 'b', vector: [0, 1, 0], metadata: { n: 'many', flag: false } },
      { id: 'c', vector: [0, 0, 1], metadata: { n: 2.5, flag: 'yes' } },
      { id: 'd', vector: [0, 0], metadata: {} },
      { id: 'e', vector: [0, 0, 0] },
      { id: 'f', vector: [1, 1, 0], metadata: { s: 5 } },
    ]);
    assert.equal(r.inserted, 2);
    assert.deepEqual(
      r.failures.map((f) => [f.key, f.code]),
      [
        ['d', 'GLIMPSE_E_COLLECTION_DIM_MISMATCH'],
        ['e', 'GLIMPSE_E_COLLECTION_ITEM_INVALID'],
        ['b', 'GLIMPSE_E_COLLECTION_ITEM_INVALID'],
        ['c', 'GLIMPSE_E_COLLECTION_ITEM_INVALID'],
      ],
    );
    assert.match(
      r.failures[2]!.message,
      /^Expected a number for metadata column n but received "many" of type string/,
    );
    const hits = await c.search({ vector: [1, 0, 0], topK: 5 });
    assert.deepEqual(hits[0]!.metadata, {
      image_path: null,
      caption: null,
      n: 1,
      flag: true,
      s: 'x',
      'nested.deep.k': 2,
      list: '[1,2]',
    });
    assert.equal(hits.find((h) => h.id === 'f')!.metadata['s'], '5');
    // Upsert replaces the row and its metadata; append adds.
    const up = await c.upsertVectors([{ id: 'a', vector: [1, 0, 0], metadata: { n: 7 } }]);
    assert.deepEqual([up.inserted, up.updated], [0, 1]);
    const replaced = (await c.search({ vector: [1, 0, 0], topK: 1 }))[0]!.metadata;
    assert.deepEqual(
      [replaced['n'], replaced['flag'], replaced['s'], replaced['list']],
      [7, null, null, null],
    );
    await c.close();
    store.close();
  });

  test("an open collection sees other handles' writes with readConsistencySeconds 0, not without", async () => {
    const writer = await openDatabase(db);
    const fresh = await openDatabase(db, { readConsistencySeconds: 0 });
    const stale = await openDatabase(db);
    const w = await createCollection(writer, 'shared', { fingerprint: null, dimension: 2 });
    const a = await openCollection(fresh, 'shared');
    const b = await openCollection(stale, 'shared');
    await w.upsertVectors([{ id: 'p', vector: [1, 0] }]);
    assert.equal(await a.count(), 1);
    assert.equal(await b.count(), 0);
    await assert.rejects(
      () => openDatabase(db, { readConsistencySeconds: -1 }),
      coded('GLIMPSE_E_ARG_INVALID'),
    );
    for (const c of [w, a, b]) await c.close();
    for (const s of [writer, fresh, stale]) s.close();
    await deleteCollection(db, 'shared');
  });

  test('delete by ids and by filter, then stats; deleting a collection', async () => {
    const c = await openCollection(db, 'photos');
    assert.equal(await c.deleteIds(['123_456.jpg', 'nope']), 1);
    // 10 rows: 6 from the folder, 2 single files (path ids), x and y; odd tags: 3 in the folder + 1 file.
    assert.equal(await c.deleteWhere({ eq: ['tag', 'odd'] }), 4);
    assert.equal(await c.count(), 5);
    assert.equal(await c.count({ eq: ['tag', 'even'] }), 3);
    await c.close();
    assert.equal((await collectionStats(db, 'photos')).rows, 5);
    await deleteCollection(db, 'by-key');
    assert.deepEqual(
      (await listCollections(db)).map((s) => s.name),
      ['photos', 'typed'],
    );
    await assert.rejects(() => deleteCollection(db, 'by-key'), coded('GLIMPSE_E_COLLECTION_NOT_FOUND', 404));
  });
});

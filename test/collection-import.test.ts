/**
 * import: clip-retrieval layout folders (made by runEmbedJob with the tiny model) bulk-loaded into
 * collections without re-embedding; row ids across sorted files; the model from glimpse.json, --model or
 * --allow-unknown-model; mismatches and broken layouts refused with coded errors.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { runEmbedJob } from '../src/pipeline/embed.js';
import { encodeNpyHeader, float16ToFloat32, float32ToFloat16, parseNpyHeader } from '../src/formats/npy.js';
import { readParquetColumns, rangeReaderFromBytes } from '../src/formats/parquet.js';
import { collectionStats, openCollection } from '../src/pipeline/collection.js';
import { importEmbeddings } from '../src/pipeline/collection-import.js';
import { isGlimpseError, type ErrorCode } from '../src/errors/index.js';
import { photosDir, tempDir } from './helpers/cli.js';

const PHOTOS = ['123_456.jpg', '456_123.jpg', '208_495.jpg', '416_264.jpg', '389_535.jpg', '321_421.jpg'];

let work: string;
let db: string;
let emb: string;
let modelDir: string;
let otherModelDir: string;

function coded(code: ErrorCode): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isGlimpseError(err, code), `expected ${code} but got ${String(err)}`);
    return true;
  };
}

async function npyRows(path: string): Promise<Float32Array[]> {
  const bytes = new Uint8Array(await readFile(path));
  const h = parseNpyHeader(bytes, path);
  const all = float16ToFloat32(new Uint16Array(bytes.slice(h.headerLength).buffer));
  const d = h.shape[1]!;
  return Array.from({ length: h.shape[0]! }, (_, i) => all.slice(i * d, (i + 1) * d));
}

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  otherModelDir = await ensureSynthModel('tiny', 1);
  work = await tempDir('glimpse-import-');
  db = join(work, 'db');
  const input = join(work, 'photos');
  await mkdir(input);
  for (const [i, name] of PHOTOS.entries()) {
    await copyFile(join(photosDir, name), join(input, name));
    await writeFile(
      join(input, name.replace('.jpg', '.json')),
      JSON.stringify({ url: `https://x/${i}`, size: { w: i } }),
    );
  }
  emb = join(work, 'emb');
  const r = await runEmbedJob({
    input,
    output: emb,
    model: modelDir,
    outputPartitionCount: 2,
    numPreproWorkers: 1,
  });
  assert.equal(r.embedded, 6);
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('import', () => {
  test('a clip-retrieval folder: row ids across sorted files, metadata columns, the model from glimpse.json', async () => {
    assert.deepEqual(await readdir(join(emb, 'img_emb')), ['img_emb_0.npy', 'img_emb_1.npy']);
    const events: string[] = [];
    const r = await importEmbeddings(db, 'imp', emb, {
      batchRows: 2,
      onProgress: (e) => events.push(e.type),
    });
    assert.equal(r.created, true);
    assert.deepEqual([r.files, r.rows, r.inserted, r.updated, r.failed], [2, 6, 6, 0, 0]);
    assert.equal(events.at(-1), 'done');
    const s = await collectionStats(db, 'imp');
    assert.equal(s.rows, 6);
    assert.equal(s.dimension, 64);
    assert.equal(
      s.fingerprint?.hash,
      JSON.parse(await readFile(join(emb, 'glimpse.json'), 'utf8')).model.hash,
    );
    assert.deepEqual(
      s.columns.map((c) => `${c.key}:${c.type}`),
      ['id:string', 'image_path:string', 'caption:string', 'url:string', 'size.w:number'],
    );

    // Row 4 is row 1 of the second file: searching its vector finds id "4" and that row's metadata.
    const second = await npyRows(join(emb, 'img_emb/img_emb_1.npy'));
    const meta = await readParquetColumns(
      rangeReaderFromBytes(new Uint8Array(await readFile(join(emb, 'metadata/metadata_1.parquet')))),
    );
    const c = await openCollection(db, 'imp');
    try {
      const hits = await c.search({ vector: second[1]!, topK: 1 });
      assert.equal(hits[0]!.id, '4');
      assert.ok(hits[0]!.score > 0.9999);
      assert.equal(hits[0]!.metadata['image_path'], meta.columns['image_path']![1]);
      assert.equal(hits[0]!.metadata['url'], meta.columns['url']![1]);
      // The same vectors can be searched by the model's text tower: the collection knows its model.
      const text = await c.search({ text: 'a photo', topK: 6, model: modelDir });
      assert.equal(text.length, 6);
    } finally {
      await c.close();
    }
    // Importing again replaces rows by id.
    const again = await importEmbeddings(db, 'imp', emb);
    assert.deepEqual([again.inserted, again.updated], [0, 6]);
    // Ids from a metadata column.
    const byPath = await importEmbeddings(db, 'by-path', emb, { idColumn: 'image_path' });
    assert.equal(byPath.inserted, 6);
    const c2 = await openCollection(db, 'by-path');
    const ids = (await c2.search({ vector: second[1]!, topK: 1 })).map((h) => h.id);
    await c2.close();
    assert.deepEqual(ids, [meta.columns['image_path']![1]]);
  });

  test('without glimpse.json the model must be named or waived; another model is refused', async () => {
    const bare = join(work, 'bare');
    await cp(emb, bare, { recursive: true });
    await rm(join(bare, 'glimpse.json'));
    await assert.rejects(() => importEmbeddings(db, 'bare', bare), coded('GLIMPSE_E_IMPORT_MODEL_UNKNOWN'));
    const named = await importEmbeddings(db, 'bare', bare, { model: modelDir });
    assert.equal(named.inserted, 6);
    assert.equal((await collectionStats(db, 'bare')).fingerprint?.id, modelDir);
    const unknown = await importEmbeddings(db, 'unknown', bare, { allowUnknownModel: true });
    assert.equal(unknown.model, null);
    assert.equal((await collectionStats(db, 'unknown')).fingerprint, null);
    // An unknown-model collection needs a model for text queries.
    const c = await openCollection(db, 'unknown');
    await assert.rejects(() => c.search({ text: 'x' }), coded('GLIMPSE_E_SEARCH_QUERY_INVALID'));
    await c.close();

    await assert.rejects(
      () => importEmbeddings(db, 'other', emb, { model: otherModelDir }),
      coded('GLIMPSE_E_COLLECTION_MODEL_MISMATCH'),
    );
    await assert.rejects(
      () => importEmbeddings(db, 'bare', bare, { model: otherModelDir }),
      coded('GLIMPSE_E_COLLECTION_MODEL_MISMATCH'),
    );
    assert.equal((await collectionStats(db, 'bare')).rows, 6);
  });

  test('zero and NaN rows are recorded as failed items, the other rows imported', async () => {
    const bad = join(work, 'bad-rows');
    await mkdir(join(bad, 'img_emb'), { recursive: true });
    const rows = new Float32Array(4 * 64).fill(0.125);
    rows.fill(0, 64, 128); // row 1: zero
    rows[2 * 64 + 5] = Number.NaN; // row 2: NaN
    await writeFile(
      join(bad, 'img_emb/img_emb_0.npy'),
      Buffer.concat([encodeNpyHeader('float16', [4, 64]), new Uint8Array(float32ToFloat16(rows).buffer)]),
    );
    const r = await importEmbeddings(db, 'bad-rows', bad, { allowUnknownModel: true });
    assert.deepEqual([r.rows, r.inserted, r.failed], [4, 2, 2]);
    assert.deepEqual(
      r.failures.map((f) => [f.key, f.code]),
      [
        ['1', 'GLIMPSE_E_COLLECTION_ITEM_INVALID'],
        ['2', 'GLIMPSE_E_COLLECTION_ITEM_INVALID'],
      ],
    );
    const c = await openCollection(db, 'bad-rows');
    const hits = await c.search({ vector: new Float32Array(64).fill(1), topK: 10 });
    await c.close();
    assert.deepEqual(hits.map((h) => h.id).sort(), ['0', '3']);
    assert.ok(Math.abs(hits[0]!.score - 1) < 1e-6);
  });

  test('broken layouts are refused before anything is written', async () => {
    const broken = join(work, 'broken');
    await cp(emb, broken, { recursive: true });
    await rm(join(broken, 'metadata/metadata_1.parquet'));
    await assert.rejects(
      () => importEmbeddings(db, 'broken', broken),
      (err: unknown) => {
        assert.ok(isGlimpseError(err, 'GLIMPSE_E_IMPORT_LAYOUT_INVALID'));
        assert.match(
          err.message,
          /as many metadata\/\*\.parquet files as img_emb\/\*\.npy files .* found 1 and 2/,
        );
        return true;
      },
    );
    await assert.rejects(
      () => importEmbeddings(db, 'broken', join(work, 'photos')),
      coded('GLIMPSE_E_IMPORT_LAYOUT_INVALID'),
    );
    await assert.rejects(
      () => importEmbeddings(db, 'broken', emb, { idColumn: 'nope' }),
      coded('GLIMPSE_E_IMPORT_LAYOUT_INVALID'),
    );
    await assert.rejects(() => openCollection(db, 'broken'), coded('GLIMPSE_E_COLLECTION_NOT_FOUND'));
  });
});

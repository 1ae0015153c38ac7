/**
 * End-to-end: `glimpse embed` on real photos and edge images with the tiny synthesized model, outputs
 * read back with independent readers (numpy under Debian's python, DuckDB for parquet).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel, type ClipModel } from '../src/pipeline/model.js';
import { runEmbedJob } from '../src/pipeline/embed.js';
import type { ProgressEvent } from '../src/core/progress.js';
import { collect, edgeDir, photosDir, runCli, startCli, tempDir } from './helpers/cli.js';
import { readNpy, numpyInfo, duckRows, cosine, CLIP_RETRIEVAL_IMAGES } from './helpers/outputs.js';

const BROKEN_EDGE = ['corrupt-header.jpg', 'truncated.jpg', 'truncated.png'];

let modelDir: string;
let work: string;
let model: ClipModel;

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  work = await tempDir('glimpse-embed-');
  model = await loadModel(modelDir, { decodeWorkers: 1 });
});

after(async () => {
  await model?.close();
  await rm(work, { recursive: true, force: true });
});

describe('glimpse embed (CLI, tiny model)', () => {
  test('the 7 clip-retrieval test images with --write-batch-size 4 give partitions of 4 and 3 rows', async () => {
    const input = join(work, 'cr-images');
    await mkdir(input);
    for (const f of CLIP_RETRIEVAL_IMAGES) await copyFile(join(photosDir, f), join(input, f));
    const out = join(work, 'cr-out');
    const r = await runCli([
      'embed',
      input,
      out,
      '--model',
      modelDir,
      '--write-batch-size',
      '4',
      '--batch-size',
      '3',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await readdir(join(out, 'img_emb'))).sort(), ['img_emb_0.npy', 'img_emb_1.npy']);
    assert.deepEqual((await readdir(join(out, 'metadata'))).sort(), [
      'metadata_0.parquet',
      'metadata_1.parquet',
    ]);
    // no captions in the folder: text is off by default, so no text_emb/
    assert.deepEqual((await readdir(out)).sort(), ['glimpse.json', 'img_emb', 'metadata', 'stats']);

    const np0 = await numpyInfo(join(out, 'img_emb', 'img_emb_0.npy'));
    const np1 = await numpyInfo(join(out, 'img_emb', 'img_emb_1.npy'));
    assert.deepEqual(np0.shape, [4, model.dimension]);
    assert.deepEqual(np1.shape, [3, model.dimension]);
    assert.equal(np0.dtype, 'float16');
    for (const n of [np0, np1]) {
      assert.ok(
        Math.abs(n.minNorm - 1) < 2e-3 && Math.abs(n.maxNorm - 1) < 2e-3,
        `rows are L2-normalized: ${JSON.stringify(n)}`,
      );
    }

    const m0 = await duckRows(join(out, 'metadata', 'metadata_0.parquet'));
    const m1 = await duckRows(join(out, 'metadata', 'metadata_1.parquet'));
    assert.deepEqual(m0.columns, ['image_path']);
    assert.deepEqual(
      [...m0.rows, ...m1.rows].map((r) => r['image_path']),
      CLIP_RETRIEVAL_IMAGES.map((f) => join(input, f)),
    );

    // The CLI's rows equal the library's embedImages on the same files (float16 rounding aside).
    const lib = await model.embedImages(CLIP_RETRIEVAL_IMAGES.map((f) => join(input, f)));
    const a0 = await readNpy(join(out, 'img_emb', 'img_emb_0.npy'));
    const a1 = await readNpy(join(out, 'img_emb', 'img_emb_1.npy'));
    const all = new Float32Array([...a0.data, ...a1.data]);
    const d = model.dimension;
    for (let i = 0; i < CLIP_RETRIEVAL_IMAGES.length; i++) {
      const c = cosine(all.subarray(i * d, (i + 1) * d), lib.data.subarray(i * d, (i + 1) * d));
      assert.ok(c > 0.9999, `row ${i} cosine ${c}`);
    }
    // Different images give different embeddings.
    assert.ok(
      cosine(all.subarray(0, d), all.subarray(d, 2 * d)) < 0.9999,
      'different images give different rows',
    );

    const info = JSON.parse(await readFile(join(out, 'glimpse.json'), 'utf8')) as {
      model: { hash: string; dimension: number };
      counts: { samples: number; embedded: number; failed: number; partitions: number };
    };
    assert.equal(info.model.hash, model.fingerprint.hash);
    assert.deepEqual(info.counts, {
      samples: 7,
      embedded: 7,
      failed: 0,
      partitions: 2,
      images_without_caption: 0,
    });
    const stats0 = JSON.parse(await readFile(join(out, 'stats', 'stats_0.json'), 'utf8')) as {
      sample_count: number;
    };
    assert.equal(stats0.sample_count, 4);
  });

  test('good photos mixed with every edge image give exactly the good rows plus recorded failures', async () => {
    const input = join(work, 'mixed');
    await mkdir(join(input, 'sub'), { recursive: true });
    const photos = ['flowers.jpeg', '4.webp', 'Landscape_5.jpg', 'Portrait_2.jpg', 'low-contrast.jpg'];
    for (const f of photos) await copyFile(join(photosDir, f), join(input, f));
    const edges = (await readdir(edgeDir)).filter((f) => !f.startsWith('.'));
    for (const f of edges) await copyFile(join(edgeDir, f), join(input, 'sub', f));
    await writeFile(join(input, 'not-an-image.jpg'), 'this is text, not a JPEG\n');
    await writeFile(join(input, 'empty.PNG'), '');
    await writeFile(join(input, 'README.md'), 'ignored: not an image extension');
    const out = join(work, 'mixed-out');
    const r = await runCli(['embed', input, out, '--model', modelDir, '--batch-size', '4']);
    assert.equal(r.code, 0, r.stderr);

    const expectFailed = [
      ...BROKEN_EDGE.map((f) => join(input, 'sub', f)),
      join(input, 'not-an-image.jpg'),
      join(input, 'empty.PNG'),
    ].sort();
    const expectGood = [
      ...photos.map((f) => join(input, f)),
      ...edges.filter((f) => !BROKEN_EDGE.includes(f)).map((f) => join(input, 'sub', f)),
    ].sort();

    const failures = (await readFile(join(out, 'failures', 'failures_0.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; code: string; message: string });
    assert.deepEqual(failures.map((f) => f.key).sort(), expectFailed);
    for (const f of failures) {
      assert.match(f.code, /^GLIMPSE_E_IMAGE_/);
      assert.ok(f.message.length > 10, `failure message too short: ${f.message}`);
    }
    const meta = await duckRows(join(out, 'metadata', 'metadata_0.parquet'));
    assert.deepEqual(
      meta.rows.map((r) => r['image_path']),
      expectGood,
    );
    const npy = await numpyInfo(join(out, 'img_emb', 'img_emb_0.npy'));
    assert.deepEqual(npy.shape, [expectGood.length, model.dimension]);
    const stats = JSON.parse(await readFile(join(out, 'stats', 'stats_0.json'), 'utf8')) as {
      sample_count: number;
      failed_count: number;
    };
    assert.equal(stats.sample_count, expectGood.length);
    assert.equal(stats.failed_count, expectFailed.length);
  });

  test('captions and metadata line up with their images; images without captions are left out when text is on', async () => {
    const input = join(work, 'captions');
    await mkdir(join(input, 'b'), { recursive: true });
    await copyFile(join(photosDir, '123_456.jpg'), join(input, 'a.jpg'));
    await writeFile(join(input, 'a.txt'), 'a photo of a dog');
    await writeFile(
      join(input, 'a.json'),
      JSON.stringify({ url: 'http://x/a', exif: { w: 3, model: 'X' }, caption: 'dropped', tags: ['t1'] }),
    );
    await copyFile(join(photosDir, '208_495.jpg'), join(input, 'b', 'B.JPG'));
    await writeFile(join(input, 'b', 'B.txt'), 'A Cat &amp; a hat');
    await writeFile(join(input, 'b', 'B.json'), JSON.stringify({ url: 'http://x/b', score: 0.5 }));
    await copyFile(join(photosDir, '321_421.jpg'), join(input, 'c.jpg')); // no caption
    await copyFile(join(photosDir, '389_535.jpg'), join(input, 'd.jpg'));
    await writeFile(join(input, 'd.txt'), 'third');
    await writeFile(join(input, 'd.json'), '{not json');
    const out = join(work, 'captions-out');
    const r = await runCli(['embed', input, out, '--model', modelDir]);
    assert.equal(r.code, 0, r.stderr);
    const meta = await duckRows(join(out, 'metadata', 'metadata_0.parquet'));
    assert.deepEqual(meta.columns, ['image_path', 'caption', 'url', 'exif.w', 'exif.model', 'tags', 'score']);
    assert.deepEqual(
      meta.rows.map((r) => [r['image_path'], r['caption'], r['url'], r['exif.w'], r['score']]),
      [
        [join(input, 'a.jpg'), 'a photo of a dog', 'http://x/a', '3', null], // DuckDB's JSON rows print BIGINT as text
        [join(input, 'b', 'B.JPG'), 'A Cat &amp; a hat', 'http://x/b', null, 0.5],
      ],
    );
    assert.deepEqual(meta.types, ['VARCHAR', 'VARCHAR', 'VARCHAR', 'BIGINT', 'VARCHAR', 'VARCHAR', 'DOUBLE']);
    const failures = (await readFile(join(out, 'failures', 'failures_0.jsonl'), 'utf8')).trim().split('\n');
    assert.equal(failures.length, 1);
    assert.match(failures[0]!, /GLIMPSE_E_SOURCE_SIDECAR_INVALID/);
    const text = await readNpy(join(out, 'text_emb', 'text_emb_0.npy'));
    const img = await readNpy(join(out, 'img_emb', 'img_emb_0.npy'));
    assert.deepEqual(text.shape, [2, model.dimension]);
    assert.deepEqual(img.shape, [2, model.dimension]);
    const lib = await model.embedTexts(['a photo of a dog', 'A Cat &amp; a hat']);
    const d = model.dimension;
    for (let i = 0; i < 2; i++)
      assert.ok(
        cosine(text.data.subarray(i * d, (i + 1) * d), lib.data.subarray(i * d, (i + 1) * d)) > 0.9999,
        `text row ${i} matches embedTexts`,
      );
    const info = JSON.parse(await readFile(join(out, 'glimpse.json'), 'utf8')) as {
      counts: { images_without_caption: number };
    };
    assert.equal(info.counts.images_without_caption, 1);
  });

  test('text-only and image-only runs', async () => {
    const input = join(work, 'texts');
    await mkdir(input);
    const texts = ['one', 'two words', 'a longer caption about mountains', ''];
    for (const [i, t] of texts.entries()) await writeFile(join(input, `t${i}.txt`), t);
    const out = join(work, 'texts-out');
    const r = await runCli(['embed', input, out, '--model', modelDir, '--enable-image', 'false']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await readdir(out)).sort(), ['glimpse.json', 'metadata', 'stats', 'text_emb']);
    const meta = await duckRows(join(out, 'metadata', 'metadata_0.parquet'));
    assert.deepEqual(meta.columns, ['caption']);
    assert.deepEqual(
      meta.rows.map((r) => r['caption']),
      texts,
    );
    assert.deepEqual((await numpyInfo(join(out, 'text_emb', 'text_emb_0.npy'))).shape, [4, model.dimension]);

    const imgIn = join(work, 'captioned-images');
    await mkdir(imgIn);
    await copyFile(join(photosDir, '123_456.jpg'), join(imgIn, 'x.jpg'));
    await writeFile(join(imgIn, 'x.txt'), 'caption ignored');
    const out2 = join(work, 'images-only-out');
    const r2 = await runCli([
      'embed',
      imgIn,
      out2,
      '--model',
      modelDir,
      '--enable-text',
      'false',
      '--output-dtype',
      'float32',
    ]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual((await readdir(out2)).sort(), ['glimpse.json', 'img_emb', 'metadata', 'stats']);
    const info = await numpyInfo(join(out2, 'img_emb', 'img_emb_0.npy'));
    assert.equal(info.dtype, 'float32');
  });

  test('partition names are zero-padded so lexicographic order is numeric order', async () => {
    const input = join(work, 'many');
    await mkdir(input);
    const files = (await readdir(photosDir)).slice(0, 11);
    for (const f of files) await copyFile(join(photosDir, f), join(input, f));
    const out = join(work, 'many-out');
    const r = await runCli(['embed', input, out, '--model', modelDir, '--write-batch-size', '1']);
    assert.equal(r.code, 0, r.stderr);
    const names = (await readdir(join(out, 'img_emb'))).sort();
    assert.equal(names.length, 11);
    assert.equal(names[0], 'img_emb_00.npy');
    assert.equal(names[10], 'img_emb_10.npy');

    const out2 = join(work, 'count-out');
    const r2 = await runCli(['embed', input, out2, '--model', modelDir, '--output-partition-count', '3']);
    assert.equal(r2.code, 0, r2.stderr);
    const rows = [];
    for (const n of (await readdir(join(out2, 'img_emb'))).sort())
      rows.push((await numpyInfo(join(out2, 'img_emb', n))).shape[0]);
    assert.deepEqual(rows, [4, 4, 3]);
  });

  test('empty input fails with "no sample found"; a non-empty output is refused unless --overwrite', async () => {
    const empty = join(work, 'empty');
    await mkdir(empty);
    await writeFile(join(empty, 'notes.md'), 'no images here');
    const r = await runCli(['embed', empty, join(work, 'empty-out'), '--model', modelDir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /GLIMPSE_E_SOURCE_EMPTY: no sample found/);

    const input = join(work, 'cr-images');
    const out = join(work, 'existing');
    await mkdir(out);
    await writeFile(join(out, 'something.txt'), 'x');
    const r2 = await runCli(['embed', input, out, '--model', modelDir]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /GLIMPSE_E_OUTPUT_EXISTS/);
    const r3 = await runCli(['embed', input, out, '--model', modelDir, '--overwrite']);
    assert.equal(r3.code, 0, r3.stderr);
    assert.ok((await readdir(out)).includes('something.txt'), 'overwrite replaces only glimpse outputs');

    const r4 = await runCli(['embed', input, join(work, 'x'), '--model', modelDir, '--batch-size', '0']);
    assert.equal(r4.code, 1);
    assert.match(r4.stderr, /Expected a positive integer for --batch-size but received "0"/);
  });

  test('SIGINT stops the job cleanly: no partial file under a final name, no glimpse.json', async () => {
    const input = join(work, 'big');
    await mkdir(input);
    const photos = (await readdir(photosDir)).filter((f) => f.endsWith('.jpg'));
    for (let i = 0; i < 400; i++)
      await copyFile(
        join(photosDir, photos[i % photos.length]!),
        join(input, `img_${String(i).padStart(4, '0')}.jpg`),
      );
    const out = join(work, 'big-out');
    const child = startCli([
      'embed',
      input,
      out,
      '--model',
      modelDir,
      '--write-batch-size',
      '100',
      '--batch-size',
      '8',
    ]);
    const done = collect(child);
    // Wait until the first partition is committed, then interrupt.
    for (let i = 0; i < 600; i++) {
      const stats = await readdir(join(out, 'stats')).catch(() => []);
      if (stats.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /GLIMPSE_E_ABORTED/);
    const entries = await readdir(out);
    assert.ok(!entries.includes('glimpse.json'), 'glimpse.json is written only when the job finishes');
    const statsFiles = (await readdir(join(out, 'stats'))).sort();
    assert.ok(
      statsFiles.length >= 1 && statsFiles.length < 4,
      `committed partitions: ${statsFiles.join(', ')}`,
    );
    for (const sub of ['img_emb', 'metadata']) {
      const files = await readdir(join(out, sub));
      assert.equal(
        files.filter((f) => f.startsWith('.')).length,
        0,
        `no temp files left in ${sub}: ${files.join(', ')}`,
      );
      assert.equal(files.length, statsFiles.length, `${sub} has exactly the committed partitions`);
    }
    for (const f of await readdir(join(out, 'img_emb'))) {
      assert.deepEqual((await numpyInfo(join(out, 'img_emb', f))).shape, [100, model.dimension]);
    }
  });
});

describe('runEmbedJob (library)', () => {
  test('emits typed progress events that only move forward and end with done', async () => {
    const events: ProgressEvent[] = [];
    const r = await runEmbedJob({
      input: join(work, 'cr-images'),
      output: join(work, 'lib-out'),
      model: modelDir,
      batchSize: 2,
      numPreproWorkers: 1,
      onProgress: (e) => events.push(e),
    });
    assert.equal(r.embedded, 7);
    const progress = events.filter((e) => e.type === 'progress');
    let last = -1;
    for (const e of progress) {
      assert.ok(e.done >= last, `progress moved back: ${e.done} < ${last}`);
      last = e.done;
    }
    assert.equal(events[0]?.type, 'start');
    const end = events.at(-1);
    assert.equal(end?.type, 'done');
    assert.equal(end?.type === 'done' ? end.done : -1, 7);
  });

  test('an already aborted signal stops before any output', async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(
      runEmbedJob({
        input: join(work, 'cr-images'),
        output: join(work, 'aborted-out'),
        model: modelDir,
        signal: controller.signal,
      }),
      (err: { code?: string }) => err.code === 'GLIMPSE_E_ABORTED',
    );
  });
});

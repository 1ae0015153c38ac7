/**
 * WebDataset input: clip-retrieval's 4 real test shards through the CLI (the compat layout, exactly), and
 * shards built here from the shared photos (captions, json metadata, image keys by preference, missing
 * members, interleaved members, truncated and corrupt tars), read as local files, over a real HTTP server
 * and from a real S3 server (s3rver), all on 127.0.0.1.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel, type ClipModel } from '../src/pipeline/model.js';
import { runEmbedJob } from '../src/pipeline/embed.js';
import {
  createWebDatasetSource,
  expandBraces,
  expandInputs,
  splitMemberName,
  type Sample,
} from '../src/sources/index.js';
import { StorageSet } from '../src/sources/storages.js';
import { photosDir, repoRoot, runCli, tempDir } from './helpers/cli.js';
import { readNpy, duckRows, cosine } from './helpers/outputs.js';

const SHARDS = join(repoRoot, 'test/fixtures/webdataset');
/** The members of image1..4.tar, in order (tar tf). */
const CLIP_RETRIEVAL_KEYS = [
  '123_456',
  '208_495',
  '321_421',
  '389_535',
  '416_264',
  '456_123',
  '524_316',
  '123_456',
  '208_495',
  '321_421',
  '389_535',
];

let modelDir: string;
let model: ClipModel;
let work: string;

/** A tar file from members in the given order (tar-stream's packer, ustar headers). */
async function buildShard(
  path: string,
  members: { name: string; data: Uint8Array | string }[],
): Promise<Uint8Array> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const m of members) {
    await new Promise<void>((resolve, reject) =>
      p.entry({ name: m.name, mtime: new Date(0) }, Buffer.from(m.data), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }
  p.finalize();
  await done;
  const bytes = Buffer.concat(chunks);
  await writeFile(path, bytes);
  return bytes;
}

async function photo(name: string): Promise<Buffer> {
  return readFile(join(photosDir, name));
}

async function collect(samples: AsyncIterable<Sample>): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of samples) out.push(s);
  return out;
}

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  model = await loadModel(modelDir, { decodeWorkers: 1 });
  work = await tempDir('glimpse-wds-');
});

after(async () => {
  await model?.close();
  await rm(work, { recursive: true, force: true });
});

describe('WebDataset: clip-retrieval test shards', () => {
  test('image1..4.tar give their 11 samples in the compat layout (CLI)', async () => {
    const out = join(work, 'cr-out');
    const shards = [1, 2, 3, 4].map((i) => join(SHARDS, `image${i}.tar`));
    const r = await runCli(['embed', ...shards, out, '--input-format', 'webdataset', '--model', modelDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /embedded 11 of 11 samples into 1 partition/);
    // Exactly the layout clip-retrieval writes for images without captions: no text_emb/.
    assert.deepEqual((await readdir(out)).sort(), ['glimpse.json', 'img_emb', 'metadata', 'stats']);
    assert.deepEqual(await readdir(join(out, 'img_emb')), ['img_emb_0.npy']);
    assert.deepEqual(await readdir(join(out, 'metadata')), ['metadata_0.parquet']);
    const npy = await readNpy(join(out, 'img_emb', 'img_emb_0.npy'));
    assert.deepEqual(npy.shape, [11, model.dimension]);
    const meta = await duckRows(join(out, 'metadata', 'metadata_0.parquet'));
    assert.deepEqual(meta.columns, ['image_path']);
    assert.deepEqual(
      meta.rows.map((row) => row['image_path']),
      CLIP_RETRIEVAL_KEYS,
    );
    // Row i is the embedding of member i: the shards hold the same bytes as the fixture photos.
    const lib = await model.embedImages(CLIP_RETRIEVAL_KEYS.map((k) => join(photosDir, `${k}.jpg`)));
    const d = model.dimension;
    for (let i = 0; i < 11; i++) {
      const c = cosine(npy.data.subarray(i * d, (i + 1) * d), lib.data.subarray(i * d, (i + 1) * d));
      assert.ok(c > 0.9999, `row ${i} cosine ${c}`);
    }
    const info = JSON.parse(await readFile(join(out, 'glimpse.json'), 'utf8')) as {
      options: { input_format: string; enable_text: boolean };
      counts: Record<string, number>;
    };
    assert.equal(info.options.input_format, 'webdataset');
    assert.equal(info.options.enable_text, false);
    assert.deepEqual(info.counts, {
      samples: 11,
      embedded: 11,
      failed: 0,
      partitions: 1,
      shards: 4,
      shard_errors: 0,
      samples_missing_image: 0,
      samples_missing_caption: 0,
      late_members: 0,
    });
  });

  test('range reads of pre-scanned shards number samples as a full read and skip whole shards unopened', async () => {
    const dir = join(work, 'ranges');
    await mkdir(dir, { recursive: true });
    for (const i of [1, 2, 3, 4]) await copyFile(join(SHARDS, `image${i}.tar`), join(dir, `image${i}.tar`));
    const source = await createWebDatasetSource(join(dir, 'image{1..4}.tar'));
    assert.equal(source.size, 11);
    const full = await collect(source.read());
    assert.deepEqual(
      full.map((s) => [s.index, s.name]),
      CLIP_RETRIEVAL_KEYS.map((k, i) => [i, k]),
    );
    // Samples 7–9 are in image3 and image4: image1 and image2 are never opened (removed here).
    await rm(join(dir, 'image1.tar'));
    await rm(join(dir, 'image2.tar'));
    const part = await collect(source.read({ start: 7, end: 10 }));
    source.close?.();
    assert.deepEqual(
      part.map((s) => [s.index, s.key]),
      [
        [7, `${join(dir, 'image3.tar')}#123_456`],
        [8, `${join(dir, 'image3.tar')}#208_495`],
        [9, `${join(dir, 'image4.tar')}#321_421`],
      ],
    );
    assert.equal(source.takeIssues?.().length, 0);
  });

  test('a brace pattern, a glob and a .txt list name the same shards, in order', async () => {
    const storages = new StorageSet();
    try {
      const expected = [1, 2, 3, 4].map((i) => join(SHARDS, `image${i}.tar`));
      assert.deepEqual(await expandInputs([join(SHARDS, 'image{1..4}.tar')], storages), expected);
      assert.deepEqual(await expandInputs([join(SHARDS, 'image*.tar')], storages), expected);
      const list = join(work, 'shards.txt');
      await writeFile(
        list,
        `# the four shards\n${expected.slice(0, 2).join('\n')}\n\n${join(SHARDS, 'image{3,4}.tar')}\n`,
      );
      assert.deepEqual(await expandInputs([list], storages, { listFiles: true }), expected);
      // Relative lines resolve beside the list file.
      await mkdir(join(work, 'listed'), { recursive: true });
      await copyFile(join(SHARDS, 'image2.tar'), join(work, 'listed', 'a.tar'));
      await writeFile(join(work, 'listed', 'list.txt'), 'a.tar\n');
      assert.deepEqual(
        await expandInputs([join(work, 'listed', 'list.txt')], storages, { listFiles: true }),
        [join(work, 'listed', 'a.tar')],
      );
      await assert.rejects(expandInputs([join(SHARDS, 'nothing-*.tar')], storages), {
        code: 'GLIMPSE_E_SOURCE_NOT_FOUND',
      });
    } finally {
      storages.close();
    }
  });

  test('brace expansion: zero-padded ranges, comma lists, nesting, literals', () => {
    assert.deepEqual(expandBraces('data/{00000..00002}.tar'), [
      'data/00000.tar',
      'data/00001.tar',
      'data/00002.tar',
    ]);
    assert.deepEqual(expandBraces('d/{8..11}.tar'), ['d/8.tar', 'd/9.tar', 'd/10.tar', 'd/11.tar']);
    assert.deepEqual(expandBraces('{098..100}'), ['098', '099', '100']);
    assert.deepEqual(expandBraces('{train,val}-{0..1}.tar'), [
      'train-0.tar',
      'train-1.tar',
      'val-0.tar',
      'val-1.tar',
    ]);
    assert.deepEqual(expandBraces('{a,{b,c}x}'), ['a', 'bx', 'cx']);
    assert.deepEqual(expandBraces('{0..6..3}'), ['0', '3', '6']);
    assert.deepEqual(expandBraces('{3..1}'), ['3', '2', '1']);
    assert.deepEqual(expandBraces('plain{x}.tar'), ['plain{x}.tar']);
    assert.deepEqual(expandBraces('s3://b/{a,b}.tar'), ['s3://b/a.tar', 's3://b/b.tar']);
    assert.throws(() => expandBraces('{0..99999999}'), { code: 'GLIMPSE_E_ARG_INVALID' });
  });

  test('member names split into key and extension at the first dot of the basename', () => {
    assert.deepEqual(splitMemberName('0001.jpg'), { key: '0001', ext: 'jpg' });
    assert.deepEqual(splitMemberName('a.b/c/0001.seg.PNG'), { key: 'a.b/c/0001', ext: 'seg.png' });
    assert.equal(splitMemberName('dir/._0001.jpg'), undefined);
    assert.equal(splitMemberName('dir/'), undefined);
  });

  test('a missing shard fails before anything runs, naming it', async () => {
    const r = await runEmbedJob({
      input: [join(SHARDS, 'image1.tar'), join(SHARDS, 'image9.tar')],
      inputFormat: 'webdataset',
      output: join(work, 'missing-out'),
      model: modelDir,
    }).then(
      () => undefined,
      (err: { code?: string; message: string }) => err,
    );
    assert.equal(r?.code, 'GLIMPSE_E_SOURCE_NOT_FOUND');
    assert.match(r?.message ?? '', /image9\.tar/);
    await assert.rejects(readdir(join(work, 'missing-out')), { code: 'ENOENT' });
  });
});

describe('WebDataset: shards built from the photos', () => {
  test('captions, json metadata (flattened), image keys by preference; incomplete samples skipped and counted', async () => {
    const dir = join(work, 'captioned');
    await mkdir(dir, { recursive: true });
    await buildShard(join(dir, '00000.tar'), [
      { name: 's/000.jpg', data: await photo('123_456.jpg') },
      { name: 's/000.txt', data: 'a photo of a dog' },
      { name: 's/000.json', data: JSON.stringify({ url: 'http://x/0', exif: { w: 3 }, caption: 'dropped' }) },
      // png and jpg: with --wds-image-key png;jpg the png wins whatever the member order
      { name: 's/001.jpg', data: await photo('208_495.jpg') },
      { name: 's/001.png', data: await photo('Landscape_1.jpg') },
      { name: 's/001.txt', data: 'second' },
      { name: 's/001.json', data: JSON.stringify({ url: 'http://x/1', score: 0.5 }) },
      { name: 's/002.jpg', data: await photo('321_421.jpg') }, // no caption: skipped
      { name: 's/002.json', data: '{}' },
      { name: 's/003.txt', data: 'caption without image' }, // no image: skipped
      { name: 's/004.webp', data: await photo('4.webp') }, // not an image key: no image
      { name: 's/004.txt', data: 'webp only' },
    ]);
    await buildShard(join(dir, '00001.tar'), [
      { name: '005.png', data: await photo('Portrait_1.jpg') },
      { name: '005.txt', data: 'third' },
      { name: '006.jpg', data: await photo('389_535.jpg') },
      { name: '006.txt', data: 'fourth' },
      { name: '006.json', data: '[1, 2]' }, // not an object: the sample fails, recorded
    ]);
    const source = await createWebDatasetSource(join(dir, '{00000..00001}.tar'), { imageKeys: 'png;jpg' });
    assert.equal(source.enableText, true, 'auto: the first sample has a caption');
    assert.equal(source.prescanned, true);
    assert.equal(source.size, 4);
    const samples = await collect(source.read());
    source.close?.();
    assert.deepEqual(
      samples.map((s) => [s.index, s.name, s.caption, s.error?.code]),
      [
        [0, 's/000', 'a photo of a dog', undefined],
        [1, 's/001', 'second', undefined],
        [2, '005', 'third', undefined],
        [3, '006', 'fourth', 'GLIMPSE_E_SOURCE_SIDECAR_INVALID'],
      ],
    );
    assert.equal(samples[0]!.key, `${join(dir, '00000.tar')}#s/000`);
    assert.ok(Buffer.from(samples[1]!.imageBytes!).equals(await photo('Landscape_1.jpg')), 'png preferred');
    assert.deepEqual(source.counts?.(), {
      shards: 2,
      shard_errors: 0,
      samples_missing_image: 2,
      samples_missing_caption: 1,
      late_members: 0,
    });

    const out = join(work, 'captioned-out');
    const r = await runEmbedJob({
      input: join(dir, '*.tar'),
      inputFormat: 'webdataset',
      wdsImageKey: 'png;jpg',
      output: out,
      model: modelDir,
      numPreproWorkers: 1,
    });
    assert.equal(r.embedded, 3);
    assert.equal(r.failed, 1);
    const meta = await duckRows(join(out, 'metadata', 'metadata_0.parquet'));
    assert.deepEqual(meta.columns, ['image_path', 'caption', 'url', 'exif.w', 'score']);
    assert.deepEqual(
      meta.rows.map((row) => [row['image_path'], row['caption'], row['url'], row['score']]),
      [
        ['s/000', 'a photo of a dog', 'http://x/0', null],
        ['s/001', 'second', 'http://x/1', 0.5],
        ['005', 'third', null, null],
      ],
    );
    const text = await readNpy(join(out, 'text_emb', 'text_emb_0.npy'));
    const lib = await model.embedTexts(['a photo of a dog', 'second', 'third']);
    const d = model.dimension;
    for (let i = 0; i < 3; i++)
      assert.ok(
        cosine(text.data.subarray(i * d, (i + 1) * d), lib.data.subarray(i * d, (i + 1) * d)) > 0.9999,
      );
    const failures = (await readFile(join(out, 'failures', 'failures_0.jsonl'), 'utf8')).trim().split('\n');
    assert.equal(failures.length, 1);
    assert.equal((JSON.parse(failures[0]!) as { key: string }).key, `${join(dir, '00001.tar')}#006`);
  });

  test('--write-batch-size cuts partitions across shards, zero-padded, from the pre-scanned count', async () => {
    const dir = join(work, 'many');
    await mkdir(dir, { recursive: true });
    const photos = (await readdir(photosDir)).filter((f) => f.endsWith('.jpg')).slice(0, 11);
    for (let s = 0; s < 3; s++) {
      const members = [];
      for (let i = s; i < photos.length; i += 3)
        members.push({ name: `${String(i).padStart(4, '0')}.jpg`, data: await photo(photos[i]!) });
      await buildShard(join(dir, `shard-${s}.tar`), members);
    }
    const out = join(work, 'many-out');
    const r = await runCli([
      'embed',
      join(dir, 'shard-{0..2}.tar'),
      out,
      '--input-format',
      'webdataset',
      '--model',
      modelDir,
      '--write-batch-size',
      '1',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const names = (await readdir(join(out, 'img_emb'))).sort();
    assert.equal(names.length, 11);
    assert.equal(names[0], 'img_emb_00.npy');
    assert.equal(names[10], 'img_emb_10.npy');
    const order: unknown[] = [];
    for (let p = 0; p < 11; p++) {
      const m = await duckRows(join(out, 'metadata', `metadata_${String(p).padStart(2, '0')}.parquet`));
      order.push(...m.rows.map((row) => row['image_path']));
    }
    assert.deepEqual(order, [
      '0000',
      '0003',
      '0006',
      '0009',
      '0001',
      '0004',
      '0007',
      '0010',
      '0002',
      '0005',
      '0008',
    ]);
  });
});

/** Byte offset of member `k`'s header in a tar of members of the given sizes. */
function memberOffset(sizes: readonly number[], k: number): number {
  let offset = 0;
  for (let j = 0; j < k; j++) offset += 512 + Math.ceil(sizes[j]! / 512) * 512;
  return offset;
}

describe('WebDataset: damaged and unusual shards', () => {
  test('members of one sample need not be adjacent: interleaved samples are assembled, in order', async () => {
    const dir = join(work, 'interleaved');
    await mkdir(dir, { recursive: true });
    const keys = ['a', 'b', 'c'];
    const images = ['123_456.jpg', '208_495.jpg', '321_421.jpg'];
    const members = [
      ...keys.map((k, i) => ({ name: `${k}.jpg`, data: images[i]! })),
      ...[...keys].reverse().map((k) => ({ name: `${k}.json`, data: JSON.stringify({ key: k }) })),
      ...keys.map((k) => ({ name: `${k}.txt`, data: `caption ${k}` })),
    ];
    await buildShard(
      join(dir, 'x.tar'),
      await Promise.all(
        members.map(async (m) => ({
          name: m.name,
          data: m.name.endsWith('.jpg') ? await photo(m.data) : m.data,
        })),
      ),
    );
    const source = await createWebDatasetSource(join(dir, 'x.tar'), { enableText: true });
    const samples = await collect(source.read());
    assert.deepEqual(
      samples.map((s) => [s.name, s.caption, s.meta?.['key']]),
      keys.map((k) => [k, `caption ${k}`, k]),
    );
    for (const [i, s] of samples.entries())
      assert.ok(Buffer.from(s.imageBytes!).equals(await photo(images[i]!)), `image of ${s.name}`);
    assert.equal(source.counts?.()['late_members'], 0);

    // The wait is bounded: with room for one incomplete sample, a and b are given up (no caption yet)
    // and their later members counted; c still completes.
    const tight = await createWebDatasetSource(join(dir, 'x.tar'), {
      enableText: true,
      maxPendingSamples: 1,
    });
    const few = await collect(tight.read());
    assert.deepEqual(
      few.map((s) => [s.name, s.caption]),
      [['c', 'caption c']],
    );
    assert.deepEqual(tight.counts?.(), {
      shards: 1,
      shard_errors: 0,
      samples_missing_image: 0,
      samples_missing_caption: 2,
      late_members: 4,
    });

    // End to end: three rows whose captions, metadata and images line up.
    const out = join(work, 'interleaved-out');
    const r = await runEmbedJob({
      input: join(dir, 'x.tar'),
      inputFormat: 'webdataset',
      output: out,
      model: modelDir,
      numPreproWorkers: 1,
    });
    assert.equal(r.embedded, 3);
    const meta = await duckRows(join(out, 'metadata', 'metadata_0.parquet'));
    assert.deepEqual(
      meta.rows.map((row) => [row['image_path'], row['caption'], row['key']]),
      keys.map((k) => [k, `caption ${k}`, k]),
    );
    const img = await readNpy(join(out, 'img_emb', 'img_emb_0.npy'));
    const lib = await model.embedImages(images.map((f) => join(photosDir, f)));
    const d = model.dimension;
    for (let i = 0; i < 3; i++)
      assert.ok(
        cosine(img.data.subarray(i * d, (i + 1) * d), lib.data.subarray(i * d, (i + 1) * d)) > 0.9999,
      );
  });

  test('a truncated shard and a corrupt one keep the samples before the damage, are recorded with their names, and the job goes on', async () => {
    const dir = join(work, 'damaged');
    await mkdir(dir, { recursive: true });
    const files = ['123_456.jpg', '208_495.jpg', '321_421.jpg', '389_535.jpg'];
    const members = await Promise.all(
      files.map(async (f, i) => ({ name: `k${i}.jpg`, data: await photo(f) })),
    );
    const sizes = members.map((m) => m.data.length);
    const full = await buildShard(join(dir, '0-good.tar'), members);
    // Cut inside the third member's data.
    await writeFile(join(dir, '1-truncated.tar'), full.subarray(0, memberOffset(sizes, 2) + 512 + 1000));
    // Garbage over the third member's header.
    const corrupt = Buffer.from(full);
    corrupt.fill(0x41, memberOffset(sizes, 2), memberOffset(sizes, 2) + 512);
    await writeFile(join(dir, '2-corrupt.tar'), corrupt);
    await copyFile(join(dir, '0-good.tar'), join(dir, '3-good.tar'));

    const out = join(work, 'damaged-out');
    const r = await runCli([
      'embed',
      join(dir, '{0-good,1-truncated,2-corrupt,3-good}.tar'),
      out,
      '--input-format',
      'webdataset',
      '--model',
      modelDir,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const meta = await duckRows(join(out, 'metadata', 'metadata_0.parquet'));
    assert.deepEqual(
      meta.rows.map((row) => row['image_path']),
      ['k0', 'k1', 'k2', 'k3', 'k0', 'k1', 'k0', 'k1', 'k0', 'k1', 'k2', 'k3'],
    );
    const lines = (await readFile(join(out, 'failures', 'failures_0.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; code: string; message: string; scope?: string });
    assert.deepEqual(
      lines.map((l) => [l.key, l.code, l.scope]),
      [
        [join(dir, '1-truncated.tar'), 'GLIMPSE_E_SOURCE_TAR_CORRUPT', 'source'],
        [join(dir, '2-corrupt.tar'), 'GLIMPSE_E_SOURCE_TAR_CORRUPT', 'source'],
      ],
    );
    assert.match(lines[0]!.message, /Unexpected end of data.*the 2 sample\(s\) before the damage were kept/);
    assert.match(lines[1]!.message, /Invalid tar header/);
    const stats = JSON.parse(await readFile(join(out, 'stats', 'stats_0.json'), 'utf8')) as {
      sample_count: number;
      failed_count: number;
      source_issues: number;
    };
    assert.deepEqual([stats.sample_count, stats.failed_count, stats.source_issues], [12, 0, 2]);
    const info = JSON.parse(await readFile(join(out, 'glimpse.json'), 'utf8')) as {
      counts: Record<string, number>;
      source_issues: { key: string; code: string }[];
    };
    assert.equal(info.counts['shard_errors'], 2);
    assert.deepEqual(
      info.source_issues.map((i) => i.key),
      [join(dir, '1-truncated.tar'), join(dir, '2-corrupt.tar')],
    );
  });

  test('gzipped shards are streamed through gunzip; without a pre-scan the size is unknown and bounded', async () => {
    const dir = join(work, 'gz');
    await mkdir(dir, { recursive: true });
    const tar = await buildShard(join(dir, 'plain.tar'), [
      { name: 'g0.jpg', data: await photo('123_456.jpg') },
      { name: 'g0.txt', data: 'zero' },
      { name: 'g1.jpg', data: await photo('208_495.jpg') },
      { name: 'g1.txt', data: 'one' },
    ]);
    const gz = gzipSync(tar);
    await writeFile(join(dir, 'a.tar.gz'), gz);
    const source = await createWebDatasetSource(join(dir, 'a.tar.gz'));
    assert.equal(source.prescanned, false);
    assert.equal(source.size, undefined);
    assert.equal(source.sizeBound, Math.ceil((gz.length * 1032) / 512));
    assert.equal(source.enableText, true);
    const samples = await collect(source.read());
    source.close?.();
    assert.deepEqual(
      samples.map((s) => [s.name, s.caption]),
      [
        ['g0', 'zero'],
        ['g1', 'one'],
      ],
    );
  });

  test('shards with no usable sample fail with "no sample found" and say why', async () => {
    const dir = join(work, 'unusable');
    await mkdir(dir, { recursive: true });
    await buildShard(join(dir, 'a.tar'), [
      { name: 'x.png', data: await photo('123_456.jpg') },
      { name: 'x.txt', data: 'caption' },
    ]);
    const r = await runCli([
      'embed',
      join(dir, 'a.tar'),
      join(work, 'unusable-out'),
      '--input-format',
      'webdataset',
      '--model',
      modelDir,
    ]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /GLIMPSE_E_SOURCE_EMPTY: no sample found in .*a\.tar \(1 samples have no image member/,
    );
  });
});

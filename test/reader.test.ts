/**
 * EmbeddingReader on local collections: the three formats, ranges across files, every coded error,
 * NumPy interop both ways, exports, and bounded memory on a collection larger than maxRamBytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  EmbeddingReader,
  exportEmbeddings,
  type EmbeddingBatch,
  type ReaderEvent,
} from '../src/reader/index.js';
import { encodeNpyHeader, float32ToFloat16, float16ToFloat32 } from '../src/formats/npy.js';
import { encodeParquet, readParquetColumns, rangeReaderFromBytes } from '../src/formats/parquet.js';
import { isGlimpseError } from '../src/errors/index.js';

const PY = '/usr/bin/python3';
const root = mkdtempSync(join(tmpdir(), 'glimpse-reader-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

/** Value of (global row, column): k/1024 with |k| < 1024, exact in float16 and float32. */
function value(row: number, col: number): number {
  return (((row * 31 + col * 7) % 2000) - 1000) / 1024;
}

function matrix(rowStart: number, rows: number, d: number): Float32Array {
  const m = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) for (let c = 0; c < d; c++) m[r * d + c] = value(rowStart + r, c);
  return m;
}

function npyBytes(m: Float32Array, rows: number, d: number, dtype: 'float16' | 'float32'): Uint8Array {
  const header = encodeNpyHeader(dtype, [rows, d]);
  const data = dtype === 'float16' ? float32ToFloat16(m) : m;
  const out = new Uint8Array(header.length + data.byteLength);
  out.set(header);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), header.length);
  return out;
}

function metaColumns(rowStart: number, rows: number): Parameters<typeof encodeParquet>[0] {
  return [
    {
      name: 'image_path',
      type: 'STRING',
      data: Array.from({ length: rows }, (_, i) => `img/${rowStart + i}.jpg`),
    },
    {
      name: 'caption',
      type: 'STRING',
      data: Array.from({ length: rows }, (_, i) =>
        (rowStart + i) % 4 === 0 ? null : `caption ${rowStart + i}`,
      ),
    },
    { name: 'width', type: 'INT64', data: Array.from({ length: rows }, (_, i) => BigInt(rowStart + i)) },
  ];
}

/**
 * Writes a clip-retrieval style collection: `<dir>/img_emb/img_emb_<p>.npy` and
 * `<dir>/metadata/metadata_<p>.parquet`, plus `<dir>/pq/part_<p>.parquet` (embedding + metadata).
 */
function writeCollection(
  dir: string,
  sizes: readonly number[],
  d: number,
  dtype: 'float16' | 'float32' = 'float16',
  rowGroupSize = 5,
): void {
  mkdirSync(join(dir, 'img_emb'), { recursive: true });
  mkdirSync(join(dir, 'metadata'), { recursive: true });
  mkdirSync(join(dir, 'pq'), { recursive: true });
  let start = 0;
  sizes.forEach((rows, p) => {
    const m = matrix(start, rows, d);
    writeFileSync(join(dir, 'img_emb', `img_emb_${p}.npy`), npyBytes(m, rows, d, dtype));
    writeFileSync(
      join(dir, 'metadata', `metadata_${p}.parquet`),
      encodeParquet(metaColumns(start, rows), { rowGroupSize }),
    );
    const lists = Array.from({ length: rows }, (_, r) => m.subarray(r * d, (r + 1) * d));
    writeFileSync(
      join(dir, 'pq', `part_${p}.parquet`),
      encodeParquet([{ name: 'embedding', type: 'FLOAT_LIST', data: lists }, ...metaColumns(start, rows)], {
        rowGroupSize,
      }),
    );
    start += rows;
  });
}

async function collect(it: AsyncIterable<EmbeddingBatch>): Promise<EmbeddingBatch[]> {
  const out: EmbeddingBatch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

/** Checks batches cover [start, end) in order with exact values and exact batch sizes. */
function checkBatches(
  batches: readonly EmbeddingBatch[],
  start: number,
  end: number,
  batchSize: number,
  d: number,
): void {
  let row = start;
  batches.forEach((b, i) => {
    assert.equal(b.rowStart, row, `batch ${i} rowStart`);
    const expectRows = i < batches.length - 1 ? batchSize : end - row;
    assert.equal(b.embeddings.rows, expectRows, `batch ${i} rows`);
    assert.ok(b.embeddings.rows <= batchSize && b.embeddings.rows > 0);
    assert.equal(b.embeddings.dimension, d);
    assert.equal(b.embeddings.data.length, b.embeddings.rows * d);
    const f32 =
      b.embeddings.data instanceof Uint16Array
        ? float16ToFloat32(b.embeddings.data)
        : (b.embeddings.data as Float32Array);
    for (let r = 0; r < b.embeddings.rows; r++) {
      for (let c = 0; c < d; c++) {
        if (f32[r * d + c] !== value(row + r, c)) {
          assert.fail(`row ${row + r} col ${c}: ${f32[r * d + c]} !== ${value(row + r, c)}`);
        }
      }
    }
    if (b.meta) {
      assert.equal(b.meta.length, b.embeddings.rows);
      b.meta.forEach((m, r) => assert.equal(m.image_path, `img/${row + r}.jpg`));
    }
    row += b.embeddings.rows;
  });
  assert.equal(row, end);
}

async function errorOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isGlimpseError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'no error';
}

const SIZES = [13, 0, 29, 1, 17]; // 60 rows, an empty file, a one-row file
const D = 6;
const base = join(root, 'c1');
writeCollection(base, SIZES, D);

test('npy: headers only at init; count, dimension, sizes; every row exact in batches of exactly batchSize', async () => {
  const reader = await EmbeddingReader.open(join(base, 'img_emb'), { format: 'npy' });
  assert.equal(reader.count, 60);
  assert.equal(reader.dimension, D);
  assert.equal(reader.bytePerItem, D * 2);
  assert.equal(reader.totalSize, 60 * D * 2);
  assert.equal(reader.nbFiles, 5);
  assert.equal(reader.maxFileSize, 128 + 29 * D * 2);
  assert.equal(reader.storedDtype, 'float16');
  assert.deepEqual(
    reader.files.map((f) => [f.url.split('/').pop(), f.rowStart, f.rows]),
    [
      ['img_emb_0.npy', 0, 13],
      ['img_emb_1.npy', 13, 0],
      ['img_emb_2.npy', 13, 29],
      ['img_emb_3.npy', 42, 1],
      ['img_emb_4.npy', 43, 17],
    ],
  );
  for (const batchSize of [1, 7, 13, 60, 1000]) {
    const batches = await collect(reader.read({ batchSize }));
    checkBatches(batches, 0, 60, batchSize, D);
    assert.ok(batches.every((b) => b.embeddings.data instanceof Float32Array && b.meta === undefined));
  }
  const halves = await collect(reader.read({ batchSize: 8, dtype: 'float16' }));
  assert.ok(
    halves.every((b) => b.embeddings.data instanceof Uint16Array && b.embeddings.dtype === 'float16'),
  );
  checkBatches(halves, 0, 60, 8, D);
  reader.close();
});

test('ranges across file boundaries, tiny pieces, any parallelism', async () => {
  const reader = await EmbeddingReader.open(join(base, 'img_emb'), { format: 'npy' });
  const ranges: [number, number][] = [
    [0, 60],
    [12, 14],
    [13, 42],
    [41, 44],
    [5, 55],
    [59, 60],
    [42, 43],
    [30, 30],
    [60, 60],
  ];
  for (const [start, end] of ranges) {
    for (const [maxPieceSize, parallelPieces] of [
      [12, 1],
      [40, 3],
      [1000, 8],
    ] as const) {
      for (const batchSize of [1, 4, 9]) {
        const batches = await collect(reader.read({ start, end, batchSize, maxPieceSize, parallelPieces }));
        checkBatches(batches, start, end, batchSize, D);
        if (start === end) assert.equal(batches.length, 0);
      }
    }
  }
  await assert.rejects(
    async () => collect(reader.read({ start: 10, end: 61 })),
    /Expected an integer from start \(10\) to count \(60\) for end but received 61 of type number/,
  );
  assert.throws(() => reader.read({ start: -1 }), { code: 'GLIMPSE_E_ARG_INVALID' });
  assert.throws(() => reader.read({ batchSize: 0 }), {
    message: 'Expected a positive integer for batchSize but received 0 of type number',
  });
  reader.close();
});

test('parquet_npy joins npy rows with metadata rows by position (clip-retrieval layout)', async () => {
  const reader = await EmbeddingReader.open(join(base, 'img_emb'), {
    format: 'parquet_npy',
    metaColumns: ['image_path', 'caption', 'width'],
  });
  assert.equal(reader.count, 60);
  assert.equal(reader.files[2]!.metadataUrl, join(base, 'metadata', 'metadata_2.parquet'));
  for (const [start, end, batchSize] of [
    [0, 60, 7],
    [11, 47, 5],
    [44, 45, 3],
  ] as const) {
    const batches = await collect(reader.read({ start, end, batchSize, maxPieceSize: 50 }));
    checkBatches(batches, start, end, batchSize, D);
    let row = start;
    for (const b of batches) {
      for (const m of b.meta!) {
        assert.deepEqual(m, {
          image_path: `img/${row}.jpg`,
          caption: row % 4 === 0 ? null : `caption ${row}`,
          width: BigInt(row),
        });
        row++;
      }
    }
  }
  reader.close();
  const explicit = await EmbeddingReader.open([join(base, 'img_emb')], {
    format: 'parquet_npy',
    metadataFolder: join(base, 'metadata'),
    metaColumns: ['caption'],
  });
  const [first] = await collect(explicit.read({ batchSize: 3 }));
  assert.deepEqual(first!.meta, [{ caption: null }, { caption: 'caption 1' }, { caption: 'caption 2' }]);
  explicit.close();
});

test('parquet: embedding column and metadata from the same files; dimension from footers', async () => {
  const reader = await EmbeddingReader.open(join(base, 'pq'), {
    format: 'parquet',
    metaColumns: ['image_path'],
  });
  assert.equal(reader.count, 60);
  assert.equal(reader.dimension, D);
  assert.equal(reader.bytePerItem, D * 4);
  assert.equal(reader.storedDtype, 'float32');
  for (const [start, end, batchSize] of [
    [0, 60, 7],
    [12, 44, 10],
    [42, 43, 1],
  ] as const) {
    checkBatches(
      await collect(reader.read({ start, end, batchSize, maxPieceSize: 200 })),
      start,
      end,
      batchSize,
      D,
    );
  }
  const halves = await collect(reader.read({ batchSize: 60, dtype: 'float16' }));
  checkBatches(halves, 0, 60, 60, D);
  reader.close();
  // A differently named embedding column.
  const dir = join(root, 'named');
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'a.parquet'),
    encodeParquet([
      { name: 'vec', type: 'FLOAT_LIST', data: [new Float32Array([1, 2]), new Float32Array([3, 4])] },
    ]),
  );
  const named = await EmbeddingReader.open(dir, { format: 'parquet', embeddingColumn: 'vec' });
  const [b] = await collect(named.read());
  assert.deepEqual([...b!.embeddings.data], [1, 2, 3, 4]);
  named.close();
});

test('float32 npy files read as float32 or converted to float16; several folders concatenate in order', async () => {
  const dir = join(root, 'f32');
  writeCollection(dir, [5, 8], 3, 'float32');
  const reader = await EmbeddingReader.open([join(dir, 'img_emb'), join(base, 'img_emb')], {
    format: 'npy',
  }).catch((e: unknown) => e);
  assert.ok(
    isGlimpseError(reader, 'GLIMPSE_E_NPY_UNSUPPORTED'),
    'mixed float32 and float16 collections are refused',
  );
  const r32 = await EmbeddingReader.open([join(dir, 'img_emb'), join(dir, 'img_emb', 'img_emb_0.npy')], {
    format: 'npy',
  });
  assert.equal(r32.count, 18);
  assert.equal(r32.bytePerItem, 12);
  const all = await collect(r32.read({ batchSize: 4 }));
  assert.equal(
    all.reduce((s, b) => s + b.embeddings.rows, 0),
    18,
  );
  checkBatches(all.slice(0, 3), 0, 12, 4, 3); // the two files of the folder: rows 0–12
  const halves = await collect(r32.read({ batchSize: 13, end: 13, dtype: 'float16' }));
  assert.deepEqual([...halves[0]!.embeddings.data], [...float32ToFloat16(matrix(0, 13, 3))]);
  r32.close();
});

test('coded errors name the file: truncated, unsupported dtype/order, row and dimension mismatches, missing columns', async () => {
  const mk = (name: string): string => {
    const d = join(root, 'err', name);
    mkdirSync(d, { recursive: true });
    return d;
  };
  // Truncated npy data.
  const t = mk('truncated');
  const good = npyBytes(matrix(0, 4, 3), 4, 3, 'float16');
  writeFileSync(join(t, 'a.npy'), good);
  writeFileSync(join(t, 'b.npy'), good.subarray(0, good.length - 1));
  assert.equal(
    await errorOf(EmbeddingReader.open(t, { format: 'npy' })),
    `GLIMPSE_E_NPY_INVALID: Expected 152 bytes in ${join(t, 'b.npy')} (shape (4, 3), float16) but the file has 151: it is truncated`,
  );
  writeFileSync(join(t, 'b.npy'), good.subarray(0, 50));
  assert.match(
    await errorOf(EmbeddingReader.open(t, { format: 'npy' })),
    /^GLIMPSE_E_NPY_INVALID: .*b\.npy.*truncated/,
  );
  // Unsupported dtype and order, written by numpy.
  const u = mk('unsupported');
  execFileSync(PY, ['-c', `import numpy as np; np.save('${u}/a.npy', np.zeros((3, 2), dtype='<f8'))`]);
  assert.equal(
    await errorOf(EmbeddingReader.open(u, { format: 'npy' })),
    `GLIMPSE_E_NPY_UNSUPPORTED: Expected dtype float16 ('<f2') or float32 ('<f4') in ${join(u, 'a.npy')} but received '<f8' (float64)`,
  );
  execFileSync(PY, [
    '-c',
    `import numpy as np; np.save('${u}/a.npy', np.asfortranarray(np.ones((3, 2), dtype='<f2')))`,
  ]);
  assert.equal(
    await errorOf(EmbeddingReader.open(u, { format: 'npy' })),
    `GLIMPSE_E_NPY_UNSUPPORTED: Expected a C-order array in ${join(u, 'a.npy')} but received fortran_order True`,
  );
  // npy / parquet row mismatch, and file count mismatch.
  const m = mk('rows');
  writeCollection(m, [4, 6], 3);
  writeFileSync(join(m, 'metadata', 'metadata_1.parquet'), encodeParquet(metaColumns(4, 5)));
  assert.equal(
    await errorOf(EmbeddingReader.open(join(m, 'img_emb'), { format: 'parquet_npy' })),
    `GLIMPSE_E_READER_ROW_MISMATCH: Expected ${join(m, 'metadata', 'metadata_1.parquet')} to have 6 rows like ${join(m, 'img_emb', 'img_emb_1.npy')} but it has 5`,
  );
  rmSync(join(m, 'metadata', 'metadata_1.parquet'));
  assert.match(
    await errorOf(EmbeddingReader.open(join(m, 'img_emb'), { format: 'parquet_npy' })),
    /^GLIMPSE_E_READER_ROW_MISMATCH: Expected one metadata parquet file per npy file but found 2 npy files \(img_emb_0\.npy, img_emb_1\.npy\) and 1 parquet files/,
  );
  // Mixed dimensions (npy and parquet).
  const dm = mk('dims');
  writeFileSync(join(dm, 'a.npy'), npyBytes(matrix(0, 2, 4), 2, 4, 'float16'));
  writeFileSync(join(dm, 'b.npy'), npyBytes(matrix(0, 2, 5), 2, 5, 'float16'));
  assert.equal(
    await errorOf(EmbeddingReader.open(dm, { format: 'npy' })),
    `GLIMPSE_E_READER_DIM_MISMATCH: Expected dimension 4 (as in ${join(dm, 'a.npy')}) in ${join(dm, 'b.npy')} but it has 5`,
  );
  const dp = mk('dims-parquet');
  writeFileSync(
    join(dp, 'a.parquet'),
    encodeParquet([{ name: 'embedding', type: 'FLOAT_LIST', data: [[1, 2]] }]),
  );
  writeFileSync(
    join(dp, 'b.parquet'),
    encodeParquet([{ name: 'embedding', type: 'FLOAT_LIST', data: [[1, 2, 3]] }]),
  );
  assert.match(
    await errorOf(EmbeddingReader.open(dp, { format: 'parquet' })),
    /^GLIMPSE_E_READER_DIM_MISMATCH: Expected dimension 2 .* in .*b\.parquet but it has 3$/,
  );
  writeFileSync(
    join(dp, 'b.parquet'),
    encodeParquet([{ name: 'embedding', type: 'FLOAT_LIST', data: [[1, 2, 3], [4]] }]), // 4 values / 2 rows
  );
  const ragged = await EmbeddingReader.open(dp, { format: 'parquet' });
  assert.match(
    await errorOf(collect(ragged.read())),
    /^GLIMPSE_E_READER_DIM_MISMATCH: Expected 2 values in row 0 of column "embedding" in .*b\.parquet but it has 3$/,
  );
  ragged.close();
  // Missing columns.
  assert.equal(
    await errorOf(
      EmbeddingReader.open(join(base, 'img_emb'), { format: 'parquet_npy', metaColumns: ['url'] }),
    ),
    `GLIMPSE_E_READER_COLUMN_MISSING: Expected columns "url" in ${join(base, 'metadata', 'metadata_0.parquet')} but it has "image_path", "caption", "width"`,
  );
  assert.match(
    await errorOf(EmbeddingReader.open(join(base, 'pq'), { format: 'parquet', embeddingColumn: 'clip' })),
    /^GLIMPSE_E_READER_COLUMN_MISSING: Expected columns "clip" in .*part_0\.parquet but it has "embedding", "image_path", "caption", "width"$/,
  );
  assert.match(
    await errorOf(EmbeddingReader.open(join(base, 'pq'), { format: 'parquet', embeddingColumn: 'caption' })),
    /^GLIMPSE_E_READER_COLUMN_MISSING: Expected column "caption" of .*part_0\.parquet to be a list of floats but it is BYTE_ARRAY$/,
  );
  assert.match(
    await errorOf(EmbeddingReader.open(join(root, 'nope'), { format: 'npy' })),
    /^GLIMPSE_E_STORAGE_NOT_FOUND: /,
  );
  assert.throws(() => new EmbeddingReader(base, { format: 'csv' as 'npy' }), {
    message: 'Expected one of "npy", "parquet", "parquet_npy" for format but received "csv" of type string',
  });
});

test('numpy interop: files numpy wrote are read exactly; files we export numpy reads exactly', async () => {
  const dir = join(root, 'numpy');
  mkdirSync(join(dir, 'emb'), { recursive: true });
  execFileSync(PY, [
    '-c',
    `import numpy as np
rng = np.random.default_rng(7)
parts = [rng.standard_normal((n, 16)).astype(np.float16) for n in (11, 5, 20)]
for i, p in enumerate(parts):
    np.save('${dir}/emb/emb_%d.npy' % i, p)
np.concatenate(parts).astype('<f4').tofile('${dir}/all.f32')`,
  ]);
  const expected = new Float32Array(new Uint8Array(readFileSync(join(dir, 'all.f32'))).buffer);
  const reader = await EmbeddingReader.open(join(dir, 'emb'), { format: 'npy' });
  assert.equal(reader.count, 36);
  const got = await collect(reader.read({ batchSize: 36 }));
  assert.deepEqual([...got[0]!.embeddings.data], [...expected]);
  // Our exports (a range across the three files), read back by numpy.
  const outNpy = join(dir, 'out', 'slice.npy');
  assert.deepEqual(await exportEmbeddings(reader, outNpy, { start: 7, end: 33, batchSize: 5 }), {
    rows: 26,
    format: 'npy',
    target: outNpy,
  });
  const outF32 = join(dir, 'out', 'slice32.npy');
  await exportEmbeddings(reader, outF32, { start: 7, end: 33, dtype: 'float32' });
  const report = execFileSync(
    PY,
    [
      '-c',
      `import numpy as np, json
a = np.load('${outNpy}'); b = np.load('${outF32}')
ref = np.fromfile('${dir}/all.f32', dtype='<f4').reshape(36, 16)[7:33]
print(json.dumps([str(a.dtype), list(a.shape), bool(a.flags['C_CONTIGUOUS']), bool((a.astype('<f4') == ref).all()), str(b.dtype), bool((b == ref).all())]))`,
    ],
    { encoding: 'utf8' },
  );
  assert.deepEqual(JSON.parse(report), ['float16', [26, 16], true, true, 'float32', true]);
  reader.close();
});

test('export to parquet: embedding list and metadata columns, readable back', async () => {
  const reader = await EmbeddingReader.open(join(base, 'img_emb'), {
    format: 'parquet_npy',
    metaColumns: ['image_path', 'width'],
  });
  const out = join(root, 'export', 'slice.parquet');
  await exportEmbeddings(reader, out, { start: 10, end: 20 });
  const { columns } = await readParquetColumns(rangeReaderFromBytes(new Uint8Array(readFileSync(out)), out));
  assert.deepEqual(
    columns.image_path,
    Array.from({ length: 10 }, (_, i) => `img/${10 + i}.jpg`),
  );
  assert.deepEqual(
    columns.width,
    Array.from({ length: 10 }, (_, i) => BigInt(10 + i)),
  );
  assert.deepEqual(columns.embedding![3], Array.from(matrix(13, 1, D)));
  reader.close();
});

test('bounded memory: a 20 MB collection read with maxRamBytes 4 MB never holds more than 4 MB', async () => {
  const dir = join(root, 'big');
  const d = 256;
  const rowsPerFile = 4096; // 2 MiB per file (float16)
  mkdirSync(dir);
  for (let p = 0; p < 10; p++) {
    const m = new Float32Array(rowsPerFile * d);
    for (let r = 0; r < rowsPerFile; r++) m[r * d] = p * rowsPerFile + r; // first column = global row id
    writeFileSync(join(dir, `emb_${String(p).padStart(2, '0')}.npy`), npyBytes(m, rowsPerFile, d, 'float16'));
  }
  const reader = await EmbeddingReader.open(dir, { format: 'npy' });
  assert.equal(reader.totalSize, 10 * rowsPerFile * d * 2);
  const cap = 4 * 1024 * 1024;
  for (const dtype of ['float16', 'float32'] as const) {
    let maxInFlight = 0;
    let pieces = 0;
    const events: ReaderEvent[] = [];
    const rss0 = process.memoryUsage().rss;
    let rows = 0;
    let idSum = 0;
    for await (const b of reader.read({
      batchSize: 1000,
      maxRamBytes: cap,
      maxPieceSize: '1M',
      parallelPieces: 8,
      dtype,
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'piece-start') pieces++;
        if (e.type !== 'piece-done') maxInFlight = Math.max(maxInFlight, e.bytesInFlight);
      },
    })) {
      const data =
        dtype === 'float16' ? float16ToFloat32(b.embeddings.data as Uint16Array) : b.embeddings.data;
      for (let r = 0; r < b.embeddings.rows; r++) {
        // Row ids up to 40959 are not all exact in float16: compare in float16 precision.
        const id = b.rowStart + r;
        const expectedId = float16ToFloat32(float32ToFloat16(new Float32Array([id])))[0]!;
        if (data[r * d] !== expectedId) assert.fail(`row ${id}: ${data[r * d]}`);
        idSum += id;
      }
      rows += b.embeddings.rows;
    }
    assert.equal(rows, 10 * rowsPerFile);
    assert.equal(idSum, (rows * (rows - 1)) / 2);
    assert.ok(pieces >= 20, `${pieces} pieces`);
    // The reader's buffers plus the batch in our hands stay under the cap.
    const hand = 1000 * d * (dtype === 'float16' ? 2 : 4);
    assert.ok(
      maxInFlight > 0 && maxInFlight + hand <= cap,
      `max in flight ${maxInFlight} + ${hand} > ${cap}`,
    );
    assert.ok(reader.stats.peakBytesInFlight <= cap, `peak ${reader.stats.peakBytesInFlight}`);
    assert.ok(reader.stats.peakBytesInFlight >= 1.5 * 1024 * 1024, 'the prefetch actually ran ahead');
    assert.equal(reader.stats.bytesFetched, reader.totalSize);
    // Loose: RSS does not grow by the collection's size.
    assert.ok(process.memoryUsage().rss - rss0 < 64 * 1024 * 1024 + reader.totalSize / 2);
  }
  assert.throws(() => reader.read({ batchSize: 10_000, maxRamBytes: 1_000_000 }), {
    code: 'GLIMPSE_E_ARG_INVALID',
    message:
      'Expected at least 20676608 bytes (two batches of 10000 rows of 256 float32 plus 8 pieces of scratch) for maxRamBytes but received 1000000 of type number',
  });
  reader.close();
});

test('progress events move forward and end at the total; abort and early break stop cleanly', async () => {
  const reader = await EmbeddingReader.open(join(base, 'img_emb'), { format: 'npy' });
  const seen: number[] = [];
  let done: number | undefined;
  await collect(
    reader.read({
      batchSize: 5,
      onProgress: (e) => {
        if (e.type === 'progress') seen.push(e.done);
        if (e.type === 'done') done = e.done;
      },
    }),
  );
  assert.deepEqual(
    seen,
    [...seen].sort((a, b) => a - b),
  );
  assert.equal(done, 60);
  const controller = new AbortController();
  let n = 0;
  await assert.rejects(
    async () => {
      for await (const _ of reader.read({ batchSize: 2, maxPieceSize: 12, signal: controller.signal })) {
        if (++n === 3) controller.abort();
      }
    },
    { code: 'GLIMPSE_E_ABORTED' },
  );
  assert.equal(n, 3);
  for await (const _ of reader.read({ batchSize: 2, maxPieceSize: 12 })) break;
  reader.close();
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import {
  encodeParquet,
  rangeReaderFromBytes,
  readParquetColumns,
  readParquetMetadata,
  type ParquetColumn,
  type RangeReader,
} from '../src/formats/parquet.js';
import { isGlimpseError } from '../src/errors/index.js';

const dir = mkdtempSync(join(tmpdir(), 'glimpse-parquet-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const N = 2500;
const columns: ParquetColumn[] = [
  { name: 'image_path', type: 'STRING', data: Array.from({ length: N }, (_, i) => `img/${i}.jpg`) },
  {
    name: 'caption',
    type: 'STRING',
    data: Array.from({ length: N }, (_, i) => (i % 3 === 0 ? null : `caption ${i} é漢字`)),
  },
  { name: 'score', type: 'DOUBLE', data: Array.from({ length: N }, (_, i) => (i % 5 === 0 ? null : i / 4)) },
  {
    name: 'width',
    type: 'INT64',
    data: Array.from({ length: N }, (_, i) => (i % 7 === 0 ? null : i === 1 ? 2n ** 53n + 1n : i * 10)),
  },
  {
    name: 'ok',
    type: 'BOOLEAN',
    data: Array.from({ length: N }, (_, i) => (i % 11 === 0 ? null : i % 2 === 0)),
  },
  {
    name: 'embedding',
    type: 'FLOAT_LIST',
    data: Array.from({ length: N }, (_, i) => (i === 4 ? null : new Float32Array([i, -i, 0.5]))),
  },
];

function expected(col: string, i: number): unknown {
  const v = columns.find((c) => c.name === col)!.data[i]!;
  if (col === 'width' && typeof v === 'number') return BigInt(v);
  if (v instanceof Float32Array) return Array.from(v);
  return v;
}

/** A RangeReader that counts the bytes it was asked for. */
function counting(bytes: Uint8Array): RangeReader & { fetched: number; calls: number } {
  const inner = rangeReaderFromBytes(bytes, 'mem.parquet');
  const r = {
    name: inner.name,
    size: inner.size,
    fetched: 0,
    calls: 0,
    readRange: (s: number, e: number) => {
      r.fetched += e - s;
      r.calls++;
      return inner.readRange(s, e);
    },
  };
  return r;
}

test('encodeParquet output is read back by DuckDB with the right types and values (nulls included)', async () => {
  const bytes = encodeParquet(columns, { rowGroupSize: 1000 });
  const file = join(dir, 'table.parquet');
  writeFileSync(file, bytes);
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    const types = await conn.runAndReadAll(`DESCRIBE SELECT * FROM '${file}'`);
    assert.deepEqual(
      types.getRowObjectsJson().map((r) => [r.column_name, r.column_type]),
      [
        ['image_path', 'VARCHAR'],
        ['caption', 'VARCHAR'],
        ['score', 'DOUBLE'],
        ['width', 'BIGINT'],
        ['ok', 'BOOLEAN'],
        ['embedding', 'FLOAT[]'],
      ],
    );
    const rows = (
      await conn.runAndReadAll(
        `SELECT image_path, caption, score, CAST(width AS VARCHAR) AS width, ok, embedding FROM '${file}'`,
      )
    ).getRowObjectsJson();
    assert.equal(rows.length, N);
    for (const i of [0, 1, 2, 3, 4, 5, 7, 11, 999, 1000, 1001, 2499]) {
      const r = rows[i]!;
      assert.equal(r.image_path, expected('image_path', i));
      assert.equal(r.caption, expected('caption', i));
      assert.equal(r.score, expected('score', i));
      const w = expected('width', i);
      assert.equal(r.width, w === null ? null : String(w));
      assert.equal(r.ok, expected('ok', i));
      assert.deepEqual(r.embedding, expected('embedding', i));
    }
    const groups = await conn.runAndReadAll(
      `SELECT count(DISTINCT row_group_id)::INTEGER AS g FROM parquet_metadata('${file}')`,
    );
    assert.equal(groups.getRowObjectsJson()[0]!.g, 3);
    const uncompressed = encodeParquet(columns, { compression: 'UNCOMPRESSED' });
    writeFileSync(join(dir, 'plain.parquet'), uncompressed);
    const codec = await conn.runAndReadAll(
      `SELECT DISTINCT compression FROM parquet_metadata('${join(dir, 'plain.parquet')}')`,
    );
    assert.deepEqual(
      codec.getRowObjectsJson().map((r) => r.compression),
      ['UNCOMPRESSED'],
    );
  } finally {
    conn.closeSync();
    db.closeSync();
  }
});

test('readParquetMetadata and readParquetColumns read footers, columns and row ranges', async () => {
  const bytes = encodeParquet(columns, { rowGroupSize: 1000 });
  const file = counting(bytes);
  const info = await readParquetMetadata(file);
  assert.equal(info.numRows, N);
  assert.deepEqual(
    info.columns.map((c) => [c.name, c.type]),
    [
      ['image_path', 'STRING'],
      ['caption', 'STRING'],
      ['score', 'DOUBLE'],
      ['width', 'INT64'],
      ['ok', 'BOOLEAN'],
      ['embedding', 'FLOAT_LIST'],
    ],
  );
  assert.deepEqual(info.rowGroups, [
    { rowStart: 0, numRows: 1000 },
    { rowStart: 1000, numRows: 1000 },
    { rowStart: 2000, numRows: 500 },
  ]);
  const all = await readParquetColumns(file, { info });
  for (const c of columns) {
    for (let i = 0; i < N; i++)
      assert.deepEqual(all.columns[c.name]![i], expected(c.name, i), `${c.name}[${i}]`);
  }
  // One column of a range in the middle row group: fewer bytes than the file.
  file.fetched = 0;
  const part = await readParquetColumns(file, { info, columns: ['caption'], rowStart: 1200, rowEnd: 1300 });
  assert.deepEqual(Object.keys(part.columns), ['caption']);
  assert.equal(part.columns.caption!.length, 100);
  for (let i = 0; i < 100; i++) assert.equal(part.columns.caption![i], expected('caption', 1200 + i));
  assert.ok(file.fetched < bytes.length / 4, `fetched ${file.fetched} of ${bytes.length}`);
  // Across row groups, clamped at the end.
  const cross = await readParquetColumns(file, {
    info,
    columns: ['width', 'ok'],
    rowStart: 990,
    rowEnd: 9999,
  });
  assert.equal(cross.rowEnd, N);
  assert.equal(cross.columns.width!.length, N - 990);
  assert.equal(cross.columns.width![15], expected('width', 1005));
  assert.equal(cross.columns.ok![1509], expected('ok', 2499));
  const empty = await readParquetColumns(file, { info, columns: ['ok'], rowStart: 10, rowEnd: 10 });
  assert.deepEqual(empty.columns, { ok: [] });
});

test('our reader reads a parquet file written by DuckDB', async () => {
  const file = join(dir, 'duck.parquet');
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  await conn.run(
    `COPY (SELECT i::BIGINT AS id, 'row ' || i AS text, CASE WHEN i % 2 = 0 THEN NULL ELSE i / 2.0 END AS half,
       [i::FLOAT, 1.5::FLOAT] AS embedding
     FROM range(3000) t(i)) TO '${file}' (FORMAT PARQUET, ROW_GROUP_SIZE 1024)`,
  );
  conn.closeSync();
  db.closeSync();
  const reader = rangeReaderFromBytes(new Uint8Array(readFileSync(file)), file);
  const info = await readParquetMetadata(reader);
  assert.equal(info.numRows, 3000);
  assert.deepEqual(
    info.columns.map((c) => [c.name, c.type]),
    [
      ['id', 'INT64'],
      ['text', 'STRING'],
      ['half', 'DOUBLE'],
      ['embedding', 'FLOAT_LIST'],
    ],
  );
  const { columns: got } = await readParquetColumns(reader, { rowStart: 2047, rowEnd: 2050 });
  assert.deepEqual(got, {
    id: [2047n, 2048n, 2049n],
    text: ['row 2047', 'row 2048', 'row 2049'],
    half: [1023.5, null, 1024.5],
    embedding: [
      [2047, 1.5],
      [2048, 1.5],
      [2049, 1.5],
    ],
  });
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isGlimpseError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'no error';
}

test('bad files and missing columns give coded errors naming the file', async () => {
  const bytes = encodeParquet(columns.slice(0, 2));
  assert.match(
    await codeOf(
      readParquetColumns(rangeReaderFromBytes(bytes, 'm.parquet'), { columns: ['caption', 'nope'] }),
    ),
    /^GLIMPSE_E_READER_COLUMN_MISSING: Expected columns "nope" in m\.parquet but it has "image_path", "caption"$/,
  );
  assert.match(
    await codeOf(
      readParquetMetadata(rangeReaderFromBytes(bytes.subarray(0, bytes.length - 10), 'cut.parquet')),
    ),
    /^GLIMPSE_E_PARQUET_INVALID: .*cut\.parquet/,
  );
  assert.match(
    await codeOf(readParquetMetadata(rangeReaderFromBytes(new Uint8Array(5), 'tiny.parquet'))),
    /^GLIMPSE_E_PARQUET_INVALID: .*tiny\.parquet.*5 bytes/,
  );
  assert.throws(
    () => encodeParquet([{ name: 'a', type: 'INT64', data: [1.5] }]),
    /Expected a bigint or a safe integer or null for row 0 of column "a" but received 1.5/,
  );
  assert.throws(
    () =>
      encodeParquet([
        { name: 'a', type: 'STRING', data: ['x'] },
        { name: 'b', type: 'STRING', data: [] },
      ]),
    /Expected 1 values in column "b"/,
  );
});

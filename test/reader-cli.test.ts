/** `glimpse read`: info (text and JSON) and exports, run through commander in-process. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { registerReadCommand } from '../src/cli/commands/read.js';
import { encodeNpyHeader, float32ToFloat16 } from '../src/formats/npy.js';
import { encodeParquet, rangeReaderFromBytes, readParquetColumns } from '../src/formats/parquet.js';

const root = mkdtempSync(join(tmpdir(), 'glimpse-read-cli-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

// out/img_emb/img_emb_{0,1}.npy (float16, 3 + 4 rows of d=2, value = row id + col / 4) and out/metadata.
let row = 0;
for (const [p, rows] of [
  [0, 3],
  [1, 4],
] as const) {
  mkdirSync(join(root, 'out', 'img_emb'), { recursive: true });
  mkdirSync(join(root, 'out', 'metadata'), { recursive: true });
  const m = new Float32Array(rows * 2);
  for (let r = 0; r < rows; r++) for (let c = 0; c < 2; c++) m[r * 2 + c] = row + r + c / 4;
  const h = float32ToFloat16(m);
  writeFileSync(
    join(root, 'out', 'img_emb', `img_emb_${p}.npy`),
    Buffer.concat([encodeNpyHeader('float16', [rows, 2]), new Uint8Array(h.buffer)]),
  );
  writeFileSync(
    join(root, 'out', 'metadata', `metadata_${p}.parquet`),
    encodeParquet([
      { name: 'image_path', type: 'STRING', data: Array.from({ length: rows }, (_, i) => `${row + i}.jpg`) },
    ]),
  );
  row += rows;
}

async function run(args: string[]): Promise<string> {
  let out = '';
  const program = new Command().exitOverride();
  registerReadCommand(program, { stdout: { write: (t: string) => (out += t) } });
  await program.parseAsync(['node', 'glimpse', 'read', ...args]);
  return out;
}

test('glimpse read prints count, dimension and sizes (text and --json)', async () => {
  const text = await run([join(root, 'out', 'img_emb')]);
  assert.match(
    text,
    /^count {8}7\ndimension {4}2\nbytePerItem {2}4\ntotalSize {4}28 \(28 B\)\nnbFiles {6}2\nmaxFileSize {2}144 \(144 B\)\ndtype {8}float16\n$/,
  );
  const json = JSON.parse(await run([join(root, 'out', 'img_emb'), '--json']));
  assert.deepEqual(json, {
    count: 7,
    dimension: 2,
    bytePerItem: 4,
    totalSize: 28,
    nbFiles: 2,
    maxFileSize: 144,
    dtype: 'float16',
    format: 'npy',
  });
});

test('glimpse read --export writes a range to npy (numpy reads it) and to parquet with metadata', async () => {
  const npy = join(root, 'x', 'range.npy');
  const r = JSON.parse(
    await run([
      join(root, 'out', 'img_emb'),
      '--start',
      '2',
      '--end',
      '6',
      '--export',
      npy,
      '--dtype',
      'float32',
      '--json',
    ]),
  );
  assert.deepEqual(r.exported, { rows: 4, format: 'npy', target: npy, start: 2, end: 6 });
  const got = execFileSync(
    '/usr/bin/python3',
    ['-c', `import numpy as np; a = np.load('${npy}'); print(a.dtype, a.shape, a.ravel().tolist())`],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(got.trim(), 'float32 (4, 2) [2.0, 2.25, 3.0, 3.25, 4.0, 4.25, 5.0, 5.25]');
  const pq = join(root, 'x', 'range.parquet');
  await run([
    join(root, 'out', 'img_emb'),
    '--format',
    'parquet_npy',
    '--meta-columns',
    'image_path',
    '--start',
    '1',
    '--end',
    '4',
    '--batch-size',
    '2',
    '--export',
    pq,
    '--no-progress',
  ]);
  const { columns } = await readParquetColumns(rangeReaderFromBytes(new Uint8Array(readFileSync(pq)), pq));
  assert.deepEqual(columns, {
    embedding: [
      [1, 1.25],
      [2, 2.25],
      [3, 3.25],
    ],
    image_path: ['1.jpg', '2.jpg', '3.jpg'],
  });
  await assert.rejects(run([join(root, 'out', 'img_emb'), '--export', join(root, 'x', 'bad.csv')]), {
    code: 'GLIMPSE_E_ARG_INVALID',
  });
  await assert.rejects(
    run([join(root, 'out', 'img_emb'), '--start', '-1']),
    /Expected a non-negative integer for --start/,
  );
});

/** Independent readers of glimpse's outputs for tests: our npy parser, numpy (Debian python), DuckDB. */
import { readFile } from 'node:fs/promises';
import { DuckDBInstance } from '@duckdb/node-api';
import { float16ToFloat32, parseNpyHeader } from '../../src/formats/npy.js';
import { debianPython, run } from './cli.js';

/** The 7 images of clip-retrieval's own inference tests (in test/fixtures/images/photos). */
export const CLIP_RETRIEVAL_IMAGES = [
  '123_456.jpg',
  '208_495.jpg',
  '321_421.jpg',
  '389_535.jpg',
  '416_264.jpg',
  '456_123.jpg',
  '524_316.jpg',
];

/** A `.npy` file as float32 rows (float16 files are widened). */
export async function readNpy(path: string): Promise<{ shape: number[]; dtype: string; data: Float32Array }> {
  const bytes = new Uint8Array(await readFile(path));
  const h = parseNpyHeader(bytes, path);
  const body = bytes.slice(h.headerLength);
  const data =
    h.dtype === 'float16' ? float16ToFloat32(new Uint16Array(body.buffer)) : new Float32Array(body.buffer);
  return { shape: [...h.shape], dtype: h.dtype, data };
}

/** numpy (an independent reader) loads the file: shape, dtype, row norms. */
export async function numpyInfo(
  path: string,
): Promise<{ shape: number[]; dtype: string; minNorm: number; maxNorm: number }> {
  const script = [
    'import json, sys, numpy as np',
    'a = np.load(sys.argv[1])',
    'n = np.linalg.norm(a.astype(np.float64), axis=1)',
    'print(json.dumps({"shape": list(a.shape), "dtype": str(a.dtype), "minNorm": float(n.min()), "maxNorm": float(n.max()), "c": bool(a.flags["C_CONTIGUOUS"])}))',
  ].join('\n');
  return JSON.parse(await run(debianPython, ['-c', script, path])) as {
    shape: number[];
    dtype: string;
    minNorm: number;
    maxNorm: number;
  };
}

/** DuckDB (an independent reader) loads a parquet file: column names, types and rows (BIGINT as text). */
export async function duckRows(
  path: string,
): Promise<{ columns: string[]; types: string[]; rows: Record<string, unknown>[] }> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  const reader = await conn.runAndReadAll(`SELECT * FROM read_parquet('${path.replace(/'/g, "''")}')`);
  const columns = reader.columnNames();
  const types = reader.columnTypes().map((t) => t.toString());
  const rows = reader.getRowObjectsJson() as Record<string, unknown>[];
  conn.closeSync();
  instance.closeSync();
  return { columns, types, rows };
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

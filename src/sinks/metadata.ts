import type { ParquetColumn } from '../formats/parquet.js';

/** Keys of a sample's JSON that never become metadata columns (clip-retrieval drops them too). */
const RESERVED = new Set(['caption', 'metadata', 'image_path']);

/**
 * Flattens a sample's JSON like clip-retrieval: nested objects become `a.b` keys; arrays stay one
 * value (JSON text); `caption`, `metadata` and `image_path` at the top level are dropped.
 *
 * @example
 *   flattenMetadata({ url: 'u', exif: { w: 3 }, caption: 'x' }) // { url: 'u', 'exif.w': 3 }
 */
export function flattenMetadata(meta: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const walk = (obj: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(obj)) {
      if (prefix === '' && RESERVED.has(k)) continue;
      const key = prefix === '' ? k : `${prefix}.${k}`;
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, key);
      else out[key] = v;
    }
  };
  walk(meta, '');
  return out;
}

type Cell = string | number | boolean | null;

function toCell(v: unknown): Cell {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'bigint') return Number(v);
  return JSON.stringify(v);
}

/**
 * Builds typed parquet columns from rows. Column order: first appearance. Types: BOOLEAN when every
 * value is a boolean, INT64 when every value is a safe integer, DOUBLE when every value is a number,
 * otherwise STRING (other values as JSON text). Missing values are nulls.
 */
export function buildMetadataColumns(
  rows: readonly Record<string, unknown>[],
  fixed: readonly string[] = [],
): ParquetColumn[] {
  const names: string[] = [...fixed];
  const seen = new Set(names);
  for (const row of rows) {
    for (const k of Object.keys(row)) {
      if (!seen.has(k)) {
        seen.add(k);
        names.push(k);
      }
    }
  }
  return names.map((name) => {
    const cells = rows.map((r) => toCell(r[name]));
    const present = cells.filter((c): c is Exclude<Cell, null> => c !== null);
    let type: ParquetColumn['type'] = 'STRING';
    if (present.length > 0 && present.every((c) => typeof c === 'boolean')) type = 'BOOLEAN';
    else if (present.length > 0 && present.every((c) => typeof c === 'number' && Number.isSafeInteger(c)))
      type = 'INT64';
    else if (present.length > 0 && present.every((c) => typeof c === 'number')) type = 'DOUBLE';
    const data =
      type === 'STRING'
        ? cells.map((c) => (c === null ? null : typeof c === 'string' ? c : JSON.stringify(c)))
        : type === 'INT64'
          ? cells.map((c) => (c === null ? null : BigInt(c as number)))
          : cells;
    return { name, type, data };
  });
}

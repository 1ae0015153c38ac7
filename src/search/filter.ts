/**
 * Structured filters: a small JSON language validated against a collection's columns and compiled to the
 * SQL predicate LanceDB takes. Users never write SQL: every column name comes from the collection's own
 * schema (physical names are `[A-Za-z0-9_]`, quoted with backticks), every string is a single-quoted
 * literal with its quotes doubled, every number is checked finite. `O'Brien` and `x' OR 1=1 --` are
 * matched as the literal strings they are.
 *
 * The language (docs/search.md):
 *
 *   {"and": [F, …]}   {"or": [F, …]}   {"not": F}
 *   {"eq": [key, value]}   {"ne": [key, value]}
 *   {"gt" | "gte" | "lt" | "lte": [key, value]}
 *   {"range": [key, {"gt"?, "gte"?, "lt"?, "lte"?}]}
 *   {"in": [key, [value, …]]}
 *   {"is_null": key}   {"not_null": key}
 *
 * Logic is two-valued: a comparison on a null cell is false (never SQL's unknown), so `not` is the exact
 * complement (`{"not": {"eq": ["k", "v"]}}` matches rows where k is null too).
 */
import { GlimpseError } from '../errors/index.js';
import { describeValue, isPlainObject } from '../core/validate.js';

/** A column a filter may name: its logical key, physical name and type. */
export interface FilterColumn {
  readonly key: string;
  readonly column: string;
  readonly type: 'string' | 'number' | 'boolean';
}

export type FilterValue = string | number | boolean;
type Bounds = { gt?: FilterValue; gte?: FilterValue; lt?: FilterValue; lte?: FilterValue };

/** A structured filter (see the module comment for the language). */
export type Filter =
  | { and: Filter[] }
  | { or: Filter[] }
  | { not: Filter }
  | { eq: [string, FilterValue] }
  | { ne: [string, FilterValue] }
  | { gt: [string, FilterValue] }
  | { gte: [string, FilterValue] }
  | { lt: [string, FilterValue] }
  | { lte: [string, FilterValue] }
  | { range: [string, Bounds] }
  | { in: [string, FilterValue[]] }
  | { is_null: string }
  | { not_null: string };

/** Limits that keep a filter (from an HTTP request, say) cheap to validate and run. */
export const FILTER_LIMITS = { maxDepth: 32, maxNodes: 1000, maxInValues: 10_000 } as const;

const COMPARE: Record<string, string> = { eq: '=', ne: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=' };
const OPERATORS = [
  'and',
  'or',
  'not',
  'eq',
  'ne',
  'gt',
  'gte',
  'lt',
  'lte',
  'range',
  'in',
  'is_null',
  'not_null',
];

function invalid(path: string, expected: string, actual: unknown): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_FILTER_INVALID',
    `Expected ${expected} at ${path} but received ${describeValue(actual)}`,
    { details: { path } },
  );
}

/** A SQL string literal: single quotes doubled (LanceDB's parser takes backslashes literally). */
export function sqlStringLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** A SQL number literal; throws unless the number is finite. */
export function sqlNumberLiteral(value: number, path = 'value'): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid(path, 'a finite number', value);
  // String() never yields a form SQL misreads: integers in plain digits below 1e21, else 1.5e+21 / 1e-7.
  return Object.is(value, -0) ? '0' : String(value);
}

/** A backtick-quoted column name; only `[A-Za-z0-9_]` names exist, so nothing needs escaping. */
export function sqlColumn(column: string): string {
  if (!/^[A-Za-z0-9_]+$/.test(column)) {
    throw new GlimpseError('GLIMPSE_E_INTERNAL', `Expected a sanitized column name but received ${column}`);
  }
  return `\`${column}\``;
}

/**
 * Parses a filter given as JSON text (CLI `--filter`, HTTP bodies) or as a value already parsed.
 *
 * @example
 *   parseFilter('{"eq": ["url", "x"]}'); // { eq: ['url', 'x'] }
 */
export function parseFilter(input: unknown): unknown {
  if (typeof input !== 'string') return input;
  try {
    return JSON.parse(input) as unknown;
  } catch (err) {
    throw new GlimpseError(
      'GLIMPSE_E_FILTER_INVALID',
      `Expected a JSON filter but received text that is not JSON: ${(err as Error).message}`,
    );
  }
}

/**
 * Validates a filter (an object, or JSON text) against the collection's columns and compiles it to a LanceDB SQL predicate.
 * Unknown operators, unknown keys, values of the wrong type (a string for a number column…), non-finite
 * numbers, empty `and`/`or`/`in` and over-deep filters throw GLIMPSE_E_FILTER_INVALID (400) with the path
 * of the bad part.
 *
 * @example
 *   const columns = [{ key: 'url', column: 'url', type: 'string' }, { key: 'exif.width', column: 'exif_width', type: 'number' }];
 *   compileFilter({ and: [{ eq: ['url', "O'Brien"] }, { range: ['exif.width', { gte: 100 }] }] }, columns);
 *   // "((`url` IS NOT NULL AND `url` = 'O''Brien') AND (`exif_width` IS NOT NULL AND `exif_width` >= 100))"
 */
export function compileFilter(filter: unknown, columns: readonly FilterColumn[]): string {
  const byKey = new Map(columns.map((c) => [c.key, c]));
  let nodes = 0;

  const columnAt = (key: unknown, path: string): FilterColumn => {
    if (typeof key !== 'string') throw invalid(path, 'a column key (string)', key);
    const c = byKey.get(key);
    if (!c) {
      const known = columns.map((k) => JSON.stringify(k.key)).join(', ');
      throw new GlimpseError(
        'GLIMPSE_E_FILTER_INVALID',
        `Expected one of the collection's columns (${known}) at ${path} but received ${JSON.stringify(key)}`,
        { details: { path, key } },
      );
    }
    return c;
  };

  const literal = (c: FilterColumn, value: unknown, path: string): string => {
    switch (c.type) {
      case 'string':
        if (typeof value !== 'string') throw invalid(path, `a string (column ${c.key} holds strings)`, value);
        return sqlStringLiteral(value);
      case 'number':
        if (typeof value !== 'number' || !Number.isFinite(value))
          throw invalid(path, `a finite number (column ${c.key} holds numbers)`, value);
        return sqlNumberLiteral(value, path);
      case 'boolean':
        if (typeof value !== 'boolean')
          throw invalid(path, `true or false (column ${c.key} holds booleans)`, value);
        return value ? 'TRUE' : 'FALSE';
    }
  };

  /** A null-safe comparison: false, never unknown, on a null cell. */
  const compare = (c: FilterColumn, op: string, lit: string): string => {
    const col = sqlColumn(c.column);
    return `(${col} IS NOT NULL AND ${col} ${op} ${lit})`;
  };

  const pair = (args: unknown, path: string): [FilterColumn, unknown] => {
    if (!Array.isArray(args) || args.length !== 2) throw invalid(path, 'an array [key, value]', args);
    return [columnAt(args[0], `${path}[0]`), args[1]];
  };

  const walk = (node: unknown, path: string, depth: number): string => {
    if (depth > FILTER_LIMITS.maxDepth)
      throw invalid(path, `a filter at most ${FILTER_LIMITS.maxDepth} levels deep`, node);
    if (++nodes > FILTER_LIMITS.maxNodes)
      throw invalid(path, `a filter of at most ${FILTER_LIMITS.maxNodes} parts`, node);
    if (!isPlainObject(node))
      throw invalid(path, 'an object with one operator such as {"eq": [key, value]}', node);
    const keys = Object.keys(node);
    if (keys.length !== 1 || !OPERATORS.includes(keys[0]!)) {
      throw new GlimpseError(
        'GLIMPSE_E_FILTER_INVALID',
        `Expected an object with exactly one operator (${OPERATORS.join(', ')}) at ${path} but received ${keys.length === 0 ? 'no key' : `keys ${keys.map((k) => JSON.stringify(k)).join(', ')}`}`,
        { details: { path } },
      );
    }
    const op = keys[0]!;
    const args = node[op];
    const here = `${path}.${op}`;
    switch (op) {
      case 'and':
      case 'or': {
        if (!Array.isArray(args) || args.length === 0)
          throw invalid(here, 'a non-empty array of filters', args);
        const parts = args.map((a: unknown, i) => walk(a, `${here}[${i}]`, depth + 1));
        return parts.length === 1 ? parts[0]! : `(${parts.join(op === 'and' ? ' AND ' : ' OR ')})`;
      }
      case 'not':
        return `(NOT ${walk(args, here, depth + 1)})`;
      case 'eq':
      case 'ne':
      case 'gt':
      case 'gte':
      case 'lt':
      case 'lte': {
        const [c, value] = pair(args, here);
        if (c.type === 'boolean' && op !== 'eq' && op !== 'ne')
          throw invalid(`${here}[0]`, `a string or number column for ${op} (${c.key} holds booleans)`, c.key);
        return compare(c, COMPARE[op]!, literal(c, value, `${here}[1]`));
      }
      case 'range': {
        const [c, bounds] = pair(args, here);
        if (c.type === 'boolean')
          throw invalid(`${here}[0]`, `a string or number column for range (${c.key} holds booleans)`, c.key);
        if (!isPlainObject(bounds))
          throw invalid(`${here}[1]`, 'an object of bounds {"gte": …, "lt": …}', bounds);
        const names = Object.keys(bounds);
        const bad = names.find((b) => !['gt', 'gte', 'lt', 'lte'].includes(b));
        if (bad !== undefined || names.length === 0)
          throw invalid(`${here}[1]`, 'one or two of the bounds gt, gte, lt, lte', bad ?? bounds);
        if (('gt' in bounds && 'gte' in bounds) || ('lt' in bounds && 'lte' in bounds))
          throw invalid(
            `${here}[1]`,
            'at most one lower bound (gt or gte) and one upper bound (lt or lte)',
            bounds,
          );
        const col = sqlColumn(c.column);
        const conds = names.map((b) => `${col} ${COMPARE[b]!} ${literal(c, bounds[b], `${here}[1].${b}`)}`);
        return `(${col} IS NOT NULL AND ${conds.join(' AND ')})`;
      }
      case 'in': {
        const [c, values] = pair(args, here);
        if (!Array.isArray(values) || values.length === 0)
          throw invalid(`${here}[1]`, 'a non-empty array of values', values);
        if (values.length > FILTER_LIMITS.maxInValues)
          throw invalid(`${here}[1]`, `at most ${FILTER_LIMITS.maxInValues} values`, values);
        const lits = values.map((v: unknown, i) => literal(c, v, `${here}[1][${i}]`));
        const col = sqlColumn(c.column);
        return `(${col} IS NOT NULL AND ${col} IN (${lits.join(', ')}))`;
      }
      case 'is_null':
      case 'not_null': {
        const c = columnAt(args, here);
        return `(${sqlColumn(c.column)} ${op === 'is_null' ? 'IS NULL' : 'IS NOT NULL'})`;
      }
    }
    throw invalid(path, 'a known operator', op);
  };

  return walk(parseFilter(filter), 'filter', 0);
}

/**
 * The predicate selecting rows by id (`id` is a string column of every collection).
 *
 * @example
 *   idsPredicate(['a', "O'Brien"]); // "`id` IN ('a', 'O''Brien')"
 */
export function idsPredicate(ids: readonly string[]): string {
  if (ids.length === 0) return 'FALSE';
  return `${sqlColumn('id')} IN (${ids.map((id) => sqlStringLiteral(String(id))).join(', ')})`;
}

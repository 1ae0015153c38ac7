import { GlimpseError, type ErrorCode } from '../errors/index.js';

/**
 * One message template for bad arguments, as sharp does it:
 * `Expected <expected> for <name> but received <value> of type <type>`.
 *
 * @example
 *   invalidParameterError('batchSize', 'a positive integer', -1).message
 *   // 'Expected a positive integer for batchSize but received -1 of type number'
 */
export function invalidParameterError(
  name: string,
  expected: string,
  actual: unknown,
  code: ErrorCode = 'GLIMPSE_E_ARG_INVALID',
): GlimpseError {
  return new GlimpseError(code, `Expected ${expected} for ${name} but received ${describeValue(actual)}`, {
    details: { parameter: name },
  });
}

/** `<value> of type <type>`, short and safe to show (long strings are cut). */
export function describeValue(actual: unknown): string {
  const type = actual === null ? 'null' : Array.isArray(actual) ? 'array' : typeof actual;
  let shown: string;
  if (typeof actual === 'string') {
    shown = JSON.stringify(actual.length > 60 ? `${actual.slice(0, 57)}...` : actual);
  } else if (typeof actual === 'number' || typeof actual === 'boolean' || typeof actual === 'bigint') {
    shown = String(actual);
  } else if (actual === null || actual === undefined) {
    shown = String(actual);
  } else if (Array.isArray(actual)) {
    shown = `an array of length ${actual.length}`;
  } else if (typeof actual === 'function') {
    shown = 'a function';
  } else {
    shown = 'an object';
  }
  return `${shown} of type ${type}`;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

export function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

/** Throws the standard message unless `value` is a positive integer (optionally ≤ max). */
export function assertPositiveInteger(name: string, value: unknown, max?: number): asserts value is number {
  if (!isPositiveInteger(value) || (max !== undefined && value > max)) {
    throw invalidParameterError(
      name,
      max === undefined ? 'a positive integer' : `an integer from 1 to ${max}`,
      value,
    );
  }
}

/** Throws the standard message unless `value` is one of `allowed`. */
export function assertOneOf<T extends string>(
  name: string,
  value: unknown,
  allowed: readonly T[],
): asserts value is T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw invalidParameterError(name, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, value);
  }
}

/** Parses a byte size such as `4G`, `512M`, `1.5GB`, `1000` (bytes). */
export function parseByteSize(name: string, value: unknown): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return Math.floor(value);
  if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(value);
    if (m) {
      const unit = (m[2] ?? '').toLowerCase();
      const pow = unit === '' ? 0 : 'kmgt'.indexOf(unit) + 1;
      return Math.floor(Number(m[1]) * 1024 ** pow);
    }
  }
  throw invalidParameterError(name, 'a byte size such as 4G, 512M or 1000000', value);
}

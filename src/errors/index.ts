import { errorCatalogue, type ErrorCode } from './catalogue.js';

export { errorCatalogue, type ErrorCode, type ErrorSpec } from './catalogue.js';

export interface GlimpseErrorOptions {
  /** The underlying error. */
  cause?: unknown;
  /** Structured facts (path, item, shard) for logs, failure records and JSON answers. Never secrets. */
  details?: Record<string, unknown>;
}

/**
 * Every error glimpse throws on purpose. `code` is a key of the catalogue, `status` its HTTP status,
 * and `message` says what was expected and what was received.
 *
 * @example
 *   throw new GlimpseError('GLIMPSE_E_MODEL_FILE_MISSING', `Expected file onnx/vision_model.onnx in ${dir} but it does not exist`);
 */
export class GlimpseError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: GlimpseErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GlimpseError';
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.details = options.details;
  }

  /** A plain object for JSON answers and failure records (no stack, no cause chain). */
  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** True when `err` is a GlimpseError, optionally with the given code. */
export function isGlimpseError(err: unknown, code?: ErrorCode): err is GlimpseError {
  return err instanceof GlimpseError && (code === undefined || err.code === code);
}

/**
 * Control flow, not failure: this one item (an image, a caption, a URL) cannot be processed. The
 * pipeline records it with its coded reason and goes on; it never fails the job.
 */
export class SkipItemError extends GlimpseError {
  constructor(code: ErrorCode, message: string, options: GlimpseErrorOptions = {}) {
    super(code, message, options);
    this.name = 'SkipItemError';
  }
}

/** Control flow: a transient failure (network, lease contention) that is worth retrying. */
export class RetryableError extends GlimpseError {
  constructor(code: ErrorCode, message: string, options: GlimpseErrorOptions = {}) {
    super(code, message, options);
    this.name = 'RetryableError';
  }
}

/** Control flow: retrying cannot help (bad input, bad configuration); fail for good at once. */
export class UnrecoverableError extends GlimpseError {
  constructor(code: ErrorCode, message: string, options: GlimpseErrorOptions = {}) {
    super(code, message, options);
    this.name = 'UnrecoverableError';
  }
}

/** Wraps anything thrown into a GlimpseError (unknown errors become GLIMPSE_E_INTERNAL). */
export function toGlimpseError(err: unknown, fallback: ErrorCode = 'GLIMPSE_E_INTERNAL'): GlimpseError {
  if (err instanceof GlimpseError) return err;
  if (err instanceof Error && err.name === 'AbortError') {
    return new GlimpseError('GLIMPSE_E_ABORTED', 'Expected the operation to finish but it was cancelled', {
      cause: err,
    });
  }
  const text = err instanceof Error ? err.message : String(err);
  return new GlimpseError(fallback, text, { cause: err });
}

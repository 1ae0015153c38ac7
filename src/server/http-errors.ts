/**
 * Every error answer is `{code, message}` with the catalogue's status: GlimpseErrors as they are (with
 * server paths scrubbed from the message), Fastify's own errors (schema validation, body limits, media
 * types, JSON syntax, rate limits) mapped to server codes, and anything unexpected as GLIMPSE_E_INTERNAL
 * with a generic message. Stacks, causes and details never leave the server; they go to the log.
 */
import { errorCatalogue, GlimpseError, isGlimpseError, type ErrorCode } from '../errors/index.js';

export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message?: string;
  validation?: readonly { instancePath?: string; message?: string; params?: Record<string, unknown> }[];
  validationContext?: string;
}

function asFastifyError(err: unknown): FastifyLikeError {
  return typeof err === 'object' && err !== null ? (err as FastifyLikeError) : {};
}

const BY_FASTIFY_CODE: Readonly<Record<string, ErrorCode>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'GLIMPSE_E_SERVER_BODY_TOO_LARGE',
  FST_REQ_FILE_TOO_LARGE: 'GLIMPSE_E_SERVER_BODY_TOO_LARGE',
  FST_FILES_LIMIT: 'GLIMPSE_E_SERVER_BODY_TOO_LARGE',
  FST_PARTS_LIMIT: 'GLIMPSE_E_SERVER_BODY_TOO_LARGE',
  FST_FIELDS_LIMIT: 'GLIMPSE_E_SERVER_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'GLIMPSE_E_SERVER_UNSUPPORTED_MEDIA_TYPE',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'GLIMPSE_E_SERVER_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'GLIMPSE_E_SERVER_BAD_REQUEST',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'GLIMPSE_E_SERVER_BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'GLIMPSE_E_SERVER_BAD_REQUEST',
  FST_PROTO_VIOLATION: 'GLIMPSE_E_SERVER_BAD_REQUEST',
};

const BY_STATUS: Readonly<Record<number, ErrorCode>> = {
  400: 'GLIMPSE_E_SERVER_BAD_REQUEST',
  401: 'GLIMPSE_E_SERVER_UNAUTHORIZED',
  403: 'GLIMPSE_E_SERVER_FORBIDDEN_PATH',
  404: 'GLIMPSE_E_SERVER_NOT_FOUND',
  413: 'GLIMPSE_E_SERVER_BODY_TOO_LARGE',
  415: 'GLIMPSE_E_SERVER_UNSUPPORTED_MEDIA_TYPE',
  429: 'GLIMPSE_E_SERVER_RATE_LIMITED',
};

/** Replaces every known server path in a message by a short label. */
export type PathScrubber = (message: string) => string;

/**
 * A scrubber for the given server paths (longest first), each replaced by its label.
 *
 * @example
 *   const scrub = pathScrubber([['/srv/db', '<db>']]);
 *   scrub('Expected a collection named x in /srv/db but there is none'); // '… in <db> but …'
 */
export function pathScrubber(paths: readonly (readonly [string, string])[]): PathScrubber {
  const list = paths.filter(([p]) => p.length > 1).sort((a, b) => b[0].length - a[0].length);
  return (message) => {
    let out = message;
    for (const [p, label] of list) out = out.split(p).join(label);
    return out;
  };
}

function validationMessage(err: FastifyLikeError): string {
  const first = err.validation?.[0];
  const where = `${err.validationContext ?? 'body'}${first?.instancePath ?? ''}`;
  const extra = first?.params?.['additionalProperty'];
  const missing = first?.params?.['missingProperty'];
  if (typeof extra === 'string')
    return `Expected only known fields in ${where} but received ${JSON.stringify(extra)}`;
  if (typeof missing === 'string')
    return `Expected field ${JSON.stringify(missing)} in ${where} but it is missing`;
  return `Expected ${where} to be valid but it ${first?.message ?? 'is not'}`;
}

/**
 * The status and JSON body answering an error, and whether it is the server's fault (to log as an error).
 *
 * @example
 *   const { status, body } = toErrorAnswer(new GlimpseError('GLIMPSE_E_FILTER_INVALID', 'Expected …'), scrub);
 *   reply.status(status).send(body); // 400 {code: 'GLIMPSE_E_FILTER_INVALID', message: 'Expected …'}
 */
export function toErrorAnswer(
  err: unknown,
  scrub: PathScrubber,
): { status: number; body: ErrorBody; internal: boolean } {
  if (isGlimpseError(err)) {
    if (err.status >= 500 && err.code !== 'GLIMPSE_E_SERVER_UNAVAILABLE') {
      // The store's and runtime's messages can carry internals: the summary goes out, the message to the log.
      const spec = errorCatalogue[err.code];
      return { status: err.status, body: { code: err.code, message: spec.summary }, internal: true };
    }
    return { status: err.status, body: { code: err.code, message: scrub(err.message) }, internal: false };
  }
  const f = asFastifyError(err);
  if (f.validation) {
    return {
      status: 400,
      body: { code: 'GLIMPSE_E_SERVER_BAD_REQUEST', message: scrub(validationMessage(f)) },
      internal: false,
    };
  }
  const byCode = f.code !== undefined ? BY_FASTIFY_CODE[f.code] : undefined;
  const status = typeof f.statusCode === 'number' ? f.statusCode : 500;
  const code = byCode ?? BY_STATUS[status];
  if (code !== undefined && status < 500) {
    const spec = errorCatalogue[code];
    const message =
      code === 'GLIMPSE_E_SERVER_BAD_REQUEST' && typeof f.message === 'string' && f.message !== ''
        ? `Expected a well-formed request but ${f.message.replace(/^./, (c) => c.toLowerCase())}`
        : spec.summary;
    return { status: spec.status, body: { code, message: scrub(message) }, internal: false };
  }
  return {
    status: 500,
    body: { code: 'GLIMPSE_E_INTERNAL', message: errorCatalogue.GLIMPSE_E_INTERNAL.summary },
    internal: true,
  };
}

/**
 * GLIMPSE_E_SERVER_NOT_FOUND for a route that does not exist (the query string left out).
 *
 * @example
 *   routeNotFound('GET', '/nope?x=1').message; // 'Expected a known route but there is no GET /nope (see /docs)'
 */
export function routeNotFound(method: string, url: string): GlimpseError {
  const path = url.split('?')[0] ?? url;
  return new GlimpseError(
    'GLIMPSE_E_SERVER_NOT_FOUND',
    `Expected a known route but there is no ${method} ${path.slice(0, 200)} (see /docs)`,
  );
}

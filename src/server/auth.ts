/**
 * Optional API keys. Keys are compared as SHA-256 digests with crypto.timingSafeEqual (equal lengths
 * whatever the key), against every configured key without an early exit, so timing says nothing about
 * which bytes matched. Keys come in `Authorization: Bearer <key>` or `X-API-Key: <key>`, never in URLs, and
 * the logger redacts both headers.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GlimpseError } from '../errors/index.js';
import type { AuthProtect } from '../config/server.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route changes data: it needs a key whenever keys are configured. */
    write?: boolean;
    /** The route never needs a key (health, the UI's files). */
    public?: boolean;
    /** clip-retrieval route: CORS open to every origin. */
    openCors?: boolean;
  }
}

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * A constant-time key check over the configured keys.
 *
 * @example
 *   const check = apiKeyChecker(['s3cret']);
 *   check('s3cret'); // true
 *   check('guess');  // false
 */
export function apiKeyChecker(keys: readonly string[]): (given: string | undefined) => boolean {
  const digests = keys.map(digest);
  return (given) => {
    if (given === undefined || given === '') return false;
    const d = digest(given);
    let ok = false;
    for (const k of digests) ok = timingSafeEqual(d, k) || ok;
    return ok;
  };
}

/**
 * The key a request carries, if any: `Authorization: Bearer <key>`, else `X-API-Key`.
 *
 * @example
 *   requestKey(request); // 's3cret' for `Authorization: Bearer s3cret`
 */
export function requestKey(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m) return m[1];
  }
  const header = request.headers['x-api-key'];
  return typeof header === 'string' ? header.trim() : undefined;
}

/**
 * Adds the key check (a preParsing hook: after rate limiting, before any body is read) to every route.
 *
 * @example
 *   installAuth(app, { apiKeys: ['s3cret'], protect: 'writes' });
 */
export function installAuth(
  app: FastifyInstance,
  auth: { apiKeys: readonly string[]; protect: AuthProtect },
): void {
  if (auth.apiKeys.length === 0) return;
  const check = apiKeyChecker(auth.apiKeys);
  app.addHook('preParsing', async (request, reply, payload) => {
    const config = request.routeOptions.config;
    if (config.public || request.method === 'OPTIONS') return payload;
    if (auth.protect === 'writes' && !config.write) return payload;
    if (check(requestKey(request))) return payload;
    void reply.header('www-authenticate', 'Bearer');
    const given = requestKey(request) === undefined ? 'none' : 'a key that is not valid';
    throw new GlimpseError(
      'GLIMPSE_E_SERVER_UNAUTHORIZED',
      `Expected an API key (Authorization: Bearer <key> or X-API-Key) for ${request.method} ${request.routeOptions.url ?? ''} but received ${given}`,
    );
  });
}

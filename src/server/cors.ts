/**
 * CORS, two policies: the clip-retrieval routes are open to every origin (the request's Origin echoed,
 * or `*`), as upstream's back end is; the REST routes answer only the configured origins (`*`: any).
 * Preflight requests (OPTIONS) get the same decision.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Paths of the clip-retrieval routes (after `//` → `/`). */
export const OPEN_CORS_PATHS = new Set(['/indices-list', '/knn-service', '/metadata', '/config.json']);

function allowOrigin(
  reply: FastifyReply,
  origin: string | undefined,
  open: boolean,
  origins: readonly string[],
): boolean {
  if (open) {
    void reply.header('access-control-allow-origin', origin ?? '*');
    if (origin !== undefined) void reply.header('vary', 'Origin');
    return true;
  }
  if (origin === undefined) return false;
  if (origins.includes('*')) {
    void reply.header('access-control-allow-origin', '*');
    return true;
  }
  if (origins.includes(origin)) {
    void reply.header('access-control-allow-origin', origin);
    void reply.header('vary', 'Origin');
    return true;
  }
  return false;
}

function pathOf(request: FastifyRequest): string {
  return (request.url.split('?')[0] ?? '/').replace(/\/{2,}/g, '/');
}

/**
 * Adds the CORS headers to every answer and a preflight route for every path.
 *
 * @example
 *   installCors(app, ['https://photos.example.com']);
 */
export function installCors(app: FastifyInstance, origins: readonly string[]): void {
  app.addHook('onRequest', async (request, reply) => {
    if (request.method === 'OPTIONS') return;
    const open = request.routeOptions.config.openCors === true;
    allowOrigin(reply, request.headers.origin, open, origins);
  });
  app.options('*', { config: { public: true }, schema: { hide: true } }, async (request, reply) => {
    const open = OPEN_CORS_PATHS.has(pathOf(request));
    if (allowOrigin(reply, request.headers.origin, open, origins)) {
      void reply.header('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
      const asked = request.headers['access-control-request-headers'];
      void reply.header(
        'access-control-allow-headers',
        typeof asked === 'string' ? asked : 'content-type, authorization, x-api-key',
      );
      void reply.header('access-control-max-age', '600');
    }
    return reply.status(204).send();
  });
}

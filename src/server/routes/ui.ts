/**
 * The web UI (built by `npm run build:ui` into ui/dist) at `/`. Its files are public (no API key: the page
 * asks for one when the API answers 401). Without a build, `/` says how to make one.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';

/** ui/dist beside src/ (tsx) or dist/ (compiled): both are two levels below the package root. */
export const DEFAULT_UI_DIR = fileURLToPath(new URL('../../../ui/dist/', import.meta.url));

/**
 * The UI routes as an encapsulated plugin.
 *
 * @example
 *   await app.register(uiRoutes, { dir: DEFAULT_UI_DIR });
 */
export async function uiRoutes(app: FastifyInstance, opts: { dir: string }): Promise<void> {
  app.addHook('onRoute', (route) => {
    route.config = { ...(route.config ?? {}), public: true };
  });
  if (!existsSync(join(opts.dir, 'index.html'))) {
    app.get('/', { schema: { hide: true } }, async (_request, reply) =>
      reply
        .type('text/html; charset=utf-8')
        .send(
          '<!doctype html><title>glimpse</title><p>The web UI is not built: run <code>npm run build:ui</code>. The API is at <a href="/docs">/docs</a>.</p>',
        ),
    );
    return;
  }
  await app.register(fastifyStatic, {
    root: opts.dir,
    prefix: '/',
    wildcard: false,
    index: ['index.html'],
    maxAge: '1h',
    setHeaders: (res, path) => {
      res.header('x-content-type-options', 'nosniff');
      if (path.endsWith('.html')) res.header('cache-control', 'no-cache');
    },
  });
}

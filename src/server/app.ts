/**
 * `buildApp(config, deps)`: the whole HTTP server as one Fastify instance, ready for `inject()` in tests or
 * `listen()` in `startServer`. Routes are encapsulated plugins (health, REST `/v1`, clip-retrieval,
 * metrics, docs, UI) over one shared context; cross-cutting parts (errors, CORS, API keys, rate limits,
 * metrics, request logs with secrets redacted) are hooks installed here.
 */
import { homedir, tmpdir } from 'node:os';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { GlimpseError } from '../errors/index.js';
import type { ServerConfig } from '../config/server.js';
import type { QueryEmbedder } from './embedder.js';
import type { CollectionRegistry } from './collections.js';
import { UrlGuard } from './net-guard.js';
import { PathGuard } from './path-guard.js';
import { ServerMetrics } from './metrics.js';
import { installAuth } from './auth.js';
import { installCors } from './cors.js';
import { pathScrubber, routeNotFound, toErrorAnswer } from './http-errors.js';
import type { ServerContext } from './service.js';
import { healthRoutes } from './routes/health.js';
import { collectionRoutes } from './routes/collections.js';
import { compatRoutes } from './routes/compat.js';
import { DEFAULT_UI_DIR, uiRoutes } from './routes/ui.js';

/** What the app runs on: a model, the collections, and where logs go. */
export interface AppDeps {
  readonly embedder: QueryEmbedder;
  readonly registry: CollectionRegistry;
  /** Where JSON log lines go (default stdout); tests pass a collector. */
  readonly logStream?: { write(line: string): void };
  /** The built UI folder (default ui/dist of the package). */
  readonly uiDir?: string;
  /** Server paths to keep out of answers, besides the configured ones. */
  readonly privatePaths?: readonly string[];
  /** The metrics registry (default: a new one with process metrics); give it to the embedder's onBatch too. */
  readonly metrics?: ServerMetrics;
}

/** Headers never written to logs. */
export const REDACTED_HEADERS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
];

/**
 * Builds the app (not listening). Close it with `app.close()`; the embedder and registry stay the caller's.
 *
 * @example
 *   const config = await loadServerConfig({ flags: { db: 'data/db', model: 'models/tiny' } });
 *   const app = await buildApp(config, { embedder, registry });
 *   const res = await app.inject({ method: 'GET', url: '/health' });
 */
export async function buildApp(config: ServerConfig, deps: AppDeps): Promise<FastifyInstance> {
  const metrics = deps.metrics ?? new ServerMetrics();
  const ctx: ServerContext = {
    config,
    embedder: deps.embedder,
    registry: deps.registry,
    metrics,
    images: {
      urls: new UrlGuard({
        allowPrivate: config.fetch.allowPrivate,
        allowedCidrs: config.fetch.allowedCidrs,
        maxBytes: config.limits.imageBytes,
        timeoutMs: config.fetch.timeoutMs,
        maxRedirects: config.fetch.maxRedirects,
      }),
      paths: await PathGuard.create(config.allowedRoots),
      maxBytes: config.limits.imageBytes,
    },
  };
  const scrub = pathScrubber([
    ...config.allowedRoots.map((r): [string, string] => [r, '<root>']),
    [config.db, '<db>'],
    [config.cacheDir, '<cache>'],
    [config.model, config.model.startsWith('/') || config.model.startsWith('.') ? '<model>' : config.model],
    ...(deps.privatePaths ?? []).map((p): [string, string] => [p, '<path>']),
    [process.cwd(), '<cwd>'],
    [tmpdir(), '<tmp>'],
    [homedir(), '<home>'],
  ]);

  const app = Fastify({
    logger: {
      level: config.logLevel,
      redact: { paths: REDACTED_HEADERS, censor: '[redacted]' },
      ...(deps.logStream ? { stream: deps.logStream } : {}),
    },
    bodyLimit: config.limits.bodyBytes,
    trustProxy: config.trustProxy,
    routerOptions: { ignoreDuplicateSlashes: true, ignoreTrailingSlash: true },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
  });

  app.setErrorHandler((err: FastifyError | GlimpseError, request, reply) => {
    const answer = toErrorAnswer(err, scrub);
    if (answer.internal) request.log.error({ err }, 'request failed');
    else request.log.info({ code: answer.body.code }, answer.body.message);
    return reply.status(answer.status).send(answer.body);
  });
  app.setNotFoundHandler((request, reply) => {
    const answer = toErrorAnswer(routeNotFound(request.method, request.url), scrub);
    return reply.status(answer.status).send(answer.body);
  });

  metrics.install(app);
  installCors(app, config.cors.origins);
  if (config.rateLimit.max > 0) {
    await app.register(rateLimit, {
      max: config.rateLimit.max,
      timeWindow: config.rateLimit.windowMs,
      errorResponseBuilder: (_request, context) =>
        new GlimpseError(
          'GLIMPSE_E_SERVER_RATE_LIMITED',
          `Expected at most ${context.max} requests per ${Math.round(config.rateLimit.windowMs / 1000)} s from one client but received more; retry in ${context.after}`,
        ),
    });
  }
  installAuth(app, config.auth);

  if (config.docs) {
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'glimpse',
          description:
            'Search images and captions embedded with CLIP. Errors are `{code, message}` (codes: docs/errors.md). With API keys configured, send `Authorization: Bearer <key>` (or `X-API-Key`).',
          version: '1',
        },
        tags: [
          { name: 'collections', description: 'create, list, inspect, delete' },
          { name: 'items', description: 'insert and delete items' },
          { name: 'search', description: 'search by text, image, URL, vector or item' },
          { name: 'clip-retrieval', description: "routes compatible with clip-retrieval's back end" },
          { name: 'server', description: 'health and metrics' },
        ],
        components: {
          securitySchemes: {
            bearer: { type: 'http', scheme: 'bearer' },
            apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
          },
        },
      },
    });
  }

  await app.register(healthRoutes, { ctx, scrub });
  await app.register(collectionRoutes, { prefix: '/v1', ctx });
  await app.register(compatRoutes, { ctx, scrub });
  if (config.metrics) {
    app.get(
      '/metrics',
      { schema: { summary: 'Prometheus metrics', tags: ['server'] } },
      async (_request, reply) =>
        reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
    );
  }
  if (config.docs) {
    await app.register(async (scope) => {
      scope.addHook('onRoute', (route) => {
        route.config = { ...(route.config ?? {}), public: true };
      });
      await scope.register(swaggerUi, { routePrefix: '/docs' });
    });
  }
  if (config.ui) await app.register(uiRoutes, { dir: deps.uiDir ?? DEFAULT_UI_DIR });
  await app.ready();
  return app;
}

/**
 * server/: `glimpse serve` — the REST API, clip-retrieval-compatible routes, metrics, docs and the web UI.
 * `startServer(config)` loads the model, opens the collections and listens; `buildApp` builds the same app
 * for `inject()` tests.
 *
 * @example
 *   import { loadServerConfig } from '../config/server.js';
 *   import { startServer } from './server/index.js';
 *   const server = await startServer(await loadServerConfig({ file: 'glimpse.yaml', env: process.env }));
 *   console.log(server.url); // http://127.0.0.1:8080
 *   await server.close();
 */
import type { FastifyInstance } from 'fastify';
import { loadModel } from '../pipeline/model.js';
import type { ServerConfig } from '../config/server.js';
import { buildApp, type AppDeps } from './app.js';
import { BatchingEmbedder } from './embedder.js';
import { CollectionRegistry } from './collections.js';
import { ServerMetrics } from './metrics.js';

export { buildApp, type AppDeps } from './app.js';
export { BatchingEmbedder, type QueryEmbedder } from './embedder.js';
export { CollectionRegistry, deduplicateHits } from './collections.js';
export { ServerMetrics } from './metrics.js';
export { UrlGuard, isPublicAddress, type FetchPolicy } from './net-guard.js';
export { PathGuard } from './path-guard.js';

export interface RunningServer {
  readonly app: FastifyInstance;
  /** `http://host:port` the server listens on. */
  readonly url: string;
  /** Stops accepting requests, finishes those in flight, closes the model and the store. */
  close(): Promise<void>;
}

/**
 * Loads the model (query embedding, batched), opens the collection database and listens.
 *
 * @example
 *   const server = await startServer(config, { logStream: process.stderr });
 */
export async function startServer(
  config: ServerConfig,
  options: Pick<AppDeps, 'logStream' | 'uiDir'> = {},
): Promise<RunningServer> {
  const metrics = new ServerMetrics();
  const model = await loadModel(config.model, {
    dtype: config.dtype,
    offline: config.offline,
    ...(config.cacheDir !== '' ? { cacheDir: config.cacheDir } : {}),
    ...(config.threads > 0 ? { intraOpThreads: config.threads } : {}),
    limits: { maxPixels: config.limits.maxPixels, maxBytes: config.limits.imageBytes },
    decodeWorkers: 2,
  });
  const embedder = new BatchingEmbedder(model, config.model, {
    onBatch: (kind, seconds, size) => {
      metrics.embed.observe({ kind }, seconds);
      metrics.embedBatch.observe({ kind }, size);
    },
  });
  let registry: CollectionRegistry | undefined;
  try {
    registry = await CollectionRegistry.open(config.db);
    const app = await buildApp(config, { embedder, registry, metrics, ...options });
    const url = await app.listen({ host: config.host, port: config.port });
    const reg = registry;
    return {
      app,
      url,
      close: async () => {
        await app.close();
        await reg.close();
        await embedder.close();
      },
    };
  } catch (err) {
    await registry?.close();
    await embedder.close();
    throw err;
  }
}

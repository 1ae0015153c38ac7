/**
 * Prometheus metrics (prom-client, one registry per app): requests and their latency per route, model
 * batches (embedding time by kind and batch size), searches by collection, and the process's defaults.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { FastifyInstance } from 'fastify';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The server's metrics.
 *
 * @example
 *   const metrics = new ServerMetrics();
 *   metrics.embed.observe({ kind: 'text' }, 0.012);
 *   const text = await metrics.registry.metrics(); // Prometheus text format
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly latency: Histogram<'method' | 'route' | 'status'>;
  readonly embed: Histogram<'kind'>;
  readonly embedBatch: Histogram<'kind'>;
  readonly search: Histogram<'collection'>;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'glimpse_http_requests_total',
      help: 'HTTP requests answered, by method, route and status',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.latency = new Histogram({
      name: 'glimpse_http_request_duration_seconds',
      help: 'HTTP request latency, by method, route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.embed = new Histogram({
      name: 'glimpse_embed_duration_seconds',
      help: 'Time of one model batch (text or image queries and inserts)',
      labelNames: ['kind'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.embedBatch = new Histogram({
      name: 'glimpse_embed_batch_size',
      help: 'Inputs per model batch (concurrent requests are batched together)',
      labelNames: ['kind'],
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers,
    });
    this.search = new Histogram({
      name: 'glimpse_search_duration_seconds',
      help: 'Vector search time in the store, by collection',
      labelNames: ['collection'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    if (options.defaultMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'glimpse_' });
  }

  /**
   * Counts and times every answered request by its route pattern.
   *
   * @example
   *   metrics.install(app); // before the routes are registered
   */
  install(app: FastifyInstance): void {
    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? '<unmatched>';
      const labels = { method: request.method, route, status: String(reply.statusCode) };
      this.requests.inc(labels);
      this.latency.observe(labels, reply.elapsedTime / 1000);
    });
  }
}

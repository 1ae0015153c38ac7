/**
 * `GET /health`: a real text embedding and a real image embedding with the server's model, and a listing
 * of the store. 200 with timings when all work; 503 GLIMPSE_E_SERVER_UNAVAILABLE naming the broken part.
 */
import type { FastifyInstance } from 'fastify';
import { GlimpseError, toGlimpseError } from '../../errors/index.js';
import { probePng } from '../embedder.js';
import { publicModelId, type ServerContext } from '../service.js';
import type { PathScrubber } from '../http-errors.js';
import { ERROR_RESPONSES } from '../schemas.js';

function checkVector(v: Float32Array, dimension: number, what: string): void {
  let norm = 0;
  for (const x of v) norm += x * x;
  if (v.length !== dimension || !Number.isFinite(norm) || Math.abs(norm - 1) > 1e-3) {
    throw new Error(`the ${what} embedding is not a unit vector of dimension ${dimension}`);
  }
}

/**
 * The health route as an encapsulated plugin.
 *
 * @example
 *   await app.register(healthRoutes, { ctx, scrub });
 */
export async function healthRoutes(
  app: FastifyInstance,
  opts: { ctx: ServerContext; scrub: PathScrubber },
): Promise<void> {
  const { ctx, scrub } = opts;
  const probe = probePng(32);
  app.get(
    '/health',
    {
      config: { public: true, rateLimit: false },
      schema: {
        summary: 'Health: embeds a text and an image with the model and lists the store',
        tags: ['server'],
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string' },
              model: {
                type: 'object',
                properties: {
                  id: { type: 'string' },
                  fingerprint: { type: 'string' },
                  dimension: { type: 'integer' },
                },
              },
              collections: { type: 'integer' },
              checks: {
                type: 'object',
                properties: {
                  text_ms: { type: 'number' },
                  image_ms: { type: 'number' },
                  store_ms: { type: 'number' },
                },
              },
            },
          },
          ...ERROR_RESPONSES,
        },
      },
    },
    async () => {
      const timed = async <T>(part: string, fn: () => Promise<T>): Promise<[T, number]> => {
        const start = performance.now();
        try {
          return [await fn(), Math.round((performance.now() - start) * 100) / 100];
        } catch (err) {
          const e = toGlimpseError(err);
          throw new GlimpseError(
            'GLIMPSE_E_SERVER_UNAVAILABLE',
            `Expected a working ${part} but it failed: ${scrub(e.message)}`,
            {
              cause: err,
            },
          );
        }
      };
      const d = ctx.embedder.dimension;
      const [, textMs] = await timed('model (text)', async () =>
        checkVector(await ctx.embedder.embedText('a photo of a cat'), d, 'text'),
      );
      const [, imageMs] = await timed('model (image)', async () =>
        checkVector(await ctx.embedder.embedImage(probe), d, 'image'),
      );
      const [count, storeMs] = await timed('vector store', () => ctx.registry.ping());
      const fp = ctx.embedder.fingerprint;
      return {
        status: 'ok',
        model: { id: publicModelId(fp.id), fingerprint: fp.hash.slice(0, 12), dimension: d },
        collections: count,
        checks: { text_ms: textMs, image_ms: imageMs, store_ms: storeMs },
      };
    },
  );
}

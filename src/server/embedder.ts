/**
 * Query embedding for the server: one loaded model, with concurrent requests gathered into batches.
 * While a batch runs, new texts (or images) queue; the next batch takes up to `maxBatch` of them at once,
 * so a loaded server runs the model at its batch throughput while a quiet one adds no delay. A batch that
 * fails is retried one item at a time, so one bad image fails only its own request.
 */
import { deflateSync } from 'node:zlib';
import type { ModelFingerprint } from '../models/types.js';
import type { ClipModel } from '../pipeline/model.js';

/** What the routes need from a model. */
export interface QueryEmbedder {
  readonly dimension: number;
  readonly fingerprint: ModelFingerprint;
  /** The model's name as configured (hub id or folder), stored as the collections' model reference. */
  readonly modelRef: string;
  /** One L2-normalized vector per text. */
  embedText(text: string): Promise<Float32Array>;
  /** One L2-normalized vector per image (encoded file bytes). */
  embedImage(bytes: Uint8Array): Promise<Float32Array>;
  close(): Promise<void>;
}

/** Called after each model batch, for metrics. */
export type BatchObserver = (kind: 'text' | 'image', seconds: number, size: number) => void;

interface Pending<T> {
  input: T;
  resolve: (v: Float32Array) => void;
  reject: (err: unknown) => void;
}

class BatchQueue<T> {
  private readonly pending: Pending<T>[] = [];
  private running = false;

  constructor(
    private readonly run: (inputs: T[]) => Promise<{ data: Float32Array; dimension: number }>,
    private readonly maxBatch: number,
    private readonly observe: (seconds: number, size: number) => void,
  ) {}

  push(input: T): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.pending.push({ input, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, this.maxBatch);
        await this.runBatch(batch);
      }
    } finally {
      this.running = false;
    }
  }

  private async runBatch(batch: Pending<T>[]): Promise<void> {
    const start = performance.now();
    try {
      const m = await this.run(batch.map((p) => p.input));
      this.observe((performance.now() - start) / 1000, batch.length);
      batch.forEach((p, i) => p.resolve(m.data.slice(i * m.dimension, (i + 1) * m.dimension)));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      for (const p of batch) await this.runBatch([p]);
    }
  }
}

/**
 * A QueryEmbedder over a loaded ClipModel, batching concurrent calls.
 *
 * @example
 *   const model = await loadModel('openai/clip-vit-base-patch32', { limits: { maxPixels: 50e6 } });
 *   const embedder = new BatchingEmbedder(model, 'openai/clip-vit-base-patch32');
 *   const v = await embedder.embedText('a dog on a beach'); // Float32Array(512), unit length
 */
export class BatchingEmbedder implements QueryEmbedder {
  private readonly texts: BatchQueue<string>;
  private readonly images: BatchQueue<Uint8Array>;

  constructor(
    private readonly model: ClipModel,
    readonly modelRef: string,
    options: { maxBatch?: number; onBatch?: BatchObserver } = {},
  ) {
    const maxBatch = options.maxBatch ?? 16;
    const observe = options.onBatch ?? (() => undefined);
    this.texts = new BatchQueue(
      (t) => model.embedTexts(t),
      maxBatch,
      (s, n) => observe('text', s, n),
    );
    this.images = new BatchQueue(
      (b) => model.embedImages(b),
      maxBatch,
      (s, n) => observe('image', s, n),
    );
  }

  get dimension(): number {
    return this.model.dimension;
  }

  get fingerprint(): ModelFingerprint {
    return this.model.fingerprint;
  }

  embedText(text: string): Promise<Float32Array> {
    return this.texts.push(text);
  }

  embedImage(bytes: Uint8Array): Promise<Float32Array> {
    return this.images.push(bytes);
  }

  close(): Promise<void> {
    return this.model.close();
  }
}

function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/**
 * A small valid PNG (a gray gradient), for the health check's real image embedding.
 *
 * @example
 *   const bytes = probePng(32); // 32×32 RGB PNG
 */
export function probePng(size = 32): Uint8Array {
  const raw = Buffer.alloc(size * (1 + size * 3));
  for (let y = 0; y < size; y++) {
    const row = y * (1 + size * 3);
    for (let x = 0; x < size; x++)
      raw.fill(((x + y) * 255) / (2 * size - 2), row + 1 + x * 3, row + 4 + x * 3);
  }
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { ErrorCode } from '../errors/index.js';
import { assertPositiveInteger } from '../core/validate.js';
import type { PreprocessConfig } from '../models/types.js';

/** Safety limits applied to every decoded image. */
export interface DecodeLimits {
  /** Largest accepted width × height (default like sharp's limitInputPixels). */
  maxPixels?: number;
  /** Largest accepted file size in bytes. */
  maxBytes?: number;
}

/** @internal message to a decode worker */
export interface DecodeRequest {
  id: number;
  input: string | Uint8Array;
}

/** @internal message from a decode worker */
export type DecodeReply =
  | { id: number; ok: true; data: Uint8Array; width: number; height: number }
  | { id: number; ok: false; code: ErrorCode; message: string };

/** A decoded, resized and cropped image (HWC RGB uint8), or why it failed. */
export type DecodeResult =
  | { ok: true; data: Uint8Array; width: number; height: number }
  | { ok: false; code: ErrorCode; message: string };

export interface DecodePoolOptions {
  preprocess: PreprocessConfig;
  /** Worker threads (default: the number of cores). */
  workers?: number;
  limits?: DecodeLimits;
  /** `exact` matches the reference (PIL) preprocessing; `fast` lets libvips resize (see docs). */
  mode?: 'exact' | 'fast';
}

interface Pending {
  resolve: (r: DecodeResult) => void;
  worker: WorkerSlot;
}

interface WorkerSlot {
  worker: Worker;
  inFlight: Set<number>;
}

/**
 * The worker's entry point. Compiled (dist/), it is worker.js. From sources under tsx (tests, dev),
 * Node 20 workers do not inherit tsx's loader, so a one-line bootstrap registers it first.
 */
function workerEntry(): { entry: URL | string; eval: boolean } {
  if (!import.meta.url.endsWith('.ts'))
    return { entry: new URL('./worker.js', import.meta.url), eval: false };
  const worker = new URL('./worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  return {
    entry: `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(worker)}); })`,
    eval: true,
  };
}

/**
 * A pool of decode worker threads. `decode()` returns a promise per image; the caller bounds how many
 * are outstanding (the pipeline keeps a window in input order). A worker that dies fails only its own
 * in-flight images, and is replaced.
 *
 * @example
 *   const pool = new DecodePool({ preprocess: model.preprocess, workers: 2 });
 *   const r = await pool.decode('photo.jpg');
 *   await pool.close();
 */
export class DecodePool {
  private readonly slots: WorkerSlot[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private closed = false;

  constructor(private readonly options: DecodePoolOptions) {
    const n = options.workers ?? availableParallelism();
    assertPositiveInteger('workers', n, 256);
    for (let i = 0; i < n; i++) this.slots.push(this.spawn());
  }

  get size(): number {
    return this.slots.length;
  }

  private spawn(): WorkerSlot {
    const { entry, eval: isEval } = workerEntry();
    const worker = new Worker(entry, {
      eval: isEval,
      workerData: {
        preprocess: this.options.preprocess,
        limits: this.options.limits ?? {},
        mode: this.options.mode ?? 'exact',
      },
    });
    const slot: WorkerSlot = { worker, inFlight: new Set() };
    worker.unref();
    worker.on('message', (reply: DecodeReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      slot.inFlight.delete(reply.id);
      p.resolve(
        reply.ok
          ? { ok: true, data: reply.data, width: reply.width, height: reply.height }
          : { ok: false, code: reply.code, message: reply.message },
      );
    });
    const onDeath = (err: unknown): void => {
      const message = err instanceof Error ? err.message : `worker exited with code ${String(err)}`;
      for (const id of slot.inFlight) {
        const p = this.pending.get(id);
        this.pending.delete(id);
        p?.resolve({
          ok: false,
          code: 'GLIMPSE_E_IMAGE_DECODE_FAILED',
          message: `Expected the decoder to finish but its worker died: ${message}`,
        });
      }
      slot.inFlight.clear();
      const idx = this.slots.indexOf(slot);
      if (idx >= 0 && !this.closed) this.slots[idx] = this.spawn();
    };
    worker.on('error', onDeath);
    worker.on('exit', (code) => {
      if (!this.closed && this.slots.includes(slot)) onDeath(code);
    });
    return slot;
  }

  /** Decodes one image (a local path or its bytes). Never rejects: failures come back as results. */
  decode(input: string | Uint8Array): Promise<DecodeResult> {
    if (this.closed)
      return Promise.resolve({
        ok: false,
        code: 'GLIMPSE_E_ABORTED',
        message: 'Expected an open decode pool but it was closed',
      });
    let best = this.slots[0]!;
    for (const s of this.slots) if (s.inFlight.size < best.inFlight.size) best = s;
    const id = this.nextId++;
    best.inFlight.add(id);
    return new Promise<DecodeResult>((resolve) => {
      this.pending.set(id, { resolve, worker: best });
      const msg: DecodeRequest = { id, input };
      if (
        typeof input !== 'string' &&
        input.byteOffset === 0 &&
        input.byteLength === input.buffer.byteLength
      ) {
        best.worker.postMessage(msg, [input.buffer as ArrayBuffer]);
      } else {
        best.worker.postMessage(msg);
      }
    });
  }

  /** Stops the workers; outstanding decodes resolve as aborted. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [id, p] of this.pending) {
      p.resolve({
        ok: false,
        code: 'GLIMPSE_E_ABORTED',
        message: 'Expected the decode to finish but the pool was closed',
      });
      this.pending.delete(id);
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

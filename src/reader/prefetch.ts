import { GlimpseError } from '../errors/index.js';

export interface PrefetchSpec {
  /** Bytes this unit holds once loaded (reserved before its load starts). */
  readonly bytes: number;
}

export interface PrefetchOptions {
  /** Cap on the reserved bytes of launched, unreleased units. A unit larger than the cap still loads alone. */
  readonly maxBytes: number;
  /** Units loading at once (default: as many as the byte cap allows). */
  readonly parallel?: number;
  readonly signal?: AbortSignal | undefined;
  readonly onStart?: ((index: number, inFlight: number) => void) | undefined;
  readonly onRelease?: ((index: number, inFlight: number) => void) | undefined;
}

/**
 * Loads units (pieces, groups of batches) ahead, hands them back in order, and never reserves more than
 * `maxBytes` at once: a unit's bytes are reserved before its load starts and given back by `release()`.
 * Units come from an iterator (so a billion-row plan is never materialised) and are launched in order, so
 * the unit the caller waits for is always launched first (no deadlock). Failed loads surface when the
 * caller reaches them.
 *
 * @example
 *   const pf = new OrderedPrefetcher(groups[Symbol.iterator](), (g) => load(g), { maxBytes: 1e9 });
 *   for (let r = await pf.next(); r; r = await pf.next()) { use(r.value); pf.release(r.index); }
 */
export class OrderedPrefetcher<S extends PrefetchSpec, R> {
  private launched = 0;
  private consumed = 0;
  private active = 0;
  private inFlight = 0;
  private peak = 0;
  private closed = false;
  private exhausted = false;
  private pending: S | undefined;
  private readonly results = new Map<number, Promise<R>>();
  private readonly reserved = new Map<number, number>();
  private readonly specOf = new Map<number, S>();

  constructor(
    private readonly specs: Iterator<S>,
    private readonly load: (spec: S, index: number) => Promise<R>,
    private readonly options: PrefetchOptions,
  ) {}

  /** Bytes reserved now. */
  get bytesInFlight(): number {
    return this.inFlight;
  }

  /** Most bytes reserved at once. */
  get peakBytesInFlight(): number {
    return this.peak;
  }

  /** The spec of a launched, unreleased unit. */
  spec(index: number): S | undefined {
    return this.specOf.get(index);
  }

  private peek(): S | undefined {
    if (this.pending === undefined && !this.exhausted) {
      const n = this.specs.next();
      if (n.done) this.exhausted = true;
      else this.pending = n.value;
    }
    return this.pending;
  }

  private pump(): void {
    const parallel = this.options.parallel ?? Number.POSITIVE_INFINITY;
    while (!this.closed && this.active < parallel) {
      const spec = this.peek();
      if (spec === undefined) return;
      const index = this.launched;
      // Always let the unit the caller waits for start, even alone over the cap.
      if (
        this.inFlight + spec.bytes > this.options.maxBytes &&
        !(this.inFlight === 0 || index === this.consumed)
      )
        return;
      this.pending = undefined;
      this.launched++;
      this.active++;
      this.inFlight += spec.bytes;
      this.reserved.set(index, spec.bytes);
      this.specOf.set(index, spec);
      this.peak = Math.max(this.peak, this.inFlight);
      this.options.onStart?.(index, this.inFlight);
      const p = this.load(spec, index).finally(() => {
        this.active--;
        this.pump();
      });
      p.catch(() => undefined); // surfaced by next()
      this.results.set(index, p);
    }
  }

  /** The next unit in order, or undefined at the end. Call release(index) when done with it. */
  async next(): Promise<{ index: number; spec: S; value: R } | undefined> {
    const signal = this.options.signal;
    if (signal?.aborted) throw aborted();
    this.pump();
    const index = this.consumed;
    const p = this.results.get(index);
    if (p === undefined) {
      if (this.peek() === undefined) return undefined;
      throw new GlimpseError(
        'GLIMPSE_E_INTERNAL',
        `Expected unit ${index} to be launched before it is awaited`,
      );
    }
    this.results.delete(index);
    this.consumed++;
    const value = await p;
    if (signal?.aborted) throw aborted();
    return { index, spec: this.specOf.get(index)!, value };
  }

  /** Gives back the bytes of a unit handed out by next(). */
  release(index: number): void {
    const bytes = this.reserved.get(index);
    if (bytes === undefined) return;
    this.reserved.delete(index);
    this.specOf.delete(index);
    this.inFlight -= bytes;
    this.options.onRelease?.(index, this.inFlight);
    this.pump();
  }

  /** Stops launching; loads in progress finish and are dropped. */
  close(): void {
    this.closed = true;
    this.results.clear();
  }
}

/**
 * At most `size` tasks at once, started in call order; each task gets a slot number (0…size-1), e.g. to
 * reuse one scratch buffer per slot.
 *
 * @example
 *   const reads = new Semaphore(8);
 *   await Promise.all(pieces.map((p) => reads.run((slot) => readPiece(p, scratch[slot]))));
 */
export class Semaphore {
  private readonly free: number[];
  private readonly waiting: ((slot: number) => void)[] = [];

  constructor(readonly size: number) {
    this.free = Array.from({ length: size }, (_, i) => size - 1 - i);
  }

  async run<T>(task: (slot: number) => Promise<T>): Promise<T> {
    const slot = this.free.pop() ?? (await new Promise<number>((resolve) => this.waiting.push(resolve)));
    try {
      return await task(slot);
    } finally {
      const next = this.waiting.shift();
      if (next) next(slot);
      else this.free.push(slot);
    }
  }
}

function aborted(): GlimpseError {
  return new GlimpseError('GLIMPSE_E_ABORTED', 'Expected the read to finish but it was cancelled');
}

import { GlimpseError } from '../errors/index.js';

export interface PrefetchSpec {
  /** Bytes this piece holds once loaded (reserved before its load starts). */
  readonly bytes: number;
}

export interface PrefetchOptions {
  /** Loads running at once. */
  readonly parallel: number;
  /** Cap on the reserved bytes of launched, unreleased pieces. A piece larger than the cap still loads alone. */
  readonly maxBytes: number;
  readonly signal?: AbortSignal | undefined;
  readonly onStart?: ((index: number, inFlight: number) => void) | undefined;
  readonly onRelease?: ((index: number, inFlight: number) => void) | undefined;
}

/**
 * Loads pieces in parallel, hands them back in order, and never reserves more than `maxBytes` at once:
 * a piece's bytes are reserved before its load starts and given back by `release()` once the caller is
 * done with it. Pieces are launched in order, so the next piece the caller needs is always launched
 * first (no deadlock). Failed loads surface when the caller reaches them.
 *
 * @example
 *   const pf = new OrderedPrefetcher(pieces, (p) => storage.readRange(url, p.start, p.end), { parallel: 8, maxBytes: 1e9 });
 *   for (let r = await pf.next(); r; r = await pf.next()) { use(r.value); pf.release(r.index); }
 */
export class OrderedPrefetcher<S extends PrefetchSpec, R> {
  private launched = 0;
  private consumed = 0;
  private active = 0;
  private inFlight = 0;
  private peak = 0;
  private closed = false;
  private readonly results = new Map<number, Promise<R>>();
  private readonly reserved = new Map<number, number>();

  constructor(
    private readonly specs: readonly S[],
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

  private pump(force = false): void {
    while (!this.closed && this.launched < this.specs.length && this.active < this.options.parallel) {
      const index = this.launched;
      const spec = this.specs[index]!;
      const fits = this.inFlight + spec.bytes <= this.options.maxBytes;
      // Always let the piece the caller waits for start, even alone over the cap.
      if (!fits && !(this.inFlight === 0 || (force && index === this.consumed))) break;
      this.launched++;
      this.active++;
      this.inFlight += spec.bytes;
      this.reserved.set(index, spec.bytes);
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

  /** The next piece in order, or undefined at the end. Call release(index) when done with it. */
  async next(): Promise<{ index: number; value: R } | undefined> {
    if (this.consumed >= this.specs.length) return undefined;
    const signal = this.options.signal;
    if (signal?.aborted) throw aborted();
    const index = this.consumed;
    this.pump(this.launched === index);
    const p = this.results.get(index);
    if (p === undefined) {
      throw new GlimpseError(
        'GLIMPSE_E_INTERNAL',
        `Expected piece ${index} to be launched before it is awaited`,
      );
    }
    this.results.delete(index);
    this.consumed++;
    const value = await p;
    if (signal?.aborted) throw aborted();
    return { index, value };
  }

  /** Gives back the bytes of a piece handed out by next(). */
  release(index: number): void {
    const bytes = this.reserved.get(index);
    if (bytes === undefined) return;
    this.reserved.delete(index);
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

function aborted(): GlimpseError {
  return new GlimpseError('GLIMPSE_E_ABORTED', 'Expected the read to finish but it was cancelled');
}

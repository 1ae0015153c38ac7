/**
 * Progress is one typed stream of events: a callback in the library, a bar or log lines in the CLI,
 * server-sent events in the server. Counts only move forward; `done` is the last event of a run.
 */
export type ProgressEvent =
  | { type: 'download'; file: string; loaded: number; total: number | undefined }
  | { type: 'start'; task: string; total: number | undefined }
  | {
      type: 'progress';
      task: string;
      /** Items finished (written or failed). */
      done: number;
      /** Items that failed and were recorded. */
      failed: number;
      total: number | undefined;
      /** Items per second since the start. */
      rate: number;
      /** Seconds left at the current rate, when the total is known. */
      etaSeconds: number | undefined;
    }
  | { type: 'done'; task: string; done: number; failed: number; seconds: number };

export type ProgressCallback = (event: ProgressEvent) => void;

/** Tracks counts and emits `progress` events at most every `intervalMs` (and always at the end). */
export class ProgressTracker {
  private readonly started = performance.now();
  private lastEmit = 0;
  private doneCount = 0;
  private failedCount = 0;

  constructor(
    private readonly task: string,
    private total: number | undefined,
    private readonly onProgress: ProgressCallback | undefined,
    private readonly intervalMs = 250,
  ) {
    onProgress?.({ type: 'start', task, total });
  }

  get done(): number {
    return this.doneCount;
  }

  get failed(): number {
    return this.failedCount;
  }

  setTotal(total: number): void {
    this.total = total;
  }

  add(done: number, failed = 0): void {
    this.doneCount += done;
    this.failedCount += failed;
    const now = performance.now();
    if (now - this.lastEmit >= this.intervalMs) {
      this.lastEmit = now;
      this.emitProgress(now);
    }
  }

  finish(): { done: number; failed: number; seconds: number } {
    const now = performance.now();
    this.emitProgress(now);
    const seconds = (now - this.started) / 1000;
    this.onProgress?.({
      type: 'done',
      task: this.task,
      done: this.doneCount,
      failed: this.failedCount,
      seconds,
    });
    return { done: this.doneCount, failed: this.failedCount, seconds };
  }

  private emitProgress(now: number): void {
    if (!this.onProgress) return;
    const seconds = Math.max((now - this.started) / 1000, 1e-9);
    const rate = this.doneCount / seconds;
    const etaSeconds =
      this.total !== undefined && rate > 0 ? Math.max(0, (this.total - this.doneCount) / rate) : undefined;
    this.onProgress({
      type: 'progress',
      task: this.task,
      done: this.doneCount,
      failed: this.failedCount,
      total: this.total,
      rate,
      etaSeconds,
    });
  }
}

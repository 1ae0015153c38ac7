import cliProgress from 'cli-progress';
import type { ProgressCallback, ProgressEvent } from '../core/progress.js';

function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0
    ? `${h}h${String(m).padStart(2, '0')}m`
    : m > 0
      ? `${m}m${String(s % 60).padStart(2, '0')}s`
      : `${s}s`;
}

/**
 * Renders progress events: a bar (count, rate, ETA, failures) on a TTY, a log line every
 * `logEveryMs` otherwise. Download events get their own bar.
 */
export function createCliProgress(options: { tty?: boolean; logEveryMs?: number; unit?: string } = {}): {
  onProgress: ProgressCallback;
  stop: () => void;
} {
  const tty = options.tty ?? Boolean(process.stderr.isTTY);
  const unit = options.unit ?? 'samples';
  const logEveryMs = options.logEveryMs ?? 5000;
  let bar: cliProgress.SingleBar | undefined;
  let lastLog = 0;
  let downloadBar: cliProgress.SingleBar | undefined;

  const onProgress = (e: ProgressEvent): void => {
    if (e.type === 'download') {
      if (tty) {
        if (!downloadBar) {
          downloadBar = new cliProgress.SingleBar(
            { format: 'download {file} [{bar}] {percentage}% {value}/{total} bytes', stream: process.stderr },
            cliProgress.Presets.shades_classic,
          );
          downloadBar.start(e.total ?? 0, e.loaded, { file: e.file });
        }
        downloadBar.setTotal(e.total ?? 0);
        downloadBar.update(e.loaded, { file: e.file });
      } else if (Date.now() - lastLog > logEveryMs || (e.total !== undefined && e.loaded === e.total)) {
        lastLog = Date.now();
        process.stderr.write(
          `download ${e.file}: ${e.loaded}${e.total !== undefined ? `/${e.total}` : ''} bytes\n`,
        );
      }
      return;
    }
    if (e.type === 'start') {
      downloadBar?.stop();
      downloadBar = undefined;
      if (tty) {
        bar = new cliProgress.SingleBar(
          {
            format: `${e.task} [{bar}] {value}/{total} ${unit} | {rate}/s | ETA {eta_h} | failed {failed}`,
            stream: process.stderr,
            hideCursor: true,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(e.total ?? 0, 0, { rate: '0.0', eta_h: '?', failed: 0 });
      }
      return;
    }
    if (e.type === 'progress') {
      if (bar) {
        bar.update(e.done, { rate: e.rate.toFixed(1), eta_h: formatEta(e.etaSeconds), failed: e.failed });
      } else if (Date.now() - lastLog > logEveryMs) {
        lastLog = Date.now();
        const pct = e.total ? ` (${((100 * e.done) / e.total).toFixed(1)}%)` : '';
        process.stderr.write(
          `${e.task}: ${e.done}${e.total !== undefined ? `/${e.total}` : ''} ${unit}${pct}, ${e.rate.toFixed(1)}/s, ETA ${formatEta(e.etaSeconds)}, failed ${e.failed}\n`,
        );
      }
      return;
    }
    bar?.stop();
    bar = undefined;
    process.stderr.write(
      `${e.task}: ${e.done} ${unit} in ${e.seconds.toFixed(1)} s (${(e.done / Math.max(e.seconds, 1e-9)).toFixed(1)}/s), failed ${e.failed}\n`,
    );
  };
  return {
    onProgress,
    stop: () => {
      bar?.stop();
      downloadBar?.stop();
    },
  };
}

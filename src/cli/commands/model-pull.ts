/**
 * `glimpse model pull <id>`: downloads a hub model's files for one dtype into the cache (resuming a
 * partial download), validates the folder and prints where it is and its fingerprint.
 */
import { Option, type Command } from 'commander';
import cliProgress from 'cli-progress';
import type { ProgressCallback } from '../../core/progress.js';
import { loadModelFolder } from '../../models/folder.js';
import { shortFingerprint } from '../../models/fingerprint.js';
import { resolveModel, type ResolveModelOptions } from '../../models/hub.js';
import { MODEL_DTYPES, type ModelDtype } from '../../models/types.js';
import { withSignals } from '../signals.js';

interface ModelPullFlags {
  dtype: ModelDtype;
  cacheDir?: string;
  revision?: string;
  hubUrl?: string;
}

/**
 * Download progress for the terminal: one cli-progress bar per file on a TTY, otherwise a log line
 * when a file starts, every 10% and when it is done.
 *
 * @example
 *   const progress = createDownloadProgress(process.stderr);
 *   await resolveModel('openai/clip-vit-base-patch32', { onProgress: progress.onProgress });
 *   progress.stop();
 */
export function createDownloadProgress(
  stream: NodeJS.WriteStream = process.stderr,
  tty: boolean = Boolean(stream.isTTY),
): { onProgress: ProgressCallback; stop: () => void } {
  const multi = tty
    ? new cliProgress.MultiBar(
        {
          format: '{file} [{bar}] {percentage}% {loadedText}/{totalText}',
          stream,
          hideCursor: true,
          clearOnComplete: false,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const bars = new Map<string, cliProgress.SingleBar>();
  const logged = new Map<string, number>();
  const onProgress: ProgressCallback = (event) => {
    if (event.type !== 'download') return;
    const total = event.total ?? 0;
    const payload = {
      file: event.file,
      loadedText: formatBytes(event.loaded),
      totalText: formatBytes(total),
    };
    if (multi !== undefined) {
      let bar = bars.get(event.file);
      if (bar === undefined) {
        bar = multi.create(total, event.loaded, payload);
        bars.set(event.file, bar);
      }
      bar.update(event.loaded, payload);
      return;
    }
    const decile = total > 0 ? Math.floor((10 * event.loaded) / total) : 0;
    const last = logged.get(event.file);
    if (last === undefined || decile > last) {
      logged.set(event.file, decile);
      const pct = total > 0 ? ` (${decile * 10}%)` : '';
      stream.write(`download ${event.file}: ${payload.loadedText} of ${payload.totalText}${pct}\n`);
    }
  };
  return { onProgress, stop: () => multi?.stop() };
}

/**
 * Adds `pull` to the `glimpse model` command group.
 *
 * @example
 *   registerModelPullCommand(program.command('model'));
 *   // glimpse model pull openai/clip-vit-base-patch32 --dtype q8
 */
export function registerModelPullCommand(
  model: Command,
  print: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
): Command {
  return model
    .command('pull')
    .description('download a hub model (one dtype) into the cache; resumes partial downloads')
    .argument('<id>', 'hub id, such as openai/clip-vit-base-patch32')
    .addOption(new Option('--dtype <dtype>', 'precision variant').choices(MODEL_DTYPES).default('fp32'))
    .option('--cache-dir <dir>', 'cache root (default $GLIMPSE_CACHE_DIR or ~/.cache/glimpse)')
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .option(
      '--hub-url <url>',
      'hub address (default $GLIMPSE_HUB_URL, $HF_ENDPOINT or https://huggingface.co)',
    )
    .action(async (id: string, flags: ModelPullFlags) => {
      const progress = createDownloadProgress();
      const started = performance.now();
      const dir = await withSignals(async (signal) => {
        const options: ResolveModelOptions = { dtype: flags.dtype, onProgress: progress.onProgress, signal };
        if (flags.cacheDir !== undefined) options.cacheDir = flags.cacheDir;
        if (flags.revision !== undefined) options.revision = flags.revision;
        if (flags.hubUrl !== undefined) options.hubUrl = flags.hubUrl;
        try {
          return await resolveModel(id, options);
        } finally {
          progress.stop();
        }
      });
      const folder = await loadModelFolder(dir, { dtype: flags.dtype, id });
      const seconds = (performance.now() - started) / 1000;
      print(`pulled ${id} (${flags.dtype}) into ${dir} in ${seconds.toFixed(1)} s`);
      print(`fingerprint ${shortFingerprint(folder.fingerprint)}  dimension ${folder.config.projectionDim}`);
    });
}

/** `1.5 MiB`-style sizes. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i] ?? 'TiB'}`;
}

/**
 * The entry of a worker process: `node worker-main.js --ledger <url> --job <name> [--max-shards N]
 * [--threads N] [--decode-workers N] [--worker-id ID] [--cache-dir DIR] [--staging-dir DIR] [--offline] [--quiet]`. What
 * `runLocalJob` starts N of (the same as `glimpse worker`). SIGTERM/SIGINT release the current shard and
 * exit 130; a second signal exits at once. Exit 0: the job has no work left (or --max-shards reached).
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { isGlimpseError, toGlimpseError } from '../errors/index.js';
import { formatWorkerEvent, runWorker } from './worker.js';

function positive(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`Expected a positive integer for --${name} but received ${value}`);
  return n;
}

/**
 * Runs a worker from command-line arguments; returns the exit code.
 *
 * @example
 *   process.exitCode = await workerMain(['--ledger', 'sqlite:out/.glimpse/ledger.sqlite', '--job', 'embed']);
 */
export async function workerMain(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ledger: { type: 'string' },
        job: { type: 'string' },
        'max-shards': { type: 'string' },
        threads: { type: 'string' },
        'decode-workers': { type: 'string' },
        'worker-id': { type: 'string' },
        'cache-dir': { type: 'string' },
        'staging-dir': { type: 'string' },
        offline: { type: 'boolean' },
        quiet: { type: 'boolean' },
      },
      strict: true,
    }));
    if (values.ledger === undefined || values.job === undefined)
      throw new Error('Expected --ledger and --job');
  } catch (err) {
    process.stderr.write(`error GLIMPSE_E_ARG_INVALID: ${(err as Error).message}\n`);
    return 2;
  }
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (++signals > 1) process.exit(130);
    process.stderr.write(`${sig}: releasing the current shard and stopping\n`);
    controller.abort(new Error(`received ${sig}`));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const maxShards = positive('max-shards', values['max-shards']);
    const threads = positive('threads', values.threads);
    const decode = positive('decode-workers', values['decode-workers']);
    const quiet = values.quiet === true;
    const result = await runWorker({
      ledger: values.ledger,
      job: values.job,
      signal: controller.signal,
      ...(maxShards !== undefined ? { maxShards } : {}),
      ...(threads !== undefined ? { intraOpThreads: threads } : {}),
      ...(decode !== undefined ? { numPreproWorkers: decode } : {}),
      ...(values['worker-id'] !== undefined ? { worker: values['worker-id'] } : {}),
      ...(values['cache-dir'] !== undefined ? { cacheDir: values['cache-dir'] } : {}),
      ...(values['staging-dir'] !== undefined ? { stagingDir: values['staging-dir'] } : {}),
      ...(values.offline ? { offline: true } : {}),
      onEvent: (e) => {
        if (!quiet || e.type === 'failed' || e.type === 'lost')
          process.stderr.write(formatWorkerEvent(e) + '\n');
      },
    });
    process.stderr.write(
      `${result.worker}: stopped (${result.stoppedBy}): ${result.shards} shards, ${result.rows} rows, ${result.lost} leases lost\n`,
    );
    return 0;
  } catch (err) {
    const ge = isGlimpseError(err) ? err : toGlimpseError(err);
    process.stderr.write(`error ${ge.code}: ${ge.message}\n`);
    return ge.code === 'GLIMPSE_E_ABORTED' ? 130 : 1;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await workerMain(process.argv.slice(2));
}

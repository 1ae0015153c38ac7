import type { Command } from 'commander';
import { formatWorkerEvent, runWorker, type RunWorkerOptions } from '../../jobs/worker.js';
import { redactLedgerUrl } from '../../jobs/store.js';
import { JOB_DEFAULTS } from '../../jobs/plan.js';
import { parseIntOption } from '../options.js';
import { withSignals } from '../signals.js';

interface WorkerFlags {
  ledger: string;
  job: string;
  maxShards?: number;
  threads?: number;
  numPreproWorkers?: number;
  workerId?: string;
  cacheDir?: string;
  stagingDir?: string;
  offline?: boolean;
  quiet?: boolean;
  json?: boolean;
}

/**
 * `glimpse worker --ledger <url> --job <name>`: a plain process that claims shards of a planned job from
 * the ledger and embeds them until none is left. Start as many as you like, on as many machines as share
 * the ledger (Redis) and the input and output folders. SIGTERM releases the shard in progress.
 */
export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('claim shards of a planned job from a ledger and embed them until none is left')
    .requiredOption('--ledger <url>', 'ledger: sqlite:<path>, a path, or redis://host:port/db')
    .option('--job <name>', 'job name', JOB_DEFAULTS.job)
    .option('--max-shards <n>', 'stop after n shards', parseIntOption('--max-shards'))
    .option('--threads <n>', 'inference intra-op threads (default: cores)', parseIntOption('--threads'))
    .option(
      '--num-prepro-workers <n>',
      'decode worker threads (default: cores)',
      parseIntOption('--num-prepro-workers'),
    )
    .option('--worker-id <id>', "this worker's name in the ledger (default host:pid)")
    .option('--cache-dir <dir>', 'model cache folder')
    .option('--staging-dir <dir>', 'parent of the local staging folder of an s3:// output (default: OS temp)')
    .option('--offline', 'never download models')
    .option('--quiet', 'log only failures and lost leases')
    .option('--json', 'print the result as JSON')
    .action(async (flags: WorkerFlags) => {
      await withSignals(async (signal) => {
        const options: RunWorkerOptions = {
          ledger: flags.ledger,
          job: flags.job,
          signal,
          onEvent: (e) => {
            if (!flags.quiet || e.type === 'failed' || e.type === 'lost')
              process.stderr.write(formatWorkerEvent(e) + '\n');
          },
        };
        if (flags.maxShards !== undefined) options.maxShards = flags.maxShards;
        if (flags.threads !== undefined) options.intraOpThreads = flags.threads;
        if (flags.numPreproWorkers !== undefined) options.numPreproWorkers = flags.numPreproWorkers;
        if (flags.workerId !== undefined) options.worker = flags.workerId;
        if (flags.cacheDir !== undefined) options.cacheDir = flags.cacheDir;
        if (flags.stagingDir !== undefined) options.stagingDir = flags.stagingDir;
        if (flags.offline !== undefined) options.offline = flags.offline;
        const r = await runWorker(options);
        if (flags.json) {
          process.stdout.write(JSON.stringify({ ...r, manifest: r.manifest !== undefined }) + '\n');
        } else {
          process.stdout.write(
            `worker ${r.worker} stopped (${r.stoppedBy}) on job ${flags.job} in ${redactLedgerUrl(flags.ledger)}: ${r.shards} shards, ${r.rows} rows, ${r.failedSamples} failed samples, ${r.lost} leases lost${r.manifest ? '; job finished, manifest.json written' : ''}\n`,
          );
        }
      });
    });
}

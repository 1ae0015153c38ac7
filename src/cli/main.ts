#!/usr/bin/env node
/** The `glimpse` command. Every command builds the same validated options the library takes. */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { isGlimpseError } from '../errors/index.js';
import { registerEmbedCommand } from './commands/embed.js';
import { registerEmbedOneCommand } from './commands/embed-one.js';
import { registerModelSynthCommand } from './commands/model-synth.js';
import { registerModelPullCommand } from './commands/model-pull.js';
import { registerModelInfoCommand } from './commands/model-info.js';
import { registerReadCommand } from './commands/read.js';
import { registerCollectionCommand } from './commands/collection.js';
import { registerInsertCommand } from './commands/insert.js';
import { registerImportCommand } from './commands/import.js';
import { registerIndexCommand } from './commands/index.js';
import { registerSearchCommand } from './commands/search.js';
import { registerFilterCommand } from './commands/filter.js';
import { registerServeCommand } from './commands/serve.js';
import { registerWorkerCommand } from './commands/worker.js';
import { registerJobCommand } from './commands/job.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('glimpse')
    .description('Embed images and captions with CLIP models; store, index and search them.')
    .version(pkg.version)
    .showHelpAfterError()
    .exitOverride();
  registerEmbedCommand(program);
  registerEmbedOneCommand(program);
  const model = program.command('model').description('model folders: info, synth, pull');
  registerModelInfoCommand(model);
  registerModelSynthCommand(model);
  registerModelPullCommand(model);
  registerReadCommand(program);
  registerCollectionCommand(program);
  registerInsertCommand(program);
  registerImportCommand(program);
  registerIndexCommand(program);
  registerSearchCommand(program);
  registerFilterCommand(program);
  registerWorkerCommand(program);
  registerJobCommand(program);
  registerServeCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode;
    }
    if (isGlimpseError(err)) {
      process.stderr.write(`error ${err.code}: ${err.message}\n`);
      return err.code === 'GLIMPSE_E_ABORTED' ? 130 : 1;
    }
    process.stderr.write(
      `error GLIMPSE_E_INTERNAL: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    return 1;
  }
}

// `glimpse … | head` closes stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
process.exitCode = await main(process.argv);

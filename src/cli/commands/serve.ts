import { InvalidArgumentError, type Command } from 'commander';
import { loadServerConfig, redactConfig } from '../../config/server.js';
import { startServer } from '../../server/index.js';
import { withSignals } from '../signals.js';

interface ServeFlags {
  config?: string;
  host?: string;
  port?: string;
  db?: string;
  model?: string;
  dtype?: string;
  threads?: string;
  allowRoot?: string[];
  index?: string[];
  corsOrigin?: string[];
  offline?: boolean;
  ui?: boolean;
  docs?: boolean;
  metrics?: boolean;
  logLevel?: string;
  set?: string[];
  check?: boolean;
}

/** Flag (commander's attribute name) → configuration key and how messages name it. */
const FLAG_KEYS: readonly (readonly [keyof ServeFlags, string, string])[] = [
  ['host', 'host', '--host'],
  ['port', 'port', '--port'],
  ['db', 'db', '--db'],
  ['model', 'model', '--model'],
  ['dtype', 'dtype', '--dtype'],
  ['threads', 'threads', '--threads'],
  ['allowRoot', 'allowedRoots', '--allow-root'],
  ['index', 'indices', '--index'],
  ['corsOrigin', 'cors.origins', '--cors-origin'],
  ['offline', 'offline', '--offline'],
  ['ui', 'ui', '--no-ui'],
  ['docs', 'docs', '--no-docs'],
  ['metrics', 'metrics', '--no-metrics'],
  ['logLevel', 'logLevel', '--log-level'],
];

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

function parseSet(value: string, previous: string[] | undefined): string[] {
  if (!/^[A-Za-z][A-Za-z.]*=/.test(value)) {
    throw new InvalidArgumentError(
      `Expected key=value (such as limits.bodyBytes=4M) for --set but received ${JSON.stringify(value)}`,
    );
  }
  return collect(value, previous);
}

export interface ServeIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** Stops the server (tests); SIGINT/SIGTERM do it otherwise. */
  signal?: AbortSignal;
}

/**
 * `glimpse serve`: the REST API, clip-retrieval-compatible routes, metrics, OpenAPI docs and the web UI.
 * Configuration: `--config glimpse.yaml`, then `GLIMPSE_*` variables, then flags (`--set key=value` for any
 * key), validated once; `--check` prints the merged configuration (API keys hidden) and exits.
 *
 * @example
 *   registerServeCommand(program);
 *   // glimpse serve --config glimpse.yaml --port 8080 --allow-root /srv/photos --set limits.bodyBytes=4M
 */
export function registerServeCommand(
  program: Command,
  io: ServeIo = { stdout: process.stdout, stderr: process.stderr },
): void {
  program
    .command('serve')
    .description('serve the search API, clip-retrieval routes, metrics, docs and the web UI')
    .option('--config <file>', 'YAML configuration file (see docs/server.md)')
    .option('--host <addr>', 'address to listen on (default 127.0.0.1)')
    .option('--port <n>', 'TCP port (default 8080; 0: any free port)')
    .option('--db <uri>', 'collection database: folder or s3:// URI (default ./glimpse-db)')
    .option('--model <id|dir>', 'model for queries and inserts (default openai/clip-vit-base-patch32)')
    .option('--dtype <fp32|fp16|q8>', 'ONNX precision variant')
    .option('--threads <n>', 'ONNX Runtime threads')
    .option('--allow-root <dir>', 'let the server read files under this folder (repeatable)', collect)
    .option('--index <name>', 'collection listed by /indices-list, in order (repeatable)', collect)
    .option(
      '--cors-origin <origin>',
      'origin allowed to call the REST API from a browser (repeatable)',
      collect,
    )
    .option('--offline', 'never download the model')
    .option('--no-ui', 'do not serve the web UI')
    .option('--no-docs', 'do not serve /docs')
    .option('--no-metrics', 'do not serve /metrics')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
    .option('--set <key=value>', 'any setting by its key, such as limits.bodyBytes=4M (repeatable)', parseSet)
    .option('--check', 'validate the configuration, print it (API keys hidden) and exit')
    .action(async (flags: ServeFlags, command: Command) => {
      const values: Record<string, unknown> = {};
      const names: Record<string, string> = {};
      for (const [attr, key, name] of FLAG_KEYS) {
        if (command.getOptionValueSource(attr) !== 'cli') continue;
        values[key] = flags[attr];
        names[key] = name;
      }
      for (const entry of flags.set ?? []) {
        const at = entry.indexOf('=');
        const key = entry.slice(0, at);
        values[key] = entry.slice(at + 1);
        names[key] = `--set ${key}`;
      }
      const config = await loadServerConfig({
        ...(flags.config !== undefined ? { file: flags.config } : {}),
        env: process.env,
        flags: values,
        flagNames: names,
      });
      if (flags.check) {
        io.stdout.write(`${JSON.stringify(redactConfig(config), null, 2)}\n`);
        return;
      }
      await withSignals(async (signal) => {
        const stop = io.signal ? AbortSignal.any([signal, io.signal]) : signal;
        const server = await startServer(config);
        io.stderr.write(
          `glimpse serve: listening on ${server.url} (UI /, API /v1, docs /docs, metrics /metrics)\n`,
        );
        if (!stop.aborted)
          await new Promise((resolve) => stop.addEventListener('abort', resolve, { once: true }));
        io.stderr.write('glimpse serve: stopping\n');
        await server.close();
      });
    });
}

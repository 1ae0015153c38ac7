/**
 * `glimpse serve` (registerServeCommand): flags over the YAML file over the environment, `--check`, one
 * error listing every bad flag, and a real start on 127.0.0.1 answering /health until stopped.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { isGlimpseError } from '../src/errors/index.js';
import { registerServeCommand, type ServeIo } from '../src/cli/commands/serve.js';

let dir: string;

function program(io: ServeIo): Command {
  const p = new Command().exitOverride().configureOutput({ writeErr: () => undefined });
  registerServeCommand(p, io);
  return p;
}

function sink(): { lines: string[]; write(text: string): void } {
  const lines: string[] = [];
  return { lines, write: (text: string) => void lines.push(text) };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'glimpse-serve-cli-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('--check prints the merged configuration with API keys hidden', async () => {
  const file = join(dir, 'glimpse.yaml');
  await writeFile(
    file,
    'port: 9000\nhost: 0.0.0.0\nauth:\n  apiKeys: [top-secret-key]\nlimits:\n  maxBatch: 10\n',
  );
  const out = sink();
  await program({ stdout: out, stderr: sink() }).parseAsync(
    [
      'serve',
      '--config',
      file,
      '--port',
      '9001',
      '--allow-root',
      dir,
      '--index',
      'b',
      '--index',
      'a',
      '--no-ui',
      '--set',
      'limits.bodyBytes=2M',
      '--check',
    ],
    { from: 'user' },
  );
  const text = out.lines.join('');
  assert.ok(!text.includes('top-secret-key'), 'the key is not printed');
  const config = JSON.parse(text) as Record<string, unknown> & {
    limits: Record<string, number>;
    auth: { apiKeys: string };
  };
  assert.equal(config['port'], 9001, 'the flag wins over the file');
  assert.equal(config['host'], '0.0.0.0', 'from the file');
  assert.equal(config['ui'], false, '--no-ui');
  assert.equal(config['docs'], true, 'options not given keep their default');
  assert.deepEqual(config['allowedRoots'], [dir]);
  assert.deepEqual(config['indices'], ['b', 'a']);
  assert.equal(config.limits['bodyBytes'], 2 * 1024 * 1024);
  assert.equal(config.limits['maxBatch'], 10);
  assert.equal(config.auth.apiKeys, '[1 hidden]');
});

test('bad flags: one error naming each flag', async () => {
  await assert.rejects(
    program({ stdout: sink(), stderr: sink() }).parseAsync(
      [
        'serve',
        '--port',
        'eighty',
        '--dtype',
        'int4',
        '--set',
        'limits.bodyBytes=huge',
        '--set',
        'nope=1',
        '--check',
      ],
      { from: 'user' },
    ),
    (err: unknown) => {
      assert.ok(isGlimpseError(err, 'GLIMPSE_E_CONFIG_INVALID'), String(err));
      const problems = err.details?.['problems'] as string[];
      assert.deepEqual(
        problems.map((p) => p.replace(/: .*\((flag [^)]*)\)$/, ' ($1)')),
        [
          'nope (flag --set nope)',
          'port (flag --port)',
          'dtype (flag --dtype)',
          'limits.bodyBytes (flag --set limits.bodyBytes)',
        ],
      );
      return true;
    },
  );
  assert.throws(
    () =>
      program({ stdout: sink(), stderr: sink() }).parse(['serve', '--set', 'no-equals-sign'], {
        from: 'user',
      }),
    /Expected key=value/,
  );
});

test('serves on 127.0.0.1 until stopped', async () => {
  const model = await ensureSynthModel('tiny', 0);
  const stop = new AbortController();
  const err = sink();
  const running = program({ stdout: sink(), stderr: err, signal: stop.signal }).parseAsync(
    ['serve', '--port', '0', '--db', join(dir, 'db'), '--model', model, '--log-level', 'silent', '--no-ui'],
    { from: 'user' },
  );
  let url: string | undefined;
  for (let i = 0; i < 600 && url === undefined; i++) {
    url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err.lines.join(''))?.[1];
    if (url === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(url, `the server says where it listens: ${err.lines.join('')}`);
  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { status: string }).status, 'ok');
  const list = await fetch(`${url}//indices-list`);
  assert.deepEqual(await list.json(), []);
  stop.abort();
  await running;
  assert.match(err.lines.join(''), /stopping/);
  await assert.rejects(fetch(`${url}/health`), 'the port is closed after stopping');
});

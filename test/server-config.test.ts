/**
 * Server configuration: defaults, file < environment < flags, one error listing every problem with its
 * origin, deep freezing, redaction of API keys.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isGlimpseError } from '../src/errors/index.js';
import { loadServerConfig, redactConfig, SERVER_CONFIG_FIELDS } from '../src/config/server.js';

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'glimpse-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('defaults are safe: loopback, no keys, no roots, private addresses refused, limits on', async () => {
  const c = await loadServerConfig();
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, 8080);
  assert.deepEqual(c.allowedRoots, []);
  assert.deepEqual(c.auth.apiKeys, []);
  assert.equal(c.fetch.allowPrivate, false);
  assert.equal(c.limits.bodyBytes, 16 * 1024 * 1024);
  assert.equal(c.limits.imageBytes, 10 * 1024 * 1024);
  assert.equal(c.rateLimit.max, 600);
  assert.deepEqual(c.cors.origins, []);
});

test('the configuration is deeply frozen', async () => {
  const c = await loadServerConfig();
  assert.ok(Object.isFrozen(c), 'the top level is frozen');
  assert.ok(Object.isFrozen(c.limits), 'nested objects are frozen');
  assert.ok(Object.isFrozen(c.allowedRoots), 'arrays are frozen');
  assert.throws(() => {
    (c.limits as { bodyBytes: number }).bodyBytes = 1;
  }, TypeError);
});

test('file < environment < flags, each typed from text', async () => {
  const file = join(dir, 'glimpse.yaml');
  await writeFile(
    file,
    [
      'host: 0.0.0.0',
      'port: 9000',
      'model: models/from-file',
      'limits:',
      '  bodyBytes: 2M',
      '  maxResults: 500',
      'auth:',
      '  apiKeys: [file-key]',
      'indices: [b, a]',
      'fetch:',
      '  allowedCidrs:',
      '    - 127.0.0.1/32',
    ].join('\n'),
  );
  const c = await loadServerConfig({
    file,
    env: {
      GLIMPSE_PORT: '9100',
      GLIMPSE_LIMITS_MAX_RESULTS: '700',
      GLIMPSE_FETCH_ALLOW_PRIVATE: 'yes',
      GLIMPSE_CORS_ORIGINS: 'https://a.example, https://b.example/',
      UNRELATED: 'x',
    },
    flags: { port: '9200', 'limits.imageBytes': '1M' },
  });
  assert.equal(c.host, '0.0.0.0', 'from the file');
  assert.equal(c.model, 'models/from-file');
  assert.equal(c.port, 9200, 'flags win over env and file');
  assert.equal(c.limits.maxResults, 700, 'env wins over the file');
  assert.equal(c.limits.bodyBytes, 2 * 1024 * 1024, 'byte sizes are parsed');
  assert.equal(c.limits.imageBytes, 1024 * 1024);
  assert.equal(c.fetch.allowPrivate, true);
  assert.deepEqual(c.fetch.allowedCidrs, ['127.0.0.1/32']);
  assert.deepEqual(c.cors.origins, ['https://a.example', 'https://b.example'], 'trailing slashes dropped');
  assert.deepEqual(c.auth.apiKeys, ['file-key']);
  assert.deepEqual(c.indices, ['b', 'a'], 'index order is kept');
});

test('one error lists every problem, each with where the value came from', async () => {
  const file = join(dir, 'bad.yaml');
  await writeFile(
    file,
    ['port: 99999', 'limitz: {}', 'limits:', '  bodyBytes: lots', 'auth: {protect: some}'].join('\n'),
  );
  await assert.rejects(
    loadServerConfig({
      file,
      env: { GLIMPSE_UI: 'maybe', GLIMPSE_FETCH_ALLOWED_CIDRS: '10.0.0.0/33' },
      flags: { 'cors.origins': ['ftp://x'], allowedRoots: [join(dir, 'missing')], nope: 1 },
    }),
    (err: unknown) => {
      assert.ok(isGlimpseError(err, 'GLIMPSE_E_CONFIG_INVALID'), 'a config error');
      const problems = (err.details?.['problems'] ?? []) as string[];
      const expected = [
        /^port: expected an integer from 0 to 65535 but received 99999 of type number \(file .*bad\.yaml\)$/,
        /^limitz: unknown setting \(file .*bad\.yaml\)$/,
        /^limits\.bodyBytes: expected a byte size .* received "lots" of type string/,
        /^auth\.protect: expected one of "writes", "all" but received "some"/,
        /^ui: expected true or false but received "maybe" of type string \(env GLIMPSE_UI\)$/,
        /^fetch\.allowedCidrs\[0\]: expected an IP address or range .* "10\.0\.0\.0\/33".* \(env GLIMPSE_FETCH_ALLOWED_CIDRS\)$/,
        /^cors\.origins\[0\]: expected "\*" or an origin .* "ftp:\/\/x" .*\(flag --set cors\.origins\)$/,
        /^allowedRoots\[0\]: expected an existing folder but .*missing does not exist$/,
        /^nope: unknown setting \(flag --set nope\)$/,
      ];
      for (const re of expected) {
        assert.ok(
          problems.some((p) => re.test(p)),
          `a problem matching ${re} among:\n${problems.join('\n')}`,
        );
      }
      assert.equal(
        problems.length,
        expected.length,
        `exactly the expected problems:\n${problems.join('\n')}`,
      );
      assert.match(err.message, /found 9 problems:\n {2}- /);
      return true;
    },
  );
});

test('unreadable and non-YAML files are problems too', async () => {
  const broken = join(dir, 'broken.yaml');
  await writeFile(broken, 'host: [unclosed');
  await assert.rejects(loadServerConfig({ file: broken }), /config file .*broken\.yaml: not valid YAML/);
  await assert.rejects(
    loadServerConfig({ file: join(dir, 'absent.yaml') }),
    /config file .*absent\.yaml: cannot be read \(ENOENT\)/,
  );
  await assert.rejects(
    loadServerConfig({ fileContent: ['a'], fileLabel: 'x.yaml' }),
    /x\.yaml: expected a mapping of settings/,
  );
});

test('redactConfig never shows API keys', async () => {
  const c = await loadServerConfig({ env: { GLIMPSE_API_KEYS: 'k-one,k-two' } });
  assert.deepEqual(c.auth.apiKeys, ['k-one', 'k-two']);
  const text = JSON.stringify(redactConfig(c));
  assert.ok(!text.includes('k-one') && !text.includes('k-two'), `keys hidden: ${text}`);
  assert.match(text, /\[2 hidden\]/);
});

test('every field has a GLIMPSE_* variable and a description', () => {
  const envs = new Set<string>();
  for (const f of SERVER_CONFIG_FIELDS) {
    assert.match(f.env, /^GLIMPSE_[A-Z0-9_]+$/, f.key);
    assert.ok(f.doc.length > 10, `${f.key} is described`);
    assert.ok(!envs.has(f.env), `${f.env} is used once`);
    envs.add(f.env);
  }
  assert.equal(
    SERVER_CONFIG_FIELDS.find((f) => f.key === 'limits.bodyBytes')?.env,
    'GLIMPSE_LIMITS_BODY_BYTES',
  );
});

test('docs/server.md documents every field with its environment variable', async () => {
  const docs = await readFile(new URL('../docs/server.md', import.meta.url), 'utf8');
  for (const f of SERVER_CONFIG_FIELDS) {
    assert.ok(
      docs.includes(`| \`${f.key}\` | \`${f.env}\` |`),
      `docs/server.md has a row for ${f.key} (${f.env})`,
    );
  }
  const rows = docs.match(/^\| `[a-zA-Z.]+` \| `GLIMPSE_[A-Z_]+` \|/gm) ?? [];
  assert.equal(rows.length, SERVER_CONFIG_FIELDS.length, 'and no row for a field that does not exist');
});

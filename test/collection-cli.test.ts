/**
 * The collection commands as a user runs them, in a child process: collection create/list/stats/delete,
 * insert, search (--text, --image, --vector as JSON and .npy, --filter, --json). The commands are
 * registered on a commander program built here (the same registration main.ts uses).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel } from '../src/pipeline/model.js';
import { runEmbedJob } from '../src/pipeline/embed.js';
import { encodeNpyHeader, float32ToFloat16 } from '../src/formats/npy.js';
import { collect, photosDir, repoRoot, tempDir, type CliResult } from './helpers/cli.js';

const ENTRY = `
import { Command, CommanderError } from 'commander';
import { registerCollectionCommand } from ${JSON.stringify(join(repoRoot, 'src/cli/commands/collection.ts'))};
import { registerInsertCommand } from ${JSON.stringify(join(repoRoot, 'src/cli/commands/insert.ts'))};
import { registerImportCommand } from ${JSON.stringify(join(repoRoot, 'src/cli/commands/import.ts'))};
import { registerIndexCommand } from ${JSON.stringify(join(repoRoot, 'src/cli/commands/index.ts'))};
import { registerSearchCommand } from ${JSON.stringify(join(repoRoot, 'src/cli/commands/search.ts'))};
import { registerFilterCommand } from ${JSON.stringify(join(repoRoot, 'src/cli/commands/filter.ts'))};
const program = new Command().name('glimpse').exitOverride();
for (const r of [registerCollectionCommand, registerInsertCommand, registerImportCommand, registerIndexCommand, registerSearchCommand, registerFilterCommand]) r(program);
try {
  await program.parseAsync(process.argv.slice(1), { from: 'user' });
} catch (err) {
  if (err instanceof CommanderError) process.exitCode = err.exitCode;
  else if (err && typeof err.code === 'string' && err.code.startsWith('GLIMPSE_E_')) {
    process.stderr.write('error ' + err.code + ': ' + err.message + '\\n');
    process.exitCode = 1;
  } else throw err;
}
`;

/** Runs the collection commands in a child process, as `glimpse <args>` would. */
export function runCollectionCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', ENTRY, '--', ...args],
    {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return collect(child);
}

let work: string;
let db: string;
let input: string;
let modelDir: string;

before(async () => {
  modelDir = await ensureSynthModel('tiny', 0);
  work = await tempDir('glimpse-collection-cli-');
  db = join(work, 'db');
  input = join(work, 'photos');
  await mkdir(input, { recursive: true });
  const names = ['123_456.jpg', '456_123.jpg', '208_495.jpg', '416_264.jpg'];
  for (const [i, name] of names.entries()) {
    await copyFile(join(photosDir, name), join(input, name));
    await writeFile(
      join(input, name.replace('.jpg', '.json')),
      JSON.stringify({ url: i === 0 ? "O'Brien" : `u${i}`, width: 100 * (i + 1) }),
    );
  }
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

function ok(r: CliResult): string {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

describe('glimpse collection / insert / search', () => {
  test('create → insert → search by text, image and vector with filters → stats → delete', async () => {
    assert.match(
      ok(await runCollectionCli(['collection', 'create', 'pics', '--model', modelDir, '--db', db])),
      /created collection pics \(dimension 64, model [0-9a-f]{12} \S*tiny-seed0\) in /,
    );

    const inserted = JSON.parse(
      ok(
        await runCollectionCli(['insert', 'pics', input, '--db', db, '--json', '--num-prepro-workers', '1']),
      ),
    ) as { inserted: number; failed: number };
    assert.deepEqual([inserted.inserted, inserted.failed], [4, 0]);

    const byImage = JSON.parse(
      ok(
        await runCollectionCli([
          'search',
          'pics',
          '--image',
          join(photosDir, '208_495.jpg'),
          '--top-k',
          '2',
          '--db',
          db,
          '--json',
        ]),
      ),
    ) as {
      id: string;
      score: number;
      metadata: Record<string, unknown>;
    }[];
    assert.equal(byImage.length, 2);
    assert.equal(byImage[0]!.id, '208_495.jpg');
    assert.ok(byImage[0]!.score > 0.999);
    assert.equal(byImage[0]!.metadata['width'], 300);

    const filtered = JSON.parse(
      ok(
        await runCollectionCli([
          'search',
          'pics',
          '--text',
          'a photo',
          '--db',
          db,
          '--json',
          '--filter',
          JSON.stringify({ and: [{ range: ['width', { gte: 200 }] }, { not: { eq: ['url', 'u3'] } }] }),
        ]),
      ),
    ) as { id: string }[];
    assert.deepEqual(filtered.map((h) => h.id).sort(), ['208_495.jpg', '456_123.jpg']);

    // --vector: JSON array and .npy (float16) of the same vector find the same photo.
    const model = await loadModel(modelDir, { decodeWorkers: 1 });
    const v = (await model.embedImages([join(photosDir, '416_264.jpg')])).data;
    await model.close();
    await writeFile(join(work, 'q.json'), JSON.stringify(Array.from(v)));
    await writeFile(
      join(work, 'q.npy'),
      Buffer.concat([encodeNpyHeader('float16', [1, 64]), new Uint8Array(float32ToFloat16(v).buffer)]),
    );
    const text = ok(
      await runCollectionCli([
        'search',
        'pics',
        '--vector',
        join(work, 'q.json'),
        '--top-k',
        '1',
        '--db',
        db,
      ]),
    );
    assert.match(text, /^ {2}1 {2}1\.0000 {2}416_264\.jpg {2}\//);
    const npy = JSON.parse(
      ok(
        await runCollectionCli([
          'search',
          'pics',
          '--vector',
          join(work, 'q.npy'),
          '--top-k',
          '1',
          '--db',
          db,
          '--json',
          '--filter',
          '{"eq":["url","O\'Brien"]}',
        ]),
      ),
    ) as { id: string }[];
    assert.deepEqual(
      npy.map((h) => h.id),
      ['123_456.jpg'],
    );

    const badFilter = await runCollectionCli([
      'search',
      'pics',
      '--text',
      'x',
      '--db',
      db,
      '--filter',
      '{"eq":["nope",1]}',
    ]);
    assert.equal(badFilter.code, 1);
    assert.match(
      badFilter.stderr,
      /^error GLIMPSE_E_FILTER_INVALID: Expected one of the collection's columns/,
    );

    const stats = JSON.parse(
      ok(await runCollectionCli(['collection', 'stats', 'pics', '--db', db, '--json'])),
    ) as { rows: number; columns: { key: string }[]; index: unknown };
    assert.equal(stats.rows, 4);
    assert.deepEqual(
      stats.columns.map((c) => c.key),
      ['id', 'image_path', 'caption', 'url', 'width'],
    );
    assert.match(
      ok(await runCollectionCli(['collection', 'stats', 'pics', '--db', db])),
      /rows +4\n[\s\S]*index +none \(exact search\)/,
    );
    assert.match(
      ok(await runCollectionCli(['collection', 'list', '--db', db])),
      /^name +rows +dim +model\npics +4 +64 +[0-9a-f]{12} \(\S*tiny-seed0\)\n$/,
    );

    assert.equal(
      ok(await runCollectionCli(['collection', 'delete', 'pics', '--db', db])),
      'deleted collection pics\n',
    );
  });

  test('import a clip-retrieval folder, index it (auto says why), eval recall, filter into a folder', async () => {
    const emb = join(work, 'emb');
    const embed = await runEmbedJob({ input, output: emb, model: modelDir, numPreproWorkers: 1 });
    assert.equal(embed.embedded, 4);
    const imported = ok(await runCollectionCli(['import', 'imp', emb, '--db', db]));
    assert.match(
      imported,
      /^created collection imp\nimported 4 rows into imp \(4 new, 0 replaced, 0 failed\) in [\d.]+ s\n4 rows from 1 file\(s\), model [0-9a-f]{12}, \d+ rows\/s\n$/,
    );

    const auto = ok(await runCollectionCli(['index', 'imp', '--db', db]));
    assert.match(
      auto,
      /^chose flat: 4 rows is below 20000, where exact search is fast enough and needs no index\nimp: no vector index \(exact search\), 4 rows\n$/,
    );
    const badType = await runCollectionCli(['index', 'imp', '--type', 'kd-tree', '--db', db]);
    assert.match(
      badType.stderr,
      /^error GLIMPSE_E_ARG_INVALID: Expected one of "auto", "flat", "ivf_pq", "hnsw" for --type but received "kd-tree"/,
    );
    const evalOut = ok(
      await runCollectionCli(['index', 'eval', 'imp', '--k', '2', '--queries', '3', '--db', db]),
    );
    assert.match(evalOut, /^recall@2 1\.0000 over 3 queries \(no index: exact search, params \{\}\)/);
    assert.match(evalOut, /\nmethod: 3 stored vectors \(seed 0\) perturbed/);

    const out = join(work, 'filtered');
    const filtered = ok(
      await runCollectionCli([
        'filter',
        'imp',
        '--query',
        'a photo',
        '--num-results',
        '10',
        '--out',
        out,
        '--model',
        modelDir,
        '--db',
        db,
      ]),
    );
    assert.match(
      filtered,
      new RegExp(
        `^copied 4 of 4 hits into ${out} \\(0 failed\\); results in ${join(out, 'results.jsonl')}\\n$`,
      ),
    );
    assert.equal((await readdir(out)).length, 5);
  });
});

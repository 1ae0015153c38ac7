import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { errorCatalogue, GlimpseError, SkipItemError, toGlimpseError } from '../src/errors/index.js';
import { invalidParameterError } from '../src/core/validate.js';
import { renderErrorDocs } from '../scripts/gen-error-docs.js';

test('docs/errors.md is in step with the catalogue (run npm run docs:errors)', () => {
  const committed = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  assert.equal(committed, renderErrorDocs());
});

test('every code follows GLIMPSE_E_<AREA>_<PROBLEM> and has a 4xx/5xx status', () => {
  for (const [code, spec] of Object.entries(errorCatalogue)) {
    assert.match(code, /^GLIMPSE_E_[A-Z0-9]+(_[A-Z0-9]+)*$/);
    assert.ok(spec.status >= 400 && spec.status < 600, code);
    assert.ok(spec.summary.length > 10 && spec.fix.length > 10, code);
  }
});

test('the source only throws codes that are in the catalogue', async () => {
  const { readdir } = await import('node:fs/promises');
  const files = (await readdir(new URL('../src', import.meta.url), { recursive: true })).filter((f) =>
    f.endsWith('.ts'),
  );
  for (const f of files) {
    const text = readFileSync(new URL(`../src/${f}`, import.meta.url), 'utf8');
    for (const m of text.matchAll(/'(GLIMPSE_E_[A-Z0-9_]*[A-Z0-9])'/g)) {
      assert.ok(m[1]! in errorCatalogue, `${f} uses ${m[1]} which is not in the catalogue`);
    }
  }
});

test('errors carry code, status and a sharp-style message', () => {
  const err = invalidParameterError('batchSize', 'a positive integer', -1);
  assert.equal(err.code, 'GLIMPSE_E_ARG_INVALID');
  assert.equal(err.status, 400);
  assert.equal(err.message, 'Expected a positive integer for batchSize but received -1 of type number');
  const skip = new SkipItemError('GLIMPSE_E_IMAGE_DECODE_FAILED', 'bad');
  assert.ok(skip instanceof GlimpseError);
  assert.deepEqual(skip.toJSON(), { code: 'GLIMPSE_E_IMAGE_DECODE_FAILED', message: 'bad' });
  assert.equal(toGlimpseError(new Error('x')).code, 'GLIMPSE_E_INTERNAL');
});

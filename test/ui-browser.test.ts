/**
 * The web UI end to end in Debian's chromium (playwright-core): a real server on 127.0.0.1 with a
 * collection of real photos; what a person sees after searching by text (Enter), by uploaded and dropped
 * images, "more like this", with a filter, the loading, empty and error states, keyboard focus order, and
 * the API-key prompt. A screenshot of the results is saved in artifacts/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Page } from 'playwright-core';
import { ensureSynthModel } from '../src/models/synth/index.js';
import { loadModel } from '../src/pipeline/model.js';
import { loadServerConfig } from '../src/config/server.js';
import { buildApp, BatchingEmbedder, CollectionRegistry, ServerMetrics } from '../src/server/index.js';
import { buildUi, launchBrowser, type TestBrowser } from './helpers/browser.js';

const photos = new URL('./fixtures/images/photos/', import.meta.url).pathname.replace(/\/$/, '');
const artifacts = new URL('../artifacts/', import.meta.url).pathname;
const PHOTOS: [string, string, string][] = [
  ['flowers.jpeg', 'a bunch of flowers', "O'Brien"],
  ['Portrait_1.jpg', 'a portrait of a person', 'ana'],
  ['Landscape_1.jpg', 'a wide landscape', 'ana'],
  ['123_456.jpg', 'a tall narrow picture', 'bo'],
  ['testimgl.jpg', 'a small test image', 'bo'],
  ['low-contrast.jpg', 'a grey low contrast scene', 'cy'],
];

let work: string;
let embedder: BatchingEmbedder;
let registry: CollectionRegistry;
let app: FastifyInstance;
let locked: FastifyInstance;
let baseUrl: string;
let lockedUrl: string;
let browser: TestBrowser;
let page: Page;

async function listen(a: FastifyInstance): Promise<string> {
  return a.listen({ host: '127.0.0.1', port: 0 });
}

async function captions(): Promise<string[]> {
  return page.locator('#results .card .caption').allTextContents();
}

async function searchText(text: string): Promise<void> {
  await page.getByLabel('Search text').fill(text);
  await page.getByLabel('Search text').press('Enter');
  await page
    .locator('#status[data-state="done"], #status[data-state="empty"], #error:not([hidden])')
    .first()
    .waitFor();
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'glimpse-ui-'));
  const uiDir = join(work, 'ui');
  const modelDir = await ensureSynthModel('tiny', 0);
  const [, model] = await Promise.all([buildUi(uiDir), loadModel(modelDir, { decodeWorkers: 1 })]);
  embedder = new BatchingEmbedder(model, modelDir);
  registry = await CollectionRegistry.open(join(work, 'db'));
  const flags = { db: join(work, 'db'), model: modelDir, allowedRoots: [photos], 'rateLimit.max': 0 };
  const deps = { embedder, registry, uiDir, logStream: { write: () => undefined } };
  app = await buildApp(await loadServerConfig({ flags }), {
    ...deps,
    metrics: new ServerMetrics({ defaultMetrics: false }),
  });
  locked = await buildApp(
    await loadServerConfig({ flags: { ...flags, 'auth.apiKeys': ['ui-key'], 'auth.protect': 'all' } }),
    {
      ...deps,
      metrics: new ServerMetrics({ defaultMetrics: false }),
    },
  );
  await app.inject({ method: 'POST', url: '/v1/collections', payload: { name: 'photos' } });
  const res = await app.inject({
    method: 'POST',
    url: '/v1/collections/photos/items',
    payload: {
      items: PHOTOS.map(([p, caption, author], rank) => ({
        image_path: p,
        caption,
        metadata: { author, rank },
      })),
    },
  });
  assert.equal(res.statusCode, 200, res.body);
  baseUrl = await listen(app);
  lockedUrl = await listen(locked);
  browser = await launchBrowser();
  page = await browser.context.newPage();
  await page.goto(`${baseUrl}/`);
  await page.locator('#collection option[value="photos"]').waitFor({ state: 'attached' });
});

after(async () => {
  await browser?.close();
  await app?.close();
  await locked?.close();
  await registry?.close();
  await embedder?.close();
  await rm(work, { recursive: true, force: true });
});

describe('web UI in chromium', () => {
  test('text search with Enter shows thumbnails, captions and scores; screenshot saved', async () => {
    assert.equal(await page.title(), 'glimpse');
    assert.equal(
      await page.getByRole('combobox', { name: /^Collection/ }).inputValue(),
      'photos',
      'the collection picker holds photos',
    );
    await page.getByLabel('Number of results').fill('4');
    await searchText('flowers in a vase');
    const cards = page.locator('#results .card');
    assert.equal(await cards.count(), 4, 'top 4 results shown');
    const texts = await captions();
    for (const t of texts)
      assert.ok(
        PHOTOS.some(([, c]) => c === t),
        `a stored caption is shown: ${t}`,
      );
    const scores = await page.locator('#results .card .score').allTextContents();
    assert.equal(scores.length, 4);
    for (const s of scores) assert.match(s, /^score -?\d\.\d{3}$/, 'a score with 3 decimals');
    const values = scores.map((s) => Number(s.slice(6)));
    assert.deepEqual(
      values,
      [...values].sort((a, b) => b - a),
      'best first',
    );
    await page.waitForFunction(
      '[...document.querySelectorAll("#results img")].every((i) => i.complete && i.naturalWidth > 0)',
    );
    assert.match((await page.locator('#status').textContent()) ?? '', /^4 results for “flowers in a vase”/);
    await mkdir(artifacts, { recursive: true });
    const shot = await page.screenshot({ path: join(artifacts, 'ui-search-results.png'), fullPage: true });
    assert.ok(shot.length > 10_000, `a real screenshot (${shot.length} bytes)`);
  });

  test('"more like this": activating a result with the keyboard searches with its vector', async () => {
    const first = page.locator('#results .card').nth(2);
    const caption = await first.locator('.caption').textContent();
    await first.focus();
    await page.keyboard.press('Enter');
    await page.locator('#status[data-state="done"]', { hasText: 'More like' }).waitFor();
    assert.equal(
      await page.locator('#results .card .caption').first().textContent(),
      caption,
      'the item itself first',
    );
    assert.equal(await page.locator('#results .card .score').first().textContent(), 'score 1.000');
  });

  test('search by an uploaded image file and by a dropped image', async () => {
    await page.getByLabel('Search by image file').setInputFiles(join(photos, 'Landscape_1.jpg'));
    await page.locator('#status[data-state="done"]', { hasText: 'Landscape_1.jpg' }).waitFor();
    assert.equal((await captions())[0], 'a wide landscape', 'the uploaded photo is found first');

    const b64 = (await readFile(join(photos, 'Portrait_1.jpg'))).toString('base64');
    await page.evaluate(`(() => {
      const bytes = Uint8Array.from(atob(${JSON.stringify(b64)}), (c) => c.charCodeAt(0));
      const data = new DataTransfer();
      data.items.add(new File([bytes], 'dropped.jpg', { type: 'image/jpeg' }));
      document.getElementById('drop-zone').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    })()`);
    await page.locator('#status[data-state="done"]', { hasText: 'dropped.jpg' }).waitFor();
    assert.equal((await captions())[0], 'a portrait of a person', 'the dropped photo is found first');
  });

  test('filter fields narrow the results; quotes are matched literally', async () => {
    await page.getByLabel('Field').selectOption('author');
    await page.getByLabel('Comparison').selectOption('eq');
    await page.getByLabel('Value').fill("O'Brien");
    await searchText('anything');
    assert.deepEqual(await captions(), ['a bunch of flowers']);
    await page.getByLabel('Field').selectOption('rank');
    await page.getByLabel('Comparison').selectOption('gte');
    await page.getByLabel('Value').fill('4');
    await searchText('anything');
    assert.deepEqual((await captions()).sort(), ['a grey low contrast scene', 'a small test image']);
  });

  test('empty state: a filter nobody matches says there are no results', async () => {
    await page.getByLabel('Field').selectOption('author');
    await page.getByLabel('Comparison').selectOption('eq');
    await page.getByLabel('Value').fill('nobody at all');
    await searchText('flowers');
    assert.equal(await page.locator('#results .card').count(), 0);
    const status = page.locator('#status');
    assert.equal(await status.getAttribute('data-state'), 'empty');
    assert.match((await status.textContent()) ?? '', /^No results for “flowers”/);
    assert.ok(await status.isVisible(), 'the empty state is visible');
  });

  test('error state: a bad filter value shows the coded error in an alert', async () => {
    await page.getByLabel('Field').selectOption('rank');
    await page.getByLabel('Comparison').selectOption('gt');
    await page.getByLabel('Value').fill('many');
    await searchText('flowers');
    const alert = page.getByRole('alert');
    assert.ok(await alert.isVisible(), 'the error is shown');
    assert.match((await alert.textContent()) ?? '', /a finite number .*\(GLIMPSE_E_FILTER_INVALID\)$/);
    await page.getByLabel('Field').selectOption('');
    await page.getByLabel('Value').fill('');
    await searchText('flowers');
    assert.equal(await alert.isVisible(), false, 'the error goes away on the next good search');
  });

  test('loading state while the server works', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    await page.route('**/search', async (route) => {
      await gate;
      await route.continue();
    });
    await page.getByLabel('Search text').fill('a landscape');
    await page.getByLabel('Search text').press('Enter');
    const status = page.locator('#status');
    await page.locator('#status[data-state="loading"]').waitFor();
    assert.match((await status.textContent()) ?? '', /^Searching… “a landscape”/);
    assert.equal(await page.locator('#results').getAttribute('aria-busy'), 'true');
    release();
    await page.locator('#status[data-state="done"]').waitFor();
    assert.equal(await page.locator('#results').getAttribute('aria-busy'), 'false');
    await page.unroute('**/search');
  });

  test('keyboard: labelled controls in a sensible tab order', async () => {
    await page.getByLabel('Search text').focus();
    const order: string[] = [];
    for (let i = 0; i < 7; i++) {
      await page.keyboard.press('Tab');
      order.push(String(await page.evaluate('document.activeElement && document.activeElement.id')));
    }
    assert.deepEqual(order, [
      'search-button',
      'top-k',
      'filter-key',
      'filter-op',
      'filter-value',
      'drop-zone',
      'image-file',
    ]);
    await page.keyboard.press('Tab');
    assert.equal(
      await page.evaluate('document.activeElement && document.activeElement.className'),
      'card',
      'then the results, in order',
    );
    for (const id of [
      'query',
      'top-k',
      'filter-key',
      'filter-op',
      'filter-value',
      'image-file',
      'collection',
    ]) {
      const labelled = await page.evaluate(
        `(() => { const e = document.getElementById(${JSON.stringify(id)}); return !!(e && e.labels && e.labels.length > 0); })()`,
      );
      assert.equal(labelled, true, `#${id} has a label`);
    }
  });

  test('a server that wants a key: the page asks for it, then works', async () => {
    const other = await browser.context.newPage();
    try {
      await other.goto(`${lockedUrl}/`);
      const key = other.getByLabel('API key');
      await key.waitFor();
      assert.match((await other.getByRole('alert').textContent()) ?? '', /GLIMPSE_E_SERVER_UNAUTHORIZED/);
      await key.fill('ui-key');
      await other.getByRole('button', { name: 'Use key' }).click();
      await other.locator('#collection option[value="photos"]').waitFor({ state: 'attached' });
      await other.getByLabel('Search text').fill('flowers');
      await other.getByLabel('Search text').press('Enter');
      await other.locator('#status[data-state="done"]').waitFor();
      assert.ok((await other.locator('#results .card').count()) > 0, 'results with the key');
    } finally {
      await other.close();
    }
  });
});

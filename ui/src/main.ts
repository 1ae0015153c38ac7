/**
 * The glimpse web UI: pick a collection, search by text (Enter), by an uploaded or dropped image, or
 * "more like this" from any result; optional filter on one field; a grid of thumbnails with captions and
 * scores; loading, empty and error states announced to screen readers.
 */
import './style.css';
import { Api, ApiError, type Cell, type Column, type Hit, type Query } from './api.js';

function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`The page lacks #${id}`);
  return el;
}

const ui = {
  collection: byId('collection', HTMLSelectElement),
  form: byId('search-form', HTMLFormElement),
  query: byId('query', HTMLInputElement),
  topK: byId('top-k', HTMLInputElement),
  filterKey: byId('filter-key', HTMLSelectElement),
  filterOp: byId('filter-op', HTMLSelectElement),
  filterValue: byId('filter-value', HTMLInputElement),
  drop: byId('drop-zone', HTMLDivElement),
  file: byId('image-file', HTMLInputElement),
  keyPanel: byId('api-key-panel', HTMLDivElement),
  key: byId('api-key', HTMLInputElement),
  keySave: byId('api-key-save', HTMLButtonElement),
  status: byId('status', HTMLParagraphElement),
  error: byId('error', HTMLParagraphElement),
  results: byId('results', HTMLUListElement),
  resultsTitle: byId('results-title', HTMLHeadingElement),
};

const api = new Api();
let columns: Column[] = [];
let sequence = 0;
let lastQuery: Query | null = null;

function showError(err: unknown): void {
  const message = err instanceof ApiError ? `${err.message} (${err.code})` : 'Something went wrong.';
  ui.error.textContent = message;
  ui.error.hidden = false;
  if (err instanceof ApiError && err.status === 401) {
    ui.keyPanel.hidden = false;
    ui.key.focus();
  }
}

function clearError(): void {
  ui.error.hidden = true;
  ui.error.textContent = '';
}

function setStatus(text: string, state: 'idle' | 'loading' | 'empty' | 'done' = 'idle'): void {
  ui.status.textContent = text;
  ui.status.dataset['state'] = state;
  ui.results.setAttribute('aria-busy', state === 'loading' ? 'true' : 'false');
}

async function loadColumns(): Promise<void> {
  columns = [];
  ui.filterKey.replaceChildren(new Option('(none)', ''));
  const name = ui.collection.value;
  if (name === '') return;
  columns = (await api.columns(name)).filter((c) => c.key !== 'id' && c.key !== 'image_path');
  for (const c of columns) ui.filterKey.append(new Option(c.key, c.key));
}

async function loadCollections(): Promise<void> {
  clearError();
  try {
    const list = await api.collections();
    ui.collection.replaceChildren(...list.map((c) => new Option(`${c.name} (${c.rows})`, c.name)));
    if (list.length === 0) {
      setStatus('No collections yet: create one with POST /v1/collections (see /docs).', 'empty');
      return;
    }
    await loadColumns();
    setStatus('Type a description and press Enter, or drop an image.');
  } catch (err) {
    showError(err);
  }
}

/** The filter from the filter fields, typed by the column (undefined: no filter). */
function currentFilter(): unknown {
  const key = ui.filterKey.value;
  const text = ui.filterValue.value.trim();
  if (key === '' || text === '') return undefined;
  const column = columns.find((c) => c.key === key);
  let value: Cell = text;
  if (column?.type === 'number' && text !== '' && Number.isFinite(Number(text))) value = Number(text);
  if (column?.type === 'boolean' && (text === 'true' || text === 'false')) value = text === 'true';
  return { [ui.filterOp.value]: [key, value] };
}

function describe(hit: Hit): string {
  const caption = hit.metadata['caption'];
  return typeof caption === 'string' && caption !== '' ? caption : hit.id;
}

function renderResults(collection: string, hits: readonly Hit[]): void {
  const items = hits.map((hit) => {
    const li = document.createElement('li');
    const card = document.createElement('button');
    card.type = 'button';
    card.className = 'card';
    card.dataset['id'] = hit.id;
    const label = describe(hit);
    card.setAttribute('aria-label', `More like this: ${label}, score ${hit.score.toFixed(3)}`);
    const frame = document.createElement('div');
    frame.className = 'thumb';
    const img = document.createElement('img');
    img.alt = label;
    img.loading = 'lazy';
    img.decoding = 'async';
    frame.append(img);
    void api.thumbnail(collection, hit).then((src) => {
      if (src === null) frame.classList.add('none');
      else img.src = src;
    });
    const caption = document.createElement('span');
    caption.className = 'caption';
    caption.textContent = label;
    const score = document.createElement('span');
    score.className = 'score';
    score.textContent = `score ${hit.score.toFixed(3)}`;
    card.append(frame, caption, score);
    card.addEventListener('click', () => void search({ kind: 'item', id: hit.id }, `More like “${label}”`));
    li.append(card);
    return li;
  });
  ui.results.replaceChildren(...items);
}

async function search(query: Query, what: string): Promise<void> {
  const collection = ui.collection.value;
  if (collection === '') return;
  const mine = ++sequence;
  lastQuery = query;
  clearError();
  setStatus(`Searching… ${what}`, 'loading');
  const topK = Math.min(1000, Math.max(1, Math.floor(Number(ui.topK.value) || 24)));
  try {
    const { results, tookMs } = await api.search(collection, query, topK, currentFilter());
    if (mine !== sequence) return;
    renderResults(collection, results);
    if (results.length === 0)
      setStatus(`No results for ${what}. Try other words, another image or a looser filter.`, 'empty');
    else
      setStatus(
        `${results.length} results for ${what} in ${Math.round(tookMs)} ms. Click a result for more like it.`,
        'done',
      );
  } catch (err) {
    if (mine !== sequence) return;
    ui.results.replaceChildren();
    setStatus('', 'idle');
    showError(err);
  }
}

function searchFile(file: File | undefined): void {
  if (file === undefined) return;
  if (!file.type.startsWith('image/') && file.type !== '') {
    showError(new ApiError(400, 'NOT_AN_IMAGE', `${file.name} is not an image.`));
    return;
  }
  void search({ kind: 'image', file, name: file.name }, `image “${file.name}”`);
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.query.value.trim();
  if (text === '') {
    showError(new ApiError(400, 'EMPTY_QUERY', 'Type something to search for, or drop an image.'));
    ui.query.focus();
    return;
  }
  void search({ kind: 'text', text }, `“${text}”`);
});

ui.collection.addEventListener('change', () => {
  ui.results.replaceChildren();
  setStatus('');
  void loadColumns().catch(showError);
});

ui.file.addEventListener('change', () => {
  searchFile(ui.file.files?.[0]);
  ui.file.value = '';
});

ui.drop.addEventListener('keydown', (event) => {
  if (event.target === ui.drop && (event.key === 'Enter' || event.key === ' ')) {
    event.preventDefault();
    ui.file.click();
  }
});
ui.drop.addEventListener('dragover', (event) => {
  event.preventDefault();
  ui.drop.classList.add('over');
});
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
ui.drop.addEventListener('drop', (event) => {
  event.preventDefault();
  ui.drop.classList.remove('over');
  searchFile(event.dataTransfer?.files[0]);
});

ui.keySave.addEventListener('click', () => {
  api.setKey(ui.key.value.trim());
  ui.key.value = '';
  ui.keyPanel.hidden = true;
  void loadCollections().then(() => {
    if (lastQuery !== null) void search(lastQuery, 'the last query');
  });
});

void loadCollections();

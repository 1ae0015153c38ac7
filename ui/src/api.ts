/** The glimpse REST API as the UI uses it (same origin; an API key when the server asks for one). */

export type Cell = string | number | boolean | null;

export interface Hit {
  readonly id: string;
  readonly score: number;
  readonly metadata: Readonly<Record<string, Cell>>;
}

export interface Column {
  readonly key: string;
  readonly type: 'string' | 'number' | 'boolean';
}

export interface CollectionSummary {
  readonly name: string;
  readonly rows: number;
}

/** A query: one of text, an image file, or a stored item ("more like this"); optional filter. */
export type Query =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'image'; readonly file: Blob; readonly name: string }
  | { readonly kind: 'item'; readonly id: string };

/** An error answer of the API: `{code, message}` with its status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const KEY_STORAGE = 'glimpse.apiKey';

/**
 * A small client of the REST API.
 *
 * @example
 *   const api = new Api();
 *   const { results } = await api.search('photos', { kind: 'text', text: 'a red car' }, 24);
 */
export class Api {
  private key: string | null = sessionStorage.getItem(KEY_STORAGE);

  setKey(key: string): void {
    this.key = key === '' ? null : key;
    if (this.key === null) sessionStorage.removeItem(KEY_STORAGE);
    else sessionStorage.setItem(KEY_STORAGE, this.key);
  }

  get hasKey(): boolean {
    return this.key !== null;
  }

  private async call(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.key !== null) headers.set('authorization', `Bearer ${this.key}`);
    let res: Response;
    try {
      res = await fetch(path, { ...init, headers });
    } catch {
      throw new ApiError(0, 'NETWORK', 'The server could not be reached.');
    }
    if (!res.ok) {
      let code = `HTTP_${res.status}`;
      let message = res.statusText || 'Request failed';
      try {
        const body: unknown = await res.json();
        if (isRecord(body) && typeof body['code'] === 'string' && typeof body['message'] === 'string') {
          code = body['code'];
          message = body['message'];
        }
      } catch {
        // not JSON: keep the status text
      }
      throw new ApiError(res.status, code, message);
    }
    return res;
  }

  private async json(path: string, init: RequestInit = {}): Promise<unknown> {
    return (await this.call(path, init)).json();
  }

  async collections(): Promise<CollectionSummary[]> {
    const body = await this.json('/v1/collections');
    const list = isRecord(body) && Array.isArray(body['collections']) ? body['collections'] : [];
    return list.filter(isRecord).map((c) => ({ name: String(c['name']), rows: Number(c['rows'] ?? 0) }));
  }

  async columns(collection: string): Promise<Column[]> {
    const body = await this.json(`/v1/collections/${encodeURIComponent(collection)}`);
    const list = isRecord(body) && Array.isArray(body['columns']) ? body['columns'] : [];
    return list.filter(isRecord).flatMap((c) => {
      const type = c['type'];
      return typeof c['key'] === 'string' && (type === 'string' || type === 'number' || type === 'boolean')
        ? [{ key: c['key'], type }]
        : [];
    });
  }

  async search(
    collection: string,
    query: Query,
    topK: number,
    filter?: unknown,
  ): Promise<{ results: Hit[]; tookMs: number }> {
    const path = `/v1/collections/${encodeURIComponent(collection)}/search`;
    let init: RequestInit;
    if (query.kind === 'image') {
      const form = new FormData();
      form.append('top_k', String(topK));
      if (filter !== undefined) form.append('filter', JSON.stringify(filter));
      form.append('image', query.file, query.name);
      init = { method: 'POST', body: form };
    } else {
      const body: Record<string, unknown> = { top_k: topK };
      if (query.kind === 'text') body['text'] = query.text;
      else body['id'] = query.id;
      if (filter !== undefined) body['filter'] = filter;
      init = { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
    }
    const answer = await this.json(path, init);
    const results = isRecord(answer) && Array.isArray(answer['results']) ? answer['results'] : [];
    return {
      results: results.filter(isRecord).map((r) => ({
        id: String(r['id']),
        score: Number(r['score']),
        metadata: isRecord(r['metadata']) ? (r['metadata'] as Record<string, Cell>) : {},
      })),
      tookMs: isRecord(answer) ? Number(answer['took_ms'] ?? 0) : 0,
    };
  }

  /** A URL for a result's thumbnail: its http(s) `url`, else the server's copy of its stored image. */
  async thumbnail(collection: string, hit: Hit): Promise<string | null> {
    const url = hit.metadata['url'];
    if (typeof url === 'string' && /^https?:\/\//i.test(url)) return url;
    if (typeof hit.metadata['image_path'] !== 'string') return null;
    const path = `/v1/collections/${encodeURIComponent(collection)}/items/${encodeURIComponent(hit.id)}/image`;
    if (this.key === null) return path;
    try {
      return URL.createObjectURL(await (await this.call(path)).blob());
    } catch {
      return null;
    }
  }
}

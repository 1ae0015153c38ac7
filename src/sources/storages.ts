import {
  openStorage,
  storageKind,
  type Storage,
  type StorageKind,
  type StorageOptions,
} from '../storage/index.js';

/**
 * One storage instance per backend kind, opened on first use and closed together: a source reads many URLs
 * (shards, manifest rows) of a few kinds, and each instance holds sockets or an SDK client.
 *
 * @example
 *   const storages = new StorageSet({ s3: { endpoint: 'http://127.0.0.1:9000' } });
 *   const bytes = await storages.for('s3://bucket/a.tar').read('s3://bucket/a.tar');
 *   storages.close();
 */
export class StorageSet {
  private readonly open = new Map<StorageKind, Storage>();

  constructor(private readonly options: StorageOptions = {}) {}

  /** The storage that serves `url` (a local path, `file://`, `http(s)://` or `s3://`). */
  for(url: string): Storage {
    const kind = storageKind(url);
    let s = this.open.get(kind);
    if (!s) {
      s = openStorage(url, this.options);
      this.open.set(kind, s);
    }
    return s;
  }

  close(): void {
    for (const s of this.open.values()) s.close();
    this.open.clear();
  }
}

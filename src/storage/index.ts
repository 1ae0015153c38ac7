/**
 * Byte access to local files, HTTP(S) servers and S3, behind one interface (`Storage`). Sources, sinks and
 * the embedding reader take URLs and call `openStorage(url)`; nothing above this layer knows the backend.
 */
import { HttpStorage } from './http.js';
import { LocalStorage } from './local.js';
import { S3Storage } from './s3.js';
import { storageKind } from './url.js';
import type { Storage, StorageOptions } from './types.js';

export type {
  HttpStorageOptions,
  ListEntry,
  ReadStreamOptions,
  S3StorageOptions,
  StatResult,
  Storage,
  StorageKind,
  StorageOptions,
  WriteBody,
} from './types.js';
export { HttpStorage, parseListing } from './http.js';
export { LocalStorage } from './local.js';
export { S3Storage, s3ClientConfig } from './s3.js';
export { compareNames, joinUrl, localPath, parseS3Url, storageKind, urlBasename } from './url.js';

/**
 * The storage for a URL's scheme: a local path or `file://` → LocalStorage, `http(s)://` → HttpStorage,
 * `s3://` → S3Storage. One instance serves every URL of that kind; call `close()` when done.
 *
 * @example
 *   const storage = openStorage('s3://bucket/emb', { s3: { endpoint: 'http://127.0.0.1:9000' } });
 *   const { size } = await storage.stat('s3://bucket/emb/img_emb/img_emb_0.npy');
 *   storage.close();
 */
export function openStorage(url: string, options: StorageOptions = {}): Storage {
  switch (storageKind(url)) {
    case 'local':
      return new LocalStorage();
    case 'http':
      return new HttpStorage(options.http);
    case 's3':
      return new S3Storage(options.s3);
  }
}

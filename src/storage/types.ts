import type { Readable } from 'node:stream';
import type { RangeReader } from '../formats/parquet.js';

export type StorageKind = 'local' | 'http' | 's3';

export interface StatResult {
  /** Size in bytes. */
  readonly size: number;
  /** Last modification time, when the backend knows it. */
  readonly mtime?: Date;
}

export interface ListEntry {
  /** The entry's full URL (or path, for a local folder given as a path). */
  readonly url: string;
  /** Its name inside the listed folder. */
  readonly name: string;
  readonly size: number;
}

export interface ReadStreamOptions {
  /** First byte (inclusive, default 0). */
  start?: number;
  /** Last byte (exclusive, default the end of the file). */
  end?: number;
}

/** Bytes to write: a buffer, or any async iterable of chunks (a Node Readable is one). */
export type WriteBody = Uint8Array | AsyncIterable<Uint8Array>;

/**
 * Byte access to one kind of storage. Every method takes a full URL or path of that kind, so one
 * instance serves a whole bucket, host or disk. Errors are GlimpseErrors: `GLIMPSE_E_STORAGE_NOT_FOUND`
 * for missing objects, `GLIMPSE_E_STORAGE_*` otherwise.
 */
export interface Storage {
  readonly kind: StorageKind;
  stat(url: string): Promise<StatResult>;
  /**
   * Bytes `[start, end)`; throws when the object has fewer bytes than `end`. With `into` (exactly
   * `end - start` bytes long) the bytes are written there (local files: read straight into it) and
   * `into` is returned.
   */
  readRange(url: string, start: number, end: number, into?: Uint8Array): Promise<Uint8Array>;
  /** The whole object. */
  read(url: string): Promise<Uint8Array>;
  createReadStream(url: string, options?: ReadStreamOptions): Promise<Readable>;
  /** The objects directly inside a folder (or under a prefix), sorted by name (code-unit order). */
  list(folderUrl: string): Promise<ListEntry[]>;
  /** Writes a whole object so that readers never see a partial one. */
  writeAtomic(url: string, body: WriteBody): Promise<void>;
  exists(url: string): Promise<boolean>;
  /** Deletes an object; deleting a missing object is not an error. */
  delete(url: string): Promise<void>;
  /** A RangeReader (for the parquet reader) over one object; `size` skips the stat when known. */
  rangeReader(url: string, size?: number): Promise<RangeReader>;
  /** Frees sockets and clients. */
  close(): void;
}

export interface HttpStorageOptions {
  /** Milliseconds to open a connection (default 10,000). */
  connectTimeoutMs?: number;
  /** Milliseconds without any byte from the server, waiting for headers or body (default 30,000). */
  readTimeoutMs?: number;
  /** Redirects followed before GLIMPSE_E_STORAGE_REDIRECT_LIMIT (default 5). */
  maxRedirects?: number;
  /** Retries of a read after a timeout, a dropped connection or a 5xx status (default 2). */
  retries?: number;
  /** Extra request headers (authorization…); never logged. */
  headers?: Record<string, string>;
  /** Parallel connections per host (default 16). */
  maxSockets?: number;
  /** Largest body `read()` accepts (default unlimited); GLIMPSE_E_STORAGE_TOO_LARGE above it. */
  maxBytes?: number;
}

export interface S3StorageOptions {
  /** Region (default `AWS_REGION`, `AWS_DEFAULT_REGION`, then `us-east-1`). */
  region?: string;
  /** Custom endpoint (default `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, then `S3_ENDPOINT`). */
  endpoint?: string;
  /** Path-style addressing (default: true when a custom endpoint is set, else false). */
  forcePathStyle?: boolean;
  /** Static credentials; by default the AWS SDK's default chain (env, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Bodies at least this large, and every stream, go through a multipart upload (default 16 MiB). */
  multipartThreshold?: number;
  /** Multipart part size (default 8 MiB; S3's minimum is 5 MiB). */
  partSize?: number;
  /** Parts uploaded in parallel (default 4). */
  queueSize?: number;
}

export interface StorageOptions {
  http?: HttpStorageOptions;
  s3?: S3StorageOptions;
}

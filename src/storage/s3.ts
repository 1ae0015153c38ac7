import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { GlimpseError } from '../errors/index.js';
import type { RangeReader } from '../formats/parquet.js';
import { checkInto } from './local.js';
import { compareNames, parseS3Url } from './url.js';
import type {
  ListEntry,
  ReadStreamOptions,
  S3StorageOptions,
  StatResult,
  Storage,
  WriteBody,
} from './types.js';

interface SdkError {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function s3Error(err: unknown, what: string, url: string): GlimpseError {
  if (err instanceof GlimpseError) return err;
  const e = (err ?? {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  if (status === 404 || e.name === 'NoSuchKey' || e.name === 'NotFound' || e.name === 'NoSuchBucket') {
    return new GlimpseError(
      'GLIMPSE_E_STORAGE_NOT_FOUND',
      `Expected ${url} to exist but S3 answered ${e.name ?? status}`,
      {
        cause: err,
        details: { url, status },
      },
    );
  }
  const text = e.message ?? String(err);
  return new GlimpseError(
    'GLIMPSE_E_STORAGE_IO',
    `Expected to ${what} ${url} but S3 answered ${e.name ?? 'an error'}${status !== undefined ? ` (${status})` : ''}: ${text}`,
    { cause: err, details: { url, status } },
  );
}

/** The S3 client configuration from options and the environment (exported for tests and diagnostics). */
export function s3ClientConfig(
  options: S3StorageOptions = {},
  env: NodeJS.ProcessEnv = process.env,
): S3ClientConfig {
  const endpoint = options.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? env.S3_ENDPOINT;
  const config: S3ClientConfig = {
    region: options.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
    // Recent SDKs add CRC checksums and aws-chunked uploads by default, which simple S3 servers reject.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  if (endpoint !== undefined) config.endpoint = endpoint;
  if (options.credentials) config.credentials = { ...options.credentials };
  return config;
}

/**
 * Objects in S3 or an S3-compatible server (`s3://bucket/key`). Ranged GETs for reads; writes are a single
 * PUT (atomic per object in S3) below `multipartThreshold`, a multipart upload (`@aws-sdk/lib-storage`)
 * above it and for streams. Region, endpoint and path style come from options, then `AWS_REGION`,
 * `AWS_ENDPOINT_URL(_S3)`/`S3_ENDPOINT`; credentials from options or the SDK's default chain.
 *
 * @example
 *   const s3 = new S3Storage({ endpoint: 'http://127.0.0.1:9000' });
 *   const entries = await s3.list('s3://bucket/emb/img_emb/');
 */
export class S3Storage implements Storage {
  readonly kind = 's3' as const;
  private readonly client: S3Client;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(options: S3StorageOptions = {}) {
    // The SDK warns on every Node < 22 start-up about its future support policy; not actionable here.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new S3Client(s3ClientConfig(options));
    this.multipartThreshold = options.multipartThreshold ?? 16 * 1024 * 1024;
    this.partSize = Math.max(5 * 1024 * 1024, options.partSize ?? 8 * 1024 * 1024);
    this.queueSize = options.queueSize ?? 4;
  }

  async stat(url: string): Promise<StatResult> {
    const { bucket, key } = parseS3Url(url);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      const size = head.ContentLength ?? 0;
      return head.LastModified ? { size, mtime: head.LastModified } : { size };
    } catch (err) {
      throw s3Error(err, 'stat', url);
    }
  }

  async readRange(url: string, start: number, end: number, into?: Uint8Array): Promise<Uint8Array> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        `Expected a byte range 0 ≤ start ≤ end for ${url} but received [${start}, ${end})`,
      );
    }
    checkInto(url, start, end, into);
    if (end === start) return into ?? new Uint8Array(0);
    const { bucket, key } = parseS3Url(url);
    let bytes: Uint8Array;
    try {
      const got = await this.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${end - 1}` }),
      );
      if (!got.Body) throw new Error('no body');
      bytes = await got.Body.transformToByteArray();
      // Some S3-compatible servers answer more than asked (s3rver 3.7 turns `bytes=0-0` into the whole
      // object): keep the asked bytes when the answer says where it starts, as for HTTP servers.
      if (bytes.length > end - start) {
        const m = /^bytes (\d+)-/.exec(got.ContentRange ?? '');
        const offset = m ? start - Number(m[1]) : start;
        if (offset >= 0 && bytes.length >= offset + (end - start))
          bytes = bytes.subarray(offset, offset + (end - start));
      }
    } catch (err) {
      const status = (err as SdkError | null)?.$metadata?.httpStatusCode;
      if (status === 416) {
        throw new GlimpseError(
          'GLIMPSE_E_STORAGE_IO',
          `Expected bytes ${start}–${end} of ${url} but they are past its end`,
          {
            cause: err,
            details: { url, start, end },
          },
        );
      }
      throw s3Error(err, 'read', url);
    }
    if (bytes.length !== end - start) {
      throw new GlimpseError(
        'GLIMPSE_E_STORAGE_IO',
        `Expected bytes ${start}–${end} of ${url} but received ${bytes.length} bytes (the object is shorter)`,
        { details: { url, start, end, received: bytes.length } },
      );
    }
    if (into) {
      into.set(bytes);
      return into;
    }
    return bytes;
  }

  async read(url: string): Promise<Uint8Array> {
    const { bucket, key } = parseS3Url(url);
    try {
      const got = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      if (!got.Body) throw new Error('no body');
      const bytes = await got.Body.transformToByteArray();
      if (got.ContentLength !== undefined && bytes.length !== got.ContentLength) {
        throw new GlimpseError(
          'GLIMPSE_E_STORAGE_IO',
          `Expected ${got.ContentLength} bytes from ${url} but received ${bytes.length}`,
          { details: { url } },
        );
      }
      return bytes;
    } catch (err) {
      throw s3Error(err, 'read', url);
    }
  }

  async createReadStream(url: string, options: ReadStreamOptions = {}): Promise<Readable> {
    const start = options.start ?? 0;
    if (options.end !== undefined && options.end <= start) return Readable.from([]);
    const { bucket, key } = parseS3Url(url);
    const range =
      start > 0 || options.end !== undefined
        ? `bytes=${start}-${options.end === undefined ? '' : options.end - 1}`
        : undefined;
    try {
      const got = await this.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, ...(range ? { Range: range } : {}) }),
      );
      if (!(got.Body instanceof Readable)) throw new Error('expected a Node stream body');
      return got.Body;
    } catch (err) {
      throw s3Error(err, 'read', url);
    }
  }

  async list(folderUrl: string): Promise<ListEntry[]> {
    const { bucket, key } = parseS3Url(folderUrl);
    const prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
    const base = `s3://${bucket}/${prefix}`;
    const out: ListEntry[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: prefix,
            Delimiter: '/',
            ContinuationToken: token,
          }),
        );
        for (const o of page.Contents ?? []) {
          if (o.Key === undefined || o.Key === prefix) continue;
          const name = o.Key.slice(prefix.length);
          out.push({ url: base + name, name, size: o.Size ?? 0 });
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
    } catch (err) {
      throw s3Error(err, 'list', folderUrl);
    }
    return out.sort((a, b) => compareNames(a.name, b.name));
  }

  async writeAtomic(url: string, body: WriteBody): Promise<void> {
    const { bucket, key } = parseS3Url(url);
    try {
      if (body instanceof Uint8Array && body.length < this.multipartThreshold) {
        await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
        return;
      }
      const upload = new Upload({
        client: this.client,
        params: { Bucket: bucket, Key: key, Body: body instanceof Uint8Array ? body : Readable.from(body) },
        partSize: this.partSize,
        queueSize: this.queueSize,
        leavePartsOnError: false,
      });
      await upload.done();
    } catch (err) {
      const e = s3Error(err, 'write', url);
      throw new GlimpseError('GLIMPSE_E_OUTPUT_WRITE_FAILED', e.message, { cause: err, details: { url } });
    }
  }

  async exists(url: string): Promise<boolean> {
    try {
      await this.stat(url);
      return true;
    } catch (err) {
      if (err instanceof GlimpseError && err.code === 'GLIMPSE_E_STORAGE_NOT_FOUND') return false;
      throw err;
    }
  }

  async delete(url: string): Promise<void> {
    const { bucket, key } = parseS3Url(url);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    } catch (err) {
      const e = s3Error(err, 'delete', url);
      if (e.code !== 'GLIMPSE_E_STORAGE_NOT_FOUND') throw e;
    }
  }

  async rangeReader(url: string, size?: number): Promise<RangeReader> {
    const known = size ?? (await this.stat(url)).size;
    return { name: url, size: known, readRange: (s, e) => this.readRange(url, s, e) };
  }

  close(): void {
    this.client.destroy();
  }
}

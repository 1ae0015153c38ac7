/**
 * A real S3-protocol server (s3rver, from npm) on 127.0.0.1 with a random port and a temp folder, for
 * storage and reader tests. The AWS SDK v3 talks to it with path-style addressing and static credentials.
 */
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3StorageOptions } from '../../src/storage/index.js';

interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}
type S3rverConstructor = new (options: {
  port: number;
  address: string;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
}) => S3rverInstance;

export interface TestS3Server {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  /** A bucket created at start. */
  readonly bucket: string;
  /** Options for S3Storage / openStorage that reach this server. */
  readonly options: S3StorageOptions;
  close(): Promise<void>;
}

/**
 * Starts s3rver with one bucket.
 *
 * @example
 *   const s3 = await startS3Server();
 *   const storage = new S3Storage(s3.options);
 *   await storage.writeAtomic(`s3://${s3.bucket}/a.txt`, new TextEncoder().encode('hi'));
 *   await s3.close();
 */
export async function startS3Server(bucket = 'glimpse-test'): Promise<TestS3Server> {
  const require = createRequire(import.meta.url);
  const S3rver = require('s3rver') as S3rverConstructor;
  const directory = mkdtempSync(join(tmpdir(), 'glimpse-s3rver-'));
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    options: {
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    },
    close: async () => {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

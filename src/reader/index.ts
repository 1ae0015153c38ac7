/** The embedding reader: stream embedding collections (npy, parquet, parquet + npy) from disk, HTTP(S) or S3. */
export { EmbeddingReader } from './embedding-reader.js';
export { OrderedPrefetcher } from './prefetch.js';
export { exportEmbeddings, type ExportOptions } from './export.js';
export type {
  EmbeddingBatch,
  EmbeddingDtype,
  EmbeddingFormat,
  EmbeddingMatrix,
  EmbeddingReaderOptions,
  ReaderEvent,
  ReaderFile,
  ReadOptions,
  ReadStats,
} from './types.js';

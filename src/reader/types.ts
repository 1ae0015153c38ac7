import type { ProgressCallback } from '../core/progress.js';
import type { StorageOptions } from '../storage/index.js';

/**
 * - `npy`: `*.npy` files (C-order float16/float32 `(n, d)` matrices), no metadata.
 * - `parquet`: `*.parquet` files with a list-of-floats embedding column and optional metadata columns.
 * - `parquet_npy`: `*.npy` embeddings joined by position with `*.parquet` metadata files (clip-retrieval's
 *   `img_emb/` + `metadata/`): file i of one pairs with file i of the other, row j with row j.
 */
export type EmbeddingFormat = 'npy' | 'parquet' | 'parquet_npy';

export type EmbeddingDtype = 'float32' | 'float16';

export interface EmbeddingReaderOptions {
  format: EmbeddingFormat;
  /** Column holding the embeddings in `parquet` format (default `embedding`). */
  embeddingColumn?: string;
  /** Metadata columns yielded with each batch (default none). */
  metaColumns?: readonly string[];
  /**
   * `parquet_npy`: where the metadata parquet files are. One per embeddings folder, or one for all.
   * Default: the `metadata` folder beside each embeddings folder (clip-retrieval's layout).
   */
  metadataFolder?: string | readonly string[];
  /** Options for the HTTP and S3 backends (timeouts, endpoint, credentials…). */
  storageOptions?: StorageOptions;
}

/** Events about pieces and memory, for monitoring and tests. */
export type ReaderEvent =
  | {
      type: 'piece-start';
      /** The group (of whole batches) the piece belongs to. */
      index: number;
      url: string;
      rowStart: number;
      rowEnd: number;
      bytes: number;
      /** Bytes the reader holds or has reserved: group buffers being filled plus scratch. */
      bytesInFlight: number;
    }
  | { type: 'piece-done'; index: number; url: string; bytes: number }
  /** A group of batches was handed to the caller: its bytes no longer count as the reader's. */
  | { type: 'release'; index: number; bytesInFlight: number };

export interface ReadOptions<D extends EmbeddingDtype = EmbeddingDtype> {
  /** Rows per batch (default 10,000); every batch has exactly this many rows except the last. */
  batchSize?: number;
  /** First row (global id, inclusive; default 0). */
  start?: number;
  /** Last row (exclusive; default `count`). */
  end?: number;
  /** Largest piece fetched in one read (bytes or `50M`; default 50 MB). */
  maxPieceSize?: number | string;
  /** Pieces fetched at once (default 8). */
  parallelPieces?: number;
  /** Cap on the bytes the reader holds: batch buffers being filled ahead plus scratch (default 4 GiB). */
  maxRamBytes?: number | string;
  /** `float16` yields the stored half bits as a Uint16Array (no conversion for float16 npy files). */
  dtype?: D;
  /** A progress bar on stderr (cli-progress). */
  showProgress?: boolean;
  /** Progress events (rows). */
  onProgress?: ProgressCallback;
  /** Piece and memory events. */
  onEvent?: (event: ReaderEvent) => void;
  signal?: AbortSignal;
}

/** A row-major `[rows, dimension]` matrix. */
export interface EmbeddingMatrix<T extends Float32Array | Uint16Array = Float32Array | Uint16Array> {
  readonly data: T;
  readonly rows: number;
  readonly dimension: number;
  readonly dtype: EmbeddingDtype;
}

export interface EmbeddingBatch<T extends Float32Array | Uint16Array = Float32Array | Uint16Array> {
  readonly embeddings: EmbeddingMatrix<T>;
  /** One object per row with the `metaColumns` (undefined when no metaColumns were asked). */
  readonly meta: Record<string, unknown>[] | undefined;
  /** Global id of the batch's first row. */
  readonly rowStart: number;
}

/** One embedding file of the collection, in reading order. */
export interface ReaderFile {
  readonly url: string;
  readonly rows: number;
  /** Global id of its first row. */
  readonly rowStart: number;
  /** File size in bytes. */
  readonly size: number;
  /** npy: bytes before the data. */
  readonly headerLength: number;
  /** npy: stored dtype; parquet: float32. */
  readonly storedDtype: EmbeddingDtype;
  /** parquet_npy: the paired metadata file. */
  readonly metadataUrl?: string;
  /** parquet: row groups (first row, row count). */
  readonly rowGroups?: readonly { readonly rowStart: number; readonly numRows: number }[];
}

/** What one read() held at most, from the reader's own accounting. */
export interface ReadStats {
  pieces: number;
  bytesFetched: number;
  peakBytesInFlight: number;
}

import type { ErrorCode } from '../errors/index.js';

/** What every source yields: one sample, in a stable order. */
export interface Sample {
  /**
   * Stable key, used in failure records: the image path (folder input), `<shard>#<key>` (WebDataset), or
   * the manifest row's URL/path.
   */
  readonly key: string;
  /**
   * Position of the sample in the source's stable order (0-based; consecutive except where a pre-scanned
   * WebDataset shard gives fewer samples than its headers promised). Manifests: the row number; their samples
   * come in the order downloads finish, so indexes arrive out of order.
   */
  readonly index: number;
  /** Where the image bytes are (a local path or URL), when the sample has an image. */
  readonly imagePath?: string;
  /** The image bytes, when the source already holds them (tar members, downloads, uploads). */
  readonly imageBytes?: Uint8Array;
  /**
   * The `image_path` column's value when it is neither `imagePath` nor `key` (the WebDataset key, the
   * manifest URL).
   */
  readonly name?: string;
  /** The caption, when there is one. */
  readonly caption?: string;
  /** Metadata (the sidecar JSON or manifest columns), not yet flattened. */
  readonly meta?: Record<string, unknown>;
  /** Why the sample could not be read (sidecar, download…); the sample is then recorded as failed. */
  readonly error?: { code: ErrorCode | string; message: string };
}

/** A problem found while reading that belongs to no one sample (a corrupt shard, an unreadable file). */
export interface SourceIssue {
  /** What it concerns: a shard or manifest file name or URL. */
  readonly key: string;
  readonly code: ErrorCode | string;
  readonly message: string;
}

/** A source lists its samples (for partitioning and ETA) and streams them in order. */
export interface SampleSource {
  /** Number of samples, when known before streaming. */
  readonly size: number | undefined;
  /**
   * An upper bound on the number of samples when `size` is not known (streams), used to zero-pad
   * partition names so that lexicographic order stays numeric order.
   */
  readonly sizeBound?: number;
  /** Streams samples in stable order from `start` (inclusive) to `end` (exclusive). */
  read(range?: { start?: number; end?: number; signal?: AbortSignal }): AsyncIterable<Sample>;
  /** Problems found since the last call (shard errors); each is returned once. */
  takeIssues?(): SourceIssue[];
  /** Counters worth reporting (samples skipped for a missing member, by reason…), final after `read` ends. */
  counts?(): Record<string, number>;
  /** Frees connections and clients. */
  close?(): void;
}

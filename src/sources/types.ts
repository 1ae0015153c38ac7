/** What every source yields: one sample, in a stable order. */
export interface Sample {
  /** Stable key: the image path (folder input), the WebDataset key, or the manifest row's URL/path. */
  readonly key: string;
  /** Position of the sample in the input's stable order (0-based). */
  readonly index: number;
  /** Where the image bytes are (a local path or URL), when the sample has an image. */
  readonly imagePath?: string;
  /** The image bytes, when the source already holds them (tar members, uploads). */
  readonly imageBytes?: Uint8Array;
  /** The caption, when there is one. */
  readonly caption?: string;
  /** Metadata (the sidecar JSON or manifest columns), not yet flattened. */
  readonly meta?: Record<string, unknown>;
  /** Why the sample's sidecar files could not be read (the sample is then recorded as failed). */
  readonly error?: { code: string; message: string };
}

/** A source lists its samples (for partitioning and ETA) and streams them in order. */
export interface SampleSource {
  /** Number of samples, when known before streaming. */
  readonly size: number | undefined;
  /** Streams samples in stable order from `start` (inclusive) to `end` (exclusive). */
  read(range?: { start?: number; end?: number; signal?: AbortSignal }): AsyncIterable<Sample>;
}

import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { GlimpseError } from '../errors/index.js';
import { syncDir, tempPathFor, writeFileAtomic } from '../core/fs-atomic.js';
import { encodeNpyHeader, float32ToFloat16 } from '../formats/npy.js';
import { encodeParquet } from '../formats/parquet.js';
import { buildMetadataColumns, flattenMetadata } from './metadata.js';

/** Output element type of the `.npy` files (clip-retrieval writes float16). */
export type OutputDtype = 'float16' | 'float32';

/** One sample that failed, as recorded in `failures/`. */
export interface FailureRecord {
  key: string;
  code: string;
  message: string;
}

/** A problem of the input that is not one sample (a corrupt shard), also recorded in `failures/`. */
export interface SourceIssueRecord {
  /** The shard or file it concerns. */
  key: string;
  code: string;
  message: string;
}

/** Rows handed to a partition: embeddings are row-major `[rows, dimension]`, L2-normalized. */
export interface PartitionRows {
  rows: number;
  imageEmbeddings?: Float32Array;
  textEmbeddings?: Float32Array;
  /** One entry per row: `image_path`, `caption` and the sample's JSON (flattened here). */
  meta: { imagePath?: string; caption?: string; json?: Record<string, unknown> }[];
}

export interface PartitionStats {
  partition: number;
  sample_count: number;
  failed_count: number;
  failures_by_code: Record<string, number>;
  /** Input problems that are not one sample (corrupt shards), recorded in failures/ with `scope: "source"`. */
  source_issues: number;
  seconds: Record<string, number>;
}

export interface ClipRetrievalSinkOptions {
  outDir: string;
  enableImage: boolean;
  enableText: boolean;
  enableMetadata: boolean;
  outputDtype: OutputDtype;
  /** Total partitions, which sets the zero-padding of partition numbers. */
  partitionCount: number;
}

/** `floor(log10(count)) + 1` digits, so lexicographic order is numeric order (compat §1). */
export function partitionName(p: number, count: number): string {
  const digits = Math.floor(Math.log10(Math.max(count, 1))) + 1;
  return String(p).padStart(digits, '0');
}

/** Streams one `(n, d)` matrix to a temp `.npy`, rewrites the header with the final `n`, renames. */
class NpyStream {
  private handle: FileHandle | undefined;
  private readonly tmp: string;
  private rows = 0;
  private headerLength = 0;
  private dimension: number | undefined;
  private position = 0;

  constructor(
    private readonly path: string,
    private readonly dtype: OutputDtype,
    private readonly capacity: number,
  ) {
    this.tmp = tempPathFor(path);
  }

  async append(data: Float32Array, rows: number, dimension: number): Promise<void> {
    if (this.dimension === undefined) {
      this.dimension = dimension;
      await mkdir(join(this.path, '..'), { recursive: true });
      this.handle = await open(this.tmp, 'w');
      const header = encodeNpyHeader(this.dtype, [Math.max(this.capacity, 1), dimension]);
      this.headerLength = header.length;
      await this.handle.write(header, 0, header.length, 0);
      this.position = header.length;
    } else if (dimension !== this.dimension) {
      throw new GlimpseError(
        'GLIMPSE_E_MODEL_DIM_MISMATCH',
        `Expected embeddings of dimension ${this.dimension} for ${this.path} but received ${dimension}`,
      );
    }
    const body =
      this.dtype === 'float16'
        ? float32ToFloat16(data.subarray(0, rows * dimension))
        : data.subarray(0, rows * dimension);
    const bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    await this.handle!.write(bytes, 0, bytes.length, this.position);
    this.position += bytes.length;
    this.rows += rows;
  }

  /** Writes the final header, fsyncs and renames into place. Nothing is written for zero rows. */
  async commit(): Promise<boolean> {
    if (this.handle === undefined || this.dimension === undefined) return false;
    let header = encodeNpyHeader(this.dtype, [this.rows, this.dimension]);
    if (header.length !== this.headerLength) {
      // Keep the data offset: pad (or, never needed in practice, fail) to the placeholder's length.
      if (header.length > this.headerLength) {
        throw new GlimpseError(
          'GLIMPSE_E_INTERNAL',
          `Expected the npy header of ${this.path} to fit ${this.headerLength} bytes`,
        );
      }
      header = padNpyHeader(header, this.headerLength);
    }
    await this.handle.write(header, 0, header.length, 0);
    await this.handle.truncate(this.position);
    await this.handle.sync();
    await this.handle.close();
    this.handle = undefined;
    await rename(this.tmp, this.path);
    return true;
  }

  async abort(): Promise<void> {
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    await rm(this.tmp, { force: true });
  }
}

/** Pads a v1 npy header (spaces before the final newline) to `length` bytes, fixing the length field. */
function padNpyHeader(header: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length).fill(0x20);
  out.set(header.subarray(0, header.length - 1), 0);
  out[length - 1] = 0x0a;
  const headerLen = length - 10;
  out[8] = headerLen & 0xff;
  out[9] = (headerLen >> 8) & 0xff;
  return out;
}

/**
 * Writes one partition of the clip-retrieval layout: `img_emb/img_emb_{p}.npy`, `text_emb/text_emb_{p}.npy`,
 * `metadata/metadata_{p}.parquet` (row i of each is the same sample), plus `failures/failures_{p}.jsonl`
 * and `stats/stats_{p}.json`. Everything is written under temp names and renamed on `commit()`; a killed
 * process leaves only temp files, never a partial file under a final name.
 */
export class PartitionWriter {
  private readonly img: NpyStream | undefined;
  private readonly text: NpyStream | undefined;
  private readonly meta: Record<string, unknown>[] = [];
  private readonly failures: FailureRecord[] = [];
  private readonly issues: SourceIssueRecord[] = [];
  private readonly written: string[] = [];
  private rows = 0;

  constructor(
    private readonly options: ClipRetrievalSinkOptions,
    readonly partition: number,
    capacity: number,
  ) {
    const name = partitionName(partition, options.partitionCount);
    this.img = options.enableImage
      ? new NpyStream(join(options.outDir, 'img_emb', `img_emb_${name}.npy`), options.outputDtype, capacity)
      : undefined;
    this.text = options.enableText
      ? new NpyStream(join(options.outDir, 'text_emb', `text_emb_${name}.npy`), options.outputDtype, capacity)
      : undefined;
  }

  get rowCount(): number {
    return this.rows;
  }

  get failureCount(): number {
    return this.failures.length;
  }

  async append(batch: PartitionRows): Promise<void> {
    if (batch.rows === 0) return;
    if (batch.meta.length !== batch.rows) {
      throw new GlimpseError(
        'GLIMPSE_E_INTERNAL',
        `Expected ${batch.rows} metadata rows but received ${batch.meta.length}`,
      );
    }
    if (this.img) {
      if (!batch.imageEmbeddings)
        throw new GlimpseError(
          'GLIMPSE_E_INTERNAL',
          'Expected image embeddings for an image-enabled partition',
        );
      await this.img.append(batch.imageEmbeddings, batch.rows, batch.imageEmbeddings.length / batch.rows);
    }
    if (this.text) {
      if (!batch.textEmbeddings)
        throw new GlimpseError('GLIMPSE_E_INTERNAL', 'Expected text embeddings for a text-enabled partition');
      await this.text.append(batch.textEmbeddings, batch.rows, batch.textEmbeddings.length / batch.rows);
    }
    for (const m of batch.meta) {
      const row: Record<string, unknown> = {};
      if (this.options.enableImage) row['image_path'] = m.imagePath ?? null;
      if (this.options.enableText) row['caption'] = m.caption ?? null;
      if (this.options.enableMetadata && m.json) Object.assign(row, flattenMetadata(m.json));
      this.meta.push(row);
    }
    this.rows += batch.rows;
  }

  recordFailure(failure: FailureRecord): void {
    this.failures.push(failure);
  }

  /** Records an input problem that is not one sample (not counted in `failed_count`). */
  recordSourceIssue(issue: SourceIssueRecord): void {
    this.issues.push(issue);
  }

  /**
   * The files `commit()` wrote, relative to the output folder, in the order written (`stats/` last: a
   * partition whose stats file exists is complete).
   */
  files(): readonly string[] {
    return this.written;
  }

  /** Renames every file into place (metadata, embeddings, failures, then stats last). */
  async commit(seconds: Record<string, number> = {}): Promise<PartitionStats> {
    const { outDir, partitionCount } = this.options;
    const name = partitionName(this.partition, partitionCount);
    try {
      if (this.rows > 0) {
        const fixed = [
          ...(this.options.enableImage ? ['image_path'] : []),
          ...(this.options.enableText ? ['caption'] : []),
        ];
        const columns = buildMetadataColumns(this.meta, fixed);
        await writeFileAtomic(
          join(outDir, 'metadata', `metadata_${name}.parquet`),
          await encodeParquet(columns),
        );
        this.written.push(`metadata/metadata_${name}.parquet`);
      }
      if (await this.text?.commit()) this.written.push(`text_emb/text_emb_${name}.npy`);
      if (await this.img?.commit()) this.written.push(`img_emb/img_emb_${name}.npy`);
      for (const sub of ['img_emb', 'text_emb']) await syncDir(join(outDir, sub));
      if (this.failures.length > 0 || this.issues.length > 0) {
        const lines = [
          ...this.issues.map((i) => JSON.stringify({ ...i, scope: 'source' })),
          ...this.failures.map((f) => JSON.stringify(f)),
        ];
        await writeFileAtomic(join(outDir, 'failures', `failures_${name}.jsonl`), lines.join('\n') + '\n');
        this.written.push(`failures/failures_${name}.jsonl`);
      }
      const byCode: Record<string, number> = {};
      for (const f of this.failures) byCode[f.code] = (byCode[f.code] ?? 0) + 1;
      const stats: PartitionStats = {
        partition: this.partition,
        sample_count: this.rows,
        failed_count: this.failures.length,
        failures_by_code: byCode,
        source_issues: this.issues.length,
        seconds,
      };
      await writeFileAtomic(
        join(outDir, 'stats', `stats_${name}.json`),
        JSON.stringify(stats, null, 2) + '\n',
      );
      this.written.push(`stats/stats_${name}.json`);
      return stats;
    } catch (err) {
      await this.abort();
      if (err instanceof GlimpseError) throw err;
      throw new GlimpseError(
        'GLIMPSE_E_OUTPUT_WRITE_FAILED',
        `Expected to write partition ${name} in ${outDir} but ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /** Removes the temp files of an unfinished partition. */
  async abort(): Promise<void> {
    await this.img?.abort();
    await this.text?.abort();
  }
}

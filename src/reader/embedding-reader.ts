/**
 * EmbeddingReader: streams embedding collections far larger than memory (npy, parquet, parquet + npy),
 * from local disk, HTTP(S) or S3, in pieces fetched in parallel and handed back in order, with the bytes
 * held capped by `maxRamBytes`. The Node counterpart of rom1504/embedding_reader.
 */
import cliProgress from 'cli-progress';
import { ProgressTracker } from '../core/progress.js';
import {
  assertOneOf,
  assertPositiveInteger,
  invalidParameterError,
  parseByteSize,
} from '../core/validate.js';
import { GlimpseError } from '../errors/index.js';
import { mapLimit } from '../core/async.js';
import { float16ToFloat32, float32ToFloat16 } from '../formats/npy.js';
import { readParquetColumns, type ParquetColumns, type ParquetFileInfo } from '../formats/parquet.js';
import { compareNames, urlBasename, type Storage } from '../storage/index.js';
import {
  findFiles,
  readFooter,
  readNpyHeader,
  siblingMetadataFolder,
  StoragePool,
  type FoundFile,
} from './discover.js';
import { OrderedPrefetcher, Semaphore } from './prefetch.js';
import type {
  EmbeddingBatch,
  EmbeddingDtype,
  EmbeddingFormat,
  EmbeddingReaderOptions,
  ReaderFile,
  ReadOptions,
  ReadStats,
} from './types.js';

const FORMATS: readonly EmbeddingFormat[] = ['npy', 'parquet', 'parquet_npy'];
const DEFAULT_PIECE = 50 * 1000 * 1000;
const DEFAULT_RAM = 4 * 1024 ** 3;
/** parquet pieces hold decoded JS number arrays (8 bytes a value) and the float32 copy: count 3× float32. */
const PARQUET_DECODE_FACTOR = 3;

/** A range of one file's rows, read into rows `[offset, offset + rows)` of its group's buffer. */
interface Piece {
  readonly file: ReaderFile;
  /** Rows within the file. */
  readonly rowStart: number;
  readonly rowEnd: number;
  /** First row of the piece in the group. */
  readonly offset: number;
}

/** Whole batches read together into one buffer (about one piece of bytes, at least one batch). */
interface Group {
  /** Global id of the first row. */
  readonly rowStart: number;
  readonly rows: number;
  /** Bytes of the group buffer (reserved while it loads). */
  readonly bytes: number;
  readonly pieces: readonly Piece[];
}

interface LoadedGroup {
  readonly data: Float32Array | Uint16Array;
  readonly meta: Record<string, unknown>[] | undefined;
}

/**
 * Reads a collection of embedding files as one matrix of `count` rows.
 *
 * @example
 *   const reader = await EmbeddingReader.open('s3://bucket/out/img_emb', {
 *     format: 'parquet_npy',
 *     metaColumns: ['image_path', 'caption'],
 *   });
 *   console.log(reader.count, reader.dimension);
 *   for await (const { embeddings, meta } of reader.read({ batchSize: 100_000, maxRamBytes: '2G' })) {
 *     index.add(embeddings.data, embeddings.rows); // Float32Array, row-major [rows, dimension]
 *   }
 *   reader.close();
 */
export class EmbeddingReader {
  readonly folders: readonly string[];
  readonly format: EmbeddingFormat;
  readonly embeddingColumn: string;
  readonly metaColumns: readonly string[];
  private readonly metadataFolders: readonly string[] | undefined;
  private readonly pool: StoragePool;
  private initialized = false;
  private filesList: ReaderFile[] = [];
  private dim = 0;
  private stored: EmbeddingDtype = 'float32';
  private maxSize = 0;
  private footers = new Map<string, { info: ParquetFileInfo; size: number }>();
  private lastStats: ReadStats = { pieces: 0, bytesFetched: 0, peakBytesInFlight: 0 };

  constructor(folders: string | readonly string[], options: EmbeddingReaderOptions) {
    const list = typeof folders === 'string' ? [folders] : [...folders];
    if (list.length === 0 || list.some((f) => typeof f !== 'string' || f === '')) {
      throw invalidParameterError('folders', 'a folder or file URL, or a non-empty array of them', folders);
    }
    assertOneOf('format', options?.format, FORMATS);
    this.folders = list;
    this.format = options.format;
    this.embeddingColumn = options.embeddingColumn ?? 'embedding';
    this.metaColumns = [...(options.metaColumns ?? [])];
    if (this.format === 'npy' && this.metaColumns.length > 0) {
      throw new GlimpseError(
        'GLIMPSE_E_NOT_SUPPORTED',
        `Expected no metaColumns with format "npy" (it has no metadata) but received ${JSON.stringify(this.metaColumns)}; use "parquet_npy"`,
      );
    }
    const mf = options.metadataFolder;
    if (mf !== undefined) {
      const arr = typeof mf === 'string' ? list.map(() => mf) : [...mf];
      if (arr.length !== list.length) {
        throw invalidParameterError('metadataFolder', `one folder, or ${list.length} (one per folder)`, mf);
      }
      this.metadataFolders = arr;
    }
    this.pool = new StoragePool(options.storageOptions);
  }

  /**
   * Creates a reader and reads the collection's headers and footers.
   *
   * @example
   *   const reader = await EmbeddingReader.open('/data/out/img_emb', { format: 'npy' });
   */
  static async open(
    folders: string | readonly string[],
    options: EmbeddingReaderOptions,
  ): Promise<EmbeddingReader> {
    const reader = new EmbeddingReader(folders, options);
    try {
      await reader.init();
    } catch (err) {
      reader.close();
      throw err;
    }
    return reader;
  }

  /** Lists the files and reads only npy headers and parquet footers. Safe to call twice. */
  async init(): Promise<void> {
    if (this.initialized) return;
    const embExt = this.format === 'parquet' ? '.parquet' : '.npy';
    const perFolder = await mapLimit(this.folders, 4, (f) => findFiles(this.pool, f, embExt));
    const found: FoundFile[] = perFolder.flat();
    let metaFound: FoundFile[] | undefined;
    if (this.format === 'parquet_npy') {
      const folders = this.metadataFolders ?? this.folders.map(siblingMetadataFolder);
      const unique = folders.filter((f, i) => folders.indexOf(f) === i);
      metaFound = (await mapLimit(unique, 4, (f) => findFiles(this.pool, f, '.parquet'))).flat();
      if (metaFound.length !== found.length) {
        throw new GlimpseError(
          'GLIMPSE_E_READER_ROW_MISMATCH',
          `Expected one metadata parquet file per npy file but found ${found.length} npy files (${describe(found)}) and ${metaFound.length} parquet files in ${unique.join(', ')} (${describe(metaFound)})`,
          { details: { npyFiles: found.length, parquetFiles: metaFound.length } },
        );
      }
    }

    const files: ReaderFile[] = [];
    let rowStart = 0;
    if (this.format === 'parquet') {
      const footers = await mapLimit(found, 16, (f) => readFooter(this.pool.for(f.url), f.url, f.size));
      footers.forEach(({ info, size }, i) => {
        const f = found[i]!;
        this.footers.set(f.url, { info, size });
        const dim = this.checkParquetColumns(info, f.url, true);
        this.checkDimension(dim, f.url, files);
        files.push({
          url: f.url,
          rows: info.numRows,
          rowStart,
          size,
          headerLength: 0,
          storedDtype: 'float32',
          rowGroups: info.rowGroups,
        });
        rowStart += info.numRows;
      });
      this.stored = 'float32';
    } else {
      const headers = await mapLimit(found, 16, (f) => readNpyHeader(this.pool.for(f.url), f.url, f.size));
      const metas = metaFound
        ? await mapLimit(metaFound, 16, (f) => readFooter(this.pool.for(f.url), f.url, f.size))
        : undefined;
      headers.forEach(({ header, size }, i) => {
        const f = found[i]!;
        const [rows, dim] = header.shape;
        if (files.length > 0 && header.dtype !== this.stored) {
          throw new GlimpseError(
            'GLIMPSE_E_NPY_UNSUPPORTED',
            `Expected every npy file of the collection to hold ${this.stored} like ${files[0]!.url} but ${f.url} holds ${header.dtype}`,
            { details: { source: f.url } },
          );
        }
        this.checkDimension(dim, f.url, files);
        this.stored = header.dtype;
        let metadataUrl: string | undefined;
        if (metas && metaFound) {
          const { info, size: metaSize } = metas[i]!;
          metadataUrl = metaFound[i]!.url;
          this.footers.set(metadataUrl, { info, size: metaSize });
          if (info.numRows !== rows) {
            throw new GlimpseError(
              'GLIMPSE_E_READER_ROW_MISMATCH',
              `Expected ${metadataUrl} to have ${rows} rows like ${f.url} but it has ${info.numRows}`,
              { details: { npy: f.url, parquet: metadataUrl, npyRows: rows, parquetRows: info.numRows } },
            );
          }
          this.checkParquetColumns(info, metadataUrl, false);
        }
        files.push({
          url: f.url,
          rows,
          rowStart,
          size,
          headerLength: header.headerLength,
          storedDtype: header.dtype,
          ...(metadataUrl === undefined ? {} : { metadataUrl }),
        });
        rowStart += rows;
      });
    }
    this.filesList = files;
    this.maxSize = files.reduce((m, f) => Math.max(m, f.size), 0);
    this.initialized = true;
  }

  private checkDimension(dim: number, url: string, files: readonly ReaderFile[]): void {
    if (files.length > 0 && dim !== this.dim) {
      throw new GlimpseError(
        'GLIMPSE_E_READER_DIM_MISMATCH',
        `Expected dimension ${this.dim} (as in ${files[0]!.url}) in ${url} but it has ${dim}`,
        { details: { source: url, expected: this.dim, actual: dim } },
      );
    }
    this.dim = dim;
  }

  /** Checks columns of a parquet footer; returns the embedding dimension when `embeddings`. */
  private checkParquetColumns(info: ParquetFileInfo, url: string, embeddings: boolean): number {
    const names = new Set(info.columns.map((c) => c.name));
    const wanted = embeddings ? [this.embeddingColumn, ...this.metaColumns] : [...this.metaColumns];
    const missing = wanted.filter((c) => !names.has(c));
    if (missing.length > 0) {
      throw new GlimpseError(
        'GLIMPSE_E_READER_COLUMN_MISSING',
        `Expected columns ${missing.map((m) => JSON.stringify(m)).join(', ')} in ${url} but it has ${info.columns.map((c) => JSON.stringify(c.name)).join(', ')}`,
        { details: { source: url, missing } },
      );
    }
    if (!embeddings) return 0;
    const col = info.columns.find((c) => c.name === this.embeddingColumn)!;
    if (col.type !== 'FLOAT_LIST') {
      throw new GlimpseError(
        'GLIMPSE_E_READER_COLUMN_MISSING',
        `Expected column "${this.embeddingColumn}" of ${url} to be a list of floats but it is ${col.physicalType}`,
        { details: { source: url } },
      );
    }
    // The footer's value count of the list's leaf column, over its rows, is the dimension.
    let values = 0;
    let rows = 0;
    for (const g of info.metadata.row_groups) {
      const chunk = g.columns.find((c) => c.meta_data?.path_in_schema[0] === this.embeddingColumn);
      values += Number(chunk?.meta_data?.num_values ?? 0);
      rows += Number(g.num_rows);
    }
    if (rows === 0) return this.dim;
    if (values % rows !== 0) {
      throw new GlimpseError(
        'GLIMPSE_E_READER_DIM_MISMATCH',
        `Expected every row of column "${this.embeddingColumn}" in ${url} to have one length but ${values} values over ${rows} rows is not a whole dimension`,
        { details: { source: url } },
      );
    }
    return values / rows;
  }

  private assertInit(): void {
    if (!this.initialized) {
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        'Expected await reader.init() (or EmbeddingReader.open) before use',
      );
    }
  }

  /** Total rows. */
  get count(): number {
    this.assertInit();
    return this.filesList.reduce((s, f) => s + f.rows, 0);
  }

  /** Values per embedding. */
  get dimension(): number {
    this.assertInit();
    return this.dim;
  }

  /** Bytes per stored embedding (dimension × 2 for float16 npy, × 4 for float32 npy and parquet). */
  get bytePerItem(): number {
    this.assertInit();
    return this.dim * (this.stored === 'float16' ? 2 : 4);
  }

  /** count × bytePerItem: the embedding bytes of the collection. */
  get totalSize(): number {
    return this.count * this.bytePerItem;
  }

  get nbFiles(): number {
    this.assertInit();
    return this.filesList.length;
  }

  /** Largest embedding file, in bytes. */
  get maxFileSize(): number {
    this.assertInit();
    return this.maxSize;
  }

  /** The stored dtype (npy header; float32 for parquet). */
  get storedDtype(): EmbeddingDtype {
    this.assertInit();
    return this.stored;
  }

  /** The embedding files in reading order, with their global row ranges. */
  get files(): readonly ReaderFile[] {
    this.assertInit();
    return this.filesList;
  }

  /** What the last (or current) read() fetched and held at most. */
  get stats(): ReadStats {
    return { ...this.lastStats };
  }

  /** Frees sockets and clients. */
  close(): void {
    this.pool.close();
  }

  /**
   * Splits rows [start, end) into groups of whole batches (about one piece of bytes, at least one batch),
   * each read as pieces of at most `pieceRows` rows that never cross a file (parquet: row groups).
   */
  private *plan(
    start: number,
    end: number,
    batchSize: number,
    batchesPerGroup: number,
    pieceRows: number,
    outRowBytes: number,
  ): Generator<Group> {
    const groupRows = batchSize * batchesPerGroup;
    let fileIndex = 0;
    for (let gs = start; gs < end; gs += groupRows) {
      const ge = Math.min(end, gs + groupRows);
      const pieces: Piece[] = [];
      while (
        fileIndex < this.filesList.length &&
        this.filesList[fileIndex]!.rowStart + this.filesList[fileIndex]!.rows <= gs
      )
        fileIndex++;
      for (let fi = fileIndex; fi < this.filesList.length; fi++) {
        const file = this.filesList[fi]!;
        if (file.rowStart >= ge) break;
        const a = Math.max(gs, file.rowStart) - file.rowStart;
        const b = Math.min(ge, file.rowStart + file.rows) - file.rowStart;
        if (b <= a) continue;
        const cuts: [number, number][] = [];
        if (this.format === 'parquet') {
          for (const g of file.rowGroups ?? [{ rowStart: 0, numRows: file.rows }]) {
            const s = Math.max(a, g.rowStart);
            const e = Math.min(b, g.rowStart + g.numRows);
            if (e > s) cuts.push([s, e]);
          }
        } else {
          for (let s = a; s < b; s += pieceRows) cuts.push([s, Math.min(b, s + pieceRows)]);
        }
        for (const [s, e] of cuts)
          pieces.push({ file, rowStart: s, rowEnd: e, offset: file.rowStart + s - gs });
      }
      yield { rowStart: gs, rows: ge - gs, bytes: (ge - gs) * outRowBytes, pieces };
    }
  }

  /** Metadata rows of row groups, cached while pieces of the same row groups are read. */
  private metaReader(): (url: string, rowStart: number, rowEnd: number) => Promise<ParquetColumns> {
    const cache = new Map<string, Promise<ParquetColumns>>();
    return async (url, rowStart, rowEnd) => {
      const { info, size } = this.footers.get(url)!;
      // Widen to whole row groups so neighbouring pieces share one decode.
      let s = rowStart;
      let e = rowEnd;
      for (const g of info.rowGroups) {
        if (g.rowStart <= rowStart && rowStart < g.rowStart + g.numRows) s = g.rowStart;
        if (g.rowStart < rowEnd && rowEnd <= g.rowStart + g.numRows) e = g.rowStart + g.numRows;
      }
      const key = `${url}#${s}-${e}`;
      let p = cache.get(key);
      if (!p) {
        const storage = this.pool.for(url);
        p = storage
          .rangeReader(url, size)
          .then((r) => readParquetColumns(r, { columns: this.metaColumns, rowStart: s, rowEnd: e, info }));
        cache.set(key, p);
        while (cache.size > 8) cache.delete(cache.keys().next().value!);
      }
      const whole = await p;
      const columns: Record<string, unknown[]> = {};
      for (const c of this.metaColumns) columns[c] = whole.columns[c]!.slice(rowStart - s, rowEnd - s);
      return { rowStart, rowEnd, columns };
    };
  }

  /**
   * Reads one piece into its rows of the group buffer `out` (row-major, `out` dtype): npy bytes straight
   * into `out` when the dtypes match (no copy), else through the slot's scratch buffer and a conversion.
   * Returns the piece's metadata columns, if any.
   */
  private async readPiece(
    piece: Piece,
    out: Float32Array | Uint16Array,
    scratch: () => Uint8Array,
    readMeta: ((url: string, s: number, e: number) => Promise<ParquetColumns>) | undefined,
  ): Promise<ParquetColumns | undefined> {
    const { file } = piece;
    const d = this.dim;
    const rows = piece.rowEnd - piece.rowStart;
    const dst = out.subarray(piece.offset * d, (piece.offset + rows) * d);
    const storage: Storage = this.pool.for(file.url);
    if (this.format === 'parquet') {
      const reader = await storage.rangeReader(file.url, file.size);
      const { info } = this.footers.get(file.url)!;
      const got = await readParquetColumns(reader, {
        columns: [this.embeddingColumn, ...this.metaColumns],
        rowStart: piece.rowStart,
        rowEnd: piece.rowEnd,
        info,
      });
      const lists = got.columns[this.embeddingColumn]!;
      const row32 = dst instanceof Uint16Array ? new Float32Array(d) : undefined;
      for (let r = 0; r < rows; r++) {
        const v = lists[r];
        const len = v === null || v === undefined ? -1 : (v as ArrayLike<number>).length;
        if (len !== d) {
          throw new GlimpseError(
            'GLIMPSE_E_READER_DIM_MISMATCH',
            `Expected ${d} values in row ${piece.rowStart + r} of column "${this.embeddingColumn}" in ${file.url} but it has ${len < 0 ? 'null' : len}`,
            { details: { source: file.url, row: piece.rowStart + r } },
          );
        }
        if (row32) {
          row32.set(v as ArrayLike<number>);
          float32ToFloat16(row32, dst.subarray(r * d, (r + 1) * d) as Uint16Array);
        } else {
          (dst as Float32Array).set(v as ArrayLike<number>, r * d);
        }
      }
      return this.metaColumns.length > 0
        ? { rowStart: piece.rowStart, rowEnd: piece.rowEnd, columns: pick(got, this.metaColumns) }
        : undefined;
    }
    const bpr = this.bytePerItem;
    const from = file.headerLength + piece.rowStart * bpr;
    const to = file.headerLength + piece.rowEnd * bpr;
    const meta =
      readMeta && file.metadataUrl !== undefined
        ? readMeta(file.metadataUrl, piece.rowStart, piece.rowEnd)
        : undefined;
    meta?.catch(() => undefined);
    const sameType = dst instanceof Uint16Array === (this.stored === 'float16');
    if (sameType) {
      await storage.readRange(file.url, from, to, new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength));
    } else {
      const tmp = scratch().subarray(0, to - from);
      await storage.readRange(file.url, from, to, tmp);
      if (dst instanceof Float32Array) {
        float16ToFloat32(new Uint16Array(tmp.buffer, tmp.byteOffset, tmp.length / 2), dst);
      } else {
        float32ToFloat16(new Float32Array(tmp.buffer, tmp.byteOffset, tmp.length / 4), dst);
      }
    }
    return meta ? await meta : undefined;
  }

  /**
   * Streams rows `[start, end)` in batches of exactly `batchSize` rows (the last may be smaller), in row
   * order across files. Rows are read in pieces of at most `maxPieceSize` bytes, `parallelPieces` at a time
   * (range reads over HTTP/S3), straight into the batch buffers the caller receives, while the bytes the
   * reader holds stay under `maxRamBytes`. Each batch's `data` is the caller's to keep.
   *
   * @example
   *   for await (const { embeddings, rowStart } of reader.read({ batchSize: 4096, start: 1000, end: 9000, dtype: 'float16' })) {
   *     // embeddings.data: Uint16Array of embeddings.rows × embeddings.dimension half floats
   *   }
   */
  read(options: ReadOptions<'float16'> & { dtype: 'float16' }): AsyncGenerator<EmbeddingBatch<Uint16Array>>;
  read(options?: ReadOptions<'float32'>): AsyncGenerator<EmbeddingBatch<Float32Array>>;
  read(options?: ReadOptions): AsyncGenerator<EmbeddingBatch>;
  read(options: ReadOptions = {}): AsyncGenerator<EmbeddingBatch> {
    this.assertInit();
    const count = this.count;
    const d = this.dim;
    const batchSize = options.batchSize ?? 10_000;
    assertPositiveInteger('batchSize', batchSize);
    const start = options.start ?? 0;
    const end = options.end ?? count;
    if (!Number.isInteger(start) || start < 0 || start > count) {
      throw invalidParameterError('start', `an integer from 0 to count (${count})`, start);
    }
    if (!Number.isInteger(end) || end < start || end > count) {
      throw invalidParameterError('end', `an integer from start (${start}) to count (${count})`, end);
    }
    const dtype = options.dtype ?? 'float32';
    assertOneOf('dtype', dtype, ['float32', 'float16'] as const);
    const parallel = options.parallelPieces ?? 8;
    assertPositiveInteger('parallelPieces', parallel, 1024);
    const maxRam = parseByteSize('maxRamBytes', options.maxRamBytes ?? DEFAULT_RAM);
    const maxPiece = parseByteSize('maxPieceSize', options.maxPieceSize ?? DEFAULT_PIECE);
    if (maxPiece <= 0)
      throw invalidParameterError('maxPieceSize', 'a positive byte size', options.maxPieceSize);

    const outRowBytes = d * (dtype === 'float16' ? 2 : 4);
    const batchRows = Math.max(1, Math.min(batchSize, end - start));
    const batchBytes = batchRows * outRowBytes;
    // Bytes a piece needs besides its rows of the group buffer: the stored bytes when converting,
    // decoded JS arrays for parquet (an estimate).
    const scratchRowBytes =
      this.format === 'parquet'
        ? d * 4 * PARQUET_DECODE_FACTOR
        : (dtype === 'float16') === (this.stored === 'float16')
          ? 0
          : this.bytePerItem;
    const pieceUnit = Math.max(this.bytePerItem, outRowBytes);
    // Pieces small enough that a few groups and every piece's scratch fit beside each other.
    const pieceBytes = Math.min(
      maxPiece,
      Math.floor(maxRam / (4 + (scratchRowBytes > 0 ? 2 * parallel : 0))),
    );
    const pieceRows = Math.max(1, Math.floor(pieceBytes / pieceUnit));
    const scratchBytes = scratchRowBytes > 0 ? parallel * pieceRows * scratchRowBytes : 0;
    // One batch being filled ahead, one in the caller's hands, and the scratch.
    if (2 * batchBytes + scratchBytes > maxRam) {
      throw invalidParameterError(
        'maxRamBytes',
        `at least ${2 * batchBytes + scratchBytes} bytes (two batches of ${batchRows} rows of ${d} ${dtype}${scratchBytes > 0 ? ` plus ${parallel} pieces of scratch` : ''})`,
        options.maxRamBytes ?? maxRam,
      );
    }
    const batchesPerGroup = Math.max(1, Math.floor((pieceRows * pieceUnit) / batchBytes));
    return this.generate({
      ...options,
      start,
      end,
      batchSize,
      dtype,
      parallel,
      maxRam,
      pieceRows,
      batchesPerGroup,
      outRowBytes,
      scratchBytes,
      handBytes: batchBytes,
      scratchPieceBytes: pieceRows * Math.max(1, scratchRowBytes),
    });
  }

  private async *generate(o: {
    start: number;
    end: number;
    batchSize: number;
    dtype: EmbeddingDtype;
    parallel: number;
    maxRam: number;
    pieceRows: number;
    batchesPerGroup: number;
    outRowBytes: number;
    scratchBytes: number;
    /** The batch the caller holds while the reader reads ahead. */
    handBytes: number;
    scratchPieceBytes: number;
    showProgress?: boolean;
    onProgress?: ReadOptions['onProgress'];
    onEvent?: ReadOptions['onEvent'];
    signal?: AbortSignal;
  }): AsyncGenerator<EmbeddingBatch> {
    const d = this.dim;
    const readMeta =
      this.format === 'parquet_npy' && this.metaColumns.length > 0 ? this.metaReader() : undefined;
    const stats: ReadStats = { pieces: 0, bytesFetched: 0, peakBytesInFlight: 0 };
    this.lastStats = stats;
    const reads = new Semaphore(o.parallel);
    // One scratch buffer per read slot, made on first use (npy conversions only; parquet decodes its own).
    const scratch: Uint8Array[] = [];
    const scratchFor = (slot: number): Uint8Array => (scratch[slot] ??= new Uint8Array(o.scratchPieceBytes));
    let held = o.scratchBytes;
    const note = (): number => {
      stats.peakBytesInFlight = Math.max(stats.peakBytesInFlight, held);
      return held;
    };
    const loadGroup = async (group: Group, index: number): Promise<LoadedGroup> => {
      const data = o.dtype === 'float16' ? new Uint16Array(group.rows * d) : new Float32Array(group.rows * d);
      const metas = await Promise.all(
        group.pieces.map((piece) =>
          reads.run(async (slot) => {
            if (o.signal?.aborted) throw aborted();
            const bytes = (piece.rowEnd - piece.rowStart) * this.bytePerItem;
            stats.pieces++;
            stats.bytesFetched += bytes;
            o.onEvent?.({
              type: 'piece-start',
              index,
              url: piece.file.url,
              rowStart: piece.file.rowStart + piece.rowStart,
              rowEnd: piece.file.rowStart + piece.rowEnd,
              bytes,
              bytesInFlight: note(),
            });
            const meta = await this.readPiece(piece, data, () => scratchFor(slot), readMeta);
            o.onEvent?.({ type: 'piece-done', index, url: piece.file.url, bytes });
            return meta;
          }),
        ),
      );
      let meta: Record<string, unknown>[] | undefined;
      if (this.metaColumns.length > 0) {
        meta = [];
        for (const m of metas) if (m) meta.push(...metaRows(m, this.metaColumns));
      }
      return { data, meta };
    };
    const prefetch = new OrderedPrefetcher<Group, LoadedGroup>(
      this.plan(o.start, o.end, o.batchSize, o.batchesPerGroup, o.pieceRows, o.outRowBytes),
      loadGroup,
      {
        maxBytes: o.maxRam - o.scratchBytes - o.handBytes,
        signal: o.signal,
        onStart: (_index, inFlight) => {
          held = inFlight + o.scratchBytes;
          note();
        },
        onRelease: (index, inFlight) => {
          held = inFlight + o.scratchBytes;
          o.onEvent?.({ type: 'release', index, bytesInFlight: held });
        },
      },
    );
    note();
    const total = o.end - o.start;
    const tracker = new ProgressTracker('read', total, o.onProgress);
    const bar = o.showProgress
      ? new cliProgress.SingleBar(
          {
            format: 'read [{bar}] {percentage}% | {value}/{total} rows | {speed} MB/s | eta {eta}s',
            stream: process.stderr,
          },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
    bar?.start(total, 0, { speed: '0' });
    const began = performance.now();
    let done = 0;
    try {
      for (let next = await prefetch.next(); next; next = await prefetch.next()) {
        const { spec, value } = next;
        // Hand the group out as batch views (the caller keeps them); its bytes count until the last one.
        for (let r = 0; r < spec.rows; r += o.batchSize) {
          if (o.signal?.aborted) throw aborted();
          const rows = Math.min(o.batchSize, spec.rows - r);
          const data =
            r === 0 && rows === spec.rows ? value.data : value.data.subarray(r * d, (r + rows) * d);
          const batch: EmbeddingBatch = {
            embeddings: { data, rows, dimension: d, dtype: o.dtype },
            meta: value.meta ? value.meta.slice(r, r + rows) : undefined,
            rowStart: spec.rowStart + r,
          };
          done += rows;
          tracker.add(rows);
          if (bar) {
            const secs = Math.max(1e-3, (performance.now() - began) / 1000);
            bar.update(done, { speed: ((done * this.bytePerItem) / secs / 1e6).toFixed(0) });
          }
          yield batch;
        }
        prefetch.release(next.index);
      }
      tracker.finish();
    } finally {
      prefetch.close();
      bar?.stop();
    }
  }
}

function describe(files: readonly FoundFile[]): string {
  const names = files.map((f) => urlBasename(f.url)).sort(compareNames);
  return names.length <= 6
    ? names.join(', ') || 'none'
    : `${names.slice(0, 3).join(', ')}, … ${names.at(-1)}`;
}

function pick(cols: ParquetColumns, names: readonly string[]): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const n of names) out[n] = cols.columns[n]!;
  return out;
}

function metaRows(meta: ParquetColumns, names: readonly string[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (let r = 0; r < meta.rowEnd - meta.rowStart; r++) {
    const row: Record<string, unknown> = {};
    for (const n of names) row[n] = meta.columns[n]![r] ?? null;
    out.push(row);
  }
  return out;
}

function aborted(): GlimpseError {
  return new GlimpseError('GLIMPSE_E_ABORTED', 'Expected the read to finish but it was cancelled');
}

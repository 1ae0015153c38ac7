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
import { float16ToFloat32, float32ToFloat16 } from '../formats/npy.js';
import { readParquetColumns, type ParquetColumns, type ParquetFileInfo } from '../formats/parquet.js';
import { compareNames, urlBasename, type Storage } from '../storage/index.js';
import {
  findFiles,
  mapLimit,
  readFooter,
  readNpyHeader,
  siblingMetadataFolder,
  StoragePool,
  type FoundFile,
} from './discover.js';
import { OrderedPrefetcher } from './prefetch.js';
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

interface Piece {
  readonly file: ReaderFile;
  readonly fileIndex: number;
  /** Rows within the file. */
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly bytes: number;
}

interface LoadedPiece {
  /** Row-major embeddings in the stored dtype (npy) or float32 (parquet). */
  readonly data: Float32Array | Uint16Array;
  readonly meta: ParquetColumns | undefined;
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

  /** Splits rows [start, end) into pieces of at most `pieceBytes`, never across files. */
  private plan(start: number, end: number, pieceBytes: number): Piece[] {
    const pieces: Piece[] = [];
    const rowBytes = this.format === 'parquet' ? this.dim * 4 * PARQUET_DECODE_FACTOR : this.bytePerItem;
    const rowsPerPiece = Math.max(1, Math.floor(pieceBytes / Math.max(1, rowBytes)));
    this.filesList.forEach((file, fileIndex) => {
      const a = Math.max(start, file.rowStart) - file.rowStart;
      const b = Math.min(end, file.rowStart + file.rows) - file.rowStart;
      if (b <= a) return;
      if (this.format === 'parquet') {
        // Whole row groups (hyparquet decodes whole column chunks), merged up to the piece size.
        let cur: { s: number; e: number } | undefined;
        for (const g of file.rowGroups ?? [{ rowStart: 0, numRows: file.rows }]) {
          const s = Math.max(a, g.rowStart);
          const e = Math.min(b, g.rowStart + g.numRows);
          if (e <= s) continue;
          if (cur && (e - cur.s) * rowBytes <= pieceBytes) {
            cur.e = e;
          } else {
            if (cur)
              pieces.push({
                file,
                fileIndex,
                rowStart: cur.s,
                rowEnd: cur.e,
                bytes: (cur.e - cur.s) * rowBytes,
              });
            cur = { s, e };
          }
        }
        if (cur)
          pieces.push({ file, fileIndex, rowStart: cur.s, rowEnd: cur.e, bytes: (cur.e - cur.s) * rowBytes });
        return;
      }
      for (let s = a; s < b; s += rowsPerPiece) {
        const e = Math.min(b, s + rowsPerPiece);
        pieces.push({ file, fileIndex, rowStart: s, rowEnd: e, bytes: (e - s) * rowBytes });
      }
    });
    return pieces;
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

  private async loadPiece(
    piece: Piece,
    readMeta: ((url: string, s: number, e: number) => Promise<ParquetColumns>) | undefined,
  ): Promise<LoadedPiece> {
    const { file } = piece;
    const storage: Storage = this.pool.for(file.url);
    const rows = piece.rowEnd - piece.rowStart;
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
      const d = this.dim;
      const data = new Float32Array(rows * d);
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
        data.set(v as ArrayLike<number>, r * d);
      }
      const meta =
        this.metaColumns.length > 0
          ? { rowStart: piece.rowStart, rowEnd: piece.rowEnd, columns: pick(got, this.metaColumns) }
          : undefined;
      return { data, meta };
    }
    const bpr = this.bytePerItem;
    const [bytes, meta] = await Promise.all([
      storage.readRange(
        file.url,
        file.headerLength + piece.rowStart * bpr,
        file.headerLength + piece.rowEnd * bpr,
      ),
      readMeta && file.metadataUrl !== undefined
        ? readMeta(file.metadataUrl, piece.rowStart, piece.rowEnd)
        : undefined,
    ]);
    return { data: typedView(bytes, this.stored), meta };
  }

  /**
   * Streams rows `[start, end)` in batches of exactly `batchSize` rows (the last may be smaller), in row
   * order across files. Pieces of at most `maxPieceSize` bytes are fetched `parallelPieces` at a time
   * (range reads over HTTP/S3) while the bytes held stay under `maxRamBytes`.
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
    const outItem = dtype === 'float16' ? 2 : 4;
    const batchBytes = Math.min(batchSize, Math.max(1, end - start)) * d * outItem;
    const rowBytes = this.format === 'parquet' ? d * 4 * PARQUET_DECODE_FACTOR : this.bytePerItem;
    // Room for the batch being filled plus at least two pieces of one row.
    if (batchBytes + 2 * rowBytes > maxRam) {
      throw invalidParameterError(
        'maxRamBytes',
        `at least ${batchBytes + 2 * rowBytes} bytes (one batch of ${batchSize} rows of ${d} ${dtype} plus two rows of pieces)`,
        options.maxRamBytes ?? maxRam,
      );
    }
    const pieceCap = Math.max(rowBytes, Math.min(maxPiece, Math.floor((maxRam - batchBytes) / 2)));
    return this.generate({
      ...options,
      start,
      end,
      batchSize,
      dtype,
      parallel,
      maxRam,
      pieceCap,
      batchBytes,
    });
  }

  private async *generate(o: {
    start: number;
    end: number;
    batchSize: number;
    dtype: EmbeddingDtype;
    parallel: number;
    maxRam: number;
    pieceCap: number;
    batchBytes: number;
    showProgress?: boolean;
    onProgress?: ReadOptions['onProgress'];
    onEvent?: ReadOptions['onEvent'];
    signal?: AbortSignal;
  }): AsyncGenerator<EmbeddingBatch> {
    const d = this.dim;
    const pieces = this.plan(o.start, o.end, o.pieceCap);
    const readMeta =
      this.format === 'parquet_npy' && this.metaColumns.length > 0 ? this.metaReader() : undefined;
    const stats: ReadStats = { pieces: 0, bytesFetched: 0, peakBytesInFlight: 0 };
    this.lastStats = stats;
    let batchHeld = 0; // bytes of the batch buffer being filled
    const prefetch = new OrderedPrefetcher<Piece, LoadedPiece>(pieces, (p) => this.loadPiece(p, readMeta), {
      parallel: o.parallel,
      maxBytes: o.maxRam - o.batchBytes,
      signal: o.signal,
      onStart: (index, inFlight) => {
        const p = pieces[index]!;
        stats.pieces++;
        stats.bytesFetched += p.bytes;
        const held = inFlight + batchHeld;
        stats.peakBytesInFlight = Math.max(stats.peakBytesInFlight, held);
        o.onEvent?.({
          type: 'piece-start',
          index,
          url: p.file.url,
          rowStart: p.file.rowStart + p.rowStart,
          rowEnd: p.file.rowStart + p.rowEnd,
          bytes: p.bytes,
          bytesInFlight: held,
        });
      },
      onRelease: (index, inFlight) =>
        o.onEvent?.({
          type: 'piece-release',
          index,
          bytes: pieces[index]!.bytes,
          bytesInFlight: inFlight + batchHeld,
        }),
    });
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

    let batch: Float32Array | Uint16Array | undefined;
    let batchRows = 0; // rows of the current batch
    let filled = 0;
    let batchStart = o.start;
    let metaRows: Record<string, unknown>[] | undefined;
    const newBatch = (): void => {
      batchRows = Math.min(o.batchSize, o.end - batchStart);
      batch = o.dtype === 'float16' ? new Uint16Array(batchRows * d) : new Float32Array(batchRows * d);
      batchHeld = batchRows * d * (o.dtype === 'float16' ? 2 : 4);
      stats.peakBytesInFlight = Math.max(stats.peakBytesInFlight, prefetch.bytesInFlight + batchHeld);
      filled = 0;
      metaRows = this.metaColumns.length > 0 ? [] : undefined;
    };
    const emit = (
      data: Float32Array | Uint16Array,
      rows: number,
      meta: Record<string, unknown>[] | undefined,
    ): EmbeddingBatch => {
      const out: EmbeddingBatch = {
        embeddings: { data, rows, dimension: d, dtype: o.dtype },
        meta,
        rowStart: batchStart,
      };
      batchStart += rows;
      tracker.add(rows);
      if (bar) {
        const secs = Math.max(1e-3, (performance.now() - began) / 1000);
        bar.update(batchStart - o.start, {
          speed: (((batchStart - o.start) * this.bytePerItem) / secs / 1e6).toFixed(0),
        });
      }
      return out;
    };
    try {
      for (let next = await prefetch.next(); next; next = await prefetch.next()) {
        const piece = pieces[next.index]!;
        const { data, meta } = next.value;
        const rows = piece.rowEnd - piece.rowStart;
        let off = 0;
        while (off < rows) {
          if (o.signal?.aborted)
            throw new GlimpseError('GLIMPSE_E_ABORTED', 'Expected the read to finish but it was cancelled');
          const want = Math.min(o.batchSize, o.end - batchStart);
          if (want <= 0) {
            throw new GlimpseError(
              'GLIMPSE_E_INTERNAL',
              `Expected no rows past ${o.end} but a piece of ${piece.file.url} has more`,
            );
          }
          const sameType = (o.dtype === 'float16') === data instanceof Uint16Array;
          if (batch === undefined && sameType && rows - off >= want) {
            // The whole batch lies in this piece in the right dtype: hand out a view, no copy.
            const view = data.subarray(off * d, (off + want) * d);
            const m = meta ? metaSlice(meta, this.metaColumns, off, off + want) : undefined;
            off += want;
            yield emit(view, want, m);
            continue;
          }
          if (batch === undefined) newBatch();
          const take = Math.min(batchRows - filled, rows - off);
          const src = data.subarray(off * d, (off + take) * d);
          const dst = batch!.subarray(filled * d, (filled + take) * d);
          if (sameType) (dst as Uint16Array).set(src as Uint16Array);
          else if (dst instanceof Float32Array) float16ToFloat32(src as Uint16Array, dst);
          else float32ToFloat16(src as Float32Array, dst);
          if (metaRows && meta) metaRows.push(...metaSlice(meta, this.metaColumns, off, off + take));
          off += take;
          filled += take;
          if (filled === batchRows) {
            const out = emit(batch!, batchRows, metaRows);
            batch = undefined;
            batchHeld = 0;
            yield out;
          }
        }
        prefetch.release(next.index);
      }
      if (batch !== undefined && filled > 0) {
        const out = emit(batch, filled, metaRows);
        batch = undefined;
        batchHeld = 0;
        yield out;
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

function metaSlice(
  meta: ParquetColumns,
  names: readonly string[],
  a: number,
  b: number,
): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (let r = a; r < b; r++) {
    const row: Record<string, unknown> = {};
    for (const n of names) row[n] = meta.columns[n]![r] ?? null;
    out.push(row);
  }
  return out;
}

/** A typed view of piece bytes (copied when the bytes are not aligned for the element size). */
function typedView(bytes: Uint8Array, dtype: EmbeddingDtype): Float32Array | Uint16Array {
  const size = dtype === 'float16' ? 2 : 4;
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  return dtype === 'float16'
    ? new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2)
    : new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
}

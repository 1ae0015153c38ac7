/**
 * glimpse: the public library API, grouped by the data path
 * (sources → decode → infer → sinks → index → search). Everything not exported here is internal.
 *
 * @example
 *   import { loadModel, runEmbedJob } from 'glimpse';
 *   const model = await loadModel('openai/clip-vit-base-patch32', { dtype: 'q8' });
 *   const { data, rows, dimension } = await model.embedImages(['cat.jpg']);
 *   await runEmbedJob({ input: 'photos/', output: 'embeddings/', model: 'openai/clip-vit-base-patch32' });
 */

// errors and progress
export {
  GlimpseError,
  SkipItemError,
  RetryableError,
  UnrecoverableError,
  isGlimpseError,
  errorCatalogue,
  type ErrorCode,
  type ErrorSpec,
} from './errors/index.js';
export type { ProgressEvent, ProgressCallback } from './core/progress.js';

// models
export type {
  ModelDtype,
  ModelConfig,
  ModelFolder,
  ModelFingerprint,
  PreprocessConfig,
  ResampleFilter,
} from './models/types.js';
export { loadModelFolder, listModelDtypes } from './models/folder.js';
export { parsePreprocessorConfig } from './models/preprocessor-config.js';
export { fingerprintsCompatible, shortFingerprint } from './models/fingerprint.js';
export { resolveModel, modelCacheFolder, type ResolveModelOptions } from './models/hub.js';
export { synthesizeModel, ensureSynthModel } from './models/synth/index.js';

// sources
export {
  openSource,
  createFolderSource,
  createWebDatasetSource,
  createManifestSource,
  expandInputs,
  IMAGE_EXTENSIONS,
  INPUT_FORMATS,
  type InputFormat,
  type OpenSourceOptions,
  type FolderSourceOptions,
  type WebDatasetSourceOptions,
  type ManifestSourceOptions,
  type Sample,
  type SampleSource,
  type SourceIssue,
} from './sources/index.js';

// decode
export {
  preprocessToCrop,
  normalizeCrop,
  computeResizeAndCrop,
  type PreprocessMode,
  type ImageCrop,
} from './decode/preprocess.js';
export {
  cleanClipText,
  createClipTokenizer,
  loadClipTokenizer,
  type ClipTokenizer,
} from './decode/tokenize.js';
export { DecodePool, type DecodeLimits, type DecodeResult } from './decode/pool.js';

// infer
export {
  VisionSession,
  TextSession,
  l2NormalizeRows,
  listInferenceDevices,
  type InferenceOptions,
  type InferenceDevice,
  type EmbeddingMatrix,
} from './infer/onnx.js';

// sinks and formats
export {
  PartitionWriter,
  partitionName,
  type OutputDtype,
  type FailureRecord,
} from './sinks/clip-retrieval.js';
export { encodeNpyHeader, parseNpyHeader, float32ToFloat16, float16ToFloat32 } from './formats/npy.js';
export {
  encodeParquet,
  readParquetMetadata,
  readParquetColumns,
  type ParquetColumn,
} from './formats/parquet.js';

// pipeline: the model API and the embed job
export { loadModel, ClipModel, type LoadModelOptions, type ImageInput } from './pipeline/model.js';
export { runEmbedJob, type EmbedJobOptions, type EmbedJobResult } from './pipeline/embed.js';

// storage (local paths, http(s), s3)
export {
  openStorage,
  type Storage,
  type StorageOptions,
  type StorageKind,
  type StatResult,
  type ListEntry,
} from './storage/index.js';

// reader: stream embedding collections larger than memory
export {
  EmbeddingReader,
  exportEmbeddings,
  type ExportOptions,
  type EmbeddingBatch,
  type EmbeddingFormat,
  type EmbeddingReaderOptions,
  type ReadOptions,
  type ReaderEvent,
} from './reader/index.js';

// jobs: sharded, resumable, distributed embedding through a ledger (SQLite or Redis)
export {
  createJobStore,
  LeaseLostError,
  planJob,
  runWorker,
  runLocalJob,
  type JobStore,
  type PlanJobOptions,
  type PlannedJob,
  type RunWorkerOptions,
  type RunLocalJobOptions,
  type LocalJobResult,
} from './jobs/index.js';

// collections, indexes and search (LanceDB)
export {
  openDatabase,
  createCollection,
  openCollection,
  listCollections,
  collectionStats,
  deleteCollection,
  Collection,
  type SearchOptions,
  type SearchHit,
  type VectorItem,
  type CollectionStats,
  type CollectionSummary,
} from './pipeline/collection.js';
export { insertFiles } from './pipeline/collection-insert.js';
export { importEmbeddings } from './pipeline/collection-import.js';
export { buildIndex, evalIndex } from './pipeline/collection-index.js';
export { filterToFolder } from './pipeline/collection-filter.js';

/**
 * index/: the embedded vector store (LanceDB) — collections, typed writes, vector indexes — and the
 * choice of index.
 *
 * @example
 *   import { VectorStore, planIndex } from './index/index.js';
 */
export {
  CollectionTable,
  VectorStore,
  type RowBatch,
  type RowFailure,
  type StoredRow,
  type TableStats,
  type VectorIndexConfig,
  type VectorIndexInfo,
  type VectorSearchRequest,
  type VectorStoreOptions,
  type WriteResult,
} from './lancedb.js';
export {
  DEFAULT_MAX_MEMORY,
  FLAT_MAX_ROWS,
  INDEX_TYPES,
  hnswBytes,
  ivfPqBytes,
  planIndex,
  type IndexParams,
  type IndexPlan,
  type IndexPlanInput,
  type IndexType,
} from './auto.js';
export {
  FIXED_COLUMNS,
  assertCollectionName,
  inferColumnType,
  makeBinding,
  metadataKey,
  physicalColumnName,
  toCell,
  type Cell,
  type CollectionBinding,
  type CollectionColumn,
  type ColumnType,
  type SearchDefaults,
} from './schema.js';

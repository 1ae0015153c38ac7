/**
 * search/: structured filters compiled to LanceDB predicates, query vectors, scores and recall.
 *
 * @example
 *   import { compileFilter, normalizeQuery } from './search/index.js';
 */
export {
  FILTER_LIMITS,
  compileFilter,
  idsPredicate,
  parseFilter,
  sqlColumn,
  sqlNumberLiteral,
  sqlStringLiteral,
  type Filter,
  type FilterColumn,
  type FilterValue,
} from './filter.js';
export {
  normalizeQuery,
  normalizeRows,
  parseVectorFile,
  percentile,
  perturbVector,
  recallAtK,
  scoreFromDistance,
  seededRandom,
} from './query.js';

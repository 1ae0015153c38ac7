/**
 * JSON schemas shared by the routes (request validation, response serialization, the OpenAPI document).
 */

/** The coded error answer. */
export const ERROR_SCHEMA = {
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string', description: 'catalogue code, see docs/errors.md' },
    message: { type: 'string', description: 'what was expected and what was received' },
  },
} as const;

/** Error answers every route may give. */
export const ERROR_RESPONSES = {
  '4xx': ERROR_SCHEMA,
  '5xx': ERROR_SCHEMA,
} as const;

/** A structured filter (see docs/search.md); validated against the collection's columns by the library. */
export const FILTER_SCHEMA = {
  type: 'object',
  additionalProperties: true,
  description:
    'structured filter: {"and"|"or": [F…]}, {"not": F}, {"eq"|"ne"|"gt"|"gte"|"lt"|"lte": [key, value]}, {"range": [key, {gte, lt…}]}, {"in": [key, [values]]}, {"is_null"|"not_null": key}',
} as const;

/** An item's metadata: `image_path`, `caption` and the metadata keys (null when missing). */
export const METADATA_SCHEMA = {
  type: 'object',
  additionalProperties: { type: ['string', 'number', 'boolean', 'null'] },
} as const;

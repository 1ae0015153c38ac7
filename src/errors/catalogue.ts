/**
 * The one catalogue of glimpse's coded errors. Every code has an HTTP status and a summary; the
 * message of each thrown error says what was expected and what was received. `docs/errors.md` has a
 * section per code with "how to fix", and `test/errors-catalogue.test.ts` keeps the two in step.
 *
 * Sections are grouped by area; add a new code in its area's section (and to docs/errors.md).
 */
export interface ErrorSpec {
  /** HTTP status the server answers with. */
  readonly status: number;
  /** One line: what went wrong, in general. */
  readonly summary: string;
  /** How to fix it (docs/errors.md is generated from this). */
  readonly fix: string;
}

export const errorCatalogue = {
  // --- arguments and configuration -------------------------------------------------------------
  GLIMPSE_E_ARG_INVALID: {
    status: 400,
    summary: 'An argument has the wrong type or value.',
    fix: 'Read the message: it names the argument, what was expected and what was received. `glimpse <command> --help` lists every option.',
  },
  GLIMPSE_E_CONFIG_INVALID: {
    status: 400,
    summary: 'The configuration (file, environment or flags) is invalid.',
    fix: 'The message lists every problem found (file, environment and flags are merged first). Fix each one; defaults are in the README.',
  },
  GLIMPSE_E_NOT_SUPPORTED: {
    status: 400,
    summary: 'The requested feature or option combination is not supported.',
    fix: 'Use one of the supported options the message names.',
  },
  GLIMPSE_E_ABORTED: {
    status: 499,
    summary: 'The operation was cancelled (AbortSignal, Ctrl-C or SIGTERM).',
    fix: 'Nothing to fix: the run was stopped on purpose. Re-run the same command to resume where outputs allow.',
  },
  GLIMPSE_E_INTERNAL: {
    status: 500,
    summary: 'An unexpected internal error; please report it.',
    fix: 'A bug in glimpse. Re-run with `--log-level debug` and report the message and the command.',
  },

  // --- models ----------------------------------------------------------------------------------
  GLIMPSE_E_MODEL_NOT_FOUND: {
    status: 404,
    summary: 'No model folder exists at the given path or cache location.',
    fix: 'Check the path, or give a hub id (`openai/clip-vit-base-patch32`) to download it into the cache (`glimpse model pull`).',
  },
  GLIMPSE_E_MODEL_FILE_MISSING: {
    status: 422,
    summary: 'A file the model folder needs is missing.',
    fix: 'Put the named file into the model folder (Hugging Face ONNX layout: config.json, preprocessor_config.json, tokenizer.json, onnx/vision_model.onnx, onnx/text_model.onnx).',
  },
  GLIMPSE_E_MODEL_CONFIG_INVALID: {
    status: 422,
    summary: 'A model JSON file (config, preprocessor, tokenizer) is invalid.',
    fix: 'The named JSON file is not valid or lacks a field; compare it with a known-good export, or re-create the folder with `glimpse model synth`.',
  },
  GLIMPSE_E_MODEL_IO_MISMATCH: {
    status: 422,
    summary: 'An ONNX graph has unexpected input or output names or shapes.',
    fix: 'The vision graph must take `pixel_values` and return `image_embeds`; the text graph must take `input_ids` (and optionally `attention_mask`) and return `text_embeds`. Re-export the model with those names.',
  },
  GLIMPSE_E_MODEL_DIM_MISMATCH: {
    status: 422,
    summary: 'The vision and text towers produce different embedding sizes.',
    fix: 'Both towers must project to the same size (`projection_dim`). Use matching vision and text files from one export.',
  },
  GLIMPSE_E_MODEL_PREPROCESS_UNSUPPORTED: {
    status: 422,
    summary: 'The preprocessor configuration asks for something glimpse does not do.',
    fix: 'Edit preprocessor_config.json to use shortest-edge resizing with bicubic (3), bilinear (2) or nearest (0) resampling, and a centre crop; or report the model so support can be added.',
  },
  GLIMPSE_E_MODEL_DTYPE_UNAVAILABLE: {
    status: 422,
    summary: 'The model folder has no ONNX file for the requested dtype.',
    fix: 'Pick a dtype the folder has (`glimpse model info` lists them): fp32 reads `*_model.onnx`, fp16 `*_model_fp16.onnx`, q8 `*_model_quantized.onnx`.',
  },
  GLIMPSE_E_MODEL_DOWNLOAD_FAILED: {
    status: 502,
    summary: 'Downloading a model file from the hub failed.',
    fix: 'Check the network and the hub address (`GLIMPSE_HUB_URL`); re-run to resume the partial download. Or fill the folder the message names by hand.',
  },
  GLIMPSE_E_MODEL_INTEGRITY: {
    status: 502,
    summary: 'A downloaded model file has the wrong size or hash.',
    fix: 'The partial file was removed; re-run to download it again. If it persists the mirror serves a different file than its index says.',
  },
  GLIMPSE_E_MODEL_OFFLINE: {
    status: 503,
    summary: 'The model is not in the cache and cannot be downloaded (offline).',
    fix: 'Copy the model folder to the path the message names (it lists the files needed), or allow downloads (unset `GLIMPSE_OFFLINE` / `HF_HUB_OFFLINE`).',
  },

  // --- decode: images and texts ----------------------------------------------------------------
  GLIMPSE_E_IMAGE_DECODE_FAILED: {
    status: 422,
    summary: 'The image could not be decoded (corrupt, truncated or not an image).',
    fix: 'The file is not a readable image. It is skipped and recorded in failures/; fix or remove it if it should be embedded.',
  },
  GLIMPSE_E_IMAGE_TOO_MANY_PIXELS: {
    status: 413,
    summary: 'The image has more pixels than the configured limit.',
    fix: 'Raise the pixel limit (`--max-pixels`) if the image is trusted, or downscale it first.',
  },
  GLIMPSE_E_IMAGE_TOO_LARGE: {
    status: 413,
    summary: 'The image file has more bytes than the configured limit.',
    fix: 'Raise the byte limit (`--max-image-bytes`) if the file is trusted.',
  },
  GLIMPSE_E_IMAGE_UNREADABLE: {
    status: 422,
    summary: 'The image file could not be read.',
    fix: 'Check the file exists and is readable by the user running glimpse.',
  },
  GLIMPSE_E_TEXT_INVALID: {
    status: 400,
    summary: 'A text input is not a string or cannot be tokenized.',
    fix: 'Pass texts as strings.',
  },

  // --- inference -------------------------------------------------------------------------------
  GLIMPSE_E_INFER_FAILED: {
    status: 500,
    summary: 'The inference backend failed to run a batch.',
    fix: 'The ONNX runtime failed on a batch; check the model files (`glimpse model info`) and memory. Re-run with a smaller `--batch-size`.',
  },
  GLIMPSE_E_INFER_BACKEND_UNAVAILABLE: {
    status: 500,
    summary: 'The requested inference backend or execution provider is not available.',
    fix: 'Use `--device cpu`, or install the execution provider the message names.',
  },

  // --- sources ---------------------------------------------------------------------------------
  GLIMPSE_E_SOURCE_EMPTY: {
    status: 400,
    summary: 'The input has no samples (no sample found).',
    fix: 'The input folder, shards or manifest held no usable sample. Check the path and the image extensions / WebDataset keys.',
  },
  GLIMPSE_E_SOURCE_NOT_FOUND: {
    status: 404,
    summary: 'An input path or URL does not exist.',
    fix: 'Check the input path or URL.',
  },
  GLIMPSE_E_SOURCE_TAR_CORRUPT: {
    status: 422,
    summary: 'A WebDataset tar shard is truncated or corrupt.',
    fix: 'The samples before the damage were kept; re-create or re-download the named shard to embed the rest.',
  },
  GLIMPSE_E_SOURCE_MANIFEST_INVALID: {
    status: 400,
    summary: 'A manifest (parquet, CSV, JSONL) is invalid or lacks the needed column.',
    fix: 'Check the file format and the column names (`--url-col`, `--caption-col`).',
  },
  GLIMPSE_E_SOURCE_DOWNLOAD_FAILED: {
    status: 502,
    summary: 'Downloading an input item failed.',
    fix: 'The item is skipped and recorded with the HTTP status or cause; re-run to retry failed items.',
  },
  GLIMPSE_E_SOURCE_DOWNLOAD_TIMEOUT: {
    status: 504,
    summary: 'Downloading an input item timed out (no connection, or no byte for too long), after retries.',
    fix: 'The item is skipped and recorded; raise `--download-timeout` for slow servers, lower `--download-concurrency` if this machine or its link is saturated, and re-run to retry.',
  },

  GLIMPSE_E_SOURCE_SIDECAR_INVALID: {
    status: 422,
    summary: 'A caption (.txt) or metadata (.json) file beside an image could not be read or parsed.',
    fix: 'The sample is recorded in failures/ with the reason; fix the file (the metadata must be a JSON object) and re-run.',
  },

  // --- sinks and outputs -----------------------------------------------------------------------
  GLIMPSE_E_OUTPUT_EXISTS: {
    status: 409,
    summary: 'The output folder exists and is not empty.',
    fix: 'Choose a new output folder, or pass `--overwrite` to replace it.',
  },
  GLIMPSE_E_OUTPUT_WRITE_FAILED: {
    status: 500,
    summary: 'Writing an output file failed.',
    fix: 'Check free space and permissions on the output location.',
  },

  // --- jobs and ledgers ------------------------------------------------------------------------
  GLIMPSE_E_JOB_NOT_FOUND: {
    status: 404,
    summary: 'The ledger has no job of that name.',
    fix: 'Check `--ledger` and `--job` (`glimpse job status --ledger <url> --job <name>`), or plan the job first with `glimpse job plan`.',
  },
  GLIMPSE_E_JOB_CONFLICT: {
    status: 409,
    summary: 'A job of that name exists in the ledger with different settings.',
    fix: 'The message lists the settings that differ. Re-run with the settings the job was planned with, pick a new `--job` name, or drop the old job with `glimpse job reset --drop`.',
  },
  GLIMPSE_E_JOB_LEASE_LOST: {
    status: 409,
    summary: 'A worker lost its lease on a shard (expired or taken over), so it may not commit its result.',
    fix: 'Nothing to fix when it is rare: the shard is redone by whoever holds it now. When it is frequent, workers miss heartbeats (overloaded machine, long GC pauses): raise `--lease` or lower the load per machine.',
  },
  GLIMPSE_E_JOB_INPUT_CHANGED: {
    status: 409,
    summary: 'The input changed since the job was planned, so its shards no longer mean the same samples.',
    fix: 'Restore the input as it was when planned, or start a new job (a new `--job` name or `glimpse job reset --drop`) and a new output folder.',
  },
  GLIMPSE_E_JOB_MODEL_MISMATCH: {
    status: 409,
    summary: "A worker's model is not the model the job was planned with (fingerprints differ).",
    fix: 'Give every worker the same model folder (same files, same dtype) as the planner; vectors of different models must never mix in one output.',
  },
  GLIMPSE_E_JOB_SHARDS_FAILED: {
    status: 500,
    summary: 'The job ended with shards that failed for good after their last attempt.',
    fix: "`glimpse job status` lists each failed shard with every attempt's error. Fix the cause, then `glimpse job retry-failed` and run the workers again; finished shards are kept.",
  },
  GLIMPSE_E_JOB_WORKER_CRASHED: {
    status: 500,
    summary: 'Local worker processes kept exiting abnormally, more often than the restart budget allows.',
    fix: "Read the workers' stderr above the error (out of memory, a missing model, a crash). Fix the cause and re-run the same command: it resumes.",
  },
  GLIMPSE_E_LEDGER_UNAVAILABLE: {
    status: 503,
    summary: 'The job ledger (SQLite file or Redis server) cannot be opened or reached.',
    fix: 'For `sqlite:<path>` check the folder exists and is writable (and not on a network filesystem); for `redis://host:port/db` check the server runs and is reachable from this machine.',
  },
  GLIMPSE_E_LEDGER_UNSAFE: {
    status: 500,
    summary: 'The Redis server is configured so that it could silently lose jobs (an eviction policy).',
    fix: 'Set `maxmemory-policy noeviction` on the Redis server (`CONFIG SET maxmemory-policy noeviction`, and in redis.conf), and enable persistence (`appendonly yes`).',
  },

  // --- formats and the embedding reader --------------------------------------------------------
  GLIMPSE_E_NPY_INVALID: {
    status: 422,
    summary: 'A .npy file is truncated or its header is invalid.',
    fix: 'The named .npy file is truncated or not a NumPy v1/v2/v3 file; re-create it.',
  },
  GLIMPSE_E_NPY_UNSUPPORTED: {
    status: 422,
    summary: 'A .npy file has an unsupported dtype, order or shape.',
    fix: 'Write C-order float16 or float32 2-D arrays (`np.ascontiguousarray(x, dtype=np.float16)`).',
  },
  GLIMPSE_E_PARQUET_INVALID: {
    status: 422,
    summary: 'A parquet file is invalid or unreadable.',
    fix: 'The named parquet file could not be read; re-create it.',
  },
  GLIMPSE_E_READER_ROW_MISMATCH: {
    status: 422,
    summary: 'Embedding and metadata files disagree on the number of rows.',
    fix: 'Each npy file must have as many rows as its metadata parquet file; re-create the pair.',
  },
  GLIMPSE_E_READER_DIM_MISMATCH: {
    status: 422,
    summary: 'Embedding files in one collection have different dimensions.',
    fix: 'All embedding files of a collection must have one dimension; read them as separate collections.',
  },
  GLIMPSE_E_READER_COLUMN_MISSING: {
    status: 422,
    summary: 'A requested column is missing from a parquet file.',
    fix: 'Check the column names (`embeddingColumn`, `metaColumns`) against the file.',
  },

  // --- storage (local, HTTP, S3) ---------------------------------------------------------------
  GLIMPSE_E_STORAGE_NOT_FOUND: {
    status: 404,
    summary: 'The object or file does not exist.',
    fix: 'Check the path, URL or bucket/key.',
  },
  GLIMPSE_E_STORAGE_HTTP_STATUS: {
    status: 502,
    summary: 'A remote server answered with an error status.',
    fix: 'The server answered with the status in the message; check the URL and credentials.',
  },
  GLIMPSE_E_STORAGE_TIMEOUT: {
    status: 504,
    summary: 'A remote read timed out.',
    fix: 'The server was too slow; raise the timeout or retry later.',
  },
  GLIMPSE_E_STORAGE_TOO_LARGE: {
    status: 413,
    summary: 'A remote object is larger than the allowed number of bytes.',
    fix: 'Raise the byte cap if the object is trusted.',
  },
  GLIMPSE_E_STORAGE_UNSUPPORTED_SCHEME: {
    status: 400,
    summary: 'The URL scheme is not supported.',
    fix: 'Use a local path, `http(s)://` or `s3://`.',
  },
  GLIMPSE_E_STORAGE_REDIRECT_LIMIT: {
    status: 502,
    summary: 'Too many HTTP redirects.',
    fix: 'The URL redirects too many times; use the final URL.',
  },
  GLIMPSE_E_STORAGE_IO: {
    status: 502,
    summary: 'A storage read or write failed.',
    fix: 'Check connectivity, credentials and permissions for the storage named in the message.',
  },

  // --- collections, indexes, search and filter (vector store) ----------------------------------
  GLIMPSE_E_COLLECTION_NOT_FOUND: {
    status: 404,
    summary: 'No collection with that name exists in the database.',
    fix: 'Check the name and the database (`--db`); `glimpse collection list` lists the collections. Create it with `glimpse collection create` (insert and import create it when given a model).',
  },
  GLIMPSE_E_COLLECTION_EXISTS: {
    status: 409,
    summary: 'A collection with that name already exists.',
    fix: 'Pick another name, or delete the existing collection first (`glimpse collection delete <name>`).',
  },
  GLIMPSE_E_COLLECTION_NAME_INVALID: {
    status: 400,
    summary: 'A collection name is not valid.',
    fix: 'Use 1 to 128 characters from letters, digits, `_` and `-`, starting with a letter or a digit.',
  },
  GLIMPSE_E_COLLECTION_MODEL_MISMATCH: {
    status: 409,
    summary: 'The vectors come from a different model than the one the collection is bound to.',
    fix: 'A collection holds vectors of one model (fingerprint) only. Use the model the collection was created with (`glimpse collection stats` shows it), or create a new collection for the new model.',
  },
  GLIMPSE_E_COLLECTION_DIM_MISMATCH: {
    status: 422,
    summary: 'A vector does not have the dimension of the collection.',
    fix: "Every vector must have the collection's dimension (`glimpse collection stats`); check the model or the embeddings file.",
  },
  GLIMPSE_E_COLLECTION_INVALID: {
    status: 422,
    summary: 'A table in the database is not a glimpse collection, or its metadata is damaged.',
    fix: 'The table lacks the collection metadata glimpse writes (model fingerprint, dimension). Use a table made by glimpse, or re-create the collection.',
  },
  GLIMPSE_E_COLLECTION_ITEM_INVALID: {
    status: 422,
    summary: 'One item could not be stored (missing id, a metadata value of the wrong type, a bad vector).',
    fix: "The message names the item and the field. The item is recorded and counted; the others are stored. Fix the item's sidecar JSON or id column and insert it again.",
  },
  GLIMPSE_E_COLLECTION_STORE_FAILED: {
    status: 500,
    summary: 'The vector store (LanceDB) failed to read or write a collection.',
    fix: "Check that the database folder or bucket is reachable and writable (storage options, credentials) and has free space; the message carries LanceDB's reason.",
  },
  GLIMPSE_E_INDEX_FAILED: {
    status: 500,
    summary: 'Building or dropping a vector index failed.',
    fix: "Read the message (LanceDB's reason). Indexes need enough rows to train (IVF_PQ: at least 256); try `--type flat` for small collections or fewer partitions.",
  },
  GLIMPSE_E_FILTER_INVALID: {
    status: 400,
    summary: 'A structured filter is not valid for this collection.',
    fix: "The message gives the path of the bad part. Filters are JSON (see docs/search.md): operators `and`, `or`, `not`, `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `range`, `in`, `is_null`, `not_null`, on columns the collection has, with values of the column's type.",
  },
  GLIMPSE_E_SEARCH_QUERY_INVALID: {
    status: 400,
    summary: 'The search query is not usable (no query, several queries, a zero vector, a bad vector file).',
    fix: "Give exactly one of text, image or vector; a vector must be finite, non-zero and of the collection's dimension (an .npy row or a JSON array of numbers).",
  },
  GLIMPSE_E_IMPORT_MODEL_UNKNOWN: {
    status: 422,
    summary: 'The embeddings folder does not say which model made it.',
    fix: 'Import folders written by `glimpse embed` (their glimpse.json names the model), or pass `--model <id|dir>` for the model that made the vectors, or `--allow-unknown-model` to import them unchecked.',
  },
  GLIMPSE_E_IMPORT_LAYOUT_INVALID: {
    status: 422,
    summary: 'The embeddings folder is not in the clip-retrieval layout, or its files disagree.',
    fix: 'The folder needs `img_emb/*.npy` (and optionally `metadata/*.parquet` with as many rows, file for file). The message names the file and the counts that differ.',
  },
  GLIMPSE_E_FILTER_COPY_FAILED: {
    status: 500,
    summary: "A search hit's image could not be copied into the output folder.",
    fix: "The hit's `image_path` is missing or unreadable, or the output folder is not writable. The hit is recorded in results.jsonl with this code; the others are copied.",
  },

  // --- server ----------------------------------------------------------------------------------
  GLIMPSE_E_SERVER_BAD_REQUEST: {
    status: 400,
    summary: 'The request does not match the route’s schema (a missing, unknown or mistyped field).',
    fix: 'The message names the field and what was expected. The OpenAPI document (`/docs`) lists every route with its request schema.',
  },
  GLIMPSE_E_SERVER_UNAUTHORIZED: {
    status: 401,
    summary: 'The request needs an API key and carried none, or a wrong one.',
    fix: 'Send one of the configured keys as `Authorization: Bearer <key>` or `X-API-Key: <key>` (keys: `auth.apiKeys` or `GLIMPSE_API_KEYS`).',
  },
  GLIMPSE_E_SERVER_FORBIDDEN_PATH: {
    status: 403,
    summary: 'A local file path is outside the allowed roots (or escapes them through `..` or a symlink).',
    fix: 'Put the files under a configured root (`allowedRoots`, `--allow-root`), or upload the image bytes instead of a path.',
  },
  GLIMPSE_E_SERVER_FORBIDDEN_URL: {
    status: 403,
    summary:
      'A URL is not allowed: not http(s), or its host resolves to a private, loopback or otherwise non-public address.',
    fix: 'Use a public http(s) URL. To let the server fetch from an internal network, list its ranges in `fetch.allowedCidrs` (or set `fetch.allowPrivate: true`) in the server configuration.',
  },
  GLIMPSE_E_SERVER_NOT_FOUND: {
    status: 404,
    summary: 'No such route, index or file.',
    fix: 'Check the path (`/docs` lists the routes) and the names: `GET /v1/collections` and `GET /indices-list` list the indices.',
  },
  GLIMPSE_E_SERVER_BODY_TOO_LARGE: {
    status: 413,
    summary: 'The request body, an uploaded file or a base64 image is larger than the configured limit.',
    fix: 'Send a smaller image, or raise `limits.bodyBytes` / `limits.uploadBytes` / `limits.imageBytes` in the server configuration.',
  },
  GLIMPSE_E_SERVER_UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    summary: 'The request body has a Content-Type the route does not take.',
    fix: 'Send JSON (`application/json`) or, for uploads, `multipart/form-data`.',
  },
  GLIMPSE_E_SERVER_READ_ONLY: {
    status: 409,
    summary: 'The index is a read-only clip-retrieval folder; it cannot be written to.',
    fix: 'Write to a collection instead (`POST /v1/collections`), or import the folder into a collection with the CLI.',
  },
  GLIMPSE_E_SERVER_RATE_LIMITED: {
    status: 429,
    summary: 'Too many requests from this client in the current window.',
    fix: 'Wait for the number of seconds in the `Retry-After` header, or raise `rateLimit.max` in the server configuration.',
  },
  GLIMPSE_E_SERVER_UNAVAILABLE: {
    status: 503,
    summary: 'The server cannot answer: its model or its vector store is broken (health check failed).',
    fix: 'Read the message of `GET /health`: it names the part that failed (model, store). Check the model folder and the database path, then restart.',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorCatalogue;

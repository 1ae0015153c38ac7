import { availableParallelism } from 'node:os';
import { GlimpseError, SkipItemError } from '../errors/index.js';
import { assertPositiveInteger, describeValue } from '../core/validate.js';
import type { ProgressCallback } from '../core/progress.js';
import type { ModelDtype, ModelFingerprint, ModelFolder } from '../models/types.js';
import { loadModelFolder } from '../models/folder.js';
import { resolveModel } from '../models/hub.js';
import { DecodePool, type DecodeLimits } from '../decode/pool.js';
import { normalizeCrop, preprocessImage as preprocessWithConfig } from '../decode/preprocess.js';
import { loadClipTokenizer, type ClipTokenizer } from '../decode/tokenize.js';
import { TextSession, VisionSession, type EmbeddingMatrix, type InferenceOptions } from '../infer/onnx.js';
import { readInput } from './inputs.js';
import { embedTextsBucketed } from './texts.js';

export type { EmbeddingMatrix } from '../infer/onnx.js';

export interface LoadModelOptions extends InferenceOptions {
  /** ONNX precision variant (default fp32). */
  dtype?: ModelDtype;
  /** Where hub ids are cached (default `$GLIMPSE_CACHE_DIR` or `~/.cache/glimpse`). */
  cacheDir?: string;
  /** Never download (default from `GLIMPSE_OFFLINE` / `HF_HUB_OFFLINE`). */
  offline?: boolean;
  /** Preprocessing: `exact` matches OpenAI CLIP's PIL transform (default); `fast` lets libvips resize. */
  preprocessMode?: 'exact' | 'fast';
  /** Safety limits for decoded images. */
  limits?: DecodeLimits;
  /** Decode worker threads for embedImages (default: cores). */
  decodeWorkers?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

/** An image input: a local path, an http(s) URL, or the file's bytes. */
export type ImageInput = string | Uint8Array;

/**
 * A loaded CLIP model: the validated folder plus lazily opened vision/text sessions.
 *
 * @example
 *   const model = await loadModel('openai/clip-vit-base-patch32', { dtype: 'q8' });
 *   const images = await model.embedImages(['cat.jpg', 'dog.png']); // { data, rows: 2, dimension: 512 }
 *   const texts = await model.embedTexts(['a cat', 'a dog']);
 *   await model.close();
 */
export class ClipModel {
  private vision: Promise<VisionSession> | undefined;
  private text: Promise<TextSession> | undefined;
  private tokenizerPromise: Promise<ClipTokenizer> | undefined;
  private pool: DecodePool | undefined;

  constructor(
    readonly folder: ModelFolder,
    private readonly options: LoadModelOptions,
  ) {}

  get fingerprint(): ModelFingerprint {
    return this.folder.fingerprint;
  }

  /** Embedding size (projection_dim). */
  get dimension(): number {
    return this.folder.config.projectionDim;
  }

  /** The vision session (opened on first use). */
  visionSession(): Promise<VisionSession> {
    this.vision ??= VisionSession.open(this.folder.visionModelPath, {
      ...this.options,
      expectedDim: this.folder.config.projectionDim,
    });
    return this.vision;
  }

  /** The text session (opened on first use). */
  textSession(): Promise<TextSession> {
    this.text ??= TextSession.open(this.folder.textModelPath, {
      ...this.options,
      expectedDim: this.folder.config.projectionDim,
    });
    return this.text;
  }

  /** The tokenizer (loaded on first use). */
  tokenizer(): Promise<ClipTokenizer> {
    this.tokenizerPromise ??= loadClipTokenizer(this.folder.tokenizerPath, {
      contextLength: this.folder.config.contextLength,
    });
    return this.tokenizerPromise;
  }

  /** Preprocesses one image exactly as embedding does: float32 `[3, H, W]`, for parity checks. */
  async preprocessImage(input: ImageInput): Promise<Float32Array> {
    const bytes = await readInput(input, this.options.limits?.maxBytes);
    return preprocessWithConfig(bytes, this.folder.preprocess, {
      ...this.options.limits,
      mode: this.options.preprocessMode ?? 'exact',
    });
  }

  /** Token ids per text (start and end tokens included, truncated to the context length). */
  async tokenize(texts: readonly string[]): Promise<number[][]> {
    return (await this.tokenizer()).tokenize([...texts]);
  }

  /**
   * Embeds images (paths, URLs or bytes) into an L2-normalized `[n, d]` matrix, in input order.
   * An image that cannot be read or decoded throws its coded error (a SkipItemError).
   */
  async embedImages(
    inputs: readonly ImageInput[],
    options: { batchSize?: number } = {},
  ): Promise<EmbeddingMatrix> {
    if (!Array.isArray(inputs))
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        `Expected an array for inputs but received ${describeValue(inputs)}`,
      );
    const batchSize = options.batchSize ?? 32;
    assertPositiveInteger('batchSize', batchSize, 4096);
    const { cropHeight: h, cropWidth: w } = this.cropSize();
    const vision = await this.visionSession();
    this.pool ??= new DecodePool({
      preprocess: this.folder.preprocess,
      workers: this.options.decodeWorkers ?? Math.max(1, Math.min(availableParallelism(), 4)),
      limits: this.options.limits ?? {},
      mode: this.options.preprocessMode ?? 'exact',
    });
    const pool = this.pool;
    const out = new Float32Array(inputs.length * this.dimension);
    for (let start = 0; start < inputs.length; start += batchSize) {
      this.options.signal?.throwIfAborted();
      const chunk = inputs.slice(start, start + batchSize);
      const crops = await Promise.all(
        chunk.map(async (input, i) => {
          if (typeof input !== 'string' && !(input instanceof Uint8Array)) {
            throw new GlimpseError(
              'GLIMPSE_E_ARG_INVALID',
              `Expected a path, URL or Uint8Array for inputs[${start + i}] but received ${describeValue(input)}`,
            );
          }
          const source =
            typeof input === 'string' && /^https?:\/\//i.test(input)
              ? await readInput(input, this.options.limits?.maxBytes)
              : input;
          const r = await pool.decode(source);
          if (!r.ok)
            throw new SkipItemError(r.code, r.message, {
              details: { input: typeof input === 'string' ? input : `bytes[${start + i}]` },
            });
          return r;
        }),
      );
      const pixels = new Float32Array(crops.length * 3 * h * w);
      crops.forEach((c, i) => normalizeCrop(c, this.folder.preprocess, pixels, i * 3 * h * w));
      const m = await vision.embed(pixels, crops.length, h, w);
      out.set(m.data, start * this.dimension);
    }
    return { data: out, rows: inputs.length, dimension: this.dimension };
  }

  /** Embeds texts into an L2-normalized `[n, d]` matrix, in input order (length-bucketed, see embedTextsBucketed). */
  async embedTexts(texts: readonly string[], options: { batchSize?: number } = {}): Promise<EmbeddingMatrix> {
    if (!Array.isArray(texts))
      throw new GlimpseError(
        'GLIMPSE_E_TEXT_INVALID',
        `Expected an array of strings for texts but received ${describeValue(texts)}`,
      );
    const batchSize = options.batchSize ?? 64;
    assertPositiveInteger('batchSize', batchSize, 4096);
    const tokenizer = await this.tokenizer();
    const session = await this.textSession();
    const out = new Float32Array(texts.length * this.dimension);
    for (let start = 0; start < texts.length; start += batchSize) {
      this.options.signal?.throwIfAborted();
      const m = await embedTextsBucketed(tokenizer, session, texts.slice(start, start + batchSize));
      out.set(m.data, start * this.dimension);
    }
    return { data: out, rows: texts.length, dimension: this.dimension };
  }

  /** Crop size the vision tower takes. */
  cropSize(): { cropHeight: number; cropWidth: number } {
    const p = this.folder.preprocess;
    return p.doCenterCrop
      ? { cropHeight: p.cropHeight, cropWidth: p.cropWidth }
      : { cropHeight: this.folder.config.imageSize, cropWidth: this.folder.config.imageSize };
  }

  async close(): Promise<void> {
    await this.pool?.close();
    this.pool = undefined;
    const sessions = await Promise.allSettled([this.vision, this.text]);
    for (const s of sessions) if (s.status === 'fulfilled' && s.value) await s.value.close();
    this.vision = undefined;
    this.text = undefined;
  }
}

/**
 * Loads a CLIP model from a local folder or a hub id (downloaded into the cache when missing) and
 * validates it. Sessions open lazily, so a text-only job never loads the vision graph.
 *
 * @example
 *   const model = await loadModel('./models/clip-vit-base-patch32', { dtype: 'fp32', intraOpThreads: 2 });
 */
export async function loadModel(idOrPath: string, options: LoadModelOptions = {}): Promise<ClipModel> {
  if (typeof idOrPath !== 'string' || idOrPath.length === 0) {
    throw new GlimpseError(
      'GLIMPSE_E_ARG_INVALID',
      `Expected a model folder or hub id for model but received ${describeValue(idOrPath)}`,
    );
  }
  const resolveOptions: Parameters<typeof resolveModel>[1] = { dtype: options.dtype ?? 'fp32' };
  if (options.cacheDir !== undefined) resolveOptions.cacheDir = options.cacheDir;
  if (options.offline !== undefined) resolveOptions.offline = options.offline;
  if (options.onProgress !== undefined) resolveOptions.onProgress = options.onProgress;
  if (options.signal !== undefined) resolveOptions.signal = options.signal;
  const dir = await resolveModel(idOrPath, resolveOptions);
  const folder = await loadModelFolder(dir, { dtype: options.dtype ?? 'fp32', id: idOrPath });
  return new ClipModel(folder, options);
}

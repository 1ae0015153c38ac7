/**
 * The one module that imports onnxruntime-node. It opens the vision and text graphs of a CLIP model,
 * checks their input/output names, runs batches and returns L2-normalized `[n, d]` matrices.
 *
 * `session.run` blocks the JS thread for the whole batch (the native work runs on ORT's own threads but
 * the call is awaited only after it finishes), so callers keep decoding in worker threads.
 */
import * as ort from 'onnxruntime-node';
import { GlimpseError } from '../errors/index.js';
import { invalidParameterError } from '../core/validate.js';
import { float16ToFloat32, float32ToFloat16 } from '../formats/npy.js';

/** User-facing names of execution devices, mapped to ONNX Runtime execution providers in one table. */
export type InferenceDevice = 'cpu' | 'cuda';
const EXECUTION_PROVIDERS: Record<InferenceDevice, string> = { cpu: 'cpu', cuda: 'cuda' };

export type GraphOptimization = 'disabled' | 'basic' | 'extended' | 'all';

export interface InferenceOptions {
  /** Threads for one operator (default: all cores). */
  intraOpThreads?: number;
  /** Graph optimization level (default `all`). */
  graphOptimization?: GraphOptimization;
  /** Execution device (default `cpu`). */
  device?: InferenceDevice;
  /**
   * Let ORT's idle threads spin-wait (default false: spinning steals CPU from decoding worker threads,
   * which costs ~10% end to end on small machines).
   */
  allowSpinning?: boolean;
}

/** A row-major `[rows, dimension]` float32 matrix. */
export interface EmbeddingMatrix {
  readonly data: Float32Array;
  readonly rows: number;
  readonly dimension: number;
}

/** Divides each row by its L2 norm, in place (rows of zeros stay zero). */
export function l2NormalizeRows(data: Float32Array, rows: number, dimension: number): void {
  for (let r = 0; r < rows; r++) {
    const off = r * dimension;
    let sum = 0;
    for (let i = 0; i < dimension; i++) {
      const v = data[off + i]!;
      sum += v * v;
    }
    if (sum === 0) continue;
    const inv = 1 / Math.sqrt(sum);
    for (let i = 0; i < dimension; i++) data[off + i] = data[off + i]! * inv;
  }
}

function sessionOptions(options: InferenceOptions): ort.InferenceSession.SessionOptions {
  const device = options.device ?? 'cpu';
  const provider = EXECUTION_PROVIDERS[device];
  if (provider === undefined) throw invalidParameterError('device', 'one of "cpu", "cuda"', device);
  if (provider !== 'cpu') {
    const supported = ort.listSupportedBackends().find((b) => b.name === provider);
    if (!supported) {
      throw new GlimpseError(
        'GLIMPSE_E_INFER_BACKEND_UNAVAILABLE',
        `Expected the ${provider} execution provider to be installed but onnxruntime-node lists only ${ort
          .listSupportedBackends()
          .filter((b) => b.bundled)
          .map((b) => b.name)
          .join(', ')}`,
      );
    }
  }
  const opts: ort.InferenceSession.SessionOptions = {
    executionProviders: provider === 'cpu' ? ['cpu'] : [provider, 'cpu'],
    graphOptimizationLevel: options.graphOptimization ?? 'all',
    executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: options.allowSpinning === true ? '1' : '0' } } },
  };
  if (options.intraOpThreads !== undefined) opts.intraOpNumThreads = options.intraOpThreads;
  return opts;
}

async function openSession(path: string, options: InferenceOptions): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(path, sessionOptions(options));
  } catch (err) {
    if (err instanceof GlimpseError) throw err;
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_CONFIG_INVALID',
      `Expected a loadable ONNX graph at ${path} but onnxruntime failed: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

function requireNames(
  session: ort.InferenceSession,
  path: string,
  kind: 'input' | 'output',
  required: readonly string[],
  allowed: readonly string[],
): void {
  const names = kind === 'input' ? session.inputNames : session.outputNames;
  const missing = required.filter((n) => !names.includes(n));
  const unexpected = kind === 'input' ? names.filter((n) => !allowed.includes(n)) : [];
  if (missing.length > 0 || unexpected.length > 0) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_IO_MISMATCH',
      `Expected ${kind}s ${allowed.map((n) => JSON.stringify(n)).join(', ')} in ${path} but received ${names
        .map((n) => JSON.stringify(n))
        .join(', ')}`,
      { details: { path, kind, names } },
    );
  }
}

function tensorType(session: ort.InferenceSession, name: string): ort.Tensor.Type | undefined {
  const meta = session.inputMetadata?.find((m) => m.name === name);
  return meta !== undefined && meta.isTensor ? meta.type : undefined;
}

function outputMatrix(
  value: ort.Tensor | undefined,
  path: string,
  name: string,
  rows: number,
  expectedDim: number | undefined,
): EmbeddingMatrix {
  if (value === undefined || value.dims.length !== 2 || value.dims[0] !== rows) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_IO_MISMATCH',
      `Expected output ${name} of shape [${rows}, d] from ${path} but received ${value === undefined ? 'nothing' : `[${value.dims.join(', ')}]`}`,
    );
  }
  const dimension = value.dims[1]!;
  if (expectedDim !== undefined && dimension !== expectedDim) {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_DIM_MISMATCH',
      `Expected ${name} of dimension ${expectedDim} (config.json projection_dim) from ${path} but received ${dimension}`,
    );
  }
  let data: Float32Array;
  if (value.type === 'float32') data = new Float32Array(value.data as Float32Array);
  else if (value.type === 'float16') {
    data = float16ToFloat32(value.data as Uint16Array);
  } else {
    throw new GlimpseError(
      'GLIMPSE_E_MODEL_IO_MISMATCH',
      `Expected output ${name} of type float32 or float16 from ${path} but received ${value.type}`,
    );
  }
  l2NormalizeRows(data, rows, dimension);
  return { data, rows, dimension };
}

/**
 * The vision tower: `pixel_values` [n, 3, H, W] → L2-normalized `image_embeds` [n, d].
 *
 * @example
 *   const vision = await VisionSession.open('model/onnx/vision_model.onnx', { expectedDim: 512 });
 *   const { data } = await vision.embed(pixels, 8, 224, 224);
 */
export class VisionSession {
  private readonly inputType: ort.Tensor.Type | undefined;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly path: string,
    private readonly expectedDim: number | undefined,
  ) {
    this.inputType = tensorType(session, 'pixel_values');
  }

  static async open(
    path: string,
    options: InferenceOptions & { expectedDim?: number } = {},
  ): Promise<VisionSession> {
    const session = await openSession(path, options);
    requireNames(session, path, 'input', ['pixel_values'], ['pixel_values']);
    requireNames(session, path, 'output', ['image_embeds'], ['image_embeds']);
    return new VisionSession(session, path, options.expectedDim);
  }

  async embed(pixels: Float32Array, rows: number, height: number, width: number): Promise<EmbeddingMatrix> {
    if (pixels.length !== rows * 3 * height * width) {
      throw invalidParameterError(
        'pixels',
        `a Float32Array of length ${rows * 3 * height * width}`,
        pixels.length,
      );
    }
    const dims = [rows, 3, height, width];
    const input =
      this.inputType === 'float16'
        ? new ort.Tensor('float16', float32ToFloat16(pixels), dims)
        : new ort.Tensor('float32', pixels, dims);
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run({ pixel_values: input }, ['image_embeds']);
    } catch (err) {
      throw new GlimpseError(
        'GLIMPSE_E_INFER_FAILED',
        `Expected ${this.path} to run a batch of ${rows} but it failed: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return outputMatrix(out['image_embeds'], this.path, 'image_embeds', rows, this.expectedDim);
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

/**
 * The text tower: `input_ids` (+ `attention_mask`) [n, L] int64 → L2-normalized `text_embeds` [n, d].
 *
 * @example
 *   const text = await TextSession.open('model/onnx/text_model.onnx');
 *   const { data } = await text.embed(ids, mask, 2, 77);
 */
export class TextSession {
  private readonly hasMask: boolean;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly path: string,
    private readonly expectedDim: number | undefined,
  ) {
    this.hasMask = session.inputNames.includes('attention_mask');
  }

  static async open(
    path: string,
    options: InferenceOptions & { expectedDim?: number } = {},
  ): Promise<TextSession> {
    const session = await openSession(path, options);
    requireNames(session, path, 'input', ['input_ids'], ['input_ids', 'attention_mask']);
    requireNames(session, path, 'output', ['text_embeds'], ['text_embeds']);
    return new TextSession(session, path, options.expectedDim);
  }

  async embed(
    inputIds: BigInt64Array,
    attentionMask: BigInt64Array,
    rows: number,
    length: number,
  ): Promise<EmbeddingMatrix> {
    if (inputIds.length !== rows * length || attentionMask.length !== rows * length) {
      throw invalidParameterError('inputIds', `BigInt64Arrays of length ${rows * length}`, inputIds.length);
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', inputIds, [rows, length]),
    };
    if (this.hasMask) feeds['attention_mask'] = new ort.Tensor('int64', attentionMask, [rows, length]);
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(feeds, ['text_embeds']);
    } catch (err) {
      throw new GlimpseError(
        'GLIMPSE_E_INFER_FAILED',
        `Expected ${this.path} to run a batch of ${rows} texts but it failed: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return outputMatrix(out['text_embeds'], this.path, 'text_embeds', rows, this.expectedDim);
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

/** Execution devices this installation can use. */
export function listInferenceDevices(): InferenceDevice[] {
  const names = new Set(
    ort
      .listSupportedBackends()
      .filter((b) => b.bundled || b.name === 'cpu')
      .map((b) => b.name),
  );
  return (Object.keys(EXECUTION_PROVIDERS) as InferenceDevice[]).filter((d) =>
    names.has(EXECUTION_PROVIDERS[d]),
  );
}

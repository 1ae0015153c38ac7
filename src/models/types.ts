/**
 * The model-facing types shared by every stage. Behaviour that varies by model is data: these are
 * parsed and validated from the model folder's JSON files (see folder.ts), then frozen.
 */

/** Precision variant of the ONNX files: fp32 `*_model.onnx`, fp16 `*_model_fp16.onnx`, q8 `*_model_quantized.onnx`. */
export type ModelDtype = 'fp32' | 'fp16' | 'q8';
export const MODEL_DTYPES: readonly ModelDtype[] = ['fp32', 'fp16', 'q8'];

/** Resampling filter, from preprocessor_config.json's `resample` (PIL numbering: 0 nearest, 2 bilinear, 3 bicubic). */
export type ResampleFilter = 'nearest' | 'bilinear' | 'bicubic';

/** Image preprocessing, parsed from `preprocessor_config.json` (CLIPImageProcessor / CLIPFeatureExtractor). */
export interface PreprocessConfig {
  /** Resize so the shortest edge is `shortestEdge` (long side truncated, like torchvision). */
  readonly doResize: boolean;
  readonly shortestEdge: number;
  readonly resample: ResampleFilter;
  /** Center crop to cropHeight × cropWidth (offsets rounded half-to-even, like torchvision). */
  readonly doCenterCrop: boolean;
  readonly cropHeight: number;
  readonly cropWidth: number;
  /** Multiply uint8 values by rescaleFactor (1/255). */
  readonly doRescale: boolean;
  readonly rescaleFactor: number;
  /** (x - mean) / std per channel, RGB order. */
  readonly doNormalize: boolean;
  readonly imageMean: readonly [number, number, number];
  readonly imageStd: readonly [number, number, number];
  /** Convert every input to 3-channel 8-bit RGB. */
  readonly doConvertRgb: boolean;
}

/** What glimpse needs from `config.json` (CLIPConfig). */
export interface ModelConfig {
  readonly modelType: string;
  /** Embedding size of both towers' outputs. */
  readonly projectionDim: number;
  /** Input image side of the vision tower. */
  readonly imageSize: number;
  /** Text context length (max_position_embeddings of the text tower), 77 for CLIP. */
  readonly contextLength: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
}

/**
 * Identifies exactly which model made a vector: written beside every output, checked before vectors
 * from different models could mix.
 */
export interface ModelFingerprint {
  /** Hub id or the folder's name. */
  readonly id: string;
  readonly dtype: ModelDtype;
  /** sha256 (hex) of each file that affects the vectors, keyed by path inside the folder. */
  readonly files: Readonly<Record<string, string>>;
  readonly preprocess: PreprocessConfig;
  readonly dimension: number;
  /** sha256 (hex) over the canonical JSON of all of the above: one string to compare. */
  readonly hash: string;
}

/** A validated model folder: paths resolved, JSON parsed, nothing loaded into a runtime yet. */
export interface ModelFolder {
  readonly dir: string;
  readonly id: string;
  readonly dtype: ModelDtype;
  readonly visionModelPath: string;
  readonly textModelPath: string;
  readonly tokenizerPath: string;
  readonly config: ModelConfig;
  readonly preprocess: PreprocessConfig;
  readonly fingerprint: ModelFingerprint;
}

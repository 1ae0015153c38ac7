/**
 * The CLIP architectures glimpse can synthesize, and the JSON files of their model folders
 * (config.json and preprocessor_config.json as Hugging Face writes them for openai/clip-vit-base-patch32).
 */

/** Architectures `glimpse model synth` builds. */
export type SynthArch = 'tiny' | 'vit-b-32';
export const SYNTH_ARCHS: readonly SynthArch[] = ['tiny', 'vit-b-32'];

/** One transformer tower. */
export interface TowerSpec {
  readonly hidden: number;
  readonly layers: number;
  readonly heads: number;
  /** MLP (fc1) width. */
  readonly mlp: number;
  /**
   * Initialization, not architecture: gain of the random query and key projections (std gain/√hidden).
   * Above 1, attention is selective rather than nearly uniform, so the pooled token carries what is
   * particular to each input and different inputs get clearly different embeddings; too high, and q8's
   * per-tensor activation quantization loses accuracy in the sharper softmax. Measured on smooth and
   * noise images (largest cosine between different images of the fp32 model / smallest cosine q8 vs fp32):
   * tiny gain 1: 0.97 / 0.9999, gain 2: 0.78 / 0.9996; ViT-B/32 gain 1: 0.93 / 0.9996, 1.5: 0.81 / 0.9989,
   * 2: 0.65 / 0.986.
   */
  readonly qkGain: number;
}

export interface VisionSpec extends TowerSpec {
  readonly imageSize: number;
  readonly patchSize: number;
  readonly channels: number;
}

export interface TextSpec extends TowerSpec {
  readonly vocabSize: number;
  readonly contextLength: number;
}

export interface ClipArchSpec {
  readonly vision: VisionSpec;
  readonly text: TextSpec;
  readonly projectionDim: number;
}

export const BOS_TOKEN_ID = 49406;
export const EOS_TOKEN_ID = 49407;
export const PAD_TOKEN_ID = 1;
export const LAYER_NORM_EPS = 1e-5;
/** quick_gelu(x) = x · sigmoid(QUICK_GELU_ALPHA · x). */
export const QUICK_GELU_ALPHA = 1.702;

const TEXT_COMMON = { vocabSize: 49408, contextLength: 77 } as const;
const VISION_COMMON = { imageSize: 224, patchSize: 32, channels: 3 } as const;

export const ARCH_SPECS: Readonly<Record<SynthArch, ClipArchSpec>> = {
  tiny: {
    vision: { ...VISION_COMMON, hidden: 32, layers: 2, heads: 2, mlp: 64, qkGain: 2 },
    text: { ...TEXT_COMMON, hidden: 32, layers: 2, heads: 2, mlp: 64, qkGain: 2 },
    projectionDim: 64,
  },
  // Exactly openai/clip-vit-base-patch32.
  'vit-b-32': {
    vision: { ...VISION_COMMON, hidden: 768, layers: 12, heads: 12, mlp: 3072, qkGain: 1.5 },
    text: { ...TEXT_COMMON, hidden: 512, layers: 12, heads: 8, mlp: 2048, qkGain: 1.5 },
    projectionDim: 512,
  },
};

/**
 * Multiply-accumulates of one image through the vision tower (matrix products only; LayerNorm,
 * softmax and activations are a rounding error). ViT-B/32: 4.41 G, matching the published ~4.4 GMAC.
 *
 * @example
 *   visionMacs(ARCH_SPECS['vit-b-32']); // 4_408_811_520
 */
export function visionMacs(spec: ClipArchSpec): number {
  const v = spec.vision;
  const grid = v.imageSize / v.patchSize;
  const patches = grid * grid;
  const tokens = patches + 1;
  const patchEmbed = patches * v.hidden * v.channels * v.patchSize * v.patchSize;
  const projections = 4 * tokens * v.hidden * v.hidden;
  const attention = 2 * tokens * tokens * v.hidden;
  const mlp = 2 * tokens * v.hidden * v.mlp;
  return patchEmbed + v.layers * (projections + attention + mlp) + v.hidden * spec.projectionDim;
}

/** config.json: a CLIPConfig as transformers writes it. */
export function clipConfigJson(spec: ClipArchSpec): Record<string, unknown> {
  const t = spec.text;
  const v = spec.vision;
  const common = {
    attention_dropout: 0.0,
    dropout: 0.0,
    hidden_act: 'quick_gelu',
    initializer_factor: 1.0,
    initializer_range: 0.02,
    layer_norm_eps: LAYER_NORM_EPS,
    projection_dim: spec.projectionDim,
  };
  return {
    _name_or_path: 'glimpse-synth',
    architectures: ['CLIPModel'],
    initializer_factor: 1.0,
    logit_scale_init_value: 2.6592,
    model_type: 'clip',
    projection_dim: spec.projectionDim,
    text_config: {
      ...common,
      bos_token_id: BOS_TOKEN_ID,
      eos_token_id: EOS_TOKEN_ID,
      hidden_size: t.hidden,
      intermediate_size: t.mlp,
      max_position_embeddings: t.contextLength,
      model_type: 'clip_text_model',
      num_attention_heads: t.heads,
      num_hidden_layers: t.layers,
      pad_token_id: PAD_TOKEN_ID,
      vocab_size: t.vocabSize,
    },
    torch_dtype: 'float32',
    transformers_version: '4.44.2',
    vision_config: {
      ...common,
      hidden_size: v.hidden,
      image_size: v.imageSize,
      intermediate_size: v.mlp,
      model_type: 'clip_vision_model',
      num_attention_heads: v.heads,
      num_channels: v.channels,
      num_hidden_layers: v.layers,
      patch_size: v.patchSize,
    },
  };
}

/** preprocessor_config.json, exactly as openai/clip-vit-base-patch32 has it. */
export function preprocessorConfigJson(spec: ClipArchSpec): Record<string, unknown> {
  const side = spec.vision.imageSize;
  return {
    crop_size: { height: side, width: side },
    do_center_crop: true,
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_processor_type: 'CLIPImageProcessor',
    image_std: [0.26862954, 0.26130258, 0.27577711],
    resample: 3,
    rescale_factor: 0.00392156862745098,
    size: { shortest_edge: side },
  };
}

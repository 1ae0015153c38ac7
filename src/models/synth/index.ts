// models/synth: complete CLIP model folders with real architectures and seeded random weights.
export { ARCH_SPECS, SYNTH_ARCHS, visionMacs, type ClipArchSpec, type SynthArch } from './clip-arch.js';
export {
  DEFAULT_BPE_VOCAB_PATH,
  DEFAULT_SYNTH_CACHE_ROOT,
  MAX_SYNTH_SEED,
  SYNTH_GENERATOR_VERSION,
  SYNTH_META_FILE,
  ensureSynthModel,
  isCompleteSynthFolder,
  synthOnnxFiles,
  synthesizeModel,
  type SynthesizeModelOptions,
  type SynthesizedModel,
} from './synthesize.js';
export { buildClipTokenizerFiles } from './tokenizer-json.js';

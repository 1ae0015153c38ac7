// models/: model folders (parse, validate, fingerprint) and the hub cache.
export * from './types.js';
export * from './preprocessor-config.js';
export * from './folder.js';
export * from './fingerprint.js';
export * from './hub.js';
export * from './synth/index.js';

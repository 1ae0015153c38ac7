import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isGlimpseError, type GlimpseError } from '../src/errors/index.js';
import { listModelDtypes, loadModelFolder, onnxFilesFor, parseModelConfig } from '../src/models/folder.js';
import {
  parsePreprocessorConfig,
  OPENAI_CLIP_MEAN,
  OPENAI_CLIP_STD,
} from '../src/models/preprocessor-config.js';
import {
  canonicalJson,
  computeFingerprint,
  fingerprintsCompatible,
  HASH_CACHE_FILE,
  hashFile,
  shortFingerprint,
} from '../src/models/fingerprint.js';
import type { ModelDtype } from '../src/models/types.js';

// The shapes of openai/clip-vit-base-patch32's files (trimmed to the fields that matter, plus a few that don't).
const CLIP_CONFIG = {
  _name_or_path: 'openai/clip-vit-base-patch32',
  architectures: ['CLIPModel'],
  initializer_factor: 1.0,
  logit_scale_init_value: 2.6592,
  model_type: 'clip',
  projection_dim: 512,
  text_config: {
    bos_token_id: 0,
    eos_token_id: 2,
    pad_token_id: 1,
    hidden_size: 512,
    intermediate_size: 2048,
    max_position_embeddings: 77,
    model_type: 'clip_text_model',
    num_attention_heads: 8,
    num_hidden_layers: 12,
    projection_dim: 512,
    vocab_size: 49408,
  },
  vision_config: {
    hidden_size: 768,
    image_size: 224,
    intermediate_size: 3072,
    model_type: 'clip_vision_model',
    num_attention_heads: 12,
    num_hidden_layers: 12,
    patch_size: 32,
    projection_dim: 512,
  },
};

const IMAGE_PROCESSOR = {
  crop_size: { height: 224, width: 224 },
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
  size: { shortest_edge: 224 },
};

const FEATURE_EXTRACTOR = {
  crop_size: 224,
  do_center_crop: true,
  do_normalize: true,
  do_resize: true,
  feature_extractor_type: 'CLIPFeatureExtractor',
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  resample: 3,
  size: 224,
};

const TOKENIZER = {
  version: '1.0',
  added_tokens: [
    { id: 49406, content: '<|startoftext|>', special: true },
    { id: 49407, content: '<|endoftext|>', special: true },
  ],
  normalizer: null,
  pre_tokenizer: null,
  model: { type: 'BPE', vocab: { a: 0, b: 1 }, merges: [] },
};

interface FolderSpec {
  dtypes?: ModelDtype[];
  config?: unknown;
  preprocessor?: unknown;
  tokenizer?: unknown;
}

async function makeTemp(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'glimpse-model-'));
}

async function writeModelFolder(dir: string, spec: FolderSpec = {}): Promise<string> {
  await mkdir(join(dir, 'onnx'), { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(spec.config ?? CLIP_CONFIG, null, 2));
  await writeFile(
    join(dir, 'preprocessor_config.json'),
    JSON.stringify(spec.preprocessor ?? IMAGE_PROCESSOR),
  );
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(spec.tokenizer ?? TOKENIZER));
  for (const dtype of spec.dtypes ?? ['fp32']) {
    const files = onnxFilesFor(dtype);
    await writeFile(join(dir, files.vision), `vision ${dtype} bytes`);
    await writeFile(join(dir, files.text), `text ${dtype} bytes`);
  }
  return dir;
}

async function rejectsWith(
  promise: Promise<unknown>,
  code: string,
  message?: RegExp | string,
): Promise<GlimpseError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isGlimpseError(err), `expected a GlimpseError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (typeof message === 'string') assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected ${code} but it resolved`);
}

function throwsWith(fn: () => unknown, code: string, message?: RegExp | string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isGlimpseError(err), `expected a GlimpseError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (typeof message === 'string') assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return true;
  });
}

for (const dtype of ['fp32', 'fp16', 'q8'] as const) {
  test(`loads a ${dtype} folder: paths, config, preprocessing and a frozen result`, async () => {
    const dir = await writeModelFolder(await makeTemp(), { dtypes: [dtype] });
    try {
      const model = await loadModelFolder(dir, { dtype });
      const suffix = { fp32: '', fp16: '_fp16', q8: '_quantized' }[dtype];
      assert.equal(model.dtype, dtype);
      assert.equal(model.visionModelPath, join(dir, 'onnx', `vision_model${suffix}.onnx`));
      assert.equal(model.textModelPath, join(dir, 'onnx', `text_model${suffix}.onnx`));
      assert.equal(model.tokenizerPath, join(dir, 'tokenizer.json'));
      assert.deepEqual(model.config, {
        modelType: 'clip',
        projectionDim: 512,
        imageSize: 224,
        contextLength: 77,
        // Legacy placeholder ids 0/2 in the config map to CLIP's real ones.
        bosTokenId: 49406,
        eosTokenId: 49407,
        padTokenId: 1,
      });
      assert.equal(model.preprocess.shortestEdge, 224);
      assert.equal(model.fingerprint.dtype, dtype);
      assert.equal(model.fingerprint.dimension, 512);
      assert.deepEqual(Object.keys(model.fingerprint.files).sort(), [
        'config.json',
        `onnx/text_model${suffix}.onnx`,
        `onnx/vision_model${suffix}.onnx`,
        'preprocessor_config.json',
        'tokenizer.json',
      ]);
      assert.equal(
        model.fingerprint.files[`onnx/text_model${suffix}.onnx`],
        await hashFile(join(dir, `onnx/text_model${suffix}.onnx`)),
      );
      assert.ok(Object.isFrozen(model) && Object.isFrozen(model.config) && Object.isFrozen(model.preprocess));
      assert.ok(model.id.startsWith('glimpse-model-'), model.id);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('listModelDtypes lists dtypes whose two files are both present', async () => {
  const dir = await writeModelFolder(await makeTemp(), { dtypes: ['fp32', 'q8'] });
  try {
    await writeFile(join(dir, 'onnx/vision_model_fp16.onnx'), 'only the vision half');
    assert.deepEqual(await listModelDtypes(dir), ['fp32', 'q8']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('coded errors: missing folder, missing file, unavailable dtype, invalid JSON', async () => {
  const base = await makeTemp();
  try {
    const missing = join(base, 'nope');
    await rejectsWith(
      loadModelFolder(missing),
      'GLIMPSE_E_MODEL_NOT_FOUND',
      `Expected a model folder at ${missing} but it does not exist`,
    );

    const dir = await writeModelFolder(join(base, 'm'), { dtypes: ['fp32', 'q8'] });
    await rejectsWith(
      loadModelFolder(dir, { dtype: 'fp16' }),
      'GLIMPSE_E_MODEL_DTYPE_UNAVAILABLE',
      `Expected onnx/vision_model_fp16.onnx and onnx/text_model_fp16.onnx for dtype fp16 in ${dir} but they do not exist; dtypes present: fp32, q8`,
    );

    await rm(join(dir, 'onnx/text_model.onnx'));
    await rejectsWith(
      loadModelFolder(dir),
      'GLIMPSE_E_MODEL_FILE_MISSING',
      `Expected file onnx/text_model.onnx in ${dir} but it does not exist`,
    );

    await rm(join(dir, 'tokenizer.json'));
    const err = await rejectsWith(loadModelFolder(dir, { dtype: 'q8' }), 'GLIMPSE_E_MODEL_FILE_MISSING');
    assert.deepEqual(err.details, { path: dir, file: 'tokenizer.json' });

    const empty = join(base, 'empty');
    await mkdir(empty);
    await rejectsWith(loadModelFolder(empty), 'GLIMPSE_E_MODEL_FILE_MISSING', /config\.json/);

    const noOnnx = await writeModelFolder(join(base, 'no-onnx'), { dtypes: [] });
    await rejectsWith(
      loadModelFolder(noOnnx),
      'GLIMPSE_E_MODEL_FILE_MISSING',
      `Expected file onnx/vision_model.onnx in ${noOnnx} but it does not exist`,
    );

    const bad = await writeModelFolder(join(base, 'bad'));
    await writeFile(join(bad, 'preprocessor_config.json'), '{"size": 224,');
    await rejectsWith(
      loadModelFolder(bad),
      'GLIMPSE_E_MODEL_CONFIG_INVALID',
      /^Expected valid JSON in .*bad\/preprocessor_config\.json but it does not parse: /,
    );
    await writeFile(join(bad, 'preprocessor_config.json'), JSON.stringify(IMAGE_PROCESSOR));
    await writeFile(join(bad, 'tokenizer.json'), JSON.stringify({ version: '1.0' }));
    await rejectsWith(
      loadModelFolder(bad),
      'GLIMPSE_E_MODEL_CONFIG_INVALID',
      `Expected a JSON object (Hugging Face tokenizers format) for model in ${join(bad, 'tokenizer.json')} but received undefined of type undefined`,
    );

    await rejectsWith(
      loadModelFolder(bad, { dtype: 'int4' as ModelDtype }),
      'GLIMPSE_E_ARG_INVALID',
      /for dtype/,
    );
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});

test('config.json: differing projection sizes are a DIM_MISMATCH; other bad fields name file and field', () => {
  throwsWith(
    () =>
      parseModelConfig(
        { ...CLIP_CONFIG, text_config: { ...CLIP_CONFIG.text_config, projection_dim: 768 } },
        'm/config.json',
      ),
    'GLIMPSE_E_MODEL_DIM_MISMATCH',
    'Expected one projection size in m/config.json but received projection_dim 512, text_config.projection_dim 768, vision_config.projection_dim 512',
  );
  throwsWith(
    () => parseModelConfig({ ...CLIP_CONFIG, model_type: 'siglip' }, 'm/config.json'),
    'GLIMPSE_E_MODEL_CONFIG_INVALID',
    'Expected a CLIP model type ("clip", "clip_vision_model", ...) for model_type in m/config.json but received "siglip" of type string',
  );
  throwsWith(
    () =>
      parseModelConfig(
        { ...CLIP_CONFIG, vision_config: { ...CLIP_CONFIG.vision_config, image_size: '224' } },
        'm/config.json',
      ),
    'GLIMPSE_E_MODEL_CONFIG_INVALID',
    /vision_config\.image_size in m\/config\.json but received "224" of type string/,
  );
  throwsWith(
    () => parseModelConfig([], 'm/config.json'),
    'GLIMPSE_E_MODEL_CONFIG_INVALID',
    /received an array/,
  );
  // Defaults for a minimal config, and real token ids kept as they are.
  assert.deepEqual(
    parseModelConfig(
      { model_type: 'clip', projection_dim: 768, text_config: { bos_token_id: 49406, eos_token_id: 49407 } },
      'c',
    ),
    {
      modelType: 'clip',
      projectionDim: 768,
      imageSize: 224,
      contextLength: 77,
      bosTokenId: 49406,
      eosTokenId: 49407,
      padTokenId: 1,
    },
  );
});

test('preprocessor: the current CLIPImageProcessor and the older CLIPFeatureExtractor formats agree', () => {
  const current = parsePreprocessorConfig(IMAGE_PROCESSOR, 'p.json');
  const older = parsePreprocessorConfig(FEATURE_EXTRACTOR, 'p.json');
  const expected = {
    doResize: true,
    shortestEdge: 224,
    resample: 'bicubic',
    doCenterCrop: true,
    cropHeight: 224,
    cropWidth: 224,
    doRescale: true,
    rescaleFactor: 1 / 255,
    doNormalize: true,
    imageMean: [0.48145466, 0.4578275, 0.40821073],
    imageStd: [0.26862954, 0.26130258, 0.27577711],
    doConvertRgb: true,
  };
  assert.deepEqual(current, expected);
  assert.deepEqual(older, expected);
  assert.ok(Object.isFrozen(current) && Object.isFrozen(current.imageMean));

  // Missing mean/std default to OpenAI CLIP's; other values are read as given.
  const custom = parsePreprocessorConfig(
    {
      size: { shortest_edge: 336 },
      crop_size: { height: 320, width: 336 },
      resample: 2,
      do_rescale: false,
      do_convert_rgb: false,
    },
    'p.json',
  );
  assert.deepEqual(custom.imageMean, OPENAI_CLIP_MEAN);
  assert.deepEqual(custom.imageStd, OPENAI_CLIP_STD);
  assert.equal(custom.shortestEdge, 336);
  assert.equal(custom.cropHeight, 320);
  assert.equal(custom.cropWidth, 336);
  assert.equal(custom.resample, 'bilinear');
  assert.equal(custom.doRescale, false);
  assert.equal(custom.doConvertRgb, false);
  assert.equal(parsePreprocessorConfig({ resample: 0 }, 'p.json').resample, 'nearest');
  assert.equal(parsePreprocessorConfig({}, 'p.json').resample, 'bicubic');
});

test('preprocessor: unsupported and invalid fields are coded errors naming file, field, expected and received', () => {
  throwsWith(
    () => parsePreprocessorConfig({ ...IMAGE_PROCESSOR, resample: 1 }, '/m/preprocessor_config.json'),
    'GLIMPSE_E_MODEL_PREPROCESS_UNSUPPORTED',
    'Expected 0 (nearest), 2 (bilinear) or 3 (bicubic) for resample in /m/preprocessor_config.json but received 1 of type number (lanczos, which glimpse does not implement)',
  );
  for (const r of [4, 5]) {
    throwsWith(() => parsePreprocessorConfig({ resample: r }, 'p'), 'GLIMPSE_E_MODEL_PREPROCESS_UNSUPPORTED');
  }
  throwsWith(
    () => parsePreprocessorConfig({ resample: 9 }, 'p'),
    'GLIMPSE_E_MODEL_CONFIG_INVALID',
    /resample in p/,
  );
  throwsWith(
    () => parsePreprocessorConfig({ size: { height: 224, width: 224 } }, 'p'),
    'GLIMPSE_E_MODEL_PREPROCESS_UNSUPPORTED',
    /^Expected shortest-edge resizing .* for size in p but received an object of type object$/,
  );
  throwsWith(
    () =>
      parsePreprocessorConfig({ ...IMAGE_PROCESSOR, image_mean: [0.5, 0.5] }, '/m/preprocessor_config.json'),
    'GLIMPSE_E_MODEL_CONFIG_INVALID',
    'Expected an array of 3 numbers (RGB) for image_mean in /m/preprocessor_config.json but received an array of length 2 of type array',
  );
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ image_std: [0.2, 0, 0.2] }, /for image_std in p/],
    [{ size: -1 }, /for size in p but received -1 of type number/],
    [{ size: { shortest_edge: 22.5 } }, /for size\.shortest_edge in p/],
    [{ size: 'big' }, /for size in p/],
    [{ crop_size: { height: 224 } }, /for crop_size\.width in p but received undefined/],
    [{ do_rescale: 'yes' }, /Expected true or false for do_rescale in p but received "yes" of type string/],
    [{ rescale_factor: 0 }, /for rescale_factor in p/],
    [{ do_convert_rgb: 1 }, /for do_convert_rgb in p/],
  ];
  for (const [json, message] of cases)
    throwsWith(() => parsePreprocessorConfig(json, 'p'), 'GLIMPSE_E_MODEL_CONFIG_INVALID', message);
  throwsWith(() => parsePreprocessorConfig('x', 'p'), 'GLIMPSE_E_MODEL_CONFIG_INVALID', /top level/);
});

test('fingerprint: deterministic, independent of id and folder, changes when a file or setting changes', async () => {
  const base = await makeTemp();
  try {
    const a = await writeModelFolder(join(base, 'a'));
    const b = await writeModelFolder(join(base, 'b'));
    const fa = (await loadModelFolder(a)).fingerprint;
    const fa2 = (await loadModelFolder(a, { id: 'org/other-name' })).fingerprint;
    const fb = (await loadModelFolder(b)).fingerprint;
    assert.match(fa.hash, /^[0-9a-f]{64}$/);
    assert.equal(fa.hash, fa2.hash);
    assert.equal(fa2.id, 'org/other-name');
    assert.equal(fa.hash, fb.hash);
    assert.ok(fingerprintsCompatible(fa, fb));
    assert.equal(shortFingerprint(fa), fa.hash.slice(0, 12));
    assert.equal(shortFingerprint(fa).length, 12);

    // An ONNX file changes: its hash and the fingerprint change.
    await writeFile(join(b, 'onnx/text_model.onnx'), 'text fp32 bytes, retrained');
    const fbChanged = (await loadModelFolder(b)).fingerprint;
    assert.notEqual(fbChanged.hash, fa.hash);
    assert.notEqual(fbChanged.files['onnx/text_model.onnx'], fa.files['onnx/text_model.onnx']);
    assert.ok(!fingerprintsCompatible(fa, fbChanged));

    // Only the preprocessing changes (file bytes too, necessarily): different fingerprint.
    await writeModelFolder(b, { preprocessor: FEATURE_EXTRACTOR });
    const fbOld = (await loadModelFolder(b)).fingerprint;
    assert.deepEqual(fbOld.preprocess, fa.preprocess);
    assert.notEqual(fbOld.hash, fa.hash);

    // The same files as another dtype: different fingerprint.
    await writeFile(join(a, 'onnx/vision_model_fp16.onnx'), 'vision fp32 bytes');
    await writeFile(join(a, 'onnx/text_model_fp16.onnx'), 'text fp32 bytes');
    assert.notEqual((await loadModelFolder(a, { dtype: 'fp16' })).fingerprint.hash, fa.hash);

    // External weights beside an ONNX file are part of it.
    await writeFile(join(a, 'onnx/vision_model.onnx_data'), 'external weights');
    const withData = (await loadModelFolder(a)).fingerprint;
    assert.ok('onnx/vision_model.onnx_data' in withData.files);
    assert.notEqual(withData.hash, fa.hash);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});

test('fingerprint: the hash cache is reused while size and mtime match, and refreshed when they change', async () => {
  const dir = await writeModelFolder(await makeTemp());
  try {
    const first = (await loadModelFolder(dir)).fingerprint;
    const cache = JSON.parse(await readFile(join(dir, HASH_CACHE_FILE), 'utf8')) as {
      files: Record<string, { sha256: string; size: number; mtimeMs: number }>;
    };
    assert.deepEqual(Object.keys(cache.files).sort(), Object.keys(first.files).sort());

    // Plant a different (fake) hash for an unchanged file: the cache is trusted, so it shows up.
    const fake = 'f'.repeat(64);
    cache.files['onnx/vision_model.onnx']!.sha256 = fake;
    await writeFile(join(dir, HASH_CACHE_FILE), JSON.stringify(cache));
    const cached = (await loadModelFolder(dir)).fingerprint;
    assert.equal(cached.files['onnx/vision_model.onnx'], fake);

    // Same size, new mtime: re-hashed, the real hash is back.
    const later = new Date(Date.now() + 60_000);
    await utimes(join(dir, 'onnx/vision_model.onnx'), later, later);
    const rehashed = (await loadModelFolder(dir)).fingerprint;
    assert.equal(rehashed.files['onnx/vision_model.onnx'], first.files['onnx/vision_model.onnx']);
    assert.equal(rehashed.hash, first.hash);

    // cache: false neither reads nor needs the sidecar.
    const direct = await computeFingerprint(
      {
        dir,
        id: 'x',
        dtype: 'fp32',
        files: Object.keys(first.files),
        preprocess: first.preprocess,
        dimension: first.dimension,
      },
      { cache: false },
    );
    assert.equal(direct.hash, first.hash);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test(
  'fingerprint: a read-only folder works without a cache',
  { skip: process.getuid?.() === 0 },
  async () => {
    const dir = await writeModelFolder(await makeTemp());
    try {
      await chmod(dir, 0o555);
      const model = await loadModelFolder(dir);
      assert.match(model.fingerprint.hash, /^[0-9a-f]{64}$/);
      await assert.rejects(readFile(join(dir, HASH_CACHE_FILE)), { code: 'ENOENT' });
    } finally {
      await chmod(dir, 0o755);
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test('canonicalJson sorts keys at every level and keeps array order', () => {
  assert.equal(
    canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }], u: undefined }),
    '{"a":[2,{"c":4,"d":3}],"b":1}',
  );
});

// glimpse model synth: complete CLIP folders with random weights. The tiny model is checked end to end:
// files, determinism, onnxruntime, precision variants, an independent NumPy reference, transformers.js.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import {
  ARCH_SPECS,
  ensureSynthModel,
  isCompleteSynthFolder,
  SYNTH_GENERATOR_VERSION,
  SYNTH_META_FILE,
  synthesizeModel,
  visionMacs,
  type SynthesizedModel,
} from '../src/models/synth/index.js';
import { buildTextGraph, buildVisionGraph } from '../src/models/synth/clip-graphs.js';
import { float16BitsToNumber, float32ToFloat16Bits } from '../src/models/synth/numeric.js';
import { ProtoMessage } from '../src/models/synth/onnx-proto.js';
import { registerModelSynthCommand } from '../src/cli/commands/model-synth.js';
import { isGlimpseError } from '../src/errors/index.js';
import type { ProgressEvent } from '../src/core/progress.js';
import type { ModelDtype } from '../src/models/types.js';
import { maxAbsDiff, rowCosine, synthPixels, synthTokens } from './helpers/synth-inputs.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const SYSTEM_PYTHON = '/usr/bin/python3';
const TINY = ARCH_SPECS.tiny;
const DIM = TINY.projectionDim;
const ONNX_FILES: Record<ModelDtype, { vision: string; text: string }> = {
  fp32: { vision: 'onnx/vision_model.onnx', text: 'onnx/text_model.onnx' },
  fp16: { vision: 'onnx/vision_model_fp16.onnx', text: 'onnx/text_model_fp16.onnx' },
  q8: { vision: 'onnx/vision_model_quantized.onnx', text: 'onnx/text_model_quantized.onnx' },
};
const EXPECTED_FILES = [
  '.glimpse-synth.json',
  'config.json',
  'preprocessor_config.json',
  'merges.txt',
  'special_tokens_map.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'vocab.json',
  ...Object.values(ONNX_FILES).flatMap((f) => [f.vision, f.text]),
].sort();

// Three images and three texts (padding 0 after the end token, mask 0 there), sequence length 9.
const IMAGES = 3;
const PIXELS = synthPixels(IMAGES);
const TEXTS = [[320, 1125, 539, 320, 2368], [1929], [320, 2368, 1125, 539, 4009, 269, 500]];
const SEQ = 9;
const TOKENS = synthTokens(TEXTS, SEQ);

let work: string;
let model: SynthesizedModel;
const sessions = new Map<string, ort.InferenceSession>();

async function session(path: string): Promise<ort.InferenceSession> {
  let s = sessions.get(path);
  if (s === undefined) {
    s = await ort.InferenceSession.create(path, { intraOpNumThreads: 1 });
    sessions.set(path, s);
  }
  return s;
}

async function runVision(dtype: ModelDtype, pixels = PIXELS, count = IMAGES): Promise<Float32Array> {
  const s = await session(join(model.dir, ONNX_FILES[dtype].vision));
  const out = await s.run({ pixel_values: new ort.Tensor('float32', pixels, [count, 3, 224, 224]) });
  assert.deepEqual(out['image_embeds']!.dims, [count, DIM]);
  return out['image_embeds']!.data as Float32Array;
}

async function runText(
  dtype: ModelDtype,
  tokens = TOKENS,
  rows = TEXTS.length,
  seq = SEQ,
): Promise<Float32Array> {
  const s = await session(join(model.dir, ONNX_FILES[dtype].text));
  const out = await s.run({
    input_ids: new ort.Tensor('int64', tokens.ids, [rows, seq]),
    attention_mask: new ort.Tensor('int64', tokens.mask, [rows, seq]),
  });
  assert.deepEqual(out['text_embeds']!.dims, [rows, DIM]);
  return out['text_embeds']!.data as Float32Array;
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...(await listFiles(join(dir, e.name), `${prefix}${e.name}/`)));
    else out.push(`${prefix}${e.name}`);
  }
  return out.sort();
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'glimpse-synth-'));
  model = await synthesizeModel({ arch: 'tiny', outDir: join(work, 'tiny-a'), seed: 7 });
});

after(async () => {
  for (const s of sessions.values()) await s.release();
  await rm(work, { recursive: true, force: true });
});

describe('synthesizeModel: the folder', () => {
  test('has every file of a Hugging Face ONNX CLIP export and nothing else', async () => {
    assert.deepEqual([...model.files].sort(), EXPECTED_FILES);
    assert.deepEqual(await listFiles(model.dir), EXPECTED_FILES);
    // No temporary folder is left beside it.
    assert.deepEqual(await readdir(work), ['tiny-a']);
  });

  test('config.json is a CLIPConfig with the tiny shapes', async () => {
    const config = JSON.parse(await readFile(join(model.dir, 'config.json'), 'utf8'));
    assert.equal(config.model_type, 'clip');
    assert.deepEqual(config.architectures, ['CLIPModel']);
    assert.equal(config.projection_dim, 64);
    assert.equal(config.logit_scale_init_value, 2.6592);
    assert.equal(typeof config.transformers_version, 'string');
    assert.deepEqual(
      {
        hidden_size: config.text_config.hidden_size,
        intermediate_size: config.text_config.intermediate_size,
        num_attention_heads: config.text_config.num_attention_heads,
        num_hidden_layers: config.text_config.num_hidden_layers,
        max_position_embeddings: config.text_config.max_position_embeddings,
        vocab_size: config.text_config.vocab_size,
        bos_token_id: config.text_config.bos_token_id,
        eos_token_id: config.text_config.eos_token_id,
        pad_token_id: config.text_config.pad_token_id,
        hidden_act: config.text_config.hidden_act,
        layer_norm_eps: config.text_config.layer_norm_eps,
        projection_dim: config.text_config.projection_dim,
        model_type: config.text_config.model_type,
      },
      {
        hidden_size: 32,
        intermediate_size: 64,
        num_attention_heads: 2,
        num_hidden_layers: 2,
        max_position_embeddings: 77,
        vocab_size: 49408,
        bos_token_id: 49406,
        eos_token_id: 49407,
        pad_token_id: 1,
        hidden_act: 'quick_gelu',
        layer_norm_eps: 1e-5,
        projection_dim: 64,
        model_type: 'clip_text_model',
      },
    );
    const v = config.vision_config;
    assert.deepEqual(
      [v.hidden_size, v.intermediate_size, v.num_attention_heads, v.num_hidden_layers, v.image_size],
      [32, 64, 2, 2, 224],
    );
    assert.deepEqual(
      [v.patch_size, v.num_channels, v.hidden_act, v.layer_norm_eps],
      [32, 3, 'quick_gelu', 1e-5],
    );
    assert.deepEqual([v.projection_dim, v.model_type], [64, 'clip_vision_model']);
  });

  test("preprocessor_config.json is openai/clip-vit-base-patch32's", async () => {
    assert.deepEqual(JSON.parse(await readFile(join(model.dir, 'preprocessor_config.json'), 'utf8')), {
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
    });
  });

  test('the same seed gives byte-identical files, another seed other weights', async () => {
    const again = await synthesizeModel({ arch: 'tiny', outDir: join(work, 'tiny-b'), seed: 7 });
    const other = await synthesizeModel({
      arch: 'tiny',
      outDir: join(work, 'tiny-c'),
      seed: 8,
      dtypes: ['fp32'],
    });
    for (const file of EXPECTED_FILES) {
      const a = await readFile(join(model.dir, file));
      assert.ok(a.equals(await readFile(join(again.dir, file))), `${file} differs for the same seed`);
    }
    for (const file of [ONNX_FILES.fp32.vision, ONNX_FILES.fp32.text]) {
      const a = await readFile(join(model.dir, file));
      const c = await readFile(join(other.dir, file));
      assert.equal(a.length, c.length, `${file}: same architecture, same size`);
      assert.ok(!a.equals(c), `${file} is the same for seeds 7 and 8`);
    }
    assert.deepEqual(
      [...other.files].sort(),
      [
        ...EXPECTED_FILES.filter((f) => !f.startsWith('onnx/')),
        ONNX_FILES.fp32.text,
        ONNX_FILES.fp32.vision,
      ].sort(),
    );
  });

  test('the bytes for a seed are pinned (bump SYNTH_GENERATOR_VERSION when they change on purpose)', async () => {
    const sha = async (file: string): Promise<string> =>
      createHash('sha256')
        .update(await readFile(join(model.dir, file)))
        .digest('hex');
    assert.deepEqual(
      {
        vision: await sha(ONNX_FILES.fp32.vision),
        text: await sha(ONNX_FILES.fp32.text),
        q8: await sha(ONNX_FILES.q8.vision),
      },
      {
        vision: 'a48fd6806d830cab60001951b82a55b0bed521d49966753090a945612bff2581',
        text: '13dfc4720838bed3b223229d09400d70c73907119ba8446ec78e85c6a8ba00f3',
        q8: '3a9541dc24310bf7af34a0b0ebb7169f445f3644f6bc921f288571350ba5c771',
      },
      `tiny seed 7 changed: if on purpose, bump SYNTH_GENERATOR_VERSION (cached folders are rebuilt) and update these hashes`,
    );
  });

  test('fp16 files are about half the size of fp32; q8 shrinks the quantized MatMul weights', async () => {
    const size = async (f: string): Promise<number> => (await stat(join(model.dir, f))).size;
    for (const tower of ['vision', 'text'] as const) {
      const fp32 = await size(ONNX_FILES.fp32[tower]);
      const ratio = (await size(ONNX_FILES.fp16[tower])) / fp32;
      assert.ok(ratio > 0.5 && ratio < 0.56, `${tower} fp16/fp32 size ratio ${ratio}`);
      assert.ok((await size(ONNX_FILES.q8[tower])) < fp32, `${tower} q8 is not smaller than fp32`);
    }
  });

  test('reports progress per file, forward only, ending with done', async () => {
    const events: ProgressEvent[] = [];
    await synthesizeModel({
      arch: 'tiny',
      outDir: join(work, 'progress'),
      dtypes: ['q8'],
      onProgress: (e) => events.push(e),
    });
    assert.deepEqual(events[0], { type: 'start', task: 'synth', total: 10 });
    const done = events
      .filter((e) => e.type === 'progress')
      .map((e) => (e.type === 'progress' ? e.done : -1));
    assert.deepEqual(done, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10]);
    const last = events.at(-1)!;
    assert.equal(last.type, 'done');
    await rm(join(work, 'progress'), { recursive: true });
  });
});

describe('synthesizeModel: the ONNX graphs in onnxruntime', () => {
  for (const dtype of ['fp32', 'fp16', 'q8'] as const) {
    test(`${dtype}: Hugging Face input/output names and shapes, finite outputs, dynamic batch`, async () => {
      const vision = await session(join(model.dir, ONNX_FILES[dtype].vision));
      assert.deepEqual(vision.inputNames, ['pixel_values']);
      assert.deepEqual(vision.outputNames, ['image_embeds', 'last_hidden_state']);
      const text = await session(join(model.dir, ONNX_FILES[dtype].text));
      assert.deepEqual(text.inputNames, ['input_ids', 'attention_mask']);
      assert.deepEqual(text.outputNames, ['text_embeds', 'last_hidden_state']);

      const images = await runVision(dtype);
      const texts = await runText(dtype);
      assert.ok(images.every(Number.isFinite) && texts.every(Number.isFinite), `${dtype}: non-finite output`);
      const full = await vision.run({
        pixel_values: new ort.Tensor('float32', PIXELS, [IMAGES, 3, 224, 224]),
      });
      assert.deepEqual(full['last_hidden_state']!.dims, [IMAGES, 50, 32]);
      // One image alone gives its row of the batch (q8 quantizes activations per tensor, over the whole
      // batch, as onnxruntime's quantize_dynamic does: close, not equal).
      const single = await runVision(dtype, PIXELS.subarray(3 * 224 * 224, 2 * 3 * 224 * 224), 1);
      if (dtype === 'q8') {
        const c = rowCosine(single, 0, images, 1, DIM);
        assert.ok(c > 0.995, `q8 single vs batch cosine ${c}`);
      } else {
        const d = maxAbsDiff(single, images.subarray(DIM, 2 * DIM));
        assert.ok(d < 1e-4, `single vs batch max diff ${d}`);
      }
    });
  }

  test('different inputs give clearly different embeddings', async () => {
    const images = await runVision('fp32');
    const texts = await runText('fp32');
    for (const [i, j] of [
      [0, 1],
      [0, 2],
      [1, 2],
    ] as const) {
      assert.ok(rowCosine(images, i, images, j, DIM) < 0.9, `images ${i}, ${j}`);
      assert.ok(rowCosine(texts, i, texts, j, DIM) < 0.9, `texts ${i}, ${j}`);
    }
  });

  test('fp16 and q8 agree with fp32 (cosine of each embedding)', async (t) => {
    const ref = { images: await runVision('fp32'), texts: await runText('fp32') };
    // Measured on the tiny model, seed 7: fp16 > 0.99999, q8 > 0.999 (weights-only fp16; int8 per tensor).
    for (const [dtype, min] of [
      ['fp16', 0.9999],
      ['q8', 0.995],
    ] as const) {
      const images = await runVision(dtype);
      const texts = await runText(dtype);
      const cosines = [
        ...Array.from({ length: IMAGES }, (_, r) => rowCosine(images, r, ref.images, r, DIM)),
        ...TEXTS.map((_, r) => rowCosine(texts, r, ref.texts, r, DIM)),
      ];
      t.diagnostic(`${dtype} vs fp32: lowest cosine ${Math.min(...cosines).toFixed(6)}`);
      for (let r = 0; r < IMAGES; r++) {
        const c = rowCosine(images, r, ref.images, r, DIM);
        assert.ok(c > min, `${dtype} image ${r}: cosine ${c}`);
      }
      for (let r = 0; r < TEXTS.length; r++) {
        const c = rowCosine(texts, r, ref.texts, r, DIM);
        assert.ok(c > min, `${dtype} text ${r}: cosine ${c}`);
      }
    }
  });

  test('text: pooled at the first end token; padding after it and its mask cannot change the result', async () => {
    const base = await runText('fp32');
    // Pad with the end token itself (as transformers.js does), mask all ones, longer sequence.
    const eosPadded = synthTokens(TEXTS, 20, 49407n);
    eosPadded.mask.fill(1n);
    const padded = await runText('fp32', eosPadded, TEXTS.length, 20);
    assert.ok(maxAbsDiff(base, padded) < 1e-5, `max diff ${maxAbsDiff(base, padded)}`);
    // Exactly as long as each text (no padding), one at a time.
    for (let r = 0; r < TEXTS.length; r++) {
      const len = TEXTS[r]!.length + 2;
      const one = synthTokens([TEXTS[r]!], len);
      const out = await runText('fp32', one, 1, len);
      const d = maxAbsDiff(out, base.subarray(r * DIM, (r + 1) * DIM));
      assert.ok(d < 1e-5, `text ${r} alone: max diff ${d}`);
    }
    // The attention mask is an input that takes any values.
    const odd = synthTokens(TEXTS, SEQ);
    odd.mask.fill(7n);
    assert.ok((await runText('fp32', odd)).every(Number.isFinite), 'mask 7: non-finite');
    odd.mask.fill(0n);
    assert.ok((await runText('fp32', odd)).every(Number.isFinite), 'mask 0: non-finite');
  });
});

describe('synthesizeModel: an independent NumPy reference', () => {
  test('vision and text towers match a float64 NumPy CLIP forward pass within 1e-4', async (t) => {
    const dir = join(work, 'reference-inputs');
    await mkdir(dir);
    await writeFile(join(dir, 'px.f32'), new Uint8Array(PIXELS.buffer));
    await writeFile(join(dir, 'ids.i64'), new Uint8Array(TOKENS.ids.buffer));
    await writeFile(join(dir, 'mask.i64'), new Uint8Array(TOKENS.mask.buffer));
    const run = spawnSync(
      SYSTEM_PYTHON,
      [
        join(REPO, 'scripts/reference/clip_forward.py'),
        ...['--model', model.dir, '--pixels', join(dir, 'px.f32'), '--images', String(IMAGES)],
        ...['--ids', join(dir, 'ids.i64'), '--mask', join(dir, 'mask.i64')],
        ...['--texts', String(TEXTS.length), '--seq', String(SEQ)],
      ],
      { encoding: 'utf8', maxBuffer: 1 << 26 },
    );
    assert.equal(
      run.status,
      0,
      `${SYSTEM_PYTHON} scripts/reference/clip_forward.py failed (it needs python3-numpy; the test command installs it): ${run.error?.message ?? ''}\n${run.stderr}`,
    );
    const ref = JSON.parse(run.stdout) as {
      image_embeds: number[][];
      text_embeds: number[][];
      reader: string;
    };
    const images = await runVision('fp32');
    const texts = await runText('fp32');
    const imageDiff = maxAbsDiff(images, ref.image_embeds.flat());
    const textDiff = maxAbsDiff(texts, ref.text_embeds.flat());
    t.diagnostic(
      `max abs diff vs NumPy (${ref.reader}): vision ${imageDiff.toExponential(2)}, text ${textDiff.toExponential(2)}`,
    );
    // Embedding entries are O(1); measured max diffs ~1e-6.
    assert.ok(imageDiff < 1e-4, `vision max abs diff ${imageDiff}`);
    assert.ok(textDiff < 1e-4, `text max abs diff ${textDiff}`);
  });
});

describe('synthesizeModel: transformers.js loads the folder', () => {
  test('CLIPVisionModelWithProjection and CLIPTextModelWithProjection + AutoTokenizer, every dtype', async () => {
    const tjs = await import('@huggingface/transformers');
    const saved = { allowRemoteModels: tjs.env.allowRemoteModels, localModelPath: tjs.env.localModelPath };
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = `${dirname(model.dir)}/`;
    const id = basename(model.dir);
    try {
      const tokenizer = await tjs.AutoTokenizer.from_pretrained(id, { local_files_only: true });
      const encoded = tokenizer(['a photo of a cat', 'a dog'], { padding: 'max_length', truncation: true });
      assert.deepEqual(encoded.input_ids.dims, [2, 77]);
      const ids = encoded.input_ids.data as BigInt64Array;
      assert.equal(ids[0], 49406n);
      for (const dtype of ['fp32', 'fp16', 'q8'] as const) {
        const vision = await tjs.CLIPVisionModelWithProjection.from_pretrained(id, {
          local_files_only: true,
          dtype,
        });
        const v = await vision({ pixel_values: new tjs.Tensor('float32', PIXELS, [IMAGES, 3, 224, 224]) });
        assert.deepEqual(v.image_embeds.dims, [IMAGES, DIM]);
        const dv = maxAbsDiff(v.image_embeds.data as Float32Array, await runVision(dtype));
        assert.ok(dv < 1e-5, `${dtype} transformers.js vs onnxruntime image_embeds: max diff ${dv}`);

        const text = await tjs.CLIPTextModelWithProjection.from_pretrained(id, {
          local_files_only: true,
          dtype,
        });
        const t = await text(encoded);
        assert.deepEqual(t.text_embeds.dims, [2, DIM]);
        const direct = await runText(
          dtype,
          { ids, mask: encoded.attention_mask.data as BigInt64Array },
          2,
          77,
        );
        const dt = maxAbsDiff(t.text_embeds.data as Float32Array, direct);
        assert.ok(dt < 1e-5, `${dtype} transformers.js vs onnxruntime text_embeds: max diff ${dt}`);
        await vision.dispose();
        await text.dispose();
      }
    } finally {
      tjs.env.allowRemoteModels = saved.allowRemoteModels;
      tjs.env.localModelPath = saved.localModelPath;
    }
  });
});

describe('synthesizeModel: ViT-B/32 shapes (graphs built, not written)', () => {
  test('exact openai/clip-vit-base-patch32 parameter count and ~4.4 GMAC per image', () => {
    const spec = ARCH_SPECS['vit-b-32'];
    const params = (names: Array<{ name: string; dims: readonly number[] }>): number =>
      names
        .filter((t) => /^(vision_model|text_model|visual_projection|text_projection)\./.test(t.name))
        .filter((t) => t.name !== 'text_model.causal_mask')
        .reduce((sum, t) => sum + t.dims.reduce((a, b) => a * b, 1), 0);
    const vision = params(buildVisionGraph(spec, 0, 'fp32').listInitializers());
    const text = params(buildTextGraph(spec, 0, 'fp32').listInitializers());
    assert.equal(vision, 87_849_216);
    // CLIPModel has 151 277 313 parameters: both towers, both projections and logit_scale.
    assert.equal(vision + text + 1, 151_277_313);
    assert.equal(visionMacs(spec), 4_408_811_520);
  });
});

describe('synthesizeModel: arguments and existing folders', () => {
  test('rejects bad options with the standard message', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [
        { arch: 'vit-l-14', outDir: 'x' },
        'Expected one of "tiny", "vit-b-32" for arch but received "vit-l-14" of type string',
      ],
      [{ arch: 'tiny', outDir: '' }, 'Expected a non-empty path for outDir but received "" of type string'],
      [
        { arch: 'tiny', outDir: 'x', seed: -1 },
        'Expected an integer from 0 to 4294967295 for seed but received -1 of type number',
      ],
      [
        { arch: 'tiny', outDir: 'x', dtypes: ['int4'] },
        'Expected one of "fp32", "fp16", "q8" for dtypes[] but received "int4" of type string',
      ],
      [
        { arch: 'tiny', outDir: 'x', dtypes: [] },
        'Expected a non-empty array of "fp32", "fp16", "q8" for dtypes but received an array of length 0 of type array',
      ],
    ];
    for (const [options, message] of cases) {
      await assert.rejects(
        synthesizeModel(options as unknown as Parameters<typeof synthesizeModel>[0]),
        (err: unknown) => isGlimpseError(err, 'GLIMPSE_E_ARG_INVALID') && err.message === message,
      );
    }
  });

  test('refuses a non-empty folder unless overwrite, and leaves no temporary folder', async () => {
    const dir = join(work, 'occupied');
    await mkdir(dir);
    await writeFile(join(dir, 'keep.txt'), 'mine');
    await assert.rejects(synthesizeModel({ arch: 'tiny', outDir: dir, dtypes: ['fp32'] }), (err: unknown) =>
      isGlimpseError(err, 'GLIMPSE_E_OUTPUT_EXISTS'),
    );
    assert.deepEqual(await readdir(dir), ['keep.txt']);
    await synthesizeModel({ arch: 'tiny', outDir: dir, dtypes: ['fp32'], overwrite: true });
    assert.ok(!(await readdir(dir)).includes('keep.txt'), 'overwrite kept the old folder');
    assert.ok(
      (await readdir(work)).every((name) => !name.startsWith('.')),
      'a temporary folder was left',
    );
    // A missing vocabulary fails before anything is written.
    const missing = join(work, 'no-vocab');
    await assert.rejects(
      synthesizeModel({ arch: 'tiny', outDir: missing, bpeVocabPath: join(work, 'none.gz') }),
    );
    await assert.rejects(stat(missing));
    assert.ok(
      (await readdir(work)).every((name) => !name.startsWith('.')),
      'a temporary folder was left',
    );
  });

  test('ensureSynthModel synthesizes once into <cacheRoot>/<arch>-seed<seed>, then reuses it', async () => {
    const cache = join(work, 'cache');
    const [a, b] = await Promise.all([
      ensureSynthModel('tiny', 3, cache),
      ensureSynthModel('tiny', 3, cache),
    ]);
    assert.equal(a, join(cache, 'tiny-seed3'));
    assert.equal(b, a);
    assert.deepEqual(await listFiles(a), EXPECTED_FILES);
    const before = (await stat(join(a, ONNX_FILES.fp32.vision))).mtimeMs;
    assert.equal(await ensureSynthModel('tiny', 3, cache), a);
    assert.equal((await stat(join(a, ONNX_FILES.fp32.vision))).mtimeMs, before);
    // An incomplete folder (not made by synthesizeModel) is rebuilt.
    await rm(join(a, ONNX_FILES.q8.text));
    await ensureSynthModel('tiny', 3, cache);
    assert.deepEqual(await listFiles(a), EXPECTED_FILES);
    // So is a folder of another generator version.
    const metaPath = join(a, SYNTH_META_FILE);
    const meta = JSON.parse(await readFile(metaPath, 'utf8'));
    assert.deepEqual(meta, {
      generator: 'glimpse model synth',
      version: SYNTH_GENERATOR_VERSION,
      arch: 'tiny',
      seed: 3,
      dtypes: ['fp32', 'fp16', 'q8'],
    });
    await writeFile(metaPath, JSON.stringify({ ...meta, version: SYNTH_GENERATOR_VERSION - 1 }));
    assert.equal(await isCompleteSynthFolder(a), false);
    await ensureSynthModel('tiny', 3, cache);
    assert.equal(JSON.parse(await readFile(metaPath, 'utf8')).version, SYNTH_GENERATOR_VERSION);
    assert.deepEqual(await readdir(cache), ['tiny-seed3']);
  });
});

describe('glimpse model synth (CLI command)', () => {
  test('writes the folder and prints each file', async () => {
    const lines: string[] = [];
    const program = new Command().exitOverride();
    registerModelSynthCommand(program.command('model'), (line) => lines.push(line));
    const out = join(work, 'cli');
    await program.parseAsync(
      ['model', 'synth', '--arch', 'tiny', '--out', out, '--seed', '7', '--dtype', 'fp32,q8'],
      {
        from: 'user',
      },
    );
    assert.match(lines[0]!, /^synthesized tiny \(seed 7\) into .*cli in \d+\.\d s:$/);
    assert.equal(lines.length, 1 + 8 + 4);
    assert.match(
      lines.find((l) => l.includes('onnx/vision_model_quantized.onnx'))!,
      /KiB$/,
    );
    const a = await readFile(join(out, ONNX_FILES.q8.vision));
    assert.ok(
      a.equals(await readFile(join(model.dir, ONNX_FILES.q8.vision))),
      'CLI output differs from the API',
    );
    await assert.rejects(
      program.parseAsync(['model', 'synth', '--arch', 'tiny', '--out', out, '--dtype', 'fp8'], {
        from: 'user',
      }),
      (err: unknown) =>
        isGlimpseError(err, 'GLIMPSE_E_ARG_INVALID') &&
        err.message ===
          'Expected a comma-separated list of fp32, fp16, q8 for --dtype but received "fp8" of type string',
    );
  });
});

describe('synth numerics', () => {
  test('float16 conversion rounds to nearest even and round-trips half values', () => {
    assert.equal(float32ToFloat16Bits(1), 0x3c00);
    assert.equal(float32ToFloat16Bits(-2), 0xc000);
    assert.equal(float32ToFloat16Bits(65504), 0x7bff);
    assert.equal(float32ToFloat16Bits(65520), 0x7c00); // rounds up to Infinity
    assert.equal(float32ToFloat16Bits(2 ** -24), 0x0001); // smallest subnormal
    assert.equal(float32ToFloat16Bits(2 ** -25), 0x0000); // tie → even (0)
    assert.equal(float32ToFloat16Bits(1 + 2 ** -11), 0x3c00); // tie → even
    assert.equal(float32ToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie → even (up)
    for (let bits = 0; bits < 0x7c00; bits += 37)
      assert.equal(float32ToFloat16Bits(float16BitsToNumber(bits)), bits);
  });

  test('protobuf varints: negative int64 as ten bytes', () => {
    assert.deepEqual(Array.from(new ProtoMessage().int(3, 300).toBytes()), [0x18, 0xac, 0x02]);
    assert.deepEqual(
      Array.from(new ProtoMessage().int(3, -1).toBytes()),
      [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    );
  });
});

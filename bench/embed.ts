/**
 * bench/embed: `glimpse embed` end to end vs inference alone (its ceiling) vs transformers.js (its peer),
 * on the synthesized ViT-B/32 model and ≥ 1,000 real photos (the shared photos copied under distinct names).
 * Every measurement runs in its own child process, so peak RSS is that run's alone.
 *
 *   npx tsx bench/embed.ts [--images 1020] [--texts 1024] [--dtypes fp32,q8] [--batch 32]
 *
 * (a) inference-only images/s on pre-made tensors; (b) end-to-end images/s (decode → write); (c) b/a;
 * (d) transformers.js in Node (its own image loading and preprocessing, same model folder and images, batch 32);
 * (e) b/d; peak RSS of each; and captions: texts/s of glimpse vs transformers.js.
 */
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import type { ModelDtype } from '../src/models/types.js';
import { benchData, machine, parseArgs, printTable, repoRoot, runBenchChild, writeJson } from './common.js';
import { sampleCaptions } from './captions.js';

const args = parseArgs();
const child = args.get('child');

interface ChildResult {
  items: number;
  seconds: number;
  rate: number;
  maxRssMB: number;
}

function report(items: number, seconds: number): void {
  const r: ChildResult = {
    items,
    seconds,
    rate: items / seconds,
    maxRssMB: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
}

async function listImages(dir: string): Promise<string[]> {
  return (await readdir(dir))
    .filter((f) => !f.startsWith('.'))
    .sort()
    .map((f) => join(dir, f));
}

async function runChild(): Promise<void> {
  const dtype = (args.get('dtype') ?? 'fp32') as ModelDtype;
  const modelDir = args.get('model')!;
  const images = args.get('images-dir')!;
  const batch = Number(args.get('batch') ?? 32);
  const texts = Number(args.get('texts') ?? 1024);
  if (child === 'infer') {
    const { loadModelFolder } = await import('../src/models/folder.js');
    const { VisionSession } = await import('../src/infer/onnx.js');
    const folder = await loadModelFolder(modelDir, { dtype });
    const vision = await VisionSession.open(folder.visionModelPath);
    const pixels = Float32Array.from({ length: batch * 3 * 224 * 224 }, (_, i) => Math.sin(i * 0.37) * 1.5);
    await vision.embed(pixels, batch, 224, 224);
    const n = Math.max(4, Math.round(256 / batch));
    const t = performance.now();
    for (let i = 0; i < n; i++) await vision.embed(pixels, batch, 224, 224);
    report(n * batch, (performance.now() - t) / 1000);
  } else if (child === 'glimpse') {
    const { runEmbedJob } = await import('../src/pipeline/embed.js');
    const out = join(benchData, `embed-out-${dtype}`);
    await rm(out, { recursive: true, force: true });
    const t = performance.now();
    const r = await runEmbedJob({
      input: images,
      output: out,
      model: modelDir,
      dtype,
      batchSize: batch,
      enableText: false,
    });
    report(r.embedded, (performance.now() - t) / 1000);
  } else if (child === 'tjs') {
    const tjs = await import('@huggingface/transformers');
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = dirname(modelDir) + '/';
    const id = basename(modelDir);
    const files = await listImages(images);
    const t = performance.now();
    const processor = await tjs.AutoProcessor.from_pretrained(id);
    const model = await tjs.CLIPVisionModelWithProjection.from_pretrained(id, { dtype });
    for (let i = 0; i < files.length; i += batch) {
      const raw = await Promise.all(files.slice(i, i + batch).map((f) => tjs.RawImage.read(f)));
      const inputs = await processor(raw);
      const out = (await model(inputs)) as { image_embeds: { dims: number[] } };
      if (out.image_embeds.dims[0] !== raw.length)
        throw new Error('transformers.js returned the wrong batch');
    }
    report(files.length, (performance.now() - t) / 1000);
  } else if (child === 'glimpse-text') {
    const { loadModel } = await import('../src/pipeline/model.js');
    const captions = sampleCaptions(texts, 7);
    const model = await loadModel(modelDir, { dtype });
    await model.embedTexts(captions.slice(0, batch), { batchSize: batch });
    const t = performance.now();
    await model.embedTexts(captions, { batchSize: batch });
    report(captions.length, (performance.now() - t) / 1000);
    await model.close();
  } else if (child === 'tjs-text') {
    const tjs = await import('@huggingface/transformers');
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = dirname(modelDir) + '/';
    const id = basename(modelDir);
    const captions = sampleCaptions(texts, 7);
    const tokenizer = await tjs.AutoTokenizer.from_pretrained(id);
    const model = await tjs.CLIPTextModelWithProjection.from_pretrained(id, { dtype });
    const embed = async (chunk: string[]): Promise<void> => {
      const inputs = tokenizer(chunk, { padding: true, truncation: true });
      await model(inputs);
    };
    await embed(captions.slice(0, batch));
    const t = performance.now();
    for (let i = 0; i < captions.length; i += batch) await embed(captions.slice(i, i + batch));
    report(captions.length, (performance.now() - t) / 1000);
  }
}

function runMeasurement(kind: string, extra: string[]): Promise<ChildResult> {
  return runBenchChild<ChildResult>('embed.ts', kind, extra);
}

/** ≥ N photos: the shared photos copied under distinct names (bench/data, git-ignored). */
async function buildImageSet(count: number): Promise<string> {
  const dir = join(benchData, `photos-${count}`);
  const existing = await readdir(dir).catch(() => []);
  if (existing.length === count) return dir;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const src = join(repoRoot, 'test/fixtures/images/photos');
  const photos = (await readdir(src)).sort();
  for (let i = 0; i < count; i++) {
    const f = photos[i % photos.length]!;
    await copyFile(
      join(src, f),
      join(dir, `${String(i).padStart(5, '0')}_${basename(f, extname(f))}${extname(f)}`),
    );
  }
  return dir;
}

async function main(): Promise<void> {
  const count = Number(args.get('images') ?? 1020);
  const texts = Number(args.get('texts') ?? 1024);
  const batch = Number(args.get('batch') ?? 32);
  const dtypes = (args.get('dtypes') ?? 'fp32,q8').split(',') as ModelDtype[];
  const { ensureSynthModel } = await import('../src/models/synth/index.js');
  const modelDir = await ensureSynthModel('vit-b-32', 0);
  const images = await buildImageSet(count);
  console.log(`model ${modelDir}; ${count} photos in ${images}`);
  const rows: Record<string, string | number>[] = [];
  const results: Record<string, unknown>[] = [];
  for (const dtype of dtypes) {
    const common = [
      '--dtype',
      dtype,
      '--model',
      modelDir,
      '--images-dir',
      images,
      '--batch',
      String(batch),
      '--texts',
      String(texts),
    ];
    const a = await runMeasurement('infer', common);
    console.log(`${dtype} (a) inference only: ${a.rate.toFixed(1)} images/s`);
    const b = await runMeasurement('glimpse', common);
    console.log(
      `${dtype} (b) glimpse embed: ${b.rate.toFixed(1)} images/s, peak RSS ${b.maxRssMB.toFixed(0)} MB`,
    );
    const bf = await runMeasurement('glimpse', [...common, '--mode', 'fast']);
    console.log(`${dtype} (b') glimpse embed --preprocess fast: ${bf.rate.toFixed(1)} images/s`);
    const d = await runMeasurement('tjs', common);
    console.log(
      `${dtype} (d) transformers.js: ${d.rate.toFixed(1)} images/s, peak RSS ${d.maxRssMB.toFixed(0)} MB`,
    );
    const gt = await runMeasurement('glimpse-text', common);
    const tt = await runMeasurement('tjs-text', common);
    console.log(
      `${dtype} captions: glimpse ${gt.rate.toFixed(1)} texts/s, transformers.js ${tt.rate.toFixed(1)} texts/s`,
    );
    const row = {
      dtype,
      '(a) infer img/s': a.rate,
      '(b) glimpse img/s': b.rate,
      '(c) b/a': b.rate / a.rate,
      "(b') fast img/s": bf.rate,
      "b'/a": bf.rate / a.rate,
      '(d) tjs img/s': d.rate,
      '(e) b/d': b.rate / d.rate,
      'glimpse RSS MB': b.maxRssMB,
      'tjs RSS MB': d.maxRssMB,
      'glimpse texts/s': gt.rate,
      'tjs texts/s': tt.rate,
      'texts ratio': gt.rate / tt.rate,
    };
    rows.push(row);
    results.push({
      dtype,
      inferenceOnly: a,
      glimpse: b,
      glimpseFastPreprocess: bf,
      transformersJs: d,
      glimpseText: gt,
      transformersJsText: tt,
    });
  }
  console.log('');
  printTable(rows);
  const path = await writeJson('embed.json', {
    bench: 'embed',
    machine: machine(),
    images: count,
    texts,
    batch,
    results,
  });
  console.log(`\nwrote ${path}`);
}

if (child) await runChild();
else await main();

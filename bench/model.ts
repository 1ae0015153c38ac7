/**
 * bench/model: inference alone on the synthesized ViT-B/32 model — images/s and texts/s for batch 1, 8, 32
 * and each dtype, with the achieved GFLOP/s next to the machine's matrix-multiply ceiling, measured in the
 * same run with ONNX Runtime's own MatMul (fp32) and MatMulInteger (int8) on ViT-B/32-sized operands.
 *
 *   npx tsx bench/model.ts [--seconds 4] [--batches 1,8,32] [--dtypes fp32,fp16,q8] [--threads N]
 */
import * as ort from 'onnxruntime-node';
import { ARCH_SPECS, ensureSynthModel, visionMacs } from '../src/models/synth/index.js';
import { OnnxGraph } from '../src/models/synth/onnx-graph.js';
import { loadModelFolder } from '../src/models/folder.js';
import { TextSession, VisionSession } from '../src/infer/onnx.js';
import { loadClipTokenizer } from '../src/decode/tokenize.js';
import type { ModelDtype } from '../src/models/types.js';
import { machine, median, parseArgs, printTable, timeRuns, writeJson } from './common.js';
import { sampleCaptions } from './captions.js';

const args = parseArgs();
const seconds = Number(args.get('seconds') ?? 4);
const batches = (args.get('batches') ?? '1,8,32').split(',').map(Number);
const dtypes = (args.get('dtypes') ?? 'fp32,fp16,q8').split(',') as ModelDtype[];
const threads = args.has('threads') ? Number(args.get('threads')) : undefined;
const spec = ARCH_SPECS['vit-b-32'];

function textMacs(length: number): number {
  const t = spec.text;
  const perLayer =
    4 * length * t.hidden * t.hidden + 2 * length * length * t.hidden + 2 * length * t.hidden * t.mlp;
  return t.layers * perLayer + t.hidden * spec.projectionDim;
}

/**
 * GFLOP/s of ORT's MatMul on [M,K]×[K,N] with a constant (prepacked) B, as the model's weights are:
 * float32 MatMul, or uint8×int8 MatMulInteger for q8.
 */
async function matmulCeiling(kind: 'fp32' | 'int8'): Promise<number> {
  // The best of ViT-B/32's MLP shapes at batch 32 and a large square product.
  let best = 0;
  for (const shape of CEILING_SHAPES) best = Math.max(best, await matmulGflops(kind, shape));
  return best;
}

const CEILING_SHAPES: readonly (readonly [number, number, number])[] = [
  [1600, 768, 3072],
  [1600, 3072, 768],
  [2048, 2048, 2048],
];

async function matmulGflops(
  kind: 'fp32' | 'int8',
  [M, K, N]: readonly [number, number, number],
): Promise<number> {
  const g = new OnnxGraph('ceiling');
  if (kind === 'fp32') {
    const b = Float32Array.from({ length: K * N }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
    g.input('a', 'float32', [M, K]);
    g.initializer('b', 'float32', [K, N], new Uint8Array(b.buffer));
    g.output(g.rename(g.op('MatMul', ['a', 'b']), 'c'), 'float32', [M, N]);
  } else {
    const b = Int8Array.from({ length: K * N }, (_, i) => ((i * 104729) % 255) - 127);
    g.input('a', 'uint8', [M, K]);
    g.initializer('b', 'int8', [K, N], new Uint8Array(b.buffer));
    g.output(g.rename(g.op('MatMulInteger', ['a', 'b']), 'c'), 'int32', [M, N]);
  }
  const opts: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  if (threads !== undefined) opts.intraOpNumThreads = threads;
  const session = await ort.InferenceSession.create(g.toModel('glimpse-bench').toBytes(), opts);
  const feeds =
    kind === 'fp32'
      ? {
          a: new ort.Tensor(
            'float32',
            Float32Array.from({ length: M * K }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5),
            [M, K],
          ),
        }
      : {
          a: new ort.Tensor(
            'uint8',
            Uint8Array.from({ length: M * K }, (_, i) => (i * 7919) % 251),
            [M, K],
          ),
        };
  const times = await timeRuns(() => session.run(feeds), Math.min(seconds, 3), 5);
  await session.release();
  return (2 * M * K * N) / median(times) / 1e9;
}

const modelDir = await ensureSynthModel('vit-b-32', 0);
console.log(`model: ${modelDir}`);
const fp32Ceiling = await matmulCeiling('fp32');
const int8Ceiling = await matmulCeiling('int8');
console.log(
  `ceiling: fp32 MatMul ${fp32Ceiling.toFixed(1)} GFLOP/s, int8 MatMulInteger ${int8Ceiling.toFixed(1)} GOP/s`,
);

const captions = sampleCaptions(64, 1);
const rows: Record<string, string | number>[] = [];
const results: Record<string, unknown>[] = [];
for (const dtype of dtypes) {
  const folder = await loadModelFolder(modelDir, { dtype });
  const ceiling = dtype === 'q8' ? int8Ceiling : fp32Ceiling;
  const inferenceOptions = threads !== undefined ? { intraOpThreads: threads } : {};
  const vision = await VisionSession.open(folder.visionModelPath, inferenceOptions);
  const text = await TextSession.open(folder.textModelPath, inferenceOptions);
  const tokenizer = await loadClipTokenizer(folder.tokenizerPath);
  for (const b of batches) {
    const pixels = Float32Array.from({ length: b * 3 * 224 * 224 }, (_, i) => Math.sin(i * 0.37) * 1.5);
    const vt = median(await timeRuns(() => vision.embed(pixels, b, 224, 224), seconds));
    const enc = tokenizer.encodeBatch(captions.slice(0, b));
    const tt = median(
      await timeRuns(() => text.embed(enc.inputIds, enc.attentionMask, enc.batch, enc.length), seconds),
    );
    const imagesPerSecond = b / vt;
    const textsPerSecond = b / tt;
    const visionGflops = (2 * visionMacs(spec) * imagesPerSecond) / 1e9;
    const textGflops = (2 * textMacs(enc.length) * textsPerSecond) / 1e9;
    const row = {
      dtype,
      batch: b,
      'images/s': imagesPerSecond,
      'vision GFLOP/s': visionGflops,
      'texts/s': textsPerSecond,
      'text len': enc.length,
      'text GFLOP/s': textGflops,
      ceiling: ceiling,
      'vision/ceiling': visionGflops / ceiling,
    };
    rows.push(row);
    results.push(row);
    console.log(
      `${dtype} batch ${b}: ${imagesPerSecond.toFixed(1)} images/s, ${textsPerSecond.toFixed(1)} texts/s`,
    );
  }
  await vision.close();
  await text.close();
}
console.log('');
printTable(rows);
const path = await writeJson('model.json', {
  bench: 'model',
  machine: machine(),
  model: 'synth vit-b-32 seed 0',
  visionGmacPerImage: visionMacs(spec) / 1e9,
  ceilings: { fp32MatMulGflops: fp32Ceiling, int8MatMulIntegerGops: int8Ceiling, shapes: CEILING_SHAPES },
  results,
});
console.log(`\nwrote ${path}`);

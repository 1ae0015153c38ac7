// CPU time of image decode + CLIP preprocessing per image, exact vs fast mode, and how far fast is from exact.
//
//   npx tsx bench/preprocess.ts [--rounds 5]
//
// Every photo of test/fixtures/images/photos (bytes read into memory first), plus a 0.5 MP JPEG (800×600, made
// from flowers.jpeg by Pillow when /usr/bin/python3 has it). CPU-ms is process.cpuUsage() (user + system, all
// threads, libvips' included) around one preprocessToCrop call; the median over rounds is reported.
// Prints a table and writes bench/out/preprocess.json.
import { execFileSync } from 'node:child_process';
import { OPENAI_CLIP_PREPROCESS } from '../src/models/preprocessor-config.js';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeImage } from '../src/decode/image.js';
import { normalizeCrop, preprocessToCrop, type PreprocessMode } from '../src/decode/preprocess.js';
import { machine, median, parseArgs, printTable, repoRoot, writeJson } from './common.js';

const CLIP = OPENAI_CLIP_PREPROCESS;

const args = parseArgs();
const rounds = Number(args.get('rounds') ?? 5);

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function cpuOf(fn: () => Promise<unknown>): Promise<number> {
  const t = cpuMs();
  await fn();
  return cpuMs() - t;
}

function madNormalized(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

/** An 800×600 JPEG (quality 90) resized from flowers.jpeg by Pillow, or undefined without Pillow. */
function halfMegapixelJpeg(): Uint8Array | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'glimpse-bench-'));
  try {
    const out = join(dir, '800x600.jpg');
    const src = join(repoRoot, 'test/fixtures/images/photos/flowers.jpeg');
    execFileSync('/usr/bin/python3', [
      '-c',
      'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").resize((800, 600), Image.LANCZOS).save(sys.argv[2], quality=90)',
      src,
      out,
    ]);
    return readFileSync(out);
  } catch {
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const photosDir = join(repoRoot, 'test/fixtures/images/photos');
const inputs: { name: string; bytes: Uint8Array }[] = readdirSync(photosDir)
  .sort()
  .map((name) => ({ name, bytes: readFileSync(join(photosDir, name)) }));
const half = halfMegapixelJpeg();
if (half) inputs.push({ name: '(synthetic) 800x600.jpg', bytes: half });

const modes: PreprocessMode[] = ['exact', 'fast'];
// Warm up the JIT and libvips once over everything.
for (const { bytes } of inputs) for (const mode of modes) await preprocessToCrop(bytes, CLIP, { mode });

const rows: Record<string, string | number>[] = [];
const results: Record<string, unknown>[] = [];
for (const { name, bytes } of inputs) {
  const decoded = await decodeImage(bytes);
  const megapixels = (decoded.width * decoded.height) / 1e6;
  const times: Record<string, number[]> = { decode: [], exact: [], fast: [] };
  for (let r = 0; r < rounds; r++) {
    times.decode!.push(await cpuOf(() => decodeImage(bytes)));
    for (const mode of modes) times[mode]!.push(await cpuOf(() => preprocessToCrop(bytes, CLIP, { mode })));
  }
  const exact = normalizeCrop(await preprocessToCrop(bytes, CLIP, { mode: 'exact' }), CLIP);
  const fast = normalizeCrop(await preprocessToCrop(bytes, CLIP, { mode: 'fast' }), CLIP);
  const result = {
    image: name,
    size: `${decoded.width}x${decoded.height}`,
    megapixels,
    decodeCpuMs: median(times.decode!),
    exactCpuMs: median(times.exact!),
    fastCpuMs: median(times.fast!),
    fastVsExactMad: madNormalized(fast, exact),
  };
  results.push(result);
  rows.push({
    image: name,
    size: result.size,
    MP: megapixels,
    'decode ms': result.decodeCpuMs,
    'exact ms': result.exactCpuMs,
    'resize ms': result.exactCpuMs - result.decodeCpuMs,
    'fast ms': result.fastCpuMs,
    'fast MAD': result.fastVsExactMad.toFixed(4),
  });
}

const sum = (key: string): number => results.reduce((s, r) => s + (r[key] as number), 0);
const photos = results.filter((r) => !String(r.image).startsWith('(synthetic)'));
const summary = {
  photos: photos.length,
  meanExactCpuMs: photos.reduce((s, r) => s + (r.exactCpuMs as number), 0) / photos.length,
  meanFastCpuMs: photos.reduce((s, r) => s + (r.fastCpuMs as number), 0) / photos.length,
  exactCpuMsPerMegapixel: sum('exactCpuMs') / sum('megapixels'),
  fastCpuMsPerMegapixel: sum('fastCpuMs') / sum('megapixels'),
  maxFastVsExactMad: Math.max(...photos.map((r) => r.fastVsExactMad as number)),
  meanFastVsExactMad: photos.reduce((s, r) => s + (r.fastVsExactMad as number), 0) / photos.length,
  halfMegapixelJpeg: results.find((r) => String(r.image).startsWith('(synthetic)')) ?? null,
};
printTable(rows);
console.log(
  `\nmean CPU-ms per photo: exact ${summary.meanExactCpuMs.toFixed(2)}, fast ${summary.meanFastCpuMs.toFixed(2)}; ` +
    `fast vs exact MAD (normalized units): max ${summary.maxFastVsExactMad.toFixed(4)}, mean ${summary.meanFastVsExactMad.toFixed(4)}`,
);
const path = await writeJson('preprocess.json', { machine: machine(), rounds, summary, results });
console.log(`wrote ${path}`);

// Image decode + CLIP preprocessing against Pillow 9.4 / torchvision references
// (scripts/reference/preprocess.py; committed crops in test/fixtures/preprocess/, synthetic cases generated
// into a temporary folder by the same script).
import { test } from 'node:test';
import { OPENAI_CLIP_PREPROCESS } from '../src/models/preprocessor-config.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, gunzipSync } from 'node:zlib';
import { cmykToRgb, decodeImage } from '../src/decode/image.js';
import {
  computeResizeAndCrop,
  normalizeCrop,
  preprocessImage,
  preprocessToCrop,
  roundHalfEven,
  type ImageCrop,
} from '../src/decode/preprocess.js';
import { resample } from '../src/decode/resample.js';
import { isGlimpseError, SkipItemError, type ErrorCode } from '../src/errors/index.js';
import { parseNpyHeader } from '../src/formats/npy.js';
import type { PreprocessConfig, ResampleFilter } from '../src/models/types.js';

const root = new URL('..', import.meta.url).pathname;
const images = join(root, 'test/fixtures/images');
const refs = join(root, 'test/fixtures/preprocess');

const CLIP = OPENAI_CLIP_PREPROCESS;

interface ManifestEntry {
  file?: string;
  decoder?: 'pil' | 'sharp';
  mode?: string;
  note?: string;
  pilError?: string;
  openaiOrderMeanAbsDiff?: number;
}
const manifest = JSON.parse(readFileSync(join(refs, 'manifest.json'), 'utf8')) as {
  pillow: string;
  images: Record<string, ManifestEntry>;
};

function loadReference(file: string): Uint8Array {
  const bytes = gunzipSync(readFileSync(join(refs, file)));
  const h = parseNpyHeader(bytes, file);
  assert.equal(h.dtype, 'uint8');
  assert.deepEqual(h.shape, [224, 224, 3]);
  return bytes.subarray(h.headerLength, h.headerLength + h.dataLength);
}

/** ToTensor + Normalize as torchvision computes them in float32, written independently of normalizeCrop. */
function torchvisionNormalize(hwc: Uint8Array, w: number, h: number): Float32Array {
  const f = Math.fround;
  const out = new Float32Array(3 * w * h);
  for (let c = 0; c < 3; c++) {
    const mean = f(CLIP.imageMean[c]!);
    const std = f(CLIP.imageStd[c]!);
    for (let i = 0; i < w * h; i++) out[c * w * h + i] = f(f(f(hwc[i * 3 + c]! / 255) - mean) / std);
  }
  return out;
}

function mad(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

async function assertSkip(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof SkipItemError, `expected a SkipItemError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

const photos = Object.entries(manifest.images).filter(([rel]) => rel.startsWith('photos/'));
const edges = Object.entries(manifest.images).filter(([rel]) => rel.startsWith('edge/'));

test('every ordinary photo matches the Pillow/torchvision reference (MAD ≤ 0.01, in normalized units)', async () => {
  assert.equal(photos.length, 30);
  const rows: string[] = [];
  let worst = 0;
  for (const [rel, entry] of photos) {
    assert.ok(entry.file, `${rel} has a reference (${entry.pilError ?? ''})`);
    const ref = torchvisionNormalize(loadReference(entry.file), 224, 224);
    const ours = await preprocessImage(join(images, rel), CLIP);
    assert.equal(ours.length, 3 * 224 * 224);
    const m = mad(ours, ref);
    worst = Math.max(worst, m);
    rows.push(`${rel.padEnd(38)} ${m.toFixed(6)}  ${entry.decoder === 'sharp' ? '(decoded by sharp)' : ''}`);
    assert.ok(m <= 0.01, `${rel}: MAD ${m}`);
  }
  console.log(
    `photos vs Pillow ${manifest.pillow} (exact mode), max MAD ${worst.toFixed(6)}\n${rows.join('\n')}`,
  );
});

test('unusual but valid images become finite 3×224×224 tensors; MAD against the reference', async () => {
  const rows: string[] = [];
  const valid = edges.filter(([, e]) => e.file !== undefined);
  assert.deepEqual(valid.map(([rel]) => rel).sort(), [
    'edge/5_webp_a.webp',
    'edge/Channel_digital_image_CMYK_color.jpg',
    'edge/Flag_of_the_Netherlands-16bit.png',
    'edge/animated-loop-3.gif',
    'edge/concert.jpg',
    'edge/grey-8bit-alpha.png',
    'edge/sdr_cosmos12920_cicp1-13-6_yuv444_full_qp10.avif',
    'edge/uncompressed_tiff.tiff',
  ]);
  for (const [rel, entry] of valid) {
    const ours = await preprocessImage(join(images, rel), CLIP);
    assert.equal(ours.length, 3 * 224 * 224);
    assert.ok(ours.every(Number.isFinite), rel);
    const m = mad(ours, torchvisionNormalize(loadReference(entry.file!), 224, 224));
    const how = entry.decoder === 'sharp' ? 'decoded by sharp' : `Pillow mode ${entry.mode}`;
    const literal =
      entry.openaiOrderMeanAbsDiff === undefined
        ? ''
        : ` (OpenAI's literal order would differ by ${entry.openaiOrderMeanAbsDiff} uint8 levels)`;
    rows.push(`${rel.padEnd(56)} ${m.toFixed(6)}  ${how}${entry.note ? `; ${entry.note}` : ''}${literal}`);
    // Pillow-decoded ones are matched exactly too (alpha dropped, CMYK by Pillow's formula, 16-bit high byte).
    if (entry.decoder === 'pil') assert.ok(m <= 0.01, `${rel}: MAD ${m}`);
  }
  console.log(`edge images vs reference (exact mode)\n${rows.join('\n')}`);
});

test('broken inputs throw GLIMPSE_E_IMAGE_DECODE_FAILED with the path', async () => {
  for (const name of ['corrupt-header.jpg', 'truncated.jpg', 'truncated.png']) {
    const path = join(images, 'edge', name);
    await assertSkip(
      preprocessImage(path, CLIP),
      'GLIMPSE_E_IMAGE_DECODE_FAILED',
      new RegExp(`\\(${path}\\)$`),
    );
    // The same bytes without a path: same code, message without a path.
    await assertSkip(
      preprocessToCrop(readFileSync(path), CLIP),
      'GLIMPSE_E_IMAGE_DECODE_FAILED',
      /^Expected/,
    );
  }
  await assertSkip(
    decodeImage(join(images, 'edge/truncated.jpg')),
    'GLIMPSE_E_IMAGE_DECODE_FAILED',
    /Expected a complete image .* but decoding failed: .*premature end/,
  );
  const dir = mkdtempSync(join(tmpdir(), 'glimpse-preprocess-'));
  try {
    const text = join(dir, 'notes.jpg');
    writeFileSync(text, 'this is a text file, not an image\n');
    await assertSkip(preprocessImage(text, CLIP), 'GLIMPSE_E_IMAGE_DECODE_FAILED', /notes\.jpg/);
    await assertSkip(
      preprocessImage(new Uint8Array(0), CLIP),
      'GLIMPSE_E_IMAGE_DECODE_FAILED',
      /received 0 bytes/,
    );
    const empty = join(dir, 'empty.png');
    writeFileSync(empty, '');
    await assertSkip(
      preprocessImage(empty, CLIP),
      'GLIMPSE_E_IMAGE_DECODE_FAILED',
      /received 0 bytes \(.*empty\.png\)/,
    );
    await assertSkip(preprocessImage(join(dir, 'missing.jpg'), CLIP), 'GLIMPSE_E_IMAGE_UNREADABLE', /ENOENT/);
    await assertSkip(preprocessImage(dir, CLIP), 'GLIMPSE_E_IMAGE_UNREADABLE', /not a regular file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pixel and byte limits', async () => {
  const path = join(images, 'photos/Landscape_1.jpg'); // 600×450 = 270000 pixels
  const bytes = readFileSync(path);
  await assertSkip(
    preprocessImage(path, CLIP, { maxPixels: 269999 }),
    'GLIMPSE_E_IMAGE_TOO_MANY_PIXELS',
    /^Expected an image of at most 269999 pixels but received 600×450 = 270000 pixels \(.*Landscape_1\.jpg\)$/,
  );
  assert.equal((await preprocessImage(path, CLIP, { maxPixels: 270000 })).length, 3 * 224 * 224);
  await assertSkip(
    preprocessImage(path, CLIP, { maxBytes: bytes.length - 1 }),
    'GLIMPSE_E_IMAGE_TOO_LARGE',
    new RegExp(`^Expected an image of at most ${bytes.length - 1} bytes but received ${bytes.length} bytes`),
  );
  await assertSkip(preprocessToCrop(bytes, CLIP, { maxBytes: 1000 }), 'GLIMPSE_E_IMAGE_TOO_LARGE');
  assert.equal((await preprocessToCrop(bytes, CLIP, { maxBytes: bytes.length })).data.length, 224 * 224 * 3);
  // The default pixel limit is sharp's: 0x3FFF × 0x3FFF. A PNG header announcing 20000×20000 is refused.
  const big = pngHeader(20000, 20000);
  await assertSkip(
    decodeImage(big),
    'GLIMPSE_E_IMAGE_TOO_MANY_PIXELS',
    /^Expected an image of at most 268402689 pixels but received 20000×20000 = 400000000 pixels$/,
  );
  await assertSkip(decodeImage(big, { maxPixels: Infinity }), 'GLIMPSE_E_IMAGE_DECODE_FAILED'); // no pixel data
  // Bad limits are argument errors, not skips.
  await assert.rejects(preprocessImage(path, CLIP, { maxPixels: -1 }), (err: unknown) => {
    assert.ok(isGlimpseError(err, 'GLIMPSE_E_ARG_INVALID') && !(err instanceof SkipItemError));
    assert.equal(
      err.message,
      'Expected a positive integer or Infinity for maxPixels but received -1 of type number',
    );
    return true;
  });
  await assert.rejects(
    preprocessImage(path, CLIP, { mode: 'quick' as 'fast' }),
    /Expected one of "exact", "fast"/,
  );
});

/** A PNG of an 8-bit RGB image of the given size whose IDAT holds almost nothing: a header to check limits on. */
function pngHeader(width: number, height: number): Uint8Array {
  const crc32 = (bytes: Uint8Array): number => {
    let crc = 0xffffffff;
    for (const byte of bytes) {
      crc ^= byte;
      for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
    }
    return (crc ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Uint8Array): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), body.length + 4);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(10))),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

test('EXIF orientation is applied: all 8 orientations of a photo give the same upright crop', async () => {
  // The files are one picture stored in each orientation (2..8 with the same encoder; 1 differs in colour),
  // with its number drawn in the middle: compare the bottom third, below the number, with orientation 2's, and
  // check that a mirrored or upside-down crop would be much further away.
  const bottom = (data: Uint8Array, flip: 'none' | 'x' | 'y'): number[] => {
    const out: number[] = [];
    for (let y = 150; y < 224; y++) {
      for (let x = 0; x < 224; x++) {
        const sy = flip === 'y' ? 223 - y : y;
        const sx = flip === 'x' ? 223 - x : x;
        for (let c = 0; c < 3; c++) out.push(data[(sy * 224 + sx) * 3 + c]!);
      }
    }
    return out;
  };
  const meanDiff = (a: number[], b: number[]): number =>
    a.reduce((s, v, i) => s + Math.abs(v - b[i]!), 0) / a.length;
  const rows: string[] = [];
  for (const kind of ['Landscape', 'Portrait']) {
    const base = bottom((await preprocessToCrop(join(images, `photos/${kind}_2.jpg`), CLIP)).data, 'none');
    for (let o = 1; o <= 8; o++) {
      if (o === 2) continue;
      const crop = (await preprocessToCrop(join(images, `photos/${kind}_${o}.jpg`), CLIP)).data;
      const [upright, mirrored, flipped] = (['none', 'x', 'y'] as const).map((f) =>
        meanDiff(bottom(crop, f), base),
      );
      rows.push(
        `${kind}_${o}: ${upright!.toFixed(2)} (mirrored ${mirrored!.toFixed(2)}, upside down ${flipped!.toFixed(2)})`,
      );
      assert.ok(upright! < mirrored! / 2 && upright! < flipped! / 2, rows.at(-1));
      if (o !== 1) assert.ok(upright! < 3, rows.at(-1));
    }
  }
  console.log(
    `EXIF orientations, mean |difference| of the bottom third vs orientation 2:\n${rows.join('\n')}`,
  );
});

test('computeResizeAndCrop: torchvision sizes (long side truncated) and half-to-even crop offsets', () => {
  const g = (w: number, h: number, cfg: PreprocessConfig = CLIP) => computeResizeAndCrop(w, h, cfg);
  assert.deepEqual(g(640, 480), {
    resizedWidth: 298, // int(224 * 640 / 480) = int(298.67)
    resizedHeight: 224,
    cropLeft: 37,
    cropTop: 0,
    cropWidth: 224,
    cropHeight: 224,
  });
  assert.deepEqual(
    [g(480, 640).resizedWidth, g(480, 640).resizedHeight, g(480, 640).cropTop, g(480, 640).cropLeft],
    [224, 298, 37, 0],
  );
  // (299 - 224) / 2 = 37.5 → 38 (even); (297 - 224) / 2 = 36.5 → 36; (301 - 224) / 2 = 38.5 → 38.
  assert.equal(g(299, 224).cropLeft, 38);
  assert.equal(g(297, 224).cropLeft, 36);
  assert.equal(g(301, 224).cropLeft, 38);
  assert.equal(g(224, 225).cropTop, 0); // 0.5 → 0
  assert.equal(g(224, 227).cropTop, 2); // 1.5 → 2
  assert.deepEqual([g(1, 1).resizedWidth, g(1, 1).resizedHeight], [224, 224]);
  assert.deepEqual([g(3, 500).resizedWidth, g(3, 500).resizedHeight], [224, 37333]);
  // Smaller than the crop (no resize): torchvision pads (crop - size) // 2 on the left/top.
  const noResize = { ...CLIP, doResize: false };
  assert.deepEqual(g(100, 51, noResize), {
    resizedWidth: 100,
    resizedHeight: 51,
    cropLeft: -62,
    cropTop: -86, // (224 - 51) // 2 = 86, the odd pixel goes to the bottom
    cropWidth: 224,
    cropHeight: 224,
  });
  // Non-square crop, larger than the resized height in one direction only.
  const tall = { ...CLIP, cropHeight: 256, cropWidth: 192 };
  assert.deepEqual(g(640, 480, tall), {
    resizedWidth: 298,
    resizedHeight: 224,
    cropLeft: 53,
    cropTop: -16,
    cropWidth: 192,
    cropHeight: 256,
  });
  const noCrop = { ...CLIP, doCenterCrop: false };
  assert.deepEqual(g(640, 480, noCrop), {
    resizedWidth: 298,
    resizedHeight: 224,
    cropLeft: 0,
    cropTop: 0,
    cropWidth: 298,
    cropHeight: 224,
  });
  assert.throws(() => g(0, 10), /Expected a positive integer for width but received 0/);
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, 3.2, 3.7].map(roundHalfEven), [0, 2, 2, -0, 3, 4]);
});

interface ResampleCase {
  width: number;
  height: number;
  channels: number;
  outWidth: number;
  outHeight: number;
  filter: ResampleFilter;
  input: number;
  expected: number;
}
interface GeometryCase {
  file: string;
  width: number;
  height: number;
  shortestEdge: number;
  cropHeight: number;
  cropWidth: number;
  resample: ResampleFilter;
  doResize: boolean;
  doCenterCrop: boolean;
  outWidth: number;
  outHeight: number;
  expected: number;
}

test('synthetic cases: resampler and geometry are bit-exact with Pillow 9.4 + torchvision', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'glimpse-preprocess-cases-'));
  try {
    execFileSync('/usr/bin/python3', [join(root, 'scripts/reference/preprocess.py'), 'cases', dir], {
      stdio: 'inherit',
    });
    const cases = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8')) as {
      resample: ResampleCase[];
      geometry: GeometryCase[];
    };
    const blob = readFileSync(join(dir, 'resample.bin'));
    for (const c of cases.resample) {
      const label = JSON.stringify({ ...c, input: undefined, expected: undefined });
      const n = c.width * c.height * c.channels;
      const src = { data: blob.subarray(c.input, c.input + n), ...c };
      const expected = blob.subarray(c.expected, c.expected + c.outWidth * c.outHeight * c.channels);
      assert.ok(Buffer.from(resample(src, c.outWidth, c.outHeight, c.filter)).equals(expected), label);
      // A region is the same pixels as the full result, cropped.
      const region = {
        left: Math.floor(c.outWidth / 3),
        top: Math.floor(c.outHeight / 4),
        width: Math.ceil(c.outWidth / 2),
        height: Math.ceil(c.outHeight / 2),
      };
      const part = resample(src, c.outWidth, c.outHeight, c.filter, region);
      for (let y = 0; y < region.height; y++) {
        const from = ((region.top + y) * c.outWidth + region.left) * c.channels;
        const row = region.width * c.channels;
        assert.ok(
          Buffer.from(part.subarray(y * row, (y + 1) * row)).equals(expected.subarray(from, from + row)),
          label,
        );
      }
    }
    const geo = readFileSync(join(dir, 'geometry.bin'));
    for (const c of cases.geometry) {
      const cfg: PreprocessConfig = { ...CLIP, ...c };
      const crop = await preprocessToCrop(join(dir, c.file), cfg);
      const label = `${c.file} ${JSON.stringify(cfg)}`;
      assert.deepEqual([crop.width, crop.height], [c.outWidth, c.outHeight], label);
      const expected = geo.subarray(c.expected, c.expected + c.outWidth * c.outHeight * 3);
      assert.ok(Buffer.from(expected).equals(Buffer.from(crop.data)), label);
    }
    assert.equal(cases.resample.length, 48);
    assert.equal(cases.geometry.length, 6 * 14);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('normalizeCrop: float32 ToTensor + Normalize, CHW, written at an offset without touching the rest', () => {
  const crop: ImageCrop = { data: Uint8Array.from([0, 128, 255, 10, 20, 30]), width: 2, height: 1 };
  const t = normalizeCrop(crop, CLIP);
  assert.deepEqual(t, torchvisionNormalize(crop.data, 2, 1));
  // NumPy in float32: ((x.astype(float32) / float32(255)) - mean32) / std32, transposed to CHW.
  assert.deepEqual(
    [...t],
    [
      -1.7922625541687012, -1.6462782621383667, 0.16889731585979462, -1.451941728591919, 2.1458969116210938,
      -1.0536178350448608,
    ],
  );
  // Computed in double precision instead, pixel 0's G would be one float32 step away:
  assert.notEqual(t[2], Math.fround((128 / 255 - 0.4578275) / 0.26130258));
  const batch = new Float32Array(2 + 6 + 3).fill(7);
  assert.equal(normalizeCrop(crop, CLIP, batch, 2), batch);
  assert.deepEqual(batch.subarray(2, 8), t);
  assert.deepEqual([...batch.subarray(0, 2), ...batch.subarray(8)], [7, 7, 7, 7, 7]);
  assert.throws(() => normalizeCrop(crop, CLIP, batch, 6), /Expected an integer from 0 to 5 for offset/);
  const raw = normalizeCrop(crop, { ...CLIP, doRescale: false, doNormalize: false });
  assert.deepEqual([...raw], [0, 10, 128, 20, 255, 30]);
});

test('cmykToRgb is Pillow’s cmyk2rgb', () => {
  assert.deepEqual(
    [...cmykToRgb(Uint8Array.of(0, 255, 255, 0, 0, 0, 0, 255, 128, 64, 0, 64), 3, 4)],
    [255, 0, 0, 0, 0, 0, 95, 143, 191],
  );
});

test('fast mode: libvips resizes; shapes are exact and values close to exact mode', async () => {
  for (const rel of ['photos/flowers.jpeg', 'photos/2569067123_aca715a2ee_o.jpg', 'photos/Portrait_6.jpg']) {
    const exact = await preprocessImage(join(images, rel), CLIP);
    const fast = await preprocessImage(join(images, rel), CLIP, { mode: 'fast' });
    assert.equal(fast.length, 3 * 224 * 224);
    const m = mad(fast, exact);
    assert.ok(m > 0 && m < 0.02, `${rel}: fast vs exact MAD ${m}`);
  }
  // Upscaled, alpha and CMYK images are resized exactly even in fast mode.
  for (const rel of [
    'photos/123_456.jpg',
    'edge/5_webp_a.webp',
    'edge/Channel_digital_image_CMYK_color.jpg',
  ]) {
    const exact = await preprocessToCrop(join(images, rel), CLIP);
    const fast = await preprocessToCrop(join(images, rel), CLIP, { mode: 'fast' });
    assert.deepEqual(fast, exact, rel);
  }
});

#!/usr/bin/python3
"""Reference outputs for glimpse's image preprocessing (test/preprocess.test.ts).

Run with Debian's interpreter, which has Pillow 9.4 and NumPy (the `python3` on PATH may not):

    /usr/bin/python3 scripts/reference/preprocess.py

For each fixture image (test/fixtures/images/{photos,edge}/*) it applies OpenAI CLIP's transform, on a PIL image,
the way torchvision does it:

    ImageOps.exif_transpose(Image.open(p))        # glimpse's one deliberate change: photos upright
    Resize(224, BICUBIC)                           # short side 224, long side int(224 * long / short)
    CenterCrop(224)                                # offsets int(round((size - 224) / 2.0)), half to even
    convert('RGB')

and stores the 224x224x3 uint8 crop as a gzipped .npy in test/fixtures/preprocess/ (ToTensor and Normalize are
exact float32 functions of these bytes; the test derives them). torchvision's size rule and crop are written out
here so the reference needs no torch; the resize is Pillow's own `img.resize((w, h), Image.BICUBIC)`.

Unusual modes, where OpenAI's order (resize before convert('RGB')) does something odd, are converted to RGB
first and the manifest says so: P (Pillow resizes palette images with NEAREST), RGBA/LA (resized premultiplied),
CMYK (resized per ink channel), I;16/I/F (clipping). RGB and L keep OpenAI's order (for L it is the same thing).

`preprocess.py cases OUTDIR` writes synthetic cases instead (seeded random images): Pillow resizes of raw RGB/L
data with every filter (the resampler's bit-exactness), and PNGs with the crop Pillow + torchvision give for
assorted sizes and configurations (odd sizes, half-to-even offsets, images smaller than the crop, non-square
crops, resize or crop switched off). The test runs it into a temporary folder.

Images Pillow 9.4 cannot open (lossless JPEG, SOF3, which Debian's libjpeg-turbo 2.1 lacks; AVIF, which needs a
plugin) are decoded by sharp (node) to raw RGB instead; the manifest marks them `"decoder": "sharp"`, so for them
only resize, crop and normalisation are checked against Pillow. Broken files are listed with Pillow's error.
"""
import gzip
import io
import json
import os
import subprocess
import sys

import numpy as np
import PIL
from PIL import Image, ImageOps

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
IMAGES = os.path.join(ROOT, 'test', 'fixtures', 'images')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'preprocess')
SIZE = 224
CROP = (224, 224)  # (height, width)

SHARP_DECODE = r"""
const sharp = require('sharp');
sharp(process.argv[1], { autoOrient: true, ignoreIcc: true, failOn: 'error' })
  .removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' })
  .toBuffer({ resolveWithObject: true })
  .then(({ data, info }) => {
    process.stdout.write(JSON.stringify([info.width, info.height, info.channels]) + '\n');
    process.stdout.write(data);
  });
"""


def torchvision_resize_size(w, h, size):
    """torchvision.transforms.functional._compute_resized_output_size for an int size."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


FILTERS = {'nearest': Image.NEAREST, 'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC}


def torchvision_center_crop(img, crop_height, crop_width):
    """torchvision.transforms.functional.center_crop on a PIL image (pads with 0 when the crop is larger)."""
    image_width, image_height = img.size
    if crop_width > image_width or crop_height > image_height:
        left = (crop_width - image_width) // 2 if crop_width > image_width else 0
        top = (crop_height - image_height) // 2 if crop_height > image_height else 0
        right = (crop_width - image_width + 1) // 2 if crop_width > image_width else 0
        bottom = (crop_height - image_height + 1) // 2 if crop_height > image_height else 0
        padded = Image.new(img.mode, (image_width + left + right, image_height + top + bottom), 0)
        padded.paste(img, (left, top))
        img = padded
        image_width, image_height = img.size
        if crop_width == image_width and crop_height == image_height:
            return img
    crop_top = int(round((image_height - crop_height) / 2.0))
    crop_left = int(round((image_width - crop_width) / 2.0))
    return img.crop((crop_left, crop_top, crop_left + crop_width, crop_top + crop_height))


def decode_with_sharp(path):
    out = subprocess.run(['node', '-e', SHARP_DECODE, path], cwd=ROOT, capture_output=True, check=True).stdout
    header, data = out.split(b'\n', 1)
    w, h, c = json.loads(header)
    return Image.fromarray(np.frombuffer(data, np.uint8).reshape(h, w, c), 'RGB')


def reference(path):
    entry = {}
    try:
        img = Image.open(path)
        entry['mode'] = img.mode
        img = ImageOps.exif_transpose(img)
        img.load()
        entry['decoder'] = 'pil'
    except Exception as err:  # noqa: BLE001 - any failure to open is recorded
        entry['pilError'] = f'{type(err).__name__}: {err}'
        try:
            img = decode_with_sharp(path)
        except subprocess.CalledProcessError:
            return entry, None
        entry['decoder'] = 'sharp'
        entry['mode'] = 'RGB'
    entry['size'] = list(img.size)
    w, h = torchvision_resize_size(img.width, img.height, SIZE)
    if img.mode not in ('RGB', 'L'):
        entry['note'] = f'{img.mode} converted to RGB before resizing'
        # What OpenAI's literal order would have given, for the record (mean |difference| in uint8 levels).
        literal = torchvision_center_crop(img.resize((w, h), Image.BICUBIC), *CROP).convert('RGB')
        img = img.convert('RGB')
        first = torchvision_center_crop(img.resize((w, h), Image.BICUBIC), *CROP)
        diff = np.abs(np.asarray(literal, np.int16) - np.asarray(first, np.int16))
        entry['openaiOrderMeanAbsDiff'] = round(float(diff.mean()), 4)
    entry['resized'] = [w, h]
    img = img.resize((w, h), Image.BICUBIC)
    img = torchvision_center_crop(img, *CROP)
    arr = np.asarray(img.convert('RGB'), dtype=np.uint8)
    assert arr.shape == (CROP[0], CROP[1], 3), arr.shape
    return entry, arr


def cases(out_dir):
    """Synthetic cases for the resampler and the geometry (see the module docstring)."""
    rng = np.random.default_rng(20240607)
    os.makedirs(out_dir, exist_ok=True)
    resample_cases = []
    with open(os.path.join(out_dir, 'resample.bin'), 'wb') as blob:
        for i in range(48):
            w, h = int(rng.integers(1, 420)), int(rng.integers(1, 420))
            ow, oh = int(rng.integers(1, 300)), int(rng.integers(1, 300))
            if i % 6 == 0:
                ow = w  # vertical pass only
            if i % 8 == 0:
                oh = h  # horizontal pass only
            channels = 1 if i % 5 == 0 else 3
            filt = ('bicubic', 'bilinear', 'nearest')[i % 3]
            arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
            if i % 4 == 0:
                arr = (arr // 128 * 255).astype(np.uint8)  # hard edges: overshoot, clipping
            img = Image.fromarray(arr if channels == 3 else arr[:, :, 0], 'RGB' if channels == 3 else 'L')
            res = np.asarray(img.resize((ow, oh), FILTERS[filt]), dtype=np.uint8)
            case = dict(width=w, height=h, channels=channels, outWidth=ow, outHeight=oh, filter=filt)
            case['input'] = blob.tell()
            blob.write(arr.tobytes())
            case['expected'] = blob.tell()
            blob.write(res.tobytes())
            resample_cases.append(case)
    geometry_cases = []
    configs = [
        dict(shortestEdge=224, cropHeight=224, cropWidth=224, resample='bicubic', doResize=True, doCenterCrop=True),
        dict(shortestEdge=224, cropHeight=256, cropWidth=192, resample='bicubic', doResize=True, doCenterCrop=True),
        dict(shortestEdge=64, cropHeight=48, cropWidth=63, resample='bilinear', doResize=True, doCenterCrop=True),
        dict(shortestEdge=37, cropHeight=37, cropWidth=37, resample='nearest', doResize=True, doCenterCrop=True),
        dict(shortestEdge=224, cropHeight=96, cropWidth=101, resample='bicubic', doResize=False, doCenterCrop=True),
        dict(shortestEdge=50, cropHeight=0, cropWidth=0, resample='bicubic', doResize=True, doCenterCrop=False),
    ]
    sizes = [(640, 480), (480, 640), (301, 224), (299, 224), (297, 224), (224, 227), (225, 224), (1, 1), (3, 500),
             (500, 3), (100, 50), (101, 51), (224, 224), (97, 131)]
    with open(os.path.join(out_dir, 'geometry.bin'), 'wb') as blob:
        for c, cfg in enumerate(configs):
            for (w, h) in sizes:
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                name = f'g{c}_{w}x{h}.png'
                Image.fromarray(arr, 'RGB').save(os.path.join(out_dir, name))
                img = Image.fromarray(arr, 'RGB')
                if cfg['doResize']:
                    rw, rh = torchvision_resize_size(w, h, cfg['shortestEdge'])
                    img = img.resize((rw, rh), FILTERS[cfg['resample']])
                if cfg['doCenterCrop']:
                    img = torchvision_center_crop(img, cfg['cropHeight'], cfg['cropWidth'])
                res = np.asarray(img, dtype=np.uint8)
                case = dict(cfg, file=name, width=w, height=h, outWidth=img.width, outHeight=img.height)
                case['expected'] = blob.tell()
                blob.write(res.tobytes())
                geometry_cases.append(case)
    with open(os.path.join(out_dir, 'cases.json'), 'w') as f:
        json.dump(dict(resample=resample_cases, geometry=geometry_cases), f)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == 'cases':
        cases(sys.argv[2])
        return
    os.chdir(ROOT)  # relative paths in the manifest and in Pillow's messages
    os.makedirs(OUT, exist_ok=True)
    manifest = {
        'pillow': PIL.__version__,
        'numpy': np.__version__,
        'transform': 'exif_transpose, Resize(224, BICUBIC), CenterCrop(224), convert(RGB)',
        'images': {},
    }
    for group in ('photos', 'edge'):
        for name in sorted(os.listdir(os.path.join(IMAGES, group))):
            rel = f'{group}/{name}'
            entry, arr = reference(os.path.relpath(os.path.join(IMAGES, group, name), ROOT))
            if arr is not None:
                buf = io.BytesIO()
                np.save(buf, arr)
                entry['file'] = f'{name}.npy.gz'
                with open(os.path.join(OUT, entry['file']), 'wb') as f:
                    f.write(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))
            manifest['images'][rel] = entry
            print(rel, json.dumps(entry), file=sys.stderr)
    with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write('\n')


if __name__ == '__main__':
    main()

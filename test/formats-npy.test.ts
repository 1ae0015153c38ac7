import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  assertEmbeddingNpy,
  encodeNpyHeader,
  float16ToFloat32,
  float32ToFloat16,
  npyHeaderSize,
  parseNpyHeader,
} from '../src/formats/npy.js';
import { isGlimpseError } from '../src/errors/index.js';

// Debian's python has numpy; the python3 on PATH may not.
const PY = '/usr/bin/python3';
const dir = mkdtempSync(join(tmpdir(), 'glimpse-npy-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function py(code: string): string {
  return execFileSync(PY, ['-c', code], { encoding: 'utf8', cwd: dir });
}

test('encodeNpyHeader writes the same bytes as numpy.save', () => {
  const cases: [string, 'float16' | 'float32', number[]][] = [
    ['a', 'float16', [3, 4]],
    ['b', 'float32', [0, 512]],
    ['c', 'float16', [1_000_000, 768]],
    ['d', 'float32', [7]],
    ['e', 'float16', [123456789012, 1]],
  ];
  py(
    `import numpy as np\n` +
      cases
        .map(
          ([name, dtype, shape]) =>
            `f=open('${name}.hdr','wb'); np.lib.format.write_array_header_1_0(f, {'descr': np.lib.format.dtype_to_descr(np.dtype('${dtype}')), 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''})}); f.close()`,
        )
        .join('\n') +
      `\nnp.save('real.npy', np.zeros((3, 4), dtype=np.float16))\n`,
  );
  for (const [name, dtype, shape] of cases) {
    const ours = encodeNpyHeader(dtype, shape);
    const theirs = readFileSync(join(dir, `${name}.hdr`));
    assert.deepEqual(Buffer.from(ours), theirs, `header ${name} ${dtype} (${shape.join(', ')})`);
    assert.equal(ours.length % 64, 0);
  }
  const real = readFileSync(join(dir, 'real.npy'));
  const h = encodeNpyHeader('float16', [3, 4]);
  assert.deepEqual(Buffer.from(h), real.subarray(0, h.length));
  assert.equal(real.length, h.length + 3 * 4 * 2);
});

test('encodeNpyHeader falls back to version 2.0 for a header over 65535 bytes, and parses back', () => {
  const shape = Array.from({ length: 25_000 }, () => 1);
  const h = encodeNpyHeader('float32', shape);
  assert.equal(h[6], 2);
  assert.equal(h.length % 64, 0);
  assert.equal(npyHeaderSize(h, 'big'), h.length);
  const parsed = parseNpyHeader(h, 'big');
  assert.equal(parsed.shape.length, 25_000);
  assert.deepEqual(parsed.version, [2, 0]);
});

test('parseNpyHeader reads numpy files of versions 1, 2, 3 and many dtypes', () => {
  py(`import numpy as np
from numpy.lib import format as F
np.save('f2.npy', np.ones((5, 3), dtype='<f2'))
np.save('f4.npy', np.ones((2, 8), dtype='<f4'))
np.save('f8.npy', np.ones((2, 2), dtype='<f8'))
np.save('u1.npy', np.ones((4,), dtype='|u1'))
np.save('fortran.npy', np.asfortranarray(np.ones((3, 2), dtype='<f4')))
np.save('scalar.npy', np.float32(1))
for v in (2, 3):
    with open(f'v{v}.npy', 'wb') as f:
        F.write_array(f, np.ones((6, 4), dtype='<f2'), version=(v, 0))
`);
  const read = (n: string): Uint8Array => new Uint8Array(readFileSync(join(dir, n)));
  const f2 = parseNpyHeader(read('f2.npy'), 'f2.npy');
  assert.deepEqual(
    { ...f2, version: [...f2.version] },
    {
      dtype: 'float16',
      descr: '<f2',
      shape: [5, 3],
      fortranOrder: false,
      headerLength: 128,
      bytesPerItem: 2,
      bytesPerRow: 6,
      dataLength: 30,
      version: [1, 0],
    },
  );
  assert.equal(parseNpyHeader(read('f4.npy'), 'f4.npy').dtype, 'float32');
  assert.equal(parseNpyHeader(read('f8.npy'), 'f8.npy').bytesPerItem, 8);
  const u1 = parseNpyHeader(read('u1.npy'), 'u1.npy');
  assert.deepEqual([u1.dtype, u1.descr, [...u1.shape]], ['uint8', '|u1', [4]]);
  assert.equal(parseNpyHeader(read('fortran.npy'), 'fortran.npy').fortranOrder, true);
  assert.deepEqual([...parseNpyHeader(read('scalar.npy'), 'scalar.npy').shape], []);
  for (const v of [2, 3]) {
    const bytes = read(`v${v}.npy`);
    const h = parseNpyHeader(bytes, `v${v}.npy`);
    assert.deepEqual([...h.version], [v, 0]);
    assert.deepEqual([...h.shape], [6, 4]);
    assert.equal(bytes.length, h.headerLength + h.dataLength);
    assertEmbeddingNpy(h, `v${v}.npy`, bytes.length);
  }
});

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isGlimpseError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  return 'no error';
}

test('malformed, truncated and unsupported npy files give coded errors naming the file', () => {
  const good = new Uint8Array(readFileSync(join(dir, 'f2.npy')));
  assert.match(
    code(() => parseNpyHeader(good.subarray(0, 5), 'x.npy')),
    /^GLIMPSE_E_NPY_INVALID: .*x\.npy.*truncated/,
  );
  assert.match(
    code(() => parseNpyHeader(good.subarray(0, 60), 'x.npy')),
    /^GLIMPSE_E_NPY_INVALID: .*x\.npy.*truncated/,
  );
  const badMagic = good.slice();
  badMagic[1] = 0x41;
  assert.match(
    code(() => parseNpyHeader(badMagic, 'm.npy')),
    /^GLIMPSE_E_NPY_INVALID: .*magic.*m\.npy/,
  );
  const badVersion = good.slice();
  badVersion[6] = 9;
  assert.match(
    code(() => parseNpyHeader(badVersion, 'v.npy')),
    /^GLIMPSE_E_NPY_INVALID: .*version 9\.0/,
  );
  const noShape = good.slice();
  noShape.set(new TextEncoder().encode("'shapx'"), good.indexOf(0x27, 40) /* first quote after descr */);
  assert.match(
    code(() => parseNpyHeader(noShape, 's.npy')),
    /^GLIMPSE_E_NPY_INVALID: .*s\.npy/,
  );
  const bigEndian = good.slice();
  bigEndian[good.indexOf('<'.charCodeAt(0))] = '>'.charCodeAt(0);
  assert.match(
    code(() => parseNpyHeader(bigEndian, 'be.npy')),
    /^GLIMPSE_E_NPY_UNSUPPORTED: .*be\.npy.*'>f2'/,
  );

  const read = (n: string): Uint8Array => new Uint8Array(readFileSync(join(dir, n)));
  const f8 = parseNpyHeader(read('f8.npy'), 'f8.npy');
  assert.equal(
    code(() => assertEmbeddingNpy(f8, 'f8.npy')),
    "GLIMPSE_E_NPY_UNSUPPORTED: Expected dtype float16 ('<f2') or float32 ('<f4') in f8.npy but received '<f8' (float64)",
  );
  const fortran = parseNpyHeader(read('fortran.npy'), 'fortran.npy');
  assert.equal(
    code(() => assertEmbeddingNpy(fortran, 'fortran.npy')),
    'GLIMPSE_E_NPY_UNSUPPORTED: Expected a C-order array in fortran.npy but received fortran_order True',
  );
  const oneD = parseNpyHeader(encodeNpyHeader('float32', [7]), 'one.npy');
  assert.match(
    code(() => assertEmbeddingNpy(oneD, 'one.npy')),
    /^GLIMPSE_E_NPY_UNSUPPORTED: .*2-D.*\(7\)/,
  );
  const f2 = parseNpyHeader(good, 'f2.npy');
  assert.equal(
    code(() => assertEmbeddingNpy(f2, 'f2.npy', good.length)),
    'no error',
  );
  assert.equal(
    code(() => assertEmbeddingNpy(f2, 'f2.npy', good.length - 1)),
    'GLIMPSE_E_NPY_INVALID: Expected 158 bytes in f2.npy (shape (5, 3), float16) but the file has 157: it is truncated',
  );
});

test('float32ToFloat16 rounds exactly as numpy (nearest-even, subnormals, overflow, inf, NaN)', () => {
  // Bit patterns: every exponent, random mantissas, plus the tie and boundary cases.
  const bits: number[] = [];
  let seed = 12345;
  const rnd = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed;
  };
  for (let sign = 0; sign < 2; sign++) {
    for (let exp = 0; exp < 256; exp++) {
      const base = ((sign << 31) | (exp << 23)) >>> 0;
      for (const m of [
        0, 1, 0x1000, 0x1001, 0x0fff, 0x3000, 0x2000, 0x7fffff, 0x7ff000, 0x400000, 0x7fe000,
      ]) {
        bits.push((base | m) >>> 0);
      }
      for (let k = 0; k < 200; k++) bits.push((base | (rnd() & 0x7fffff)) >>> 0);
    }
  }
  const src = new Float32Array(new Uint32Array(bits).buffer);
  const ours = float32ToFloat16(src);
  writeFileSync(join(dir, 'f32.bin'), new Uint8Array(src.buffer));
  py(`import numpy as np
np.fromfile('f32.bin', dtype='<f4').astype('<f2').tofile('f16.bin')`);
  const theirs = new Uint16Array(new Uint8Array(readFileSync(join(dir, 'f16.bin'))).buffer);
  assert.equal(theirs.length, ours.length);
  let mismatches = 0;
  for (let i = 0; i < ours.length; i++) {
    const o = ours[i]!;
    const t = theirs[i]!;
    const isNaN16 = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN16(t) ? !isNaN16(o) || (o & 0x8000) !== (t & 0x8000) : o !== t) {
      if (mismatches++ < 5)
        console.log(`bits 0x${bits[i]!.toString(16)}: ours 0x${o.toString(16)} numpy 0x${t.toString(16)}`);
    }
  }
  assert.equal(mismatches, 0);
  // Spot checks that do not depend on numpy.
  assert.deepEqual(
    [
      ...float32ToFloat16(
        new Float32Array([1, -2, 0.1, 65504, 65519, 65520, Infinity, -0, 2 ** -24, 2 ** -25]),
      ),
    ],
    [0x3c00, 0xc000, 0x2e66, 0x7bff, 0x7bff, 0x7c00, 0x7c00, 0x8000, 0x0001, 0x0000],
  );
  const dst = new Uint16Array(4);
  assert.equal(float32ToFloat16(new Float32Array([1, 2]), dst), dst);
  assert.match(
    code(() => float32ToFloat16(new Float32Array(3), new Uint16Array(2))),
    /^GLIMPSE_E_ARG_INVALID/,
  );
});

test('float16ToFloat32 is exact for all 65536 halves (as numpy)', () => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  const ours = new Uint32Array(float16ToFloat32(all).buffer);
  writeFileSync(join(dir, 'all16.bin'), new Uint8Array(all.buffer));
  py(`import numpy as np
np.fromfile('all16.bin', dtype='<f2').astype('<f4').tofile('all32.bin')`);
  const theirs = new Uint32Array(new Uint8Array(readFileSync(join(dir, 'all32.bin'))).buffer);
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) {
      // Payload and sign kept (numpy may set the quiet bit on signalling NaNs).
      assert.equal(ours[h]! & 0xffbfffff, theirs[h]! & 0xffbfffff, `half 0x${h.toString(16)}`);
    } else {
      assert.equal(ours[h], theirs[h], `half 0x${h.toString(16)}`);
    }
  }
  // Round trip: every non-NaN half survives float16 → float32 → float16.
  const back = float32ToFloat16(float16ToFloat32(all));
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue;
    assert.equal(back[h], h);
  }
});

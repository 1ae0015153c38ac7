/**
 * Deterministic model inputs for tests and benchmarks of synthesized CLIP models: smooth, image-like
 * pixel tensors (already normalized, roughly in [-2, 2]) and token sequences in CLIP's format.
 */

/**
 * `count` images [count, 3, size, size], each a different mix of gradients and waves.
 *
 * @example
 *   const px = synthPixels(2); // Float32Array of 2 · 3 · 224 · 224
 */
export function synthPixels(count: number, size = 224, salt = 0): Float32Array {
  const out = new Float32Array(count * 3 * size * size);
  let i = 0;
  for (let n = 0; n < count; n++) {
    const k = n + salt * 101;
    const fx = 1 + ((k * 7) % 5);
    const fy = 1 + ((k * 3) % 4);
    const phase = k * 0.7;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const u = x / size;
          const v = y / size;
          out[i++] =
            1.2 * Math.sin(2 * Math.PI * (fx * u + c * 0.13) + phase) * Math.cos(2 * Math.PI * fy * v - c) +
            0.6 * (u - v) * (k % 2 === 0 ? 1 : -1) +
            0.3 * Math.sin(37.3 * u * v + k + c);
        }
      }
    }
  }
  return out;
}

export const BOS = 49406n;
export const EOS = 49407n;

/**
 * Token ids [texts.length, seq]: `<bos> ...ids <eos>` then `pad` (0 or 49407) to `seq`, with the
 * matching attention mask (1 up to and including the end token).
 */
export function synthTokens(
  texts: readonly (readonly number[])[],
  seq: number,
  pad: bigint = 0n,
): { ids: BigInt64Array; mask: BigInt64Array } {
  const ids = new BigInt64Array(texts.length * seq).fill(pad);
  const mask = new BigInt64Array(texts.length * seq);
  texts.forEach((tokens, r) => {
    const row = [BOS, ...tokens.map((t) => BigInt(t)), EOS];
    if (row.length > seq) throw new Error(`text ${r} needs ${row.length} > ${seq} positions`);
    row.forEach((t, j) => {
      ids[r * seq + j] = t;
      mask[r * seq + j] = 1n;
    });
  });
  return { ids, mask };
}

/** Cosine similarity of row `i` of `a` and row `j` of `b` (rows of length `dim`). */
export function rowCosine(
  a: ArrayLike<number>,
  i: number,
  b: ArrayLike<number>,
  j: number,
  dim: number,
): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let k = 0; k < dim; k++) {
    const x = a[i * dim + k]!;
    const y = b[j * dim + k]!;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return dot / Math.sqrt(na * nb);
}

/** Largest |a[k] - b[k]|. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let k = 0; k < a.length; k++) m = Math.max(m, Math.abs(a[k]! - b[k]!));
  return m;
}

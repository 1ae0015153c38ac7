import type { ClipTokenizer } from '../decode/tokenize.js';
import type { TextSession } from '../infer/onnx.js';

/** Texts per sub-batch after sorting by length (small batches cost little on a CPU; padding costs a lot). */
export const TEXT_SUB_BATCH = 8;

/**
 * Embeds texts with length bucketing: the texts are sorted by token count and run in small sub-batches,
 * each padded only to its own longest text, then the rows are put back in input order. Exact for CLIP
 * (causal text tower, end-token pooling: padding after the end token changes nothing), and much less
 * padding than one batch padded to its longest caption.
 *
 * @example
 *   const rows = await embedTextsBucketed(tokenizer, session, ['a dog', 'a very long caption …']);
 */
export async function embedTextsBucketed(
  tokenizer: ClipTokenizer,
  session: TextSession,
  texts: readonly string[],
  subBatch = TEXT_SUB_BATCH,
): Promise<{ data: Float32Array; dimension: number }> {
  const lengths = tokenizer.tokenize(texts).map((ids) => ids.length);
  const order = texts.map((_, i) => i).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  let out: Float32Array | undefined;
  let dimension = 0;
  for (let start = 0; start < order.length; start += subBatch) {
    const idx = order.slice(start, start + subBatch);
    const enc = tokenizer.encodeBatch(idx.map((i) => texts[i]!));
    const m = await session.embed(enc.inputIds, enc.attentionMask, enc.batch, enc.length);
    dimension = m.dimension;
    out ??= new Float32Array(texts.length * dimension);
    idx.forEach((i, row) => out!.set(m.data.subarray(row * dimension, (row + 1) * dimension), i * dimension));
  }
  return { data: out ?? new Float32Array(0), dimension };
}

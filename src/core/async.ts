/**
 * Runs `fn` over `items` with at most `limit` calls in flight; results keep the input order.
 *
 * @example
 *   const sizes = await mapLimit(urls, 8, (url) => storage.stat(url).then((s) => s.size));
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

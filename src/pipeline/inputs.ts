import { GlimpseError } from '../errors/index.js';

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Turns an image input into what the decoder takes: bytes stay bytes, local paths stay paths (the decode
 * worker reads them), and http(s) URLs are downloaded with a byte cap and a timeout.
 */
export async function readInput(
  input: string | Uint8Array,
  maxBytes = DEFAULT_MAX_BYTES,
  timeoutMs = 30_000,
): Promise<string | Uint8Array> {
  if (typeof input !== 'string' || !/^https?:\/\//i.test(input)) return input;
  let res: Response;
  try {
    res = await fetch(input, { redirect: 'follow', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new GlimpseError(
      'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED',
      `Expected to download ${input} but ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (!res.ok || !res.body) {
    throw new GlimpseError(
      'GLIMPSE_E_SOURCE_DOWNLOAD_FAILED',
      `Expected HTTP 200 from ${input} but received ${res.status}`,
      { details: { status: res.status } },
    );
  }
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body.cancel();
    throw new GlimpseError(
      'GLIMPSE_E_IMAGE_TOO_LARGE',
      `Expected at most ${maxBytes} bytes from ${input} but it declares ${declared}`,
    );
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += chunk.byteLength;
    if (total > maxBytes) {
      throw new GlimpseError(
        'GLIMPSE_E_IMAGE_TOO_LARGE',
        `Expected at most ${maxBytes} bytes from ${input} but received more`,
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Image inputs of requests, turned into bytes under the configured limits: base64 strings (size checked
 * before decoding), URLs (through the SSRF guard), local paths (through the path guard) and uploads.
 * The model only ever receives bytes: it never opens a path or a URL a client gave.
 */
import { GlimpseError } from '../errors/index.js';
import type { PathGuard } from './path-guard.js';
import type { UrlGuard } from './net-guard.js';

export interface ImageSources {
  readonly urls: UrlGuard;
  readonly paths: PathGuard;
  readonly maxBytes: number;
}

/**
 * Decodes a base64 image (standard or URL-safe alphabet, optional `data:…;base64,` prefix, whitespace
 * ignored). GLIMPSE_E_SERVER_BODY_TOO_LARGE when the decoded size would exceed `maxBytes` (checked before
 * decoding), GLIMPSE_E_SERVER_BAD_REQUEST when it is not base64.
 *
 * @example
 *   decodeBase64Image('iVBORw0KGgo…', 10_000_000); // Uint8Array of the PNG file
 */
export function decodeBase64Image(text: string, maxBytes: number, field = 'image'): Uint8Array {
  let body = text;
  const comma = body.startsWith('data:') ? body.indexOf(',') : -1;
  if (comma >= 0) body = body.slice(comma + 1);
  body = body.replace(/\s+/g, '');
  const padding = body.endsWith('==') ? 2 : body.endsWith('=') ? 1 : 0;
  const size = Math.floor((body.length * 3) / 4) - padding;
  if (size > maxBytes) {
    throw new GlimpseError(
      'GLIMPSE_E_SERVER_BODY_TOO_LARGE',
      `Expected at most ${maxBytes} bytes of image in ${field} but the base64 text holds ${size}`,
    );
  }
  if (body.length === 0 || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(body) || body.length % 4 === 1) {
    throw new GlimpseError(
      'GLIMPSE_E_SERVER_BAD_REQUEST',
      `Expected base64 image bytes in ${field} but received text that is not base64`,
    );
  }
  return Buffer.from(body, body.includes('-') || body.includes('_') ? 'base64url' : 'base64');
}

/**
 * The bytes of an image given by URL (guarded fetch: public addresses only, capped).
 *
 * @example
 *   const bytes = await imageFromUrl(ctx.images, 'https://example.com/cat.jpg');
 */
export function imageFromUrl(sources: ImageSources, url: string, signal?: AbortSignal): Promise<Uint8Array> {
  return sources.urls.fetch(url, signal);
}

/**
 * The bytes of an image given by local path (allowed roots only; refused when there are none).
 *
 * @example
 *   const bytes = await imageFromPath(ctx.images, 'cats/tom.jpg'); // resolved against the roots
 */
export function imageFromPath(sources: ImageSources, path: string): Promise<Uint8Array> {
  if (!sources.paths.enabled) {
    throw new GlimpseError(
      'GLIMPSE_E_SERVER_FORBIDDEN_PATH',
      `Expected no local paths (this server allows none; upload the image instead) but received ${JSON.stringify(path.slice(0, 300))}`,
    );
  }
  return sources.paths.readFile(path, sources.maxBytes);
}

/**
 * Base64 of a stored item's image file when it is readable under the allowed roots, else undefined.
 *
 * @example
 *   const image = await storedImageBase64(ctx.images, hit.metadata['image_path']); // '/9j/4AAQ…' or undefined
 */
export async function storedImageBase64(
  sources: ImageSources,
  imagePath: unknown,
): Promise<string | undefined> {
  if (typeof imagePath !== 'string' || imagePath === '' || !sources.paths.enabled) return undefined;
  try {
    return Buffer.from(await sources.paths.readFile(imagePath, sources.maxBytes)).toString('base64');
  } catch {
    return undefined;
  }
}

/**
 * The media type of image bytes from their signature (for serving stored images).
 *
 * @example
 *   sniffImageType(jpegBytes); // 'image/jpeg'
 */
export function sniffImageType(bytes: Uint8Array): string {
  const b = bytes;
  if (b[0] === 0xff && b[1] === 0xd8) return 'image/jpeg';
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'image/png';
  if (b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return 'image/gif';
  if (b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57 && b[9] === 0x45) {
    return 'image/webp';
  }
  if (b[4] === 0x66 && b[5] === 0x74 && b[6] === 0x79 && b[7] === 0x70) return 'image/avif';
  return 'application/octet-stream';
}

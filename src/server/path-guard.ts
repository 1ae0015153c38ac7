/**
 * Local file access for the server: a path is readable only when its real path (symlinks resolved by
 * fs.realpath) lies inside one of the configured roots (themselves real paths). `..` segments and symlinks
 * that point outside are refused; a path outside every root is refused before the file system is touched,
 * so answers never reveal which files exist elsewhere. Messages name the path the client gave, never a root.
 */
import { open, realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { GlimpseError } from '../errors/index.js';

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

function forbidden(given: string): GlimpseError {
  return new GlimpseError(
    'GLIMPSE_E_SERVER_FORBIDDEN_PATH',
    `Expected a path under one of the server's allowed roots but received ${JSON.stringify(given.slice(0, 300))}`,
  );
}

/** Reads files under allowed roots only. */
export class PathGuard {
  private constructor(private readonly roots: readonly string[]) {}

  /**
   * Resolves the roots to real paths (missing roots are dropped).
   *
   * @example
   *   const guard = await PathGuard.create(['/srv/photos']);
   *   const bytes = await guard.readFile('/srv/photos/cat.jpg', 10_000_000);
   */
  static async create(roots: readonly string[]): Promise<PathGuard> {
    const real: string[] = [];
    for (const r of roots) {
      try {
        real.push(await realpath(resolve(r)));
      } catch {
        // a root that does not exist allows nothing
      }
    }
    return new PathGuard(real);
  }

  get enabled(): boolean {
    return this.roots.length > 0;
  }

  /**
   * The real path of an allowed file. Relative paths are tried against each root in order. Throws
   * GLIMPSE_E_SERVER_FORBIDDEN_PATH outside the roots and GLIMPSE_E_SERVER_NOT_FOUND for a missing file.
   *
   * @example
   *   await guard.resolve('cat.jpg');            // '/srv/photos/cat.jpg'
   *   await guard.resolve('/srv/photos/../etc'); // throws GLIMPSE_E_SERVER_FORBIDDEN_PATH
   */
  async resolve(given: string): Promise<string> {
    if (typeof given !== 'string' || given === '' || given.includes('\0')) throw forbidden(String(given));
    const candidates = isAbsolute(given) ? [resolve(given)] : this.roots.map((r) => resolve(r, given));
    const lexical = candidates.filter((c) => this.roots.some((r) => inside(r, c)));
    if (lexical.length === 0) throw forbidden(given);
    for (const candidate of lexical) {
      let real: string;
      try {
        real = await realpath(candidate);
      } catch {
        continue;
      }
      if (this.roots.some((r) => inside(r, real))) return real;
      throw forbidden(given);
    }
    throw new GlimpseError(
      'GLIMPSE_E_SERVER_NOT_FOUND',
      `Expected a file at ${JSON.stringify(given.slice(0, 300))} but there is none`,
    );
  }

  /**
   * Reads an allowed file, at most `maxBytes` (GLIMPSE_E_IMAGE_TOO_LARGE beyond).
   *
   * @example
   *   const bytes = await guard.readFile('cat.jpg', 10 * 1024 * 1024);
   */
  async readFile(given: string, maxBytes: number): Promise<Uint8Array> {
    const real = await this.resolve(given);
    const handle = await open(real, 'r').catch(() => {
      throw new GlimpseError(
        'GLIMPSE_E_IMAGE_UNREADABLE',
        `Expected to read ${JSON.stringify(given)} but cannot`,
      );
    });
    try {
      const info = await handle.stat();
      if (!info.isFile()) {
        throw new GlimpseError(
          'GLIMPSE_E_IMAGE_UNREADABLE',
          `Expected a file at ${JSON.stringify(given)} but it is not`,
        );
      }
      if (info.size > maxBytes) {
        throw new GlimpseError(
          'GLIMPSE_E_IMAGE_TOO_LARGE',
          `Expected at most ${maxBytes} bytes in ${JSON.stringify(given)} but it has ${info.size}`,
        );
      }
      const buf = Buffer.alloc(info.size);
      let off = 0;
      while (off < info.size) {
        const { bytesRead } = await handle.read(buf, off, info.size - off, off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      return buf.subarray(0, off);
    } finally {
      await handle.close();
    }
  }
}

/**
 * Tar shards, read as streams, never extracted: member names are strings here and never become file paths.
 * `readTarMembers` wraps tar-stream (streaming parse of any Readable: a local file, an HTTP body, an S3
 * object); `scanTarHeaders` is a header-only pre-scan of a local file (one 512-byte read per member, the
 * data skipped by offset) used to count samples before streaming.
 */
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { extract as tarExtract } from 'tar-stream';

/** One regular-file member of a tar stream. */
export interface TarMember {
  /** The member's path inside the archive (after pax / GNU long-name headers). */
  readonly name: string;
  /** Size in bytes, from the header. */
  readonly size: number;
  /** The bytes, unless the member is larger than `maxMemberBytes` (then drained and dropped). */
  readonly data: Uint8Array | undefined;
}

export interface ReadTarOptions {
  /** Members larger than this are drained without being kept (`data` undefined). Default 64 MiB. */
  maxMemberBytes?: number;
  signal?: AbortSignal;
}

const REGULAR = new Set(['file', 'contiguous-file']);

/**
 * Streams the regular-file members of a tar archive in archive order (directories, links and devices are
 * skipped). A truncated or corrupt archive throws after the members before the damage were yielded; the
 * member being read when the damage is found is never yielded. Closing the generator early destroys the
 * input stream.
 *
 * @example
 *   const stream = await storage.createReadStream('s3://bucket/shards/00000.tar');
 *   for await (const m of readTarMembers(stream)) console.log(m.name, m.size);
 */
export async function* readTarMembers(
  input: Readable,
  options: ReadTarOptions = {},
): AsyncGenerator<TarMember> {
  const maxMemberBytes = options.maxMemberBytes ?? 64 * 1024 * 1024;
  const extract = tarExtract();
  const onInputError = (err: Error): void => {
    extract.destroy(err);
  };
  input.on('error', onInputError);
  input.pipe(extract);
  try {
    for await (const entry of extract) {
      options.signal?.throwIfAborted();
      const header = entry.header;
      const size = header.size ?? 0;
      if (!REGULAR.has(header.type ?? 'file')) {
        await drain(entry);
        continue;
      }
      if (size > maxMemberBytes) {
        await drain(entry);
        yield { name: header.name, size, data: undefined };
        continue;
      }
      const chunks: Buffer[] = [];
      let got = 0;
      for await (const chunk of entry as AsyncIterable<Buffer>) {
        chunks.push(chunk);
        got += chunk.length;
      }
      yield {
        name: header.name,
        size,
        data: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, got),
      };
    }
  } finally {
    input.off('error', onInputError);
    input.unpipe(extract);
    input.destroy();
    extract.destroy();
  }
}

/** Reads a member's bytes without keeping them. */
async function drain(entry: AsyncIterable<unknown>): Promise<void> {
  for await (const _chunk of entry) {
    // discarded
  }
}

/** A member found by the header-only scan. */
export interface ScannedMember {
  readonly name: string;
  readonly size: number;
}

export interface TarScan {
  readonly members: ScannedMember[];
  /** Why the scan stopped early (truncated or corrupt archive); the members before are listed. */
  readonly damage: string | undefined;
}

const BLOCK = 512;

function cString(block: Uint8Array, start: number, length: number): string {
  let end = start;
  while (end < start + length && block[end] !== 0) end++;
  return Buffer.from(block.buffer, block.byteOffset + start, end - start).toString('utf8');
}

/** Octal (NUL/space terminated) or GNU base-256 numbers. */
function tarNumber(block: Uint8Array, start: number, length: number): number {
  const first = block[start]!;
  if (first & 0x80) {
    let n = first & 0x7f;
    for (let i = 1; i < length; i++) n = n * 256 + block[start + i]!;
    return n;
  }
  const text = cString(block, start, length).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) return Number.NaN;
  return parseInt(text, 8);
}

function checksumOk(block: Uint8Array): boolean {
  const stored = tarNumber(block, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** The `path` and `size` records of a pax extended header. */
function parsePax(data: Uint8Array): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  const text = Buffer.from(data.buffer, data.byteOffset, data.length).toString('utf8');
  let i = 0;
  while (i < text.length) {
    const space = text.indexOf(' ', i);
    if (space < 0) break;
    const len = Number(text.slice(i, space));
    if (!Number.isInteger(len) || len <= 0) break;
    const record = text.slice(space + 1, i + len - 1);
    const eq = record.indexOf('=');
    if (eq > 0) {
      const k = record.slice(0, eq);
      const v = record.slice(eq + 1);
      if (k === 'path') out.path = v;
      else if (k === 'size' && /^\d+$/.test(v)) out.size = Number(v);
    }
    i += len;
  }
  return out;
}

/**
 * Lists the regular-file members of a local tar file by reading only the headers (the data is skipped by
 * offset), following pax and GNU long-name headers. Stops at the end-of-archive block; a truncated or
 * corrupt archive returns the complete members before the damage and says why in `damage`.
 *
 * @example
 *   const { members, damage } = await scanTarHeaders('shards/00000.tar');
 *   console.log(members.length, damage ?? 'intact');
 */
export async function scanTarHeaders(path: string): Promise<TarScan> {
  const handle = await open(path, 'r');
  const members: ScannedMember[] = [];
  try {
    const { size: fileSize } = await handle.stat();
    const block = new Uint8Array(BLOCK);
    let offset = 0;
    let longName: string | undefined;
    let pax: { path?: string; size?: number } = {};
    for (;;) {
      if (offset + BLOCK > fileSize) {
        return {
          members,
          damage: `Unexpected end of data at byte ${offset} (no end-of-archive block)`,
        };
      }
      const { bytesRead } = await handle.read(block, 0, BLOCK, offset);
      if (bytesRead < BLOCK) return { members, damage: `Unexpected end of data at byte ${offset}` };
      if (isZeroBlock(block)) return { members, damage: undefined };
      if (!checksumOk(block)) return { members, damage: `Invalid tar header checksum at byte ${offset}` };
      const type = String.fromCharCode(block[156]!);
      let size = tarNumber(block, 124, 12);
      if (!Number.isFinite(size)) return { members, damage: `Invalid tar header size at byte ${offset}` };
      if (pax.size !== undefined && type !== 'x' && type !== 'g') size = pax.size;
      const dataStart = offset + BLOCK;
      const next = dataStart + Math.ceil(size / BLOCK) * BLOCK;
      if (dataStart + size > fileSize) {
        return { members, damage: `Unexpected end of data inside a member at byte ${dataStart}` };
      }
      if (type === 'L' || type === 'x') {
        const data = new Uint8Array(size);
        await handle.read(data, 0, size, dataStart);
        if (type === 'L') longName = cString(data, 0, size);
        else pax = { ...pax, ...parsePax(data) };
        offset = next;
        continue;
      }
      if (type === '0' || type === '\0' || type === '7') {
        const magic = cString(block, 257, 6);
        const prefix = magic === 'ustar' ? cString(block, 345, 155) : '';
        const base = cString(block, 0, 100);
        const name = pax.path ?? longName ?? (prefix !== '' ? `${prefix}/${base}` : base);
        members.push({ name, size });
      }
      longName = undefined;
      pax = {};
      offset = next;
    }
  } finally {
    await handle.close();
  }
}

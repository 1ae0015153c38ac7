/**
 * WebDataset source: tar shards (local paths, brace patterns, globs, `.txt` lists, `http(s)://`, `s3://`)
 * streamed member by member and grouped into samples by key, never extracted to disk.
 */
import { mapLimit } from '../core/async.js';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { GlimpseError, isGlimpseError } from '../errors/index.js';
import { invalidParameterError } from '../core/validate.js';
import { localPath, storageKind, type StorageOptions } from '../storage/index.js';
import { expandInputs } from './shards.js';
import { StorageSet } from './storages.js';
import { readTarMembers, scanTarHeaders, type TarMember } from './tar.js';
import type { Sample, SampleSource, SourceIssue } from './types.js';

export interface WebDatasetSourceOptions {
  /**
   * Extensions of the image member, in order of preference (`jpg;png;webp` or an array): the first one a
   * sample has wins. Default `jpg`, as clip-retrieval.
   */
  imageKeys?: string | readonly string[];
  /** Extension of the caption member (default `txt`). */
  captionKey?: string;
  /** Samples must have an image member (default true). */
  enableImage?: boolean;
  /**
   * Samples must have a caption member (default `auto`: on when one of the first 64 members of the first
   * shard is a caption).
   */
  enableText?: boolean | 'auto';
  /** Read the `json` member as metadata (default true). */
  enableMetadata?: boolean;
  /** Only the first N samples. */
  subsetSize?: number;
  /** Storage options (S3 endpoint, HTTP timeouts) for remote shards. */
  storage?: StorageOptions;
  /** Members larger than this are not kept: the sample fails with GLIMPSE_E_IMAGE_TOO_LARGE (default 64 MiB). */
  maxMemberBytes?: number;
  /** Incomplete samples held while waiting for their other members (default 512 samples, 256 MiB). */
  maxPendingSamples?: number;
  maxPendingBytes?: number;
}

/** A WebDataset source, with what was resolved while opening it. */
export interface WebDatasetSource extends SampleSource {
  readonly shards: readonly string[];
  /** Size in bytes of each shard (as stored: compressed for `.tar.gz`), in the order of `shards`. */
  readonly shardBytes: readonly number[];
  readonly enableImage: boolean;
  readonly enableText: boolean;
  /** True when `size` came from a header-only pre-scan (every shard local and uncompressed). */
  readonly prescanned: boolean;
}

/** Members of the first shard looked at to decide `enableText: 'auto'`. */
const PEEK_MEMBERS = 64;
/** Smallest tar footprint of one sample: one 512-byte header. */
const TAR_BLOCK = 512;
/** Largest expansion of deflate (used to bound the samples of a gzipped shard). */
const DEFLATE_MAX_RATIO = 1032;

/**
 * A member's sample key and extension, per WebDataset convention: the key is the path up to the first dot
 * of the basename, the extension the rest (lower-cased). Hidden basenames (`.x`, `._x`) give undefined.
 *
 * @example
 *   splitMemberName('a/b/0001.seg.png'); // { key: 'a/b/0001', ext: 'seg.png' }
 */
export function splitMemberName(name: string): { key: string; ext: string } | undefined {
  const slash = name.lastIndexOf('/');
  const base = name.slice(slash + 1);
  if (base === '' || base.startsWith('.')) return undefined;
  const dot = base.indexOf('.');
  if (dot < 0) return { key: name, ext: '' };
  return { key: name.slice(0, slash + 1 + dot), ext: base.slice(dot + 1).toLowerCase() };
}

function parseKeys(value: string | readonly string[] | undefined, fallback: string, name: string): string[] {
  const list = (typeof value === 'string' ? value.split(/[;,]/) : (value ?? [fallback]))
    .map((k) => k.trim().replace(/^\./, '').toLowerCase())
    .filter((k) => k !== '');
  if (list.length === 0)
    throw invalidParameterError(name, 'one or more member extensions such as "jpg;png"', value);
  return list;
}

function isGzip(url: string): boolean {
  return /\.(tar\.gz|tgz)$/i.test(url.replace(/[?#].*$/, ''));
}

interface Part {
  readonly data: Uint8Array | undefined;
  readonly size: number;
}

interface Group {
  readonly key: string;
  image?: Part & { rank: number };
  caption?: Part;
  json?: Part;
  bytes: number;
}

interface Roles {
  readonly imageKeys: readonly string[];
  readonly captionKey: string;
  readonly enableImage: boolean;
  readonly enableText: boolean;
  readonly enableMetadata: boolean;
}

/**
 * Groups a shard's members into samples. Members of one key need not be adjacent: incomplete samples wait
 * (bounded) for the rest. A sample is emitted, in order of its key's first appearance, once it has every
 * member it can use (image, caption, json as enabled), at the end of the shard, or when the wait bound is
 * reached (then with what it has, if that includes the required members).
 */
class SampleAssembler {
  private readonly pending = new Map<string, Group>();
  private readonly emitted = new Set<string>();
  private pendingBytes = 0;
  readonly skipped = { missingImage: 0, missingCaption: 0, lateMembers: 0 };

  constructor(
    private readonly roles: Roles,
    private readonly maxPendingSamples: number,
    private readonly maxPendingBytes: number,
  ) {}

  /** Adds a member; returns the groups now ready, in order. */
  add(member: TarMember): Group[] {
    const split = splitMemberName(member.name);
    if (split === undefined) return [];
    const { key, ext } = split;
    if (this.emitted.has(key)) {
      this.skipped.lateMembers++;
      return [];
    }
    let group = this.pending.get(key);
    if (!group) this.pending.set(key, (group = { key, bytes: 0 }));
    const part: Part = { data: member.data, size: member.size };
    const kept = member.data?.length ?? 0;
    const { roles } = this;
    const rank = roles.imageKeys.indexOf(ext);
    if (roles.enableImage && rank >= 0) {
      if (group.image === undefined || rank < group.image.rank) {
        this.pendingBytes += kept - (group.image?.data?.length ?? 0);
        group.bytes += kept - (group.image?.data?.length ?? 0);
        group.image = { ...part, rank };
      }
    } else if (roles.enableText && ext === roles.captionKey) {
      if (group.caption === undefined) {
        group.caption = part;
        group.bytes += kept;
        this.pendingBytes += kept;
      }
    } else if (roles.enableMetadata && ext === 'json') {
      if (group.json === undefined) {
        group.json = part;
        group.bytes += kept;
        this.pendingBytes += kept;
      }
    }
    const ready: Group[] = [];
    while (this.pending.size > this.maxPendingSamples || this.pendingBytes > this.maxPendingBytes) {
      const head = this.shift();
      if (head && this.hasRequired(head)) ready.push(head);
    }
    for (;;) {
      const head = this.pending.values().next();
      if (head.done || !this.isComplete(head.value)) break;
      ready.push(this.shift()!);
    }
    return ready;
  }

  /** End of shard (or damage): every waiting group with its required members, in order. */
  flush(): Group[] {
    const out: Group[] = [];
    while (this.pending.size > 0) {
      const g = this.shift()!;
      if (this.hasRequired(g)) out.push(g);
    }
    this.emitted.clear();
    return out;
  }

  private shift(): Group | undefined {
    const head = this.pending.values().next();
    if (head.done) return undefined;
    const g = head.value;
    this.pending.delete(g.key);
    this.pendingBytes -= g.bytes;
    this.emitted.add(g.key);
    return g;
  }

  private hasRequired(g: Group): boolean {
    if (this.roles.enableImage && g.image === undefined) {
      this.skipped.missingImage++;
      return false;
    }
    if (this.roles.enableText && g.caption === undefined) {
      this.skipped.missingCaption++;
      return false;
    }
    return true;
  }

  private isComplete(g: Group): boolean {
    const { roles } = this;
    return (
      (!roles.enableImage || g.image !== undefined) &&
      (!roles.enableText || g.caption !== undefined) &&
      (!roles.enableMetadata || g.json !== undefined)
    );
  }
}

const utf8 = new TextDecoder('utf-8');

/** The sample for a complete group (member bytes decoded; problems become the sample's error). */
function toSample(shard: string, g: Group, index: number, maxMemberBytes: number): Sample {
  const sample: { -readonly [K in keyof Sample]: Sample[K] } = {
    key: `${shard}#${g.key}`,
    index,
    name: g.key,
  };
  if (g.image) {
    if (g.image.data) sample.imageBytes = g.image.data;
    else {
      sample.error = {
        code: 'GLIMPSE_E_IMAGE_TOO_LARGE',
        message: `Expected an image member of at most ${maxMemberBytes} bytes for ${g.key} in ${shard} but it has ${g.image.size}`,
      };
    }
  }
  if (g.caption && sample.error === undefined) {
    if (g.caption.data) sample.caption = utf8.decode(g.caption.data);
    else {
      sample.error = {
        code: 'GLIMPSE_E_SOURCE_SIDECAR_INVALID',
        message: `Expected a caption member of at most ${maxMemberBytes} bytes for ${g.key} in ${shard} but it has ${g.caption.size}`,
      };
    }
  }
  if (g.json && sample.error === undefined) {
    try {
      if (!g.json.data) throw new Error(`it has ${g.json.size} bytes, more than ${maxMemberBytes}`);
      const parsed: unknown = JSON.parse(utf8.decode(g.json.data));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error(
          `the top level is ${Array.isArray(parsed) ? 'an array' : typeof parsed}, not an object`,
        );
      }
      sample.meta = parsed as Record<string, unknown>;
    } catch (err) {
      sample.error = {
        code: 'GLIMPSE_E_SOURCE_SIDECAR_INVALID',
        message: `Expected a JSON object in the json member of ${g.key} in ${shard} but ${(err as Error).message}`,
      };
    }
  }
  return sample;
}

/**
 * Opens WebDataset shards for streaming. Every shard is checked first (a missing one fails the job before
 * anything runs). When every shard is a local uncompressed tar, a header-only pre-scan counts the samples
 * exactly (`size`), so partitions are cut as for a folder; otherwise `size` is undefined and `sizeBound`
 * (shard bytes / 512, the smallest tar footprint of a sample) bounds it.
 *
 * Samples: the key is the member name up to the first dot of its basename; the image is the first present
 * of `imageKeys`, the caption the `captionKey` member, the metadata the `json` member. A sample without a
 * required member is skipped (counted); a truncated or corrupt shard keeps the samples before the damage,
 * reports a GLIMPSE_E_SOURCE_TAR_CORRUPT issue naming the shard, and the next shard follows.
 *
 * @example
 *   const source = await createWebDatasetSource('shards/{00000..00009}.tar', { imageKeys: 'jpg;png' });
 *   for await (const s of source.read()) console.log(s.name, s.imageBytes?.length, s.caption);
 *   source.close?.();
 */
export async function createWebDatasetSource(
  inputs: string | readonly string[],
  options: WebDatasetSourceOptions = {},
): Promise<WebDatasetSource> {
  const imageKeys = parseKeys(options.imageKeys, 'jpg', 'wdsImageKey');
  const captionKey = parseKeys(options.captionKey, 'txt', 'wdsCaptionKey')[0]!;
  const enableImage = options.enableImage ?? true;
  const enableMetadata = options.enableMetadata ?? true;
  const maxMemberBytes = options.maxMemberBytes ?? 64 * 1024 * 1024;
  const maxPendingSamples = options.maxPendingSamples ?? 512;
  const maxPendingBytes = options.maxPendingBytes ?? 256 * 1024 * 1024;
  const storages = new StorageSet(options.storage);
  try {
    const shards = await expandInputs(typeof inputs === 'string' ? [inputs] : inputs, storages, {
      listFiles: true,
    });
    const sizes = await mapLimit(shards, 8, async (url) => {
      try {
        return { url, size: (await storages.for(url).stat(url)).size, error: undefined };
      } catch (err) {
        return { url, size: 0, error: err as Error };
      }
    });
    const missing = sizes.filter((s) => s.error !== undefined);
    if (missing.length > 0) {
      const shown = missing.slice(0, 5).map((m) => `${m.url} (${m.error!.message})`);
      throw new GlimpseError(
        'GLIMPSE_E_SOURCE_NOT_FOUND',
        `Expected every WebDataset shard to exist but ${missing.length} of ${shards.length} cannot be read: ${shown.join('; ')}${missing.length > 5 ? '; …' : ''}`,
        { details: { missing: missing.map((m) => m.url) } },
      );
    }

    const open = async (url: string): Promise<Readable> => {
      const raw = await storages.for(url).createReadStream(url);
      if (!isGzip(url)) return raw;
      const gunzip = createGunzip();
      raw.on('error', (err) => gunzip.destroy(err));
      return raw.pipe(gunzip);
    };

    let enableText: boolean;
    if (options.enableText === 'auto' || options.enableText === undefined) {
      // On when a caption member is among the first members of the first shard (headers only for a
      // local tar; a streamed peek otherwise, stopped at the first caption).
      enableText = false;
      const first = shards[0];
      const isCaption = (name: string): boolean => splitMemberName(name)?.ext === captionKey;
      if (first !== undefined && storageKind(first) === 'local' && !isGzip(first)) {
        const { members } = await scanTarHeaders(localPath(first));
        enableText = members.slice(0, PEEK_MEMBERS).some((m) => isCaption(m.name));
      } else if (first !== undefined) {
        let seen = 0;
        try {
          for await (const m of readTarMembers(await open(first), { maxMemberBytes: 0 })) {
            if (isCaption(m.name)) {
              enableText = true;
              break;
            }
            if (++seen >= PEEK_MEMBERS) break;
          }
        } catch {
          // A damaged first shard is reported when it is read; the peek only decides `auto`.
        }
      }
    } else enableText = options.enableText;
    if (!enableImage && !enableText) {
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        'Expected at least one of enableImage, enableText for the WebDataset shards but images are off and the shards have no caption member',
      );
    }
    const roles: Roles = { imageKeys, captionKey, enableImage, enableText, enableMetadata };

    // Exact count by a header-only scan when every shard is a local, uncompressed tar.
    const prescanned = shards.every((s) => storageKind(s) === 'local' && !isGzip(s));
    let size: number | undefined;
    /** Samples per shard from the pre-scan: the index of a shard's first sample is the sum before it. */
    let shardCounts: number[] | undefined;
    if (prescanned) {
      const counts = await mapLimit(shards, 4, async (url) => {
        const { members } = await scanTarHeaders(localPath(url));
        const kinds = new Map<string, number>();
        for (const m of members) {
          const split = splitMemberName(m.name);
          if (split === undefined) continue;
          let bits = kinds.get(split.key) ?? 0;
          if (imageKeys.includes(split.ext)) bits |= 1;
          if (split.ext === captionKey) bits |= 2;
          kinds.set(split.key, bits);
        }
        let n = 0;
        for (const bits of kinds.values()) if ((!enableImage || bits & 1) && (!enableText || bits & 2)) n++;
        return n;
      });
      shardCounts = counts;
      size = counts.reduce((a, b) => a + b, 0);
      if (options.subsetSize !== undefined) size = Math.min(size, options.subsetSize);
    }
    let sizeBound = sizes.reduce(
      (a, s) => a + Math.ceil((s.size * (isGzip(s.url) ? DEFLATE_MAX_RATIO : 1)) / TAR_BLOCK),
      0,
    );
    if (options.subsetSize !== undefined) sizeBound = Math.min(sizeBound, options.subsetSize);

    const issues: SourceIssue[] = [];
    const counters = {
      shards: shards.length,
      shard_errors: 0,
      samples_missing_image: 0,
      samples_missing_caption: 0,
      late_members: 0,
    };
    const limit = options.subsetSize ?? Number.POSITIVE_INFINITY;

    return {
      shards,
      shardBytes: sizes.map((s) => s.size),
      enableImage,
      enableText,
      prescanned,
      size,
      sizeBound,
      takeIssues: () => issues.splice(0, issues.length),
      counts: () => ({ ...counters }),
      close: () => storages.close(),
      async *read(range = {}) {
        const start = range.start ?? 0;
        const end = Math.min(range.end ?? Number.POSITIVE_INFINITY, limit);
        let index = 0;
        for (const [k, shard] of shards.entries()) {
          if (index >= end) return;
          range.signal?.throwIfAborted();
          // Pre-scanned: a shard whose samples all lie before `start` is skipped unopened (a shard belongs
          // to the range holding its first index, so its issues are reported once), and every shard's first
          // index is fixed by the counts, so a range read numbers samples as a full read does.
          const counted = shardCounts?.[k];
          if (counted !== undefined && index < start && index + counted <= start) {
            index += counted;
            continue;
          }
          const assembler = new SampleAssembler(roles, maxPendingSamples, maxPendingBytes);
          const ready: Group[] = [];
          const shardStart = index;
          let damage: unknown;
          try {
            for await (const member of readTarMembers(await open(shard), {
              maxMemberBytes,
              ...(range.signal ? { signal: range.signal } : {}),
            })) {
              ready.push(...assembler.add(member));
              while (ready.length > 0) {
                const g = ready.shift()!;
                if (index >= start) yield toSample(shard, g, index, maxMemberBytes);
                if (++index >= end) return;
              }
            }
          } catch (err) {
            if (range.signal?.aborted) throw err;
            damage = err;
          }
          ready.push(...assembler.flush());
          counters.samples_missing_image += assembler.skipped.missingImage;
          counters.samples_missing_caption += assembler.skipped.missingCaption;
          counters.late_members += assembler.skipped.lateMembers;
          if (damage !== undefined) {
            counters.shard_errors++;
            const text = damage instanceof Error ? damage.message : String(damage);
            // Storage failures (a dropped connection, a timeout) are GlimpseErrors with their own code;
            // tar-stream's parse errors are plain errors: a damaged archive.
            const storageCode = isGlimpseError(damage) ? damage.code : undefined;
            const storageError = storageCode !== undefined;
            issues.push({
              key: shard,
              code: storageCode ?? 'GLIMPSE_E_SOURCE_TAR_CORRUPT',
              message: `Expected a complete tar shard at ${shard} but ${storageError ? 'reading it failed' : 'it is truncated or corrupt'} (${text}); the ${index - shardStart + ready.length} sample(s) before the damage were kept, the rest of the shard skipped`,
            });
          }
          for (const g of ready) {
            if (index >= start) yield toSample(shard, g, index, maxMemberBytes);
            if (++index >= end) return;
          }
          // A shard that gave fewer samples than its headers promised (an evicted incomplete sample)
          // leaves a gap, so the next shard's indices stay those of the pre-scan.
          if (counted !== undefined) index = Math.max(index, shardStart + counted);
        }
      },
    };
  } catch (err) {
    storages.close();
    throw err;
  }
}

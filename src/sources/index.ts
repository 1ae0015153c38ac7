/**
 * Sources: everything that turns an input (a folder, WebDataset shards, a manifest of URLs) into a stream of
 * samples. `openSource` picks one from a plain description.
 */
import { GlimpseError } from '../errors/index.js';
import type { StorageOptions } from '../storage/index.js';
import { createFolderSource } from './folder.js';
import { createWebDatasetSource } from './webdataset.js';
import { createManifestSource, MANIFEST_FORMATS, type ManifestFormat } from './manifest.js';
import type { SampleSource } from './types.js';

export {
  createFolderSource,
  IMAGE_EXTENSIONS,
  type FolderSourceOptions,
  type FolderListing,
} from './folder.js';
export {
  createWebDatasetSource,
  splitMemberName,
  type WebDatasetSource,
  type WebDatasetSourceOptions,
} from './webdataset.js';
export {
  createManifestSource,
  MANIFEST_FORMATS,
  type ManifestFormat,
  type ManifestSource,
  type ManifestSourceOptions,
} from './manifest.js';
export {
  Downloader,
  defaultUserAgent,
  inCompletionOrder,
  type DownloadOptions,
  type DownloadResult,
} from './download.js';
export { CsvParser, parseCsv } from './csv.js';
export { expandBraces, expandInputs, globToRegExp, resolveBeside } from './shards.js';
export { readTarMembers, scanTarHeaders, type TarMember, type TarScan } from './tar.js';
export type { Sample, SampleSource, SourceIssue } from './types.js';

export const INPUT_FORMATS = ['files', 'webdataset', ...MANIFEST_FORMATS] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];

export interface OpenSourceOptions {
  input: string | readonly string[];
  inputFormat: InputFormat;
  enableImage: boolean;
  enableText: boolean | 'auto';
  enableMetadata: boolean;
  subsetSize?: number;
  /** WebDataset image member extensions, in order of preference (`jpg;png`). */
  wdsImageKey?: string;
  /** WebDataset caption member extension. */
  wdsCaptionKey?: string;
  /** Largest image in bytes (tar members, downloads). */
  maxImageBytes?: number;
  /** Manifest column with the image URL or path (default `url`). */
  urlCol?: string;
  /** Manifest column with the caption. */
  captionCol?: string;
  /** Keep the manifest's other columns as metadata. */
  saveAdditionalColumns?: boolean;
  /** Downloads in flight (default 64). */
  downloadConcurrency?: number;
  /** Connect and read (idle) timeout of a download in milliseconds (default 10,000 / 20,000). */
  downloadTimeoutMs?: number;
  /** Retries of a download after a transient failure (default 3). */
  downloadRetries?: number;
  /** User-Agent of downloads (default `glimpse/<version>`). */
  userAgent?: string;
  storage?: StorageOptions;
}

/** An opened source, with the modalities it resolved (`auto` text) and a hint for an empty input. */
export interface OpenedSource extends SampleSource {
  readonly enableImage: boolean;
  readonly enableText: boolean;
  /** Why an input may hold no sample (shown after `no sample found`). */
  emptyHint(): string;
}

/**
 * Opens the source an input format names.
 *
 * @example
 *   const source = await openSource({ input: 'shards/{0..9}.tar', inputFormat: 'webdataset', enableImage: true, enableText: 'auto', enableMetadata: true });
 */
export async function openSource(options: OpenSourceOptions): Promise<OpenedSource> {
  const sub = options.subsetSize !== undefined ? { subsetSize: options.subsetSize } : {};
  if (options.inputFormat === 'files') {
    const inputs = typeof options.input === 'string' ? [options.input] : options.input;
    if (inputs.length !== 1) {
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        `Expected one input folder for input format "files" but received ${inputs.length} inputs`,
      );
    }
    const folder = await createFolderSource(inputs[0]!, {
      enableImage: options.enableImage,
      enableText: options.enableText,
      enableMetadata: options.enableMetadata,
      ...sub,
    });
    return Object.assign(folder, {
      emptyHint: () =>
        folder.listing.imagesWithoutCaption > 0
          ? ` (${folder.listing.imagesWithoutCaption} images have no caption; pass --enable-text false to embed them)`
          : '',
      counts: () => ({ images_without_caption: folder.listing.imagesWithoutCaption }),
    });
  }
  if ((MANIFEST_FORMATS as readonly string[]).includes(options.inputFormat)) {
    const manifest = await createManifestSource(options.input, {
      format: options.inputFormat as ManifestFormat,
      enableImage: options.enableImage,
      enableText: options.enableText,
      enableMetadata: options.enableMetadata,
      ...(options.urlCol !== undefined ? { urlCol: options.urlCol } : {}),
      ...(options.captionCol !== undefined ? { captionCol: options.captionCol } : {}),
      ...(options.saveAdditionalColumns !== undefined
        ? { saveAdditionalColumns: options.saveAdditionalColumns }
        : {}),
      ...(options.storage !== undefined ? { storage: options.storage } : {}),
      download: {
        ...(options.downloadConcurrency !== undefined ? { concurrency: options.downloadConcurrency } : {}),
        ...(options.downloadTimeoutMs !== undefined
          ? { connectTimeoutMs: options.downloadTimeoutMs, readTimeoutMs: options.downloadTimeoutMs }
          : {}),
        ...(options.downloadRetries !== undefined ? { retries: options.downloadRetries } : {}),
        ...(options.maxImageBytes !== undefined ? { maxBytes: options.maxImageBytes } : {}),
        ...(options.userAgent !== undefined ? { userAgent: options.userAgent } : {}),
      },
      ...sub,
    });
    return Object.assign(manifest, {
      emptyHint: () => ' (the manifest has no rows)',
    });
  }
  const wds = await createWebDatasetSource(options.input, {
    enableImage: options.enableImage,
    enableText: options.enableText,
    enableMetadata: options.enableMetadata,
    ...(options.wdsImageKey !== undefined ? { imageKeys: options.wdsImageKey } : {}),
    ...(options.wdsCaptionKey !== undefined ? { captionKey: options.wdsCaptionKey } : {}),
    ...(options.maxImageBytes !== undefined ? { maxMemberBytes: options.maxImageBytes } : {}),
    ...(options.storage !== undefined ? { storage: options.storage } : {}),
    ...sub,
  });
  return Object.assign(wds, {
    emptyHint: () => {
      const c = wds.counts?.() ?? {};
      const parts: string[] = [];
      if ((c['samples_missing_image'] ?? 0) > 0)
        parts.push(`${c['samples_missing_image']} samples have no image member (--wds-image-key)`);
      if ((c['samples_missing_caption'] ?? 0) > 0)
        parts.push(
          `${c['samples_missing_caption']} samples have no caption member (--wds-caption-key, or --enable-text false)`,
        );
      if ((c['shard_errors'] ?? 0) > 0) parts.push(`${c['shard_errors']} shards could not be read`);
      return parts.length > 0 ? ` (${parts.join('; ')})` : '';
    },
  });
}

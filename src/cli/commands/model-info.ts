/**
 * `glimpse model info <id|dir>`: what a model folder holds: dimensions, image size, context length,
 * preprocessing, dtypes present, file sizes and the fingerprint. Never downloads: a hub id must be in
 * the cache already (`glimpse model pull`).
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { GlimpseError, isGlimpseError } from '../../errors/index.js';
import { listModelDtypes, loadModelFolder, MODEL_JSON_FILES } from '../../models/folder.js';
import { shortFingerprint } from '../../models/fingerprint.js';
import { resolveModel, type ResolveModelOptions } from '../../models/hub.js';
import {
  MODEL_DTYPES,
  type ModelDtype,
  type ModelFolder,
  type PreprocessConfig,
} from '../../models/types.js';
import { formatBytes } from './model-pull.js';

interface ModelInfoFlags {
  dtype?: ModelDtype;
  json: boolean;
  cacheDir?: string;
  revision?: string;
}

/** What `model info --json` prints. */
export interface ModelInfo {
  id: string;
  dir: string;
  dtype: ModelDtype;
  dtypes: ModelDtype[];
  config: ModelFolder['config'];
  preprocess: PreprocessConfig;
  files: { path: string; size: number }[];
  fingerprint: { hash: string; short: string; files: Record<string, string> };
}

/**
 * Gathers the info of a model (a folder, or a hub id already in the cache).
 *
 * @example
 *   const info = await readModelInfo('openai/clip-vit-base-patch32');
 *   info.config.projectionDim; // 512
 */
export async function readModelInfo(
  idOrDir: string,
  options: { dtype?: ModelDtype; cacheDir?: string; revision?: string } = {},
): Promise<ModelInfo> {
  const resolveOptions: ResolveModelOptions = { offline: true };
  if (options.cacheDir !== undefined) resolveOptions.cacheDir = options.cacheDir;
  if (options.revision !== undefined) resolveOptions.revision = options.revision;
  let dir: string;
  try {
    // Only the JSON files have to be there to find the folder; the dtype is checked below.
    dir = await resolveModel(idOrDir, { ...resolveOptions, dtype: options.dtype ?? 'fp32' });
  } catch (err) {
    if (!isGlimpseError(err, 'GLIMPSE_E_MODEL_OFFLINE')) throw err;
    // Not complete for that dtype: show the folder anyway when it has its JSON files and some dtype,
    // so loadModelFolder names exactly what is wrong.
    const folder = typeof err.details?.['folder'] === 'string' ? err.details['folder'] : undefined;
    if (folder === undefined || (await listModelDtypes(folder)).length === 0) {
      throw new GlimpseError(
        'GLIMPSE_E_MODEL_NOT_FOUND',
        `Expected ${idOrDir} in the model cache but it is not there; run \`glimpse model pull ${idOrDir}\` first`,
        { cause: err, details: err.details },
      );
    }
    dir = folder;
  }
  const dtypes = await listModelDtypes(dir);
  const dtype = options.dtype ?? dtypes[0] ?? 'fp32';
  // The id comes from the cache's metadata for hub ids, the folder name otherwise.
  const folder = await loadModelFolder(dir, { dtype });
  const files: { path: string; size: number }[] = [];
  for (const path of [...MODEL_JSON_FILES, ...(await onnxFiles(dir))]) {
    const st = await stat(join(dir, path)).catch(() => undefined);
    if (st?.isFile() === true) files.push({ path, size: st.size });
  }
  return {
    id: folder.id,
    dir,
    dtype,
    dtypes,
    config: folder.config,
    preprocess: folder.preprocess,
    files,
    fingerprint: {
      hash: folder.fingerprint.hash,
      short: shortFingerprint(folder.fingerprint),
      files: { ...folder.fingerprint.files },
    },
  };
}

/**
 * Human-readable lines for `model info`.
 *
 * @example
 *   formatModelInfo(await readModelInfo('./models/clip')).forEach((line) => console.log(line));
 */
export function formatModelInfo(info: ModelInfo): string[] {
  const c = info.config;
  const lines = [
    `model        ${info.id}`,
    `folder       ${info.dir}`,
    `dtype        ${info.dtype} (present: ${info.dtypes.join(', ') || 'none'})`,
    `type         ${c.modelType}`,
    `dimension    ${c.projectionDim}`,
    `image size   ${c.imageSize}`,
    `context      ${c.contextLength} tokens (bos ${c.bosTokenId}, eos ${c.eosTokenId}, pad ${c.padTokenId})`,
    `preprocess   ${describePreprocess(info.preprocess)}`,
    `fingerprint  ${info.fingerprint.short} (${info.fingerprint.hash})`,
    'files',
  ];
  const width = Math.max(...info.files.map((f) => f.path.length));
  for (const f of info.files) {
    const used = f.path in info.fingerprint.files ? '' : '  (other dtype)';
    lines.push(`  ${f.path.padEnd(width)}  ${formatBytes(f.size).padStart(10)}${used}`);
  }
  return lines;
}

function describePreprocess(p: PreprocessConfig): string {
  const parts: string[] = [];
  if (p.doConvertRgb) parts.push('RGB');
  if (p.doResize) parts.push(`resize shortest edge ${p.shortestEdge} (${p.resample})`);
  if (p.doCenterCrop) parts.push(`centre crop ${p.cropWidth}x${p.cropHeight}`);
  if (p.doRescale)
    parts.push(`rescale ×${Math.abs(p.rescaleFactor - 1 / 255) < 1e-12 ? '1/255' : p.rescaleFactor}`);
  if (p.doNormalize) parts.push(`normalize mean [${p.imageMean.join(', ')}] std [${p.imageStd.join(', ')}]`);
  return parts.join(', ');
}

async function onnxFiles(dir: string): Promise<string[]> {
  const names = await readdir(join(dir, 'onnx')).catch(() => [] as string[]);
  return names
    .filter((n) => /\.onnx(_data.*|\.data)?$/.test(n))
    .sort()
    .map((n) => `onnx/${n}`);
}

/**
 * Adds `info` to the `glimpse model` command group.
 *
 * @example
 *   registerModelInfoCommand(program.command('model'));
 *   // glimpse model info openai/clip-vit-base-patch32 --dtype q8 --json
 */
export function registerModelInfoCommand(
  model: Command,
  print: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
): Command {
  return model
    .command('info')
    .description(
      'show dims, image size, context length, preprocessing, dtypes, file sizes and the fingerprint',
    )
    .argument('<model>', 'model folder, or a hub id already in the cache')
    .addOption(
      new Option('--dtype <dtype>', 'precision variant (default: the first present)').choices(MODEL_DTYPES),
    )
    .option('--json', 'print JSON', false)
    .option('--cache-dir <dir>', 'cache root (default $GLIMPSE_CACHE_DIR or ~/.cache/glimpse)')
    .option('--revision <rev>', 'revision of a hub id', 'main')
    .action(async (arg: string, flags: ModelInfoFlags) => {
      const options: { dtype?: ModelDtype; cacheDir?: string; revision?: string } = {};
      if (flags.dtype !== undefined) options.dtype = flags.dtype;
      if (flags.cacheDir !== undefined) options.cacheDir = flags.cacheDir;
      if (flags.revision !== undefined) options.revision = flags.revision;
      const info = await readModelInfo(arg, options);
      if (flags.json) print(JSON.stringify(info, null, 2));
      else for (const line of formatModelInfo(info)) print(line);
    });
}

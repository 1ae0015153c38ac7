/**
 * `glimpse model synth`: writes a complete CLIP model folder (Hugging Face ONNX layout) with seeded
 * random weights, for tests and benchmarks that cannot download real weights.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import { invalidParameterError, isNonNegativeInteger } from '../../core/validate.js';
import { MODEL_DTYPES, type ModelDtype } from '../../models/types.js';
import { MAX_SYNTH_SEED, SYNTH_ARCHS, synthesizeModel, type SynthArch } from '../../models/synth/index.js';

interface ModelSynthFlags {
  arch: SynthArch;
  out: string;
  seed: number;
  dtype: ModelDtype[];
  overwrite: boolean;
}

/** Parses `--seed`: an integer from 0 to 2^32 - 1. */
export function parseSeedFlag(value: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!isNonNegativeInteger(n) || n > MAX_SYNTH_SEED) {
    throw invalidParameterError('--seed', `an integer from 0 to ${MAX_SYNTH_SEED}`, value);
  }
  return n;
}

/** Parses `--dtype`: a comma-separated list of fp32, fp16, q8. */
export function parseDtypeFlag(value: string): ModelDtype[] {
  const parts = value
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (parts.length === 0 || parts.some((p) => !(MODEL_DTYPES as readonly string[]).includes(p))) {
    throw invalidParameterError('--dtype', 'a comma-separated list of fp32, fp16, q8', value);
  }
  return [...new Set(parts as ModelDtype[])];
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]!}`;
}

/**
 * Adds `synth` to the `glimpse model` command group.
 *
 * @example
 *   const model = program.command('model').description('Model folders');
 *   registerModelSynthCommand(model);
 *   // glimpse model synth --arch tiny --out ./models/tiny --seed 1 --dtype fp32,q8
 */
export function registerModelSynthCommand(
  model: Command,
  print: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
): Command {
  return model
    .command('synth')
    .description(
      'write a CLIP model folder with a real architecture and seeded random weights (tests, benchmarks)',
    )
    .addOption(new Option('--arch <arch>', 'architecture').choices(SYNTH_ARCHS).makeOptionMandatory())
    .requiredOption('--out <dir>', 'model folder to create (absent or empty)')
    .option('--seed <n>', 'seed of the random weights; same seed, byte-identical files', parseSeedFlag, 0)
    .option('--dtype <list>', 'precision variants to write, comma-separated', parseDtypeFlag, [
      ...MODEL_DTYPES,
    ])
    .option('--overwrite', 'replace --out when it exists and is not empty', false)
    .action(async (flags: ModelSynthFlags) => {
      const started = performance.now();
      const result = await synthesizeModel({
        arch: flags.arch,
        outDir: flags.out,
        seed: flags.seed,
        dtypes: flags.dtype,
        overwrite: flags.overwrite,
      });
      const seconds = (performance.now() - started) / 1000;
      print(`synthesized ${flags.arch} (seed ${flags.seed}) into ${result.dir} in ${seconds.toFixed(1)} s:`);
      const width = Math.max(...result.files.map((f) => f.length));
      for (const file of result.files) {
        const { size } = await stat(join(result.dir, file));
        print(`  ${file.padEnd(width)}  ${formatBytes(size).padStart(10)}`);
      }
    });
}

import type { Command } from 'commander';
import { GlimpseError } from '../../errors/index.js';
import { loadModel } from '../../pipeline/model.js';

interface EmbedOneFlags {
  model: string;
  dtype: 'fp32' | 'fp16' | 'q8';
  text?: string;
  cacheDir?: string;
  offline?: boolean;
}

/** `glimpse embed-one <image>` or `--text "…"`: print one L2-normalized vector as JSON (smoke use). */
export function registerEmbedOneCommand(program: Command): void {
  program
    .command('embed-one')
    .description('print the embedding of one image (path or URL) or one text as a JSON array')
    .argument('[image]', 'image path or URL')
    .option('--text <text>', 'embed this text instead of an image')
    .option('--model <id|dir>', 'model folder or hub id', 'openai/clip-vit-base-patch32')
    .option('--dtype <fp32|fp16|q8>', 'ONNX precision variant', 'fp32')
    .option('--cache-dir <dir>', 'model cache folder')
    .option('--offline', 'never download models')
    .action(async (image: string | undefined, flags: EmbedOneFlags) => {
      if ((image === undefined) === (flags.text === undefined)) {
        throw new GlimpseError(
          'GLIMPSE_E_ARG_INVALID',
          `Expected exactly one of <image>, --text but received ${image === undefined ? 'neither' : 'both'}`,
        );
      }
      const model = await loadModel(flags.model, {
        dtype: flags.dtype,
        decodeWorkers: 1,
        ...(flags.cacheDir !== undefined ? { cacheDir: flags.cacheDir } : {}),
        ...(flags.offline !== undefined ? { offline: flags.offline } : {}),
      });
      try {
        const m =
          flags.text !== undefined ? await model.embedTexts([flags.text]) : await model.embedImages([image!]);
        process.stdout.write(JSON.stringify(Array.from(m.data, (v) => Number(v.toFixed(6)))) + '\n');
      } finally {
        await model.close();
      }
    });
}

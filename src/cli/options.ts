import { InvalidArgumentError, type Command } from 'commander';
import { INPUT_FORMATS, type InputFormat } from '../sources/index.js';

/** commander parsers that give the same message shape as the library. */
export function parseIntOption(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0)
      throw new InvalidArgumentError(
        `Expected a positive integer for ${name} but received ${JSON.stringify(value)}`,
      );
    return n;
  };
}

/** `--enable-text false`, `--enable-text=true`, `--enable-text` (true). */
export function parseBoolOption(name: string): (value: string | undefined) => boolean {
  return (value: string | undefined) => {
    if (value === undefined || value === 'true' || value === '1' || value === 'yes') return true;
    if (value === 'false' || value === '0' || value === 'no') return false;
    throw new InvalidArgumentError(
      `Expected true or false for ${name} but received ${JSON.stringify(value)}`,
    );
  };
}

function parseInputFormat(value: string): InputFormat {
  if (!(INPUT_FORMATS as readonly string[]).includes(value))
    throw new InvalidArgumentError(
      `Expected one of ${INPUT_FORMATS.join(', ')} for --input-format but received ${JSON.stringify(value)}`,
    );
  return value as InputFormat;
}

/** `--input-format` and how each format is read (WebDataset member keys, manifest columns). */
export function inputFormatOptions(cmd: Command): Command {
  return cmd
    .option(`--input-format <${INPUT_FORMATS.join('|')}>`, 'input format', parseInputFormat, 'files')
    .option('--wds-image-key <exts>', 'WebDataset image member extension(s), first present wins', 'jpg')
    .option('--wds-caption-key <ext>', 'WebDataset caption member extension', 'txt')
    .option('--url-col <name>', 'manifest column with the image URL or path (default url)')
    .option('--caption-col <name>', 'manifest column with the caption (text is on when given)')
    .option(
      '--save-additional-columns [bool]',
      "keep the manifest's other columns as metadata",
      parseBoolOption('--save-additional-columns'),
    );
}

import { InvalidArgumentError } from 'commander';

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

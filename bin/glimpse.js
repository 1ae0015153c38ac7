#!/usr/bin/env node
// Runs the compiled CLI. Build it first with `npm run build` (the set-up command in the README does).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const built = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(built))) {
  process.stderr.write('glimpse: dist/ is missing; run `npm run build` first.\n');
  process.exit(1);
}
await import(built.href);

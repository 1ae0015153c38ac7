// Writes docs/errors.md from the error catalogue (run: npm run docs:errors). The test
// test/errors-catalogue.test.ts fails when the committed file differs from what this prints.
import { writeFileSync } from 'node:fs';
import { errorCatalogue } from '../src/errors/catalogue.js';

export function renderErrorDocs(): string {
  const lines = [
    '# Errors',
    '',
    'Every error glimpse raises on purpose has a code, an HTTP status and a message that says what was',
    'expected and what was received (`Expected X for Y but received Z of type T` for bad arguments).',
    'The CLI prints `error <CODE>: <message>` and exits non-zero; the library throws `GlimpseError`',
    '(`err.code`, `err.status`, `err.details`); the server answers `{"code", "message"}` with the status.',
    '',
    'Items that fail inside a job (a corrupt image, a failed download) do not fail the job: they are',
    "recorded with their code in the output's `failures/` folder and counted in `stats/`.",
    '',
    'This file is generated from `src/errors/catalogue.ts` by `npm run docs:errors`; a test keeps them in step.',
    '',
    '| code | status | summary |',
    '| --- | --- | --- |',
  ];
  for (const [code, spec] of Object.entries(errorCatalogue)) {
    lines.push(`| [\`${code}\`](#${code.toLowerCase()}) | ${spec.status} | ${spec.summary} |`);
  }
  lines.push('');
  for (const [code, spec] of Object.entries(errorCatalogue)) {
    lines.push(
      `## ${code}`,
      '',
      `HTTP status: ${spec.status}`,
      '',
      spec.summary,
      '',
      `**How to fix:** ${spec.fix}`,
      '',
    );
  }
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  writeFileSync(new URL('../docs/errors.md', import.meta.url), renderErrorDocs());
}

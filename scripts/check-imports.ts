// Guards the architecture (STYLE.md §17): no circular imports in src/, stages never import each other,
// lower layers never import upper ones, and each heavy native dependency has one owning module.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const root = new URL('../src/', import.meta.url).pathname;
const STAGES = ['sources', 'decode', 'infer', 'sinks', 'index', 'search'];
// Layers, low to high. A module may import its own layer's folder and any lower layer.
const LAYER: Record<string, number> = {
  core: 0,
  errors: 0,
  config: 1,
  formats: 1,
  storage: 2,
  models: 3,
  sources: 4,
  decode: 4,
  infer: 4,
  sinks: 4,
  index: 4,
  search: 4,
  reader: 4,
  pipeline: 5,
  jobs: 6,
  server: 7,
  cli: 8,
  'index.ts': 9,
};
// Heavy native dependencies and the one folder/file allowed to import each.
const OWNERS: Record<string, string> = {
  'onnxruntime-node': 'infer/onnx.ts',
  sharp: 'decode/image.ts',
  '@huggingface/tokenizers': 'decode/tokenize.ts',
  '@lancedb/lancedb': 'index/lancedb.ts',
  'better-sqlite3': 'jobs/ledger/sqlite.ts',
  bullmq: 'jobs/ledger/bullmq.ts',
  ioredis: 'jobs/ledger/bullmq.ts',
};

const files = readdirSync(root, { recursive: true })
  .map(String)
  .filter((f) => f.endsWith('.ts'));
const graph = new Map<string, string[]>();
const problems: string[] = [];
const top = (f: string): string => (f.includes('/') ? f.split('/')[0]! : f);

for (const f of files) {
  const text = readFileSync(join(root, f), 'utf8');
  const deps: string[] = [];
  for (const m of text.matchAll(
    /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g,
  )) {
    const spec = m[1] ?? m[2]!;
    const typeOnly = /^\s*(?:import|export)\s+type\s/.test(m[0].trim());
    if (spec.startsWith('.')) {
      const target = normalize(join(dirname(f), spec)).replace(/\.js$/, '.ts');
      if (!typeOnly) deps.push(target);
      const from = top(f);
      const to = top(target);
      if (from !== to) {
        if (STAGES.includes(from) && STAGES.includes(to))
          problems.push(`${f}: stage ${from} imports stage ${to}`);
        const lf = LAYER[from];
        const lt = LAYER[to];
        if (lf !== undefined && lt !== undefined && lt > lf)
          problems.push(`${f}: ${from} (layer ${lf}) imports ${to} (layer ${lt})`);
      }
    } else {
      const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      const owner = OWNERS[pkg];
      if (owner !== undefined && f !== owner && !typeOnly)
        problems.push(`${f}: imports ${pkg}, which only ${owner} may import`);
    }
  }
  graph.set(f, deps);
}

// Cycle detection (runtime imports only).
const state = new Map<string, number>();
const stack: string[] = [];
function visit(n: string): void {
  state.set(n, 1);
  stack.push(n);
  for (const d of graph.get(n) ?? []) {
    if (!graph.has(d)) continue;
    if (state.get(d) === 1)
      problems.push(`circular import: ${[...stack.slice(stack.indexOf(d)), d].join(' -> ')}`);
    else if (!state.has(d)) visit(d);
  }
  stack.pop();
  state.set(n, 2);
}
for (const f of graph.keys()) if (!state.has(f)) visit(f);

if (problems.length > 0) {
  console.error(`check-imports: ${problems.length} problem(s)\n${problems.join('\n')}`);
  process.exit(1);
}
console.log(`check-imports: ${files.length} files in ${relative(process.cwd(), root)}, no problems`);

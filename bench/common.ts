/** Shared helpers for bench/ scripts: argument parsing, timing, tables, JSON output. */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { availableParallelism, cpus } from 'node:os';

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));
export const benchOut = join(repoRoot, 'bench', 'out');
export const benchData = join(repoRoot, 'bench', 'data');

/** `--name value` and `--flag` arguments. */
export function parseArgs(argv = process.argv.slice(2)): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      args.set(a.slice(2), next);
      i++;
    } else args.set(a.slice(2), 'true');
  }
  return args;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs `fn` once to warm up, then repeatedly for at least `seconds` (and `minRuns`); returns per-run seconds. */
export async function timeRuns(fn: () => Promise<unknown>, seconds: number, minRuns = 3): Promise<number[]> {
  await fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < minRuns || (performance.now() - start) / 1000 < seconds) {
    const t = performance.now();
    await fn();
    times.push((performance.now() - t) / 1000);
  }
  return times;
}

export function printTable(rows: Record<string, string | number>[]): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]!);
  const fmt = (v: string | number): string =>
    typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v;
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => fmt(r[c] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  console.log(line(cols));
  for (const r of rows) console.log(line(cols.map((c) => fmt(r[c] ?? ''))));
}

export async function writeJson(name: string, data: unknown): Promise<string> {
  await mkdir(benchOut, { recursive: true });
  const path = join(benchOut, name);
  await writeFile(path, JSON.stringify(data, null, 2) + '\n');
  return path;
}

export function machine(): Record<string, unknown> {
  return {
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
  };
}

/**
 * Runs `bench/<script> --child <kind> …extra` in a fresh Node process (so each measurement has its own heap and peak
 * RSS) and returns the JSON the child printed on its `RESULT ` line.
 */
export function runBenchChild<T>(script: string, kind: string, extra: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'bench', script), '--child', kind, ...extra],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) reject(new Error(`${script} ${kind} failed (${code}): ${out}`));
      else resolve(JSON.parse(line.slice(7)) as T);
    });
  });
}

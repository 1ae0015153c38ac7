/**
 * Browser tests: Debian's chromium driven by playwright-core (never a downloaded browser), each launch
 * with a new empty profile, and the web UI built by Vite into a temporary folder.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { build } from 'vite';

/** Where Debian installs chromium (`apt-get install chromium`; scripts/test.sh does it). */
export const CHROMIUM_PATH = process.env['GLIMPSE_CHROMIUM'] ?? '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface TestBrowser {
  readonly context: BrowserContext;
  close(): Promise<void>;
}

/**
 * Launches chromium headless with a fresh user data dir (removed on close).
 *
 * @example
 *   const browser = await launchBrowser();
 *   const page = await browser.context.newPage();
 *   await browser.close();
 */
export async function launchBrowser(): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Expected Debian's chromium at ${CHROMIUM_PATH} but it is missing: apt-get install chromium (scripts/test.sh does)`,
    );
  }
  const profile = await mkdtemp(join(tmpdir(), 'glimpse-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ARGS,
    viewport: { width: 1200, height: 900 },
  });
  return {
    context,
    close: async () => {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Builds the web UI (ui/) with Vite into `outDir`.
 *
 * @example
 *   await buildUi(join(tmp, 'ui'));
 */
export async function buildUi(outDir: string): Promise<void> {
  await build({
    root: new URL('../../ui/', import.meta.url).pathname,
    logLevel: 'silent',
    build: { outDir, emptyOutDir: true },
  });
}

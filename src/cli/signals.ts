/**
 * Runs `fn` with an AbortSignal that SIGINT/SIGTERM trigger, so long work stops cleanly (temp files
 * removed, finished outputs kept). A second signal exits at once.
 */
export async function withSignals<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let count = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    count++;
    if (count > 1) process.exit(130);
    process.stderr.write(`\n${sig}: stopping (finishing the current batch; press again to exit now)\n`);
    controller.abort(new Error(`received ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

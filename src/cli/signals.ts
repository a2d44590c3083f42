const SIGNALS = ['SIGTERM', 'SIGINT'] as const;
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

/**
 * Calls `onStop` on the first SIGTERM/SIGINT so that a long-running command
 * can end at a safe point; a second signal means "now" and exits at once, as
 * a shell user pressing Ctrl-C twice expects. Returns a function that removes
 * the handlers.
 *
 * @example
 * const removeHandlers = onFirstSignal('sweep', 'stopping after the current batch', (signal) => abort.abort(signal));
 */
export function onFirstSignal(command: string, whatHappens: string, onStop: (signal: string) => void): () => void {
  let received: string | undefined;
  const handler = (signal: (typeof SIGNALS)[number]) => {
    if (received !== undefined) {
      process.stderr.write(`${command}: ${signal} again, exiting without waiting\n`);
      process.exit(SIGNAL_EXIT[signal]);
    }
    received = signal;
    process.stderr.write(`${command}: ${signal} received, ${whatHappens}\n`);
    onStop(signal);
  };
  for (const s of SIGNALS) process.on(s, handler);
  return () => {
    for (const s of SIGNALS) process.off(s, handler);
  };
}

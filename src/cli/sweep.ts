import type { IdempotencyDatabase } from '../driver/database.js';
import { toCliError } from './errors.js';
import { formatSpan, formatSweepProgress, formatSweepResult } from './format.js';
import { sweepExpiredKeys, type SweepProgress } from '../ops/sweep.js';
import { startSweeper } from '../ops/sweeper.js';
import { onFirstSignal } from './signals.js';

export interface SweepCommand {
  batchSize: number;
  everyMs: number | undefined;
  timeBudgetMs: number | undefined;
  schema: string | undefined;
}

const PROGRESS_EVERY_MS = 1_000;
/** Logs progress at most once a second: a 1,000-batch sweep should not print 1,000 lines. */
function progressPrinter(): (p: SweepProgress) => void {
  let last = 0;
  return (p) => {
    if (p.elapsedMs - last < PROGRESS_EVERY_MS) return;
    last = p.elapsedMs;
    process.stderr.write(`${formatSweepProgress(p)}\n`);
  };
}

/** `sweep` once: the cron / Kubernetes CronJob mode. */
export async function sweepOnce(db: IdempotencyDatabase, c: SweepCommand): Promise<void> {
  const abort = new AbortController();
  let stoppedBy: string | undefined;
  const removeHandlers = onFirstSignal('sweep', 'stopping after the current batch', (signal) => {
    stoppedBy = signal;
    abort.abort();
  });
  try {
    const result = await sweepExpiredKeys(db, {
      batchSize: c.batchSize,
      timeBudget: c.timeBudgetMs,
      schema: c.schema,
      signal: abort.signal,
      onBatch: progressPrinter(),
    });
    // The result on stdout, so that `sweep > file` keeps it; progress stays on stderr.
    process.stdout.write(`${formatSweepResult(result, { signal: stoppedBy, timeBudgetMs: c.timeBudgetMs })}\n`);
  } finally {
    removeHandlers();
  }
}

/**
 * `sweep --every`: the in-process sweeper until SIGTERM/SIGINT. A failed sweep
 * is logged and retried at the next tick (the database may be restarting);
 * connection and table were already checked, so a typo fails at start instead.
 */
export async function sweepEvery(db: IdempotencyDatabase, c: SweepCommand & { everyMs: number }, database: string): Promise<void> {
  let stop!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const removeHandlers = onFirstSignal('sweep', 'stopping after the current batch', (signal) => stop(signal));
  // The sweeper's timers are unref'd so that they never hold an application
  // open; here the sweeper is the application.
  const keepAlive = setInterval(() => {}, 1 << 30);
  let progress = progressPrinter();
  let signal: string | undefined;
  process.stderr.write(`sweep: every ${formatSpan(c.everyMs)}, batches of ${c.batchSize}; SIGTERM stops\n`);
  const sweeper = startSweeper(db, {
    every: c.everyMs,
    immediate: true,
    batchSize: c.batchSize,
    timeBudget: c.timeBudgetMs,
    schema: c.schema,
    onBatch: (p) => progress(p),
    onSweep: (result) => {
      process.stdout.write(`${formatSweepResult(result, { signal, timeBudgetMs: c.timeBudgetMs })}\n`);
      progress = progressPrinter();
    },
    onError: (error) => {
      const { message } = toCliError(error, { schema: c.schema, database });
      process.stderr.write(`sweep: failed, retrying in ${formatSpan(c.everyMs)}: ${message}\n`);
      progress = progressPrinter();
    },
  });
  try {
    signal = await stopped;
    await sweeper.stop();
    process.stderr.write(`sweep: stopped by ${signal}\n`);
  } finally {
    clearInterval(keepAlive);
    removeHandlers();
  }
}

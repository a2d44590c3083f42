import type { IdempotencyDatabase } from '../driver/database.js';
import { completeAbandonedKeys, type AbandonedKey, type CompleteResult } from '../leased/completer.js';
import { startCompleter } from '../leased/completer-loop.js';
import type { AnyWorkflow } from '../leased/workflow.js';
import { toCliError } from './errors.js';
import { formatCompleted, formatSpan } from './format.js';
import { onFirstSignal } from './signals.js';

/** `complete`, checked: the workflows the module exported, how many keys a pass takes, and the pace of --watch. */
export interface CompleteCommand {
  workflows: AnyWorkflow[];
  limit: number;
  intervalMs: number;
  schema: string | undefined;
}

// What the first signal does; a second one exits at once.
const STOPPING = 'starting no new key, finishing the running ones (again to exit now)';

const names = (workflows: AnyWorkflow[]) => workflows.map((w) => w.name).join(', ');

/** One line on stderr for a key whose resumed run failed: it stays for a later pass, or was recorded as failed. */
function keyFailed(c: CompleteCommand, database: string): (error: unknown, key?: AbandonedKey) => void {
  return (error, key) => {
    const { message } = toCliError(error, { schema: c.schema, database });
    const which = key === undefined ? 'a key' : `${key.workflow}: key ${JSON.stringify(key.key)} in scope ${JSON.stringify(key.scope)}`;
    process.stderr.write(`complete: ${which}: ${message}\n`);
  };
}

/**
 * `complete` once: one pass, its counts on stdout (for cron, a Kubernetes CronJob, a deploy step).
 * SIGTERM/SIGINT start no new key: the running ones finish, the rest stay for the next pass.
 *
 * @example
 * await completeOnce(db, { workflows: [payOrder], limit: 100, intervalMs: 5_000, schema: undefined }, 'postgres://db/app');
 */
export async function completeOnce(db: IdempotencyDatabase, c: CompleteCommand, database: string): Promise<void> {
  const abort = new AbortController();
  let stoppedBy: string | undefined;
  const removeHandlers = onFirstSignal('complete', STOPPING, (signal) => {
    stoppedBy = signal;
    abort.abort();
  });
  process.stderr.write(`complete: one pass over abandoned keys of ${names(c.workflows)}\n`);
  try {
    const counts = await completeAbandonedKeys(db, c.workflows, { limit: c.limit, schema: c.schema, onError: keyFailed(c, database), signal: abort.signal });
    process.stdout.write(`${formatCompleted(counts)}\n`);
    if (stoppedBy !== undefined) process.stderr.write(`complete: stopped by ${stoppedBy}\n`);
  } finally {
    removeHandlers();
  }
}

/**
 * `complete --watch`: the in-process completer until SIGTERM/SIGINT, which
 * stop it once the keys it runs are done, starting no new one (a resumed
 * workflow is never cut off by the CLI). A pass that fails is reported and the next one comes at its time.
 *
 * @example
 * await completeWatch(db, { workflows: [payOrder], limit: 100, intervalMs: 5_000, schema: undefined }, 'postgres://db/app');
 */
export async function completeWatch(db: IdempotencyDatabase, c: CompleteCommand, database: string): Promise<void> {
  // Started first: should it refuse its arguments, nothing below (signal handlers, the keep-alive timer) is left to hold the process open.
  const completer = startCompleter(db, c.workflows, {
    interval: c.intervalMs,
    limit: c.limit,
    schema: c.schema,
    onPass: (counts: CompleteResult) => {
      // Quiet passes stay quiet: a line every few seconds saying "nothing" would bury the ones that matter.
      if (counts.completed + counts.failed + counts.retried + counts.skipped > 0) process.stdout.write(`${formatCompleted(counts)}\n`);
    },
    onError: (error: unknown, key?: AbandonedKey) => {
      if (key !== undefined) return keyFailed(c, database)(error, key);
      const { message } = toCliError(error, { schema: c.schema, database });
      process.stderr.write(`complete: a pass failed, next one in ${formatSpan(c.intervalMs)}: ${message}\n`);
    },
  });
  let stop!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const removeHandlers = onFirstSignal('complete', STOPPING, (signal) => stop(signal));
  // The completer's timers are unref'd so that they never hold an application open; here it is the application.
  const keepAlive = setInterval(() => {}, 1 << 30);
  process.stderr.write(`complete: every ${formatSpan(c.intervalMs)}, up to ${c.limit} keys a pass, workflows ${names(c.workflows)}; SIGTERM stops\n`);
  try {
    const signal = await stopped;
    await completer.stop();
    process.stderr.write(`complete: stopped by ${signal}\n`);
  } finally {
    clearInterval(keepAlive);
    removeHandlers();
  }
}

import type { IdempotencyDatabase } from '../driver/database.js';
import { completeAbandonedKeys, startCompleter, type CompleterPass } from '../leased/completer.js';
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

const names = (workflows: AnyWorkflow[]) => workflows.map((w) => w.name).join(', ');

/** `complete` once: one pass, its counts on stdout (for cron, a Kubernetes CronJob, a deploy step). */
export async function completeOnce(db: IdempotencyDatabase, c: CompleteCommand): Promise<void> {
  process.stderr.write(`complete: one pass over abandoned keys of ${names(c.workflows)}\n`);
  const counts = await completeAbandonedKeys(db, c.workflows, { limit: c.limit, schema: c.schema });
  process.stdout.write(`${formatCompleted(counts)}\n`);
}

/**
 * `complete --watch`: the in-process completer until SIGTERM/SIGINT, which
 * stop it after the pass that runs (a resumed workflow is never cut off by
 * the CLI). A pass that fails is reported and the next one comes at its time.
 */
export async function completeWatch(db: IdempotencyDatabase, c: CompleteCommand, database: string): Promise<void> {
  let stop!: (signal: string) => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const removeHandlers = onFirstSignal('complete', 'stopping after the current pass', (signal) => stop(signal));
  // The completer's timers are unref'd so that they never hold an application open; here it is the application.
  const keepAlive = setInterval(() => {}, 1 << 30);
  process.stderr.write(`complete: every ${formatSpan(c.intervalMs)}, up to ${c.limit} keys a pass, workflows ${names(c.workflows)}; SIGTERM stops\n`);
  const completer = startCompleter(db, c.workflows, {
    interval: c.intervalMs,
    limit: c.limit,
    schema: c.schema,
    onPass: (counts: CompleterPass) => {
      // Quiet passes stay quiet: a line every few seconds saying "nothing" would bury the ones that matter.
      if (counts.completed + counts.failed + counts.retried + counts.skipped > 0) process.stdout.write(`${formatCompleted(counts)}\n`);
    },
    onError: (error: unknown) => {
      const { message } = toCliError(error, { schema: c.schema, database });
      process.stderr.write(`complete: a pass failed, next one in ${formatSpan(c.intervalMs)}: ${message}\n`);
    },
  });
  try {
    const signal = await stopped;
    await completer.stop();
    process.stderr.write(`complete: stopped by ${signal}\n`);
  } finally {
    clearInterval(keepAlive);
    removeHandlers();
  }
}

import { isTransaction, type IdempotencyDatabase } from '../driver/database.js';
import { listenForIdleErrors } from '../driver/pool-transaction.js';
import { parseTimerDuration, type Duration } from '../shared/duration.js';
import { errorMessage } from '../driver/error-message.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { resolveSweepOptions, runSweep, type SweepOptions, type SweepResult } from './sweep.js';

/** Options of `startSweeper`: when to sweep, where results and errors go, and how each sweep runs. */
export interface SweeperOptions extends Omit<SweepOptions, 'signal'> {
  /** Pause between the end of one sweep and the start of the next. Required, e.g. `'5m'`. */
  every: Duration;
  /** Run the first sweep at once instead of after `every`. (Default: `false`) */
  immediate?: boolean;
  /** Called after every sweep that ran to its end, was stopped or ran out of budget. (Default: none) */
  onSweep?: (result: SweepResult) => void;
  /** Called with whatever a sweep (or `onSweep`) threw; the sweeper carries on at the next tick.
   * (Default: one line on stderr) */
  onError?: (error: unknown) => void;
}

/** A running in-process sweeper. */
export interface Sweeper {
  /** Cancels the next sweep, stops a running one between batches, and resolves once it has. Safe to call twice. */
  stop(): Promise<void>;
}

function reportToStderr(error: unknown): void {
  console.error(`drizzle-idempotency sweeper: ${errorMessage(error)}`);
}

/**
 * Sweeps expired keys in this process every `every`. Sweeps never overlap:
 * the next one is scheduled only when the previous one has finished. Its
 * timers do not keep the process alive, and errors go to `onError`, never
 * into the event loop. Several processes may each run one: their batches
 * skip each other's rows.
 *
 * @example
 * const sweeper = startSweeper(db, { every: '5m', onError: (e) => log.warn(e) });
 * process.on('SIGTERM', () => void sweeper.stop());
 */
export function startSweeper(db: IdempotencyDatabase, options: SweeperOptions): Sweeper {
  if (typeof options !== 'object' || options === null) {
    throw new IdempotencyOptionsInvalidError('startSweeper needs options with `every`, e.g. { every: \'5m\' }');
  }
  if (isTransaction(db)) {
    throw new IdempotencyOptionsInvalidError('startSweeper needs a database, not a transaction');
  }
  const { every, immediate = false, onSweep, onError = reportToStderr, ...sweepOptions } = options;
  // A timer's bound: past 2^31 - 1 ms Node fires it after 1 ms, a sweep every millisecond.
  const everyMs = parseTimerDuration(every, 'every');
  for (const [name, hook] of [['onSweep', onSweep], ['onError', onError]] as const) {
    if (hook !== undefined && typeof hook !== 'function') throw new IdempotencyOptionsInvalidError(`${name} must be a function`);
  }
  const abort = new AbortController();
  const resolved = resolveSweepOptions({ ...sweepOptions, signal: abort.signal });
  listenForIdleErrors(db);

  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;

  const report = (error: unknown) => {
    try {
      onError(error);
    } catch {
      // A throwing error hook has nowhere left to report to; the event loop must not get it.
    }
  };
  const schedule = (delayMs: number) => {
    timer = setTimeout(tick, delayMs);
    timer.unref();
  };
  function tick() {
    timer = undefined;
    running = (async () => {
      try {
        const result = await runSweep(db, resolved);
        onSweep?.(result);
      } catch (error) {
        report(error);
      }
    })().finally(() => {
      running = undefined;
      if (!abort.signal.aborted) schedule(everyMs);
    });
  }

  schedule(immediate ? 0 : everyMs);
  return {
    stop() {
      stopping ??= (async () => {
        abort.abort();
        if (timer) clearTimeout(timer);
        timer = undefined;
        await running;
      })();
      return stopping;
    },
  };
}

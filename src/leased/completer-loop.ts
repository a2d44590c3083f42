import type { IdempotencyDatabase } from '../driver/database.js';
import { parseTimerDuration, type Duration } from '../shared/duration.js';
import { leasedFailure } from './failure.js';
import { completePass, resolveCompleteOptions, type CompleteOptions, type CompleteResult } from './completer.js';
import { assertDatabase, workflowsByName } from './run-options.js';
import type { AnyWorkflow } from './workflow.js';

/** Options of `startCompleter` (`stop()` takes the place of a signal). */
export interface CompleterOptions extends Omit<CompleteOptions, 'signal'> {
  /** Time between the end of one pass and the start of the next. (Default: `'5s'`) */
  interval?: Duration;
  /** Told what each pass did. (Default: none) */
  onPass?: (result: CompleteResult) => void;
}

/** A running completer. */
export interface Completer {
  /** Cancels the next pass, lets a running one start no new key, waits for the keys it runs, and resolves then. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Runs `completeAbandonedKeys` now and then every `interval` after the last
 * pass ended, so two passes never run at once in one process (processes
 * never run one key at once either: takeovers are fenced). Errors go to
 * `onError`, never thrown; the timer does not keep the process alive.
 *
 * @example
 * const completer = startCompleter(db, [payOrder], { interval: '5s', onError: (e) => log.warn(e) });
 * process.on('SIGTERM', () => void completer.stop());
 */
export function startCompleter(db: IdempotencyDatabase, workflows: AnyWorkflow[], options: CompleterOptions = {}): Completer {
  assertDatabase(db, 'startCompleter');
  const byName = workflowsByName(workflows, 'startCompleter');
  const abort = new AbortController();
  const o = { ...resolveCompleteOptions(options), signal: abort.signal };
  const intervalMs = parseTimerDuration(options.interval ?? '5s', 'interval');
  const onPass = options.onPass;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  const pass = async () => {
    try {
      const result = await completePass(db, byName, o);
      onPass?.(result);
    } catch (error) {
      o.onError?.(leasedFailure(error));
    }
  };
  const tick = () => {
    timer = undefined;
    if (stopped) return;
    running = pass().finally(() => {
      running = undefined;
      if (!stopped) {
        timer = setTimeout(tick, intervalMs);
        timer.unref();
      }
    });
  };
  tick();
  return {
    async stop() {
      stopped = true;
      abort.abort();
      clearTimeout(timer);
      await running;
    },
  };
}

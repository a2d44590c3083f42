import { parseTimerDuration, type Duration } from '../shared/duration.js';
import { IdempotencyOptionsInvalidError, IdempotencyOutcomeUnknownError } from '../shared/errors.js';
import { isUnknownOutcome } from './unknown-outcome.js';

/** What an external call gets. */
export interface CallContext {
  /** The key to send to the service's own Idempotency-Key: the same for this step on every try, resume and takeover. */
  downstreamKey: string;
  /** Aborts on the call's timeout and when the lease is lost. */
  signal: AbortSignal;
  /** The try of this call in this run: 1, then 2, … on retries. */
  attempt: number;
}

/** What `reconcile` gets: the same downstream key, to ask the service what happened. */
export interface ReconcileContext {
  downstreamKey: string;
  signal: AbortSignal;
}

/** Options of `ctx.call`. */
export interface CallOptions<T> {
  /** How long one try (and one question to `reconcile`) may take; past it, its outcome is unknown. (Default: none, until the lease is lost) */
  timeout?: Duration;
  /** Tries after the first when the outcome is unknown (a timeout or network error), with the same downstream key. (Default: `2`) */
  retries?: number;
  /** Asks the service whether the call took effect: its result, or undefined for "it did not happen".
   * Asked before every retry and, on a resumed run, before the first try. (Default: none) */
  reconcile?: (c: ReconcileContext) => Promise<T | undefined>;
}

interface ResolvedCall<T> {
  timeoutMs: number | undefined;
  retries: number;
  reconcile: ((c: ReconcileContext) => Promise<T | undefined>) | undefined;
}

/** Checks `ctx.call`'s options before anything runs. */
export function resolveCallOptions<T>(options: CallOptions<T> | undefined): ResolvedCall<T> {
  if (options === undefined) return { timeoutMs: undefined, retries: 2, reconcile: undefined };
  if (typeof options !== 'object' || options === null) throw new IdempotencyOptionsInvalidError('call options must be an object');
  const retries = options.retries ?? 2;
  if (!Number.isSafeInteger(retries) || retries < 0 || retries > 100) throw new IdempotencyOptionsInvalidError('retries must be an integer from 0 to 100');
  if (options.reconcile !== undefined && typeof options.reconcile !== 'function') throw new IdempotencyOptionsInvalidError('reconcile must be a function');
  return {
    timeoutMs: options.timeout === undefined ? undefined : parseTimerDuration(options.timeout, 'timeout'),
    retries,
    reconcile: options.reconcile,
  };
}

/** A try that ran out of time: its outcome is unknown. */
class CallTimedOut extends Error {
  override name = 'TimeoutError';
}

/**
 * Runs an external call with its retries: a try whose outcome is unknown is
 * tried again with the same downstream key (after asking `reconcile`, when
 * there is one); any other error, and a lost lease, ends the call at once.
 * Out of retries: IDEMPOTENCY_OUTCOME_UNKNOWN.
 */
export async function callWithRetries<T>(
  name: string,
  downstreamKey: string,
  fn: (c: CallContext) => Promise<T>,
  o: ResolvedCall<T>,
  lease: AbortSignal,
  askFirst: boolean,
): Promise<{ value: T } | { reconciled: T }> {
  for (let attempt = 1; ; attempt++) {
    try {
      if (o.reconcile && (askFirst || attempt > 1)) {
        const found = await untilAborted(lease, o.timeoutMs, (signal) => o.reconcile!({ downstreamKey, signal }));
        if (found !== undefined) return { reconciled: found };
      }
      return { value: await untilAborted(lease, o.timeoutMs, (signal) => fn({ downstreamKey, signal, attempt })) };
    } catch (error) {
      if (lease.aborted) throw lease.reason;
      if (!isUnknownOutcome(error)) throw error;
      if (attempt > o.retries) {
        throw new IdempotencyOutcomeUnknownError(
          `call ${JSON.stringify(name)}: no answer after ${attempt} tries (timeout or network error); the key stays started, and a retry or the completer resumes it with the same downstream key`,
          { cause: error },
        );
      }
    }
  }
}

/**
 * Runs `body` with a signal that aborts on `lease` and after `timeoutMs`, and
 * stops waiting for it then, whether or not `body` listens to the signal (its
 * late answer is nobody's: its outcome is decided by a retry or `reconcile`).
 */
async function untilAborted<R>(lease: AbortSignal, timeoutMs: number | undefined, body: (signal: AbortSignal) => Promise<R>): Promise<R> {
  if (lease.aborted) throw lease.reason;
  const own = new AbortController();
  const signal = AbortSignal.any([lease, own.signal]);
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs !== undefined) timer = setTimeout(() => own.abort(new CallTimedOut(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  aborted.catch(() => {});
  const running = Promise.resolve().then(() => body(signal));
  running.catch(() => {});
  try {
    return await Promise.race([running, aborted]);
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort!);
  }
}

import type { SqlRunner } from '../driver/database.js';
import { IdempotencyLeaseLostError } from '../shared/errors.js';
import { extendLease } from './fenced.js';
import type { KeyAddress } from './key-address.js';

/** A lease being kept alive: `signal` aborts (with IDEMPOTENCY_LEASE_LOST) once it is lost. */
export interface KeptLease {
  signal: AbortSignal;
  stop(): void;
}

/** The error of a lease that was lost, naming the key and workflow (never input or results). */
export const leaseLost = (k: KeyAddress, workflow: string, cause?: unknown) =>
  new IdempotencyLeaseLostError(
    `idempotency key ${JSON.stringify(k.key)} (workflow ${JSON.stringify(workflow)}): the lease was lost to a takeover; this process's write was refused`,
    { cause },
  );

/**
 * Extends the lease every `heartbeatMs` until stopped. A heartbeat that finds
 * the token gone aborts `signal`; one that fails (a lost connection) is
 * tried again at the next beat: if the lease runs out meanwhile, the fenced
 * writes notice. One beat at a time: a beat waiting on the row lock of a
 * local step (which extends the lease itself) never piles up behind it.
 */
export function keepLease(db: SqlRunner, k: KeyAddress, workflow: string, token: string, leaseMs: number, heartbeatMs: number): KeptLease {
  const controller = new AbortController();
  let beating = false;
  const timer = setInterval(() => {
    if (beating || controller.signal.aborted) return;
    beating = true;
    extendLease(db, k, token, leaseMs)
      .then((held) => {
        if (!held) controller.abort(leaseLost(k, workflow));
      })
      .catch(() => {})
      .finally(() => (beating = false));
  }, heartbeatMs);
  // The work itself keeps the process alive; the heartbeat must not outlive it.
  timer.unref();
  return { signal: controller.signal, stop: () => clearInterval(timer) };
}

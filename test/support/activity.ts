import type pg from 'pg';
import { callsWaitingForTheirKey } from '../../src/core/turns.js';
import { sleep } from './fixtures.js';

/**
 * Resolves once `n` sessions of this database wait on a lock (duplicates
 * parked behind an uncommitted claim): the moment to let the first commit.
 */
export async function waitForLockWaiters(pool: pg.Pool, n: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool.query<{ n: string }>(
      `select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
    );
    if (Number(rows[0]!.n) >= n) return;
    if (Date.now() > deadline) throw new Error(`only ${rows[0]!.n} of ${n} sessions waited on a lock after ${timeoutMs} ms`);
    await sleep(10);
  }
}

/**
 * Terminates the backend of a session that has waited on a lock for at least
 * `minWaitMs` (so not a 1 ms probe passing by), once there is one: a
 * connection dying under a call that waits.
 */
export async function terminateLockWaiter(pool: pg.Pool, minWaitMs = 200, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
       where datname = current_database() and wait_event_type = 'Lock' and state_change < now() - $1 * interval '1 millisecond'`,
      [minWaitMs],
    );
    if (rows.length > 0) return;
    if (Date.now() > deadline) throw new Error(`no session waited on a lock for ${minWaitMs} ms within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** Settles when `count` of `promises` have settled, whichever they are. */
export function whenSettled(promises: readonly Promise<unknown>[], count: number): Promise<void> {
  return new Promise((resolve) => {
    let settled = 0;
    const tick = () => {
      if (++settled === count) resolve();
    };
    for (const p of promises) p.then(tick, tick);
  });
}

/**
 * Resolves once `n` calls of this process wait for another call for their key
 * (duplicates parked in process, holding no connection, behind an uncommitted
 * first execution): the moment to let the first commit.
 */
export async function waitForWaitingCalls(n: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (callsWaitingForTheirKey() < n) {
    if (Date.now() > deadline) throw new Error(`only ${callsWaitingForTheirKey()} of ${n} calls waited for their key after ${timeoutMs} ms`);
    await sleep(10);
  }
}

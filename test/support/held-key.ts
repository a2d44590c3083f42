import type pg from 'pg';
import { withIdempotency } from '../../src/index.js';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { deferred, insertCharge } from './fixtures.js';

/** A call for a key that has claimed it and is inside `fn`, its transaction open, until `release()`. */
export interface HeldKey {
  /** Lets `fn` return; resolves to what the call resolved to (its result once committed). */
  release(): Promise<unknown>;
}

/**
 * Starts `withIdempotency(db, key, fn)` on a connection of its own and resolves
 * once `fn` runs: the claim is made and not committed, so the key is in flight.
 * `fn` writes one charge with `ref = key`, the effect audits count.
 */
export async function holdKey(db: IdempotencyDatabase, key: string, options: { scope?: string; fingerprint?: string } = {}): Promise<HeldKey> {
  const entered = deferred();
  const gate = deferred();
  const call = withIdempotency(
    db,
    key,
    async (tx) => {
      const charge = await insertCharge(tx, key, 100);
      entered.resolve();
      await gate.promise;
      return { chargeId: charge.id };
    },
    options,
  );
  call.catch(() => {});
  await Promise.race([entered.promise, call]);
  return {
    release: async () => {
      gate.resolve();
      return call;
    },
  };
}

/** A key row written straight into the table, in any state the library may leave one in. */
export async function insertKeyRow(
  pool: pg.Pool,
  row: { key: string; scope?: string; status: 'started' | 'completed'; expired?: boolean; response?: unknown; fingerprint?: string | null; lease?: boolean },
): Promise<void> {
  await pool.query(
    `insert into idempotency_keys (scope, key, status, fingerprint, response, created_at, completed_at, expires_at, locked_until)
     values ($1, $2, $3, $4, $5::jsonb, now() - interval '1 hour',
             case when $3 = 'completed' then now() - interval '59 minutes' end,
             case when $6 then now() - interval '1 minute' else now() + interval '1 day' end,
             case when $7 then now() + interval '5 minutes' end)`,
    [row.scope ?? '', row.key, row.status, row.fingerprint ?? null, row.response === undefined ? null : JSON.stringify({ value: row.response }), row.expired === true, row.lease === true],
  );
}

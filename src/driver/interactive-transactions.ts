import { entityKind } from 'drizzle-orm';
import { IdempotencyDriverUnsupportedError } from '../shared/errors.js';
import type { IdempotencyDatabase } from './database.js';

// drizzle's sessions whose transaction() throws: the driver sends one
// statement per request (or a batch), never BEGIN … COMMIT around code.
const WITHOUT_TRANSACTIONS: Readonly<Record<string, { driver: string; instead: string }>> = {
  NeonHttpSession: {
    driver: 'drizzle-orm/neon-http',
    instead: "use drizzle-orm/neon-serverless (the Pool or Client of @neondatabase/serverless, over WebSockets) on the same database",
  },
  PgRemoteSession: { driver: 'drizzle-orm/pg-proxy', instead: 'use a driver with transactions: node-postgres, postgres.js or neon-serverless' },
  // The Prisma extension's `$drizzle` sends each statement through $queryRawUnsafe; its transaction() throws.
  PrismaPgSession: {
    driver: 'drizzle-orm/prisma/pg',
    instead: "use node-postgres or postgres.js on the same database (Prisma's own $transaction cannot hold drizzle statements)",
  },
  // drizzle-orm 1.0's own HTTP driver (and its Neon form, drizzle-orm/postgres/http/neon).
  PostgresHttpSession: {
    driver: 'drizzle-orm/postgres/http',
    instead: 'use a wire-protocol driver on the same database: drizzle-orm/node-postgres, drizzle-orm/postgres-js or drizzle-orm/neon-serverless',
  },
  XataHttpSession: { driver: 'drizzle-orm/xata-http', instead: "use node-postgres or postgres.js on Xata's PostgreSQL connection string" },
};

function unsupported(driver: string, instead: string, what: string): IdempotencyDriverUnsupportedError {
  return new IdempotencyDriverUnsupportedError(
    `${driver} has no interactive transactions, which ${what} needs (the key, the writes of fn and the stored result commit in one transaction); ${instead}`,
  );
}

/**
 * Throws `IDEMPOTENCY_DRIVER_UNSUPPORTED` before anything is sent when `db`
 * is a drizzle database whose driver cannot open a transaction around code.
 *
 * @example
 * refuseDriverWithoutTransactions(db, 'withIdempotency');
 */
export function refuseDriverWithoutTransactions(db: IdempotencyDatabase, what: string): void {
  const session = (db as { session?: { constructor: unknown } }).session;
  const kind = (session?.constructor as { [entityKind]?: string } | undefined)?.[entityKind];
  const known = kind === undefined ? undefined : WITHOUT_TRANSACTIONS[kind];
  if (known) throw unsupported(known.driver, known.instead, what);
}


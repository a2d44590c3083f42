import { sql } from 'drizzle-orm';
import { type AnyPgColumn, check, index, integer, jsonb, pgSchema, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';

/** The states a key row can be in. A `started` row is visible to other
 * transactions only while leased work holds it (`locked_until`, `owner_token`);
 * `failed` is leased work that failed for sure on its last attempt. */
export type IdempotencyKeyStatus = 'started' | 'completed' | 'failed';

/** Name of the table in the database. */
export const IDEMPOTENCY_KEYS_TABLE = 'idempotency_keys';

// One column set for the public-schema table and for tables in a named schema,
// so the two can never drift apart.
const columns = () => ({
  scope: text('scope').notNull().default(''),
  key: text('key').notNull(),
  fingerprint: text('fingerprint'),
  status: text('status').$type<IdempotencyKeyStatus>().notNull().default('started'),
  response: jsonb('response'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  completedAt: timestamp('completed_at', { withTimezone: true }),
  // Always written from the database clock (never the application's), so app
  // servers with skewed clocks agree on when a key dies.
  expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  lockedUntil: timestamp('locked_until', { withTimezone: true }),
  // Leased workflows only (null for in-transaction keys). The fencing token:
  // every write of the lease holder checks it, so a former owner's are refused.
  ownerToken: uuid('owner_token'),
  // Which workflow resumes the key, from what input, with which steps done.
  workflow: text('workflow'),
  input: jsonb('input'),
  steps: jsonb('steps'),
  recoveryPoint: text('recovery_point'),
  // Claims and takeovers so far: past the workflow's maxAttempts the key fails.
  attempts: integer('attempts').notNull().default(0),
});


function tableExtras(t: Record<'scope' | 'key' | 'status' | 'expiresAt' | 'lockedUntil' | 'ownerToken', AnyPgColumn>) {
  return [
    // The lock: a claim is an INSERT that conflicts on this entry.
    primaryKey({ name: 'idempotency_keys_pkey', columns: [t.scope, t.key] }),
    check('idempotency_keys_status_check', sql`${t.status} in ('started', 'completed', 'failed')`),
    // Serves the sweep: it walks expired rows oldest first.
    index('idempotency_keys_expires_at_idx').on(t.expiresAt),
    // Serves the completer: leased keys still started, by when their lease runs
    // out. Only leased rows (an owner token): the in-transaction claims never
    // enter it, so their statements cannot plan a scan of it, whose predicate
    // locks would make SERIALIZABLE claims of different keys fail each other.
    index('idempotency_keys_started_locked_until_idx').on(t.lockedUntil).where(sql`${t.status} = 'started' and ${t.ownerToken} is not null`),
  ];
}

/**
 * The `idempotency_keys` table, for applications that manage it in their own
 * Drizzle schema (pick this or `migrate()`, never both).
 *
 * @example
 * // drizzle/schema.ts of your app
 * export { idempotencyKeys } from 'drizzle-idempotency';
 */
export const idempotencyKeys = pgTable(IDEMPOTENCY_KEYS_TABLE, columns(), tableExtras);

/**
 * The same table in a named Postgres schema.
 *
 * @example
 * export const keys = idempotencyKeysIn('billing'); // billing.idempotency_keys
 */
export function idempotencyKeysIn(schemaName: string) {
  return pgSchema(schemaName).table(IDEMPOTENCY_KEYS_TABLE, columns(), tableExtras);
}

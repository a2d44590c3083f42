import { sql, type SQL } from 'drizzle-orm';
import { isConnectionLost } from '../driver/connection-loss.js';
import { queryRows, type IdempotencyDatabase } from '../driver/database.js';
import { LOCK_NOT_AVAILABLE, UNDEFINED_TABLE, sqlState } from '../driver/pg-error.js';
import { inTransaction as inOwnTransaction } from '../driver/pool-transaction.js';
import { redact } from '../driver/redacted-error.js';
import { assertValidSchemaName, keysTable } from '../schema/keys-table.js';
import {
  IdempotencyCommitFailedError,
  IdempotencyConnectionLostError,
  IdempotencyError,
  IdempotencyOptionsInvalidError,
} from '../shared/errors.js';
import { assertValidKey, assertValidScope } from '../shared/key.js';
import type { IdempotencyKeyStatus } from '../schema/table.js';

/** One key's committed row, as the operator functions read it. */
export interface KeyRow {
  status: IdempotencyKeyStatus;
  fingerprint: string | null;
  createdAt: Date;
  completedAt: Date | null;
  expiresAt: Date;
  lockedUntil: Date | null;
  responseBytes: number | null;
  /** The stored jsonb envelope, only when it was asked for. */
  response: unknown;
  expired: boolean;
  /** A live transaction holds a lock on the row (only known to reads that skip locked rows). */
  locked: boolean;
  /** Leased work: the workflow that resumes it; `null` for an in-transaction call's key. */
  workflow: string | null;
  /** Leased work: the last step that committed; `null` before the first. */
  recoveryPoint: string | null;
  /** Leased work: the names of the steps recorded so far, sorted; never their results. */
  recordedSteps: string[];
  /** Leased work: claims and takeovers so far; 0 for an in-transaction call's key. */
  attempts: number;
  /** An owner token is set: a run of leased work owns the key (the token itself is a capability, never read). */
  hasOwnerToken: boolean;
  /** `locked_until` lies ahead of the database clock. */
  leaseHeld: boolean;
  now: Date;
}

interface RawKeyRow {
  status: IdempotencyKeyStatus;
  fingerprint: string | null;
  created_at: Date | string;
  completed_at: Date | string | null;
  expires_at: Date | string;
  locked_until: Date | string | null;
  response_bytes: number | string | null;
  response: unknown;
  expired: boolean;
  locked: boolean;
  workflow: string | null;
  recovery_point: string | null;
  recorded_steps: string;
  attempts: number | string;
  has_owner_token: boolean;
  lease_held: boolean;
  now: Date | string;
}

/** Where one key lives: its table, scope and key. */
export interface KeyAddress {
  schema: string | undefined;
  scope: string;
  key: string;
}

// Drivers differ: node-postgres hands timestamptz over as Date, others as text.
const toDate = (value: Date | string) => (value instanceof Date ? value : new Date(value));
const toDateOrNull = (value: Date | string | null) => (value === null ? null : toDate(value));

/**
 * Reads the committed row of a key, or undefined. `lock: 'skip'` never waits
 * and reports in `locked` whether a live transaction holds the row: the
 * sub-select's FOR SHARE SKIP LOCKED finds nothing exactly when a writer
 * (UPDATE, DELETE, SELECT FOR UPDATE) has it. `lock: 'update'` takes the row
 * for ourselves, waiting at most the transaction's lock_timeout.
 */
export async function readKeyRow(
  db: IdempotencyDatabase,
  at: KeyAddress,
  options: { lock: 'skip' | 'update'; response: boolean },
): Promise<KeyRow | undefined> {
  const table = keysTable(at.schema);
  const locked: SQL =
    options.lock === 'skip'
      ? sql`not exists (select 1 from ${table} as l where l.scope = k.scope and l.key = k.key for share skip locked)`
      : sql`false`;
  const [row] = await queryRows<RawKeyRow>(
    db,
    sql`select k.status, k.fingerprint, k.created_at, k.completed_at, k.expires_at, k.locked_until,
               octet_length(k.response::text) as response_bytes,
               ${options.response ? sql`k.response::text` : sql`null::text`} as response,
               k.expires_at <= statement_timestamp() as expired,
               ${locked} as locked,
               k.workflow, k.recovery_point, k.attempts,
               -- Names only: a step's result (a charge, an address) is customer data.
               coalesce((select jsonb_agg(name order by name) from jsonb_object_keys(case when jsonb_typeof(k.steps) = 'object' then k.steps end) as name), '[]'::jsonb)::text as recorded_steps,
               k.owner_token is not null as has_owner_token,
               coalesce(k.locked_until > statement_timestamp(), false) as lease_held,
               statement_timestamp() as now
        from ${table} as k
        where k.scope = ${at.scope} and k.key = ${at.key}
        ${options.lock === 'update' ? sql`for update of k` : sql``}`,
  );
  if (!row) return undefined;
  return {
    status: row.status,
    fingerprint: row.fingerprint,
    createdAt: toDate(row.created_at),
    completedAt: toDateOrNull(row.completed_at),
    expiresAt: toDate(row.expires_at),
    lockedUntil: toDateOrNull(row.locked_until),
    responseBytes: row.response_bytes === null ? null : Number(row.response_bytes),
    response: typeof row.response === 'string' ? (JSON.parse(row.response) as unknown) : row.response,
    expired: row.expired,
    locked: row.locked,
    workflow: row.workflow,
    recoveryPoint: row.recovery_point,
    recordedSteps: JSON.parse(row.recorded_steps) as string[],
    attempts: Number(row.attempts),
    hasOwnerToken: row.has_owner_token,
    leaseHeld: row.lease_held,
    now: toDate(row.now),
  };
}

/** What the probe found where no committed row was visible. */
export type ProbeOutcome =
  | { found: 'nothing'; now: Date }
  /** A live transaction's claim (not committed, so no one else can read it) or its change to the row. */
  | { found: 'held'; now: Date }
  /** A row committed between the read and the probe: read again. */
  | { found: 'row'; now: Date };

/**
 * Finds out whether a live transaction holds a key that has no committed row
 * to read: an uncommitted claim is invisible to every other transaction, but
 * an INSERT of the same key waits on its unique entry. The probe inserts with
 * ON CONFLICT DO NOTHING under the transaction's lock_timeout, in a savepoint
 * so that a timeout leaves the transaction usable; the caller rolls the
 * transaction back, so the probe row never commits. While it lives (the
 * instant of the statement), a first call for the key waits on it as on any
 * claim.
 */
export async function probeKey(tx: IdempotencyDatabase, at: KeyAddress): Promise<ProbeOutcome> {
  try {
    const inserted = await tx.transaction(async (savepoint) =>
      queryRows<{ one: number }>(
        savepoint,
        sql`insert into ${keysTable(at.schema)} (scope, key, status, expires_at)
            values (${at.scope}, ${at.key}, 'started', statement_timestamp())
            on conflict (scope, key) do nothing
            returning 1 as one`,
      ),
    );
    return { found: inserted.length > 0 ? 'nothing' : 'row', now: await clock(tx) };
  } catch (error) {
    if (isLockTimeout(error)) return { found: 'held', now: await clock(tx) };
    throw error;
  }
}

async function clock(tx: IdempotencyDatabase): Promise<Date> {
  const [row] = await queryRows<{ now: Date | string }>(tx, sql`select statement_timestamp() as now`);
  return toDate(row!.now);
}

// How long a look or an eviction waits for another operator's on the same key (they last milliseconds).
const OPERATOR_TURN_MS = 1_000;

/**
 * Takes this transaction's turn among the operator functions working on one
 * key (a transaction-scoped advisory lock), then sets lock_timeout to `thenMs`.
 * Without it, two looks at an absent key would each take the other's probe for
 * a live claim, and a look's share lock would make an eviction refuse a key
 * nobody holds. Application calls never take this lock: they never wait on
 * it. If the turn does not come within a second (an eviction waiting for a
 * live holder of the key), we go on without it; the probe then finds that
 * holder anyway.
 */
export async function takeOperatorTurn(tx: IdempotencyDatabase, at: KeyAddress, thenMs: number): Promise<void> {
  try {
    await tx.transaction(async (savepoint) => {
      await setLockTimeout(savepoint, OPERATOR_TURN_MS);
      // Scopes hold no control characters, so chr(31) separates scope and key unambiguously.
      await queryRows(
        savepoint,
        sql`select pg_advisory_xact_lock(hashtext('drizzle-idempotency operator turn'), hashtext(${at.scope} || chr(31) || ${at.key}))::text as locked`,
      );
    });
  } catch (error) {
    if (!isLockTimeout(error)) throw error;
  }
  await setLockTimeout(tx, thenMs);
}

/** Sets how long this transaction's statements may wait for a lock before failing with 55P03. */
export async function setLockTimeout(db: IdempotencyDatabase, ms: number): Promise<void> {
  await queryRows(db, sql`select set_config('lock_timeout', ${`${ms}ms`}, true)`);
}

/** True for the error a statement fails with when its lock_timeout ran out. */
export const isLockTimeout = (error: unknown) => sqlState(error) === LOCK_NOT_AVAILABLE;

class RolledBack<T> {
  constructor(readonly value: T) {}
}

/**
 * Runs `fn` in a transaction of its own and commits only when `fn` says so:
 * the probe's row, and our locks, must never outlive a look.
 *
 * The transaction is READ COMMITTED whatever the server's default: each
 * statement must see what committed before it (a claim that committed while we
 * probed, the row a holder committed while we waited), where REPEATABLE READ
 * or SERIALIZABLE would fail with 40001 or not see it. On a node-postgres pool
 * the connection is checked out by the library, which listens for its errors:
 * a backend that dies fails the call with `IDEMPOTENCY_CONNECTION_LOST` (or
 * `IDEMPOTENCY_COMMIT_FAILED` when COMMIT got no answer), never the process.
 * A missing table is `IDEMPOTENCY_OPTIONS_INVALID`, as `withIdempotency` has it.
 */
export async function inTransaction<T>(
  db: IdempotencyDatabase,
  schema: string | undefined,
  fn: (tx: IdempotencyDatabase) => Promise<{ commit: boolean; value: T }>,
): Promise<T> {
  let committing = false;
  try {
    return await inOwnTransaction(db, { isolationLevel: 'read committed' }, async (tx) => {
      const { commit, value } = await fn(tx);
      if (!commit) throw new RolledBack(value);
      committing = true;
      return value;
    });
  } catch (error) {
    if (error instanceof RolledBack) return (error as RolledBack<T>).value;
    if (!(error instanceof IdempotencyError) && sqlState(error) === UNDEFINED_TABLE) {
      throw new IdempotencyOptionsInvalidError(
        `the idempotency_keys table does not exist${schema === undefined ? ' on the search_path' : ` in schema ${JSON.stringify(schema)}`}: run migrate()`,
        { cause: redact(error) },
      );
    }
    if (error instanceof IdempotencyError || !isConnectionLost(error)) throw error;
    if (committing) {
      throw new IdempotencyCommitFailedError('COMMIT got no answer: whether the change committed is unknown; look again (inspect) before you repeat it', {
        cause: redact(error),
      });
    }
    throw new IdempotencyConnectionLostError('the database connection was lost; nothing was changed: run it again', { cause: redact(error) });
  }
}

/** Refuses, as `withIdempotency` does, a `db` that is not a Drizzle database. */
export function assertDatabase(db: unknown): asserts db is IdempotencyDatabase {
  const methods = db as Partial<IdempotencyDatabase> | null | undefined;
  if (typeof methods?.execute !== 'function' || typeof methods.transaction !== 'function') {
    throw new IdempotencyOptionsInvalidError('db must be a Drizzle PostgreSQL database');
  }
}

/**
 * Checks a key, its scope and schema as `withIdempotency` does, before
 * anything touches the database: `IDEMPOTENCY_KEY_INVALID` for the key,
 * `IDEMPOTENCY_OPTIONS_INVALID` for the rest.
 */
export function keyAddress(key: unknown, options: unknown): KeyAddress {
  if (typeof options !== 'object' || options === null) throw new IdempotencyOptionsInvalidError('options must be an object');
  const { scope = '', schema } = options as { scope?: unknown; schema?: unknown };
  assertValidKey(key);
  assertValidScope(scope);
  if (schema !== undefined) assertValidSchemaName(schema);
  return { schema, scope, key };
}

/** Refuses an option that must be a boolean when given. */
export function assertOptionalBoolean(value: unknown, name: string): asserts value is boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new IdempotencyOptionsInvalidError(`${name} must be true or false, got ${JSON.stringify(value) ?? String(value)}`);
  }
}

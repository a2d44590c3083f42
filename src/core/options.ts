import type { PgTransactionConfig } from 'drizzle-orm/pg-core';
import { assertValidSchemaName } from '../schema/keys-table.js';
import { parseDuration, type Duration } from '../shared/duration.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { fingerprintOf, type Fingerprint } from './fingerprint.js';
import { assertValidKey, assertValidScope } from '../shared/key.js';
import { assertValidTransactionConfig } from '../driver/transaction-config.js';
import { DEFAULT_MAX_RESULT_BYTES } from './result.js';
import type { CallTrace } from '../telemetry/publish.js';

/** What a duplicate does while the first call still holds the key. */
export type InFlightPolicy = 'wait' | 'reject';

/** Options of `withIdempotency` and its variants. */
export interface IdempotencyOptions {
  /** Who the key belongs to: tenant, user or API client. Keys never match across scopes. (Default: `''`) */
  scope?: string;
  /** What the request was: a duplicate with another fingerprint fails with `IDEMPOTENCY_KEY_REUSED`.
   * Any JSON value (hashed canonically) or a precomputed string. (Default: none, not compared) */
  fingerprint?: Fingerprint;
  /** How long the key lives, from the database clock. (Default: `'24h'`) */
  ttl?: Duration;
  /** `'wait'` blocks until the first transaction ends, then replays (or runs, if it rolled back);
   * `'reject'` fails at once with `IDEMPOTENCY_IN_FLIGHT`. (Default: `'wait'`) */
  onInFlight?: InFlightPolicy;
  /** Bound on `'wait'`; past it the call fails with `IDEMPOTENCY_IN_FLIGHT`. (Default: `'10s'`) */
  waitTimeout?: Duration;
  /** Largest result stored, in bytes of JSON. (Default: 1 MiB) */
  maxResultBytes?: number;
  /** Postgres schema that holds `idempotency_keys`. (Default: the search_path) */
  schema?: string;
  /** Given a database (not a transaction): look a completed key up with one
   * SELECT before the claim. Cheaper replays; on a node-postgres pool the
   * lookup travels with BEGIN and the claim while lookups rarely find an
   * answer, else it costs first executions a round trip. (Default: `false`) */
  lookupFirst?: boolean;
  /** Also return the key's expiry (database clock) in the outcome of
   * `withIdempotencyOutcome`, as `expiresAt`. (Default: `false`) */
  withExpiry?: boolean;
  /** Given a database: the transaction to open (isolation level etc.). (Default: the server's) */
  transaction?: PgTransactionConfig;
  /** Given a database: how often to retry a serialization failure of the claim
   * (a concurrent duplicate committed under REPEATABLE READ/SERIALIZABLE); the
   * retry replays. (Default: `3`) */
  serializationRetries?: number;
  /** Named prepared statements for the library's own statements (lookup, claim,
   * read, store), parsed and planned once per connection instead of on every
   * call. Unset: named where the library uses a node-postgres pool itself (the
   * transactions it opens, the lookup); if the server refuses one (a pooler
   * that does not keep them, e.g. PgBouncer before 1.21 in transaction mode),
   * that pool goes back to unnamed statements and the call runs again. `true`:
   * named everywhere, in your transactions too; `false`: never. postgres.js
   * prepares on its own and PGlite ignores it. (Default: unset) */
  prepare?: boolean;
}

/** Options checked and normalised once, before anything touches the database. */
export interface ResolvedOptions {
  key: string;
  scope: string;
  fingerprint: string | null;
  ttlMs: number;
  lockTimeoutMs: number;
  /** Under 'reject': how long a claim may wait for a sweep or reclaim that holds a dead row. */
  deadKeyWaitMs: number;
  onInFlight: InFlightPolicy;
  maxResultBytes: number;
  schema: string | undefined;
  lookupFirst: boolean;
  withExpiry: boolean;
  transaction: PgTransactionConfig | undefined;
  serializationRetries: number;
  /** 'auto': named on the library's own node-postgres pool use, with a fallback. */
  prepare: 'always' | 'auto' | 'never';
  /** Telemetry of this call, when someone listened as it started. */
  trace?: CallTrace | undefined;
}

export const DEFAULT_TTL = '24h';
export const DEFAULT_WAIT_TIMEOUT = '10s';

// PostgreSQL's lock_timeout is an int of milliseconds: a longer bound would
// be refused by the server on every call, so it is refused here, once.
const MAX_WAIT_MS = 2 ** 31 - 1;
// What a 'reject' claim grants a sweep batch or a reclaim that holds a dead
// row: both finish in milliseconds; a full second is a wide margin.
const DEAD_KEY_WAIT_MS = 1_000;

/** Validates the key and options; throws a typed error and touches nothing. */
export function resolveOptions(key: unknown, options: IdempotencyOptions = {}): ResolvedOptions {
  assertValidKey(key);
  if (typeof options !== 'object' || options === null) throw new IdempotencyOptionsInvalidError('options must be an object');
  const scope = options.scope ?? '';
  assertValidScope(scope);
  if (options.schema !== undefined) assertValidSchemaName(options.schema);
  const onInFlight = options.onInFlight ?? 'wait';
  if (onInFlight !== 'wait' && onInFlight !== 'reject') {
    throw new IdempotencyOptionsInvalidError(`onInFlight must be 'wait' or 'reject', got ${JSON.stringify(onInFlight)}`);
  }
  const maxResultBytes = options.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES;
  if (!Number.isSafeInteger(maxResultBytes) || maxResultBytes < 16) {
    throw new IdempotencyOptionsInvalidError('maxResultBytes must be an integer of at least 16');
  }
  const serializationRetries = options.serializationRetries ?? 3;
  if (!Number.isSafeInteger(serializationRetries) || serializationRetries < 0 || serializationRetries > 100) {
    throw new IdempotencyOptionsInvalidError('serializationRetries must be an integer from 0 to 100');
  }
  assertValidTransactionConfig(options.transaction);
  for (const flag of ['prepare', 'lookupFirst', 'withExpiry'] as const) {
    if (options[flag] !== undefined && typeof options[flag] !== 'boolean') {
      throw new IdempotencyOptionsInvalidError(`${flag} must be a boolean, got ${JSON.stringify(options[flag])}`);
    }
  }
  const waitMs = parseDuration(options.waitTimeout ?? DEFAULT_WAIT_TIMEOUT, 'waitTimeout');
  if (waitMs > MAX_WAIT_MS) {
    throw new IdempotencyOptionsInvalidError(`waitTimeout must be at most ${MAX_WAIT_MS} ms (PostgreSQL's lock_timeout limit)`);
  }
  return {
    key,
    scope,
    fingerprint: fingerprintOf(options.fingerprint),
    ttlMs: parseDuration(options.ttl ?? DEFAULT_TTL, 'ttl'),
    // 'reject' still has to notice the holder: 1 ms is the shortest lock_timeout.
    lockTimeoutMs: onInFlight === 'reject' ? 1 : waitMs,
    deadKeyWaitMs: Math.min(waitMs, DEAD_KEY_WAIT_MS),
    onInFlight,
    maxResultBytes,
    schema: options.schema,
    lookupFirst: options.lookupFirst ?? false,
    withExpiry: options.withExpiry ?? false,
    transaction: options.transaction ?? undefined,
    serializationRetries,
    prepare: options.prepare === undefined ? 'auto' : options.prepare ? 'always' : 'never',
    // Set by the call: present from the start, so that setting it allocates nothing.
    trace: undefined,
  };
}

import { isConnectionLost } from '../driver/connection-loss.js';
import {
  DEADLOCK_DETECTED,
  IN_FAILED_SQL_TRANSACTION,
  LOCK_NOT_AVAILABLE,
  QUERY_CANCELED,
  READ_ONLY_SQL_TRANSACTION,
  SERIALIZATION_FAILURE,
  sqlState,
  UNDEFINED_TABLE,
} from '../driver/pg-error.js';
import { redact } from '../driver/redacted-error.js';
import {
  IdempotencyCommitFailedError,
  IdempotencyConnectionLostError,
  IdempotencyDeadlockError,
  IdempotencyError,
  IdempotencyInFlightError,
  IdempotencyOptionsInvalidError,
  IdempotencySerializationError,
  IdempotencyTransactionAbortedError,
} from '../shared/errors.js';
import type { ResolvedOptions } from './options.js';

/**
 * How far a call got, so that a failure can be told apart: before `fn`, in
 * `fn`, storing its result, or after the result was stored (only COMMIT, or
 * releasing the savepoint, was left).
 */
export interface Progress {
  phase: 'claim' | 'fn' | 'store' | 'stored';
  /** Set when Postgres failed one of fn's statements with a serialization
   * failure or deadlock and so aborted the transaction (its SQLSTATE). */
  conflict?: string;
}

/**
 * The error a call fails with, given where it failed and whose transaction it
 * was in. `fn`'s own errors pass through unchanged, unless the connection is
 * gone (then the answer is the same wherever it broke, a retryable error), or,
 * in a transaction of our own, Postgres aborted it at one of fn's statements
 * with a serialization failure or deadlock (`progress.conflict`; retried like the claim's).
 */
export function explainFailure(error: unknown, progress: Progress, transaction: 'own' | 'caller'): unknown {
  if (error instanceof IdempotencyError) return error;
  if (progress.phase === 'stored' && transaction === 'own') {
    // COMMIT under SERIALIZABLE can fail with 40001: then nothing committed.
    if (sqlState(error) === SERIALIZATION_FAILURE) {
      return new IdempotencySerializationError('the transaction could not commit under its isolation level; run it again', { cause: redact(error) });
    }
    return new IdempotencyCommitFailedError(
      'COMMIT failed or was not answered: whether the key and its effects committed is unknown; retry with the same key',
      { cause: redact(error) },
    );
  }
  if (isConnectionLost(error)) {
    return new IdempotencyConnectionLostError('the database connection was lost before the transaction committed; retry with the same key', {
      cause: redact(error),
    });
  }
  if (progress.phase === 'fn' && transaction === 'own') {
    // fn's statement lost to a concurrent transaction: Postgres rolled back the
    // whole attempt, claim included, so running it again is what it asks for.
    const state = progress.conflict;
    if (state === SERIALIZATION_FAILURE) {
      return new IdempotencySerializationError('a statement of fn could not serialize with a concurrent transaction; nothing committed, run it again', {
        cause: redact(error),
      });
    }
    if (state === DEADLOCK_DETECTED) {
      return new IdempotencyDeadlockError('a statement of fn deadlocked with another transaction; nothing committed, run it again', {
        cause: redact(error),
      });
    }
  }
  if (progress.phase === 'store' && sqlState(error) === IN_FAILED_SQL_TRANSACTION) {
    return new IdempotencyTransactionAbortedError(
      'fn returned with its transaction failed (it caught a failed statement without a savepoint), so its result could not be stored; nothing of fn or the key was kept',
      { cause: redact(error) },
    );
  }
  if (progress.phase === 'claim' && sqlState(error) === IN_FAILED_SQL_TRANSACTION) {
    return new IdempotencyTransactionAbortedError(
      'the transaction passed to withIdempotency had already failed; roll it back and run it again',
      { cause: redact(error) },
    );
  }
  return error;
}

/**
 * What Postgres answered to one of the library's own statements (claim, read,
 * reclaim, store, lookup), as the library's error; anything else unchanged.
 * `waiting`: the statement may wait on the key's row lock, under our bound.
 */
export function statementFailure(error: unknown, o: ResolvedOptions, waiting: boolean): unknown {
  const key = JSON.stringify(o.key);
  if (waiting && isClientTimeout(error)) {
    return new IdempotencyInFlightError(`idempotency key ${key}: the driver's query timeout ended the wait for the transaction holding it`, {
      cause: error,
    });
  }
  switch (sqlState(error)) {
    case LOCK_NOT_AVAILABLE:
      if (!waiting) return error;
      return new IdempotencyInFlightError(
        o.onInFlight === 'reject'
          ? `idempotency key ${key} is in flight in another transaction`
          : `idempotency key ${key} was still in flight after waiting ${o.lockTimeoutMs} ms`,
        { cause: error },
      );
    case QUERY_CANCELED:
      if (!waiting) return error;
      // statement_timeout (or a cancel) ended the wait before our bound did.
      return new IdempotencyInFlightError(
        `idempotency key ${key}: the wait for the transaction holding it was cancelled (statement_timeout shorter than waitTimeout?)`,
        { cause: error },
      );
    case SERIALIZATION_FAILURE:
      return new IdempotencySerializationError(
        `idempotency key ${key}: a concurrent transaction conflicts with this one (it may have committed this key); retry the whole transaction`,
        { cause: error },
      );
    case DEADLOCK_DETECTED:
      return new IdempotencyDeadlockError(
        `idempotency key ${key}: another transaction holds a key this one holds, and waits for it; retry the whole transaction`,
        { cause: error },
      );
    case UNDEFINED_TABLE:
      return new IdempotencyOptionsInvalidError(
        `the idempotency_keys table does not exist${o.schema === undefined ? ' on the search_path' : ` in schema ${JSON.stringify(o.schema)}`}: run migrate()`,
        { cause: error },
      );
    case READ_ONLY_SQL_TRANSACTION:
      return new IdempotencyOptionsInvalidError('the transaction is read-only: an idempotency key has to be written', { cause: error });
    default:
      return error;
  }
}

// node-postgres' own `query_timeout` gives up on a statement without a code.
const isClientTimeout = (error: unknown) => error instanceof Error && sqlState(error) === undefined && /Query read timeout/.test(error.message);

import { isConnectionLost } from '../driver/connection-loss.js';
import { IN_FAILED_SQL_TRANSACTION, SERIALIZATION_FAILURE, sqlState } from '../driver/pg-error.js';
import { redact } from '../driver/redacted-error.js';
import {
  IdempotencyCommitFailedError,
  IdempotencyConnectionLostError,
  IdempotencyError,
  IdempotencySerializationError,
  IdempotencyTransactionAbortedError,
} from '../shared/errors.js';

/**
 * How far a call got, so that a failure can be told apart: before `fn`, in
 * `fn`, storing its result, or after the result was stored (only COMMIT, or
 * releasing the savepoint, was left).
 */
export interface Progress {
  phase: 'claim' | 'fn' | 'store' | 'stored';
}

/**
 * The error a call fails with, given where it failed and whose transaction it
 * was in. `fn`'s own errors pass through unchanged, unless the connection is
 * gone: then the answer is the same wherever it broke, a retryable error.
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
  if (progress.phase === 'claim' && sqlState(error) === IN_FAILED_SQL_TRANSACTION) {
    return new IdempotencyTransactionAbortedError(
      'the transaction passed to withIdempotency had already failed; roll it back and run it again',
      { cause: redact(error) },
    );
  }
  return error;
}

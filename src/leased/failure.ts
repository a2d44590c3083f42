import { isConnectionLost } from '../driver/connection-loss.js';
import { redact } from '../driver/redacted-error.js';
import { IdempotencyConnectionLostError, IdempotencyError } from '../shared/errors.js';

/**
 * The error leased work fails with: a lost database connection (in a claim,
 * a step, a record or the completion) becomes IDEMPOTENCY_CONNECTION_LOST,
 * wherever it broke; the key keeps what committed, so a retry resumes it.
 * Every other error passes through unchanged.
 */
export function leasedFailure(error: unknown): unknown {
  if (error instanceof IdempotencyError || !isConnectionLost(error)) return error;
  return new IdempotencyConnectionLostError(
    'the database connection was lost during leased work: what committed stays recorded; retry with the same key to resume from the last committed step',
    { cause: redact(error) },
  );
}

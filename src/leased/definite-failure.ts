import { isConnectionLost } from '../driver/connection-loss.js';
import { IdempotencyConnectionLostError, IdempotencyLeaseLostError, IdempotencyOutcomeUnknownError } from '../shared/errors.js';
import { isUnknownOutcome } from './unknown-outcome.js';

const IN_DOUBT = [IdempotencyOutcomeUnknownError, IdempotencyLeaseLostError, IdempotencyConnectionLostError];

/**
 * Whether a run's error says the work definitely failed, so that its key may
 * be recorded as failed on its last attempt. An unknown outcome (a call, or
 * the workflow's own request, that timed out or lost its connection), a lost
 * lease or a lost database connection says nothing of the kind: a charge may
 * stand behind it, and a key recorded as failed would send the client to pay
 * another way. Such a key stays started and resumable, also as the cause of
 * the error the workflow threw.
 */
export function isDefiniteFailure(error: unknown): boolean {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (IN_DOUBT.some((kind) => e instanceof kind)) return false;
  }
  return !isUnknownOutcome(error) && !isConnectionLost(error);
}

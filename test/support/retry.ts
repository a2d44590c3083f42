import { IdempotencyError } from '../../src/index.js';

/**
 * What the README tells callers who own REPEATABLE READ / SERIALIZABLE
 * transactions to do: run the whole transaction again on a retryable error.
 */
export async function retryTransaction<T>(run: () => Promise<T>, onRetry?: () => void, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (!(error instanceof IdempotencyError && error.code === 'IDEMPOTENCY_SERIALIZATION_FAILURE') || attempt >= attempts) throw error;
      onRetry?.();
    }
  }
}

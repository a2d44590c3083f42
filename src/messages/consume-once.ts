import type { IdempotencyOptions } from '../core/options.js';
import type { Jsonified } from '../core/result.js';
import type { IdempotentOutcome } from '../core/stored-key.js';
import { withIdempotencyOutcome } from '../core/with-idempotency.js';
import type { IdempotencyDatabase, TransactionOf } from '../driver/database.js';
import { downstreamKey } from '../shared/downstream-key.js';

/** What a message handler learns about the message it consumes, besides the message itself. */
export interface MessageContext {
  /** The id the message is consumed under: its idempotency key. */
  messageId: string;
  /** The idempotency scope it is consumed in. */
  scope: string;
  /** The key to give a downstream API for `step` of this message: the same on every redelivery. */
  downstreamKey(step: string): string;
}

/**
 * Consumes a message at most once per `(scope, messageId)`: runs `fn`'s
 * database effects and stores its result in one transaction (or one savepoint
 * of yours), so that a redelivery, even after a crash, gets the stored result
 * without running `fn` again. `withIdempotencyOutcome` under the message id.
 *
 * @example
 * const { value, replayed } = await consumeOnce(db, sqsMessage.MessageId, (tx) => recordPayment(tx, sqsMessage.Body), { scope: 'payments-queue' });
 */
export async function consumeOnce<TDb extends IdempotencyDatabase, T>(
  db: TDb,
  messageId: string,
  fn: (tx: TransactionOf<TDb>, context: MessageContext) => Promise<T>,
  options?: IdempotencyOptions,
): Promise<IdempotentOutcome<Jsonified<T>>> {
  const scope = options?.scope ?? '';
  const context: MessageContext = {
    messageId,
    scope,
    downstreamKey: (step) => downstreamKey({ scope, key: messageId, step }),
  };
  return withIdempotencyOutcome(db, messageId, (tx) => fn(tx, context), options);
}

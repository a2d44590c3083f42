import type { Fingerprint } from '../core/fingerprint.js';
import type { IdempotencyOptions } from '../core/options.js';
import type { Jsonified } from '../core/result.js';
import type { IdempotentOutcome } from '../core/stored-key.js';
import type { IdempotencyDatabase } from '../driver/database.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { consumeOnce, type MessageContext } from './consume-once.js';

/** How `idempotentHandler` names a message and checks that a redelivery is the same message. */
export interface MessageHandlerOptions<M> extends Omit<IdempotencyOptions, 'fingerprint' | 'scope'> {
  /** The idempotency scope, or how to find it in the message (a queue or topic name, a tenant). (Default: `''`) */
  scope?: string | ((message: M) => string);
  /** The message's id (SQS `MessageId`, a Kafka `topic/partition/offset`, a pg-boss job id), or one derived from its payload. */
  messageId: (message: M) => string;
  /** What the message says: the same id with another fingerprint fails with `IDEMPOTENCY_KEY_REUSED` instead of replaying. (Default: none) */
  fingerprint?: (message: M) => Fingerprint;
}

/**
 * Wraps a message handler so that each message runs its database effects once
 * and every redelivery gets the stored result. Call the wrapped handler with a
 * database (a transaction per message) or with your transaction (a batch in
 * one transaction: a message twice in the batch runs once). `tx` is a
 * transaction of the database you pass: declare its type on `handle`.
 *
 * @example
 * const handle = idempotentHandler({ scope: 'orders', messageId: (m: KafkaRecord) => `${m.topic}/${m.partition}/${m.offset}` }, (tx, m) => saveOrder(tx, m.value));
 * for (const record of batch) await handle(db, record);
 */
export function idempotentHandler<M, T, TTx extends IdempotencyDatabase = IdempotencyDatabase>(
  options: MessageHandlerOptions<M>,
  handle: (tx: TTx, message: M, context: MessageContext) => Promise<T>,
): (db: IdempotencyDatabase, message: M) => Promise<IdempotentOutcome<Jsonified<T>>> {
  if (typeof options?.messageId !== 'function') throw new IdempotencyOptionsInvalidError('idempotentHandler: messageId must be a function of the message');
  if (options.fingerprint !== undefined && typeof options.fingerprint !== 'function') {
    throw new IdempotencyOptionsInvalidError('idempotentHandler: fingerprint must be a function of the message');
  }
  if (typeof handle !== 'function') throw new IdempotencyOptionsInvalidError('idempotentHandler: the handler must be a function');
  if (options.scope !== undefined && typeof options.scope !== 'string' && typeof options.scope !== 'function') {
    throw new IdempotencyOptionsInvalidError('idempotentHandler: scope must be a string or a function of the message');
  }
  const { messageId, fingerprint, scope, ...rest } = options;
  return (db, message) => {
    const perMessage: IdempotencyOptions = { ...rest, scope: typeof scope === 'function' ? scope(message) : scope };
    if (fingerprint) perMessage.fingerprint = fingerprint(message);
    // TTx is what the caller declared its handler takes: a transaction of the db it passes here.
    return consumeOnce(db, messageId(message), (tx, context) => handle(tx as TTx, message, context), perMessage);
  };
}

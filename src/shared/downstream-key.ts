import { createHash } from 'node:crypto';
import { IdempotencyOptionsInvalidError } from './errors.js';

/** Where a downstream key comes from: the consumed message's scope and key, and the step that calls out. */
export interface DownstreamKeySource {
  scope: string;
  key: string;
  /** Which call of the handler this is (`'welcome-email'`, `'charge'`): one handler may call out more than once. */
  step: string;
}

/**
 * The idempotency key to send to a downstream API (an e-mail service, a payment
 * provider) for one step of one message: the same on every redelivery of the
 * message, different for every other message, scope or step. 67 characters
 * (`di-` and a SHA-256 in hex), within what such APIs accept (Stripe: 255).
 *
 * @example
 * await mailApi.send({ to, subject }, { idempotencyKey: downstreamKey({ scope: 'emails', key: job.id, step: 'welcome' }) });
 */
export function downstreamKey(source: DownstreamKeySource): string {
  for (const part of ['scope', 'key', 'step'] as const) {
    if (typeof source?.[part] !== 'string') throw new IdempotencyOptionsInvalidError(`downstreamKey: ${part} must be a string`);
  }
  if (source.step === '') throw new IdempotencyOptionsInvalidError('downstreamKey: step must not be empty');
  // A JSON array keeps the parts apart: ('a:b', 'c') and ('a', 'b:c') hash differently.
  const digest = createHash('sha256').update(JSON.stringify([source.scope, source.key, source.step])).digest('hex');
  return `di-${digest}`;
}

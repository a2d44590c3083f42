import { createHash } from 'node:crypto';
import type { ChargeRequest } from './store.js';

/** A request the gateway refuses before touching its ledger: answered 400 (or 422), nothing charged. */
export class GatewayRequestInvalid extends Error {
  constructor(
    readonly status: 400 | 422,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Stripe's limit for an amount in minor units (99,999,999: 999,999.99). */
const MAX_AMOUNT = 99_999_999;

/**
 * The Idempotency-Key header: required, 1 to 255 characters, as Stripe takes it.
 *
 * @example
 * const key = parseIdempotencyKey(req.headers['idempotency-key']);
 */
export function parseIdempotencyKey(header: string | string[] | undefined): string {
  if (typeof header !== 'string' || header.length === 0 || header.length > 255) {
    throw new GatewayRequestInvalid(400, 'idempotency_key_required', 'send an Idempotency-Key header of 1 to 255 characters');
  }
  return header;
}

/**
 * A charge's body: `amount` a positive integer in minor units, `currency`
 * three letters (stored upper case), `reference` the caller's own id for it.
 *
 * @example
 * const request = parseChargeRequest({ amount: 1250, currency: 'eur', reference: 'pay_1' }); // currency 'EUR'
 */
export function parseChargeRequest(body: unknown): ChargeRequest {
  const { amount, currency, reference } = (body ?? {}) as Record<string, unknown>;
  if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount < 1 || amount > MAX_AMOUNT) {
    throw new GatewayRequestInvalid(400, 'amount_invalid', `amount must be an integer from 1 to ${MAX_AMOUNT} (minor units)`);
  }
  if (typeof currency !== 'string' || !/^[A-Za-z]{3}$/.test(currency)) {
    throw new GatewayRequestInvalid(400, 'currency_invalid', 'currency must be a three-letter code');
  }
  if (typeof reference !== 'string' || reference.length === 0 || reference.length > 255) {
    throw new GatewayRequestInvalid(400, 'reference_invalid', 'reference must be a string of 1 to 255 characters');
  }
  return { amount, currency: currency.toUpperCase(), reference };
}

/**
 * What makes two charge requests the same: their validated fields, hashed.
 * A key sent again with another request is refused (422), as Stripe does.
 *
 * @example
 * fingerprintOf({ amount: 100, currency: 'EUR', reference: 'a' }) === fingerprintOf({ reference: 'a', currency: 'EUR', amount: 100 }); // true
 */
export function fingerprintOf(request: ChargeRequest): string {
  return createHash('sha256').update(JSON.stringify([request.amount, request.currency, request.reference])).digest('hex');
}

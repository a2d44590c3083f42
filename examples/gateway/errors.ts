import type { Charge } from './store.js';

/** Why a charge's outcome is unknown: it may or may not have been charged. */
export type UnknownOutcomeReason =
  /** No answer within `timeoutMs`. */
  | 'timeout'
  /** The caller's own signal aborted the request. */
  | 'aborted'
  /** The connection failed or was dropped before the whole answer arrived. */
  | 'network'
  /** The gateway answered 5xx (or 409/429: busy), which does not say whether it charged. */
  | 'server-error';

/** Anything the gateway client throws. `code` tells the two kinds apart; so does `instanceof`. */
export abstract class GatewayError extends Error {
  abstract readonly code: 'GATEWAY_OUTCOME_UNKNOWN' | 'GATEWAY_DECLINED';
  /** Whether sending the same request again with the same key is the right move. */
  abstract readonly retryable: boolean;
}

/**
 * The request may have been charged, or not: a timeout, a dropped connection,
 * a 5xx. Retry with the same Idempotency-Key, or ask `findCharge(key)`: never
 * charge under a new key.
 */
export class GatewayOutcomeUnknownError extends GatewayError {
  readonly code = 'GATEWAY_OUTCOME_UNKNOWN' as const;
  readonly retryable = true;
  /** Read by drizzle-idempotency's `ctx.call`: try again with the same downstream key (or reconcile first). */
  readonly outcomeUnknown = true;
  constructor(
    readonly reason: UnknownOutcomeReason,
    message: string,
    /** The HTTP status, when the gateway answered one. */
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'GatewayOutcomeUnknownError';
  }
}

/**
 * The gateway refused the request (4xx): it did not charge it, and sending it
 * again changes nothing. `reason` is the gateway's code: `card_declined`
 * (402, the card refused), `idempotency_key_reused` (422), `amount_invalid`…
 */
export class GatewayDeclinedError extends GatewayError {
  readonly code = 'GATEWAY_DECLINED' as const;
  readonly retryable = false;
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    /** The declined charge as the gateway recorded it (402 only). */
    readonly charge?: Charge,
  ) {
    super(message);
    this.name = 'GatewayDeclinedError';
  }
}

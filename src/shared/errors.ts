/** Every error this library throws on purpose has one of these codes. */
export type IdempotencyErrorCode =
  | 'IDEMPOTENCY_KEY_INVALID'
  | 'IDEMPOTENCY_KEY_REUSED'
  | 'IDEMPOTENCY_IN_FLIGHT'
  | 'IDEMPOTENCY_RESULT_INVALID'
  | 'IDEMPOTENCY_OPTIONS_INVALID'
  | 'IDEMPOTENCY_SERIALIZATION_FAILURE'
  | 'IDEMPOTENCY_DEADLOCK'
  | 'IDEMPOTENCY_REENTRANT_CALL'
  | 'IDEMPOTENCY_CLAIM_LOST'
  | 'IDEMPOTENCY_TRANSACTION_ABORTED'
  | 'IDEMPOTENCY_CONNECTION_LOST'
  | 'IDEMPOTENCY_COMMIT_FAILED'
  | 'IDEMPOTENCY_MIGRATION_CONFLICT'
  | 'IDEMPOTENCY_DRIVER_UNSUPPORTED'
  | 'IDEMPOTENCY_LEASE_LOST'
  | 'IDEMPOTENCY_OUTCOME_UNKNOWN'
  | 'IDEMPOTENCY_WORKFLOW_FAILED';

/**
 * Base class: a stable `code` to branch on and the HTTP `status` it maps to.
 *
 * @example
 * try { await withIdempotency(db, key, charge) }
 * catch (e) { if (e instanceof IdempotencyError) res.status(e.status).json({ code: e.code }) }
 */
export abstract class IdempotencyError extends Error {
  abstract readonly code: IdempotencyErrorCode;
  abstract readonly status: number;
  /** True when running the same call again (in a new transaction) can succeed. */
  readonly retryable: boolean = false;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The key is empty, longer than 255 characters, not a string, or has control characters. */
export class IdempotencyKeyInvalidError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_KEY_INVALID';
  readonly status = 400;
}

/** The key was first used for a different request (its fingerprint differs). */
export class IdempotencyKeyReusedError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_KEY_REUSED';
  readonly status = 422;
}

/** Another transaction holds the key: policy `'reject'`, or the wait bound ran out. */
export class IdempotencyInFlightError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_IN_FLIGHT';
  readonly status = 409;
  override readonly retryable = true;
  /** Leased work only: whole seconds (at least 1) until the holder's lease runs out, for a Retry-After. */
  readonly retryAfterSeconds: number | undefined;

  constructor(message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/** `fn` returned something that cannot be stored as JSON, or is over the size limit. */
export class IdempotencyResultInvalidError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_RESULT_INVALID';
  readonly status = 500;
}

/** An option (ttl, scope, fingerprint, wait bound, size limit) is out of range. */
export class IdempotencyOptionsInvalidError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_OPTIONS_INVALID';
  readonly status = 500;
}

/**
 * Under REPEATABLE READ or SERIALIZABLE, a concurrent duplicate committed the
 * key after this transaction took its snapshot (SQLSTATE 40001). Roll back and
 * run the whole transaction again: the retry replays the stored result.
 */
export class IdempotencySerializationError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_SERIALIZATION_FAILURE';
  readonly status = 409;
  override readonly retryable = true;
}

/**
 * Two transactions each hold a key the other one wants (they claim the same
 * keys in opposite order) and Postgres broke the cycle (SQLSTATE 40P01) by
 * failing this one. Roll back and run the whole transaction again.
 */
export class IdempotencyDeadlockError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_DEADLOCK';
  readonly status = 409;
  override readonly retryable = true;
}

/**
 * A call for a key was made while a call for the same key (same scope and
 * schema) was still running `fn` around it: waiting would never end, and
 * running `fn` again would be the second effect. A bug in the calling code.
 */
export class IdempotencyReentrantCallError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_REENTRANT_CALL';
  readonly status = 500;
}

/**
 * When the result was to be stored, the key row was no longer the one this
 * call claimed (`fn` deleted or rewrote it). Nothing of `fn` was kept.
 */
export class IdempotencyClaimLostError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_CLAIM_LOST';
  readonly status = 500;
}

/**
 * The caller's transaction had already failed (SQLSTATE 25P02) before the
 * key could be claimed: roll it back first. Nothing was claimed or run. Also
 * when `fn` returned with its transaction failed (it caught a failed statement
 * without a savepoint): nothing of `fn` or the key was kept.
 */
export class IdempotencyTransactionAbortedError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_TRANSACTION_ABORTED';
  readonly status = 500;
}

/**
 * The connection to the database was lost (failover, a terminated backend, a
 * cut link) before the transaction committed: nothing of it was kept. Retry
 * with the same key.
 */
export class IdempotencyConnectionLostError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_CONNECTION_LOST';
  readonly status = 503;
  override readonly retryable = true;
}

/**
 * COMMIT of the transaction the library opened failed or got no answer, so
 * whether the key and its effects committed is unknown. Retry with the same
 * key: it replays what committed, or runs `fn` if nothing did.
 */
export class IdempotencyCommitFailedError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_COMMIT_FAILED';
  readonly status = 503;
  override readonly retryable = true;
}

/** `migrate()` found `idempotency_keys` created by other means (your own
 * drizzle-kit migrations): use one path, not both. */
export class IdempotencyMigrationConflictError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_MIGRATION_CONFLICT';
  readonly status = 500;
}

/**
 * The Drizzle driver has no interactive transactions (neon-http, pg-proxy,
 * xata-http): the key, the writes of `fn` and the stored result could not
 * commit together. Nothing was sent; the message names a driver to use instead.
 */
export class IdempotencyDriverUnsupportedError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_DRIVER_UNSUPPORTED';
  readonly status = 500;
}

/**
 * Leased work: this process no longer holds the key's lease (it ran out and
 * another process took the key over), so its write was refused and a local
 * step's effects rolled back. The new holder finishes the work; a retry
 * replays or waits for it.
 */
export class IdempotencyLeaseLostError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_LEASE_LOST';
  readonly status = 409;
  override readonly retryable = true;
}

/**
 * Leased work: an external call timed out or failed on the network on every
 * try, so whether it took effect is unknown. The key stays started with its
 * lease released: a retry (or the completer) resumes it with the same
 * downstream key, so the service it called deduplicates.
 */
export class IdempotencyOutcomeUnknownError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_OUTCOME_UNKNOWN';
  readonly status = 503;
  override readonly retryable = true;
}

/**
 * Leased work failed for sure on its last attempt and the key was recorded as failed: every
 * replay gets this error until the key expires. The message names the
 * workflow, its last committed step and the attempts, never input or results.
 */
export class IdempotencyWorkflowFailedError extends IdempotencyError {
  readonly code = 'IDEMPOTENCY_WORKFLOW_FAILED';
  readonly status = 500;
}

// What the library publishes on node:diagnostics_channel. Names and payloads
// are public: dashboards and log pipelines key on them, so they only grow.

/** The channel of each event; subscribe with `diagnostics_channel.subscribe(name, listener)`. */
export const IDEMPOTENCY_CHANNELS = {
  claimed: 'drizzle-idempotency:claimed',
  reclaimed: 'drizzle-idempotency:reclaimed',
  replayed: 'drizzle-idempotency:replayed',
  inFlight: 'drizzle-idempotency:in-flight',
  keyReused: 'drizzle-idempotency:key-reused',
  stored: 'drizzle-idempotency:stored',
  rolledBack: 'drizzle-idempotency:rolled-back',
  call: 'drizzle-idempotency:call',
  swept: 'drizzle-idempotency:swept',
} as const;

/** Whose transaction a call ran in: one it opened itself (given a database), or the caller's. */
export type CallTransaction = 'own' | 'caller';

/** Which call and key an event is about; the key and scope hashed, so that customer identifiers stay out of telemetry. */
export interface IdempotencyCallRef {
  /** First 16 hex digits of the SHA-256 of the scope (see `telemetryHash`). */
  scopeHash: string;
  /** First 16 hex digits of the SHA-256 of the key. */
  keyHash: string;
  transaction: CallTransaction;
  /** Tells the events of concurrent calls apart: one number per call, unique in this process. */
  callId: number;
}

/** `drizzle-idempotency:claimed`: the key was new; this call holds it and runs `fn` next. */
export interface IdempotencyClaimedEvent extends IdempotencyCallRef {
  /** From the call's start until it held the key (claim round trip and any wait for a duplicate). */
  waitMs: number;
}

/** `drizzle-idempotency:reclaimed`: the call took over a dead row and runs `fn` next. */
export interface IdempotencyReclaimedEvent extends IdempotencyCallRef {
  /** `'completed'`: a key past its expiry; `'started'`: leased work whose lease ran out. */
  previousStatus: 'completed' | 'started';
  waitMs: number;
}

/** `drizzle-idempotency:replayed`: the call returned the stored result; `fn` did not run. */
export interface IdempotencyReplayedEvent extends IdempotencyCallRef {
  /** True when it found the key in flight and waited for the first call to finish. */
  waited: boolean;
  waitMs: number;
  durationMs: number;
}

/**
 * `drizzle-idempotency:in-flight`: a duplicate found the key held by a call
 * that had not finished. `'waited'`: it waited for that call to end (and then
 * replayed, or claimed the key if the first rolled back); `'rejected'`: the call
 * fails with `IDEMPOTENCY_IN_FLIGHT` (policy `'reject'`, or the wait ran out).
 */
export interface IdempotencyInFlightEvent extends IdempotencyCallRef {
  action: 'waited' | 'rejected';
  policy: 'wait' | 'reject';
  /** For `'waited'`: where it waited, in this process's queue for the key or on the key's row lock. */
  where?: 'process' | 'database';
  waitMs: number;
}

/** `drizzle-idempotency:key-reused`: the key was used before with another fingerprint; the call fails. */
export type IdempotencyKeyReusedEvent = IdempotencyCallRef;

/**
 * `drizzle-idempotency:stored`: `fn` ran and its result was stored. In the
 * call's own transaction, published after COMMIT; in the caller's, once the
 * result is written (it becomes durable with the caller's COMMIT).
 */
export interface IdempotencyStoredEvent extends IdempotencyCallRef {
  /** Size of the stored result, in bytes of JSON text. */
  bytes: number;
  durationMs: number;
}

/**
 * `drizzle-idempotency:rolled-back`: the call held the key, then `fn` threw or
 * its result could not be stored: the claim and `fn`'s writes are undone.
 */
export interface IdempotencyRolledBackEvent extends IdempotencyCallRef {
  phase: 'fn' | 'store';
  /** The error's `code` when it is the library's, else its `name`; never its message. */
  error: string;
}

/** How a call ended, as `drizzle-idempotency:call` tells. */
export type IdempotencyCallOutcome = 'executed' | 'replayed' | 'in-flight' | 'key-reused' | 'rolled-back' | 'failed';

/**
 * `drizzle-idempotency:call`: one per call that got past its argument checks,
 * when it ends: what OpenTelemetry turns into a span and metrics.
 */
export interface IdempotencyCallEvent extends IdempotencyCallRef {
  outcome: IdempotencyCallOutcome;
  policy: 'wait' | 'reject';
  /** When the call started, in milliseconds since the Unix epoch (fractional). */
  startTime: number;
  durationMs: number;
  /** Until the call held the key or had the stored answer, or failed trying. */
  waitMs: number;
  waited: boolean;
  /** For outcomes other than executed and replayed: as in `IdempotencyRolledBackEvent`. */
  error?: string;
}

/** `drizzle-idempotency:swept`: a sweep ended (`sweepExpiredKeys`, the sweeper, the CLI). */
export interface IdempotencySweptEvent {
  deleted: number;
  batches: number;
  durationMs: number;
  stoppedBy: 'drained' | 'aborted' | 'timeBudget';
}

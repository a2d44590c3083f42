export { withIdempotency, withIdempotencyOutcome, lookupReplay } from './core/with-idempotency.js';
export type { IdempotentOutcome } from './core/stored-key.js';
export type { IdempotencyOptions, InFlightPolicy } from './core/options.js';
export type { IdempotencyDatabase, TransactionOf } from './driver/database.js';
export type { Duration } from './shared/duration.js';
export { parseDuration } from './shared/duration.js';
export type { Fingerprint } from './core/fingerprint.js';
export { canonicalJson, fingerprintOf } from './core/fingerprint.js';
export { MAX_KEY_LENGTH } from './shared/key.js';
export { DEFAULT_MAX_RESULT_BYTES } from './core/result.js';
export type { Jsonified } from './core/result.js';
export { idempotencyKeys, idempotencyKeysIn, IDEMPOTENCY_KEYS_TABLE } from './schema/table.js';
export type { IdempotencyKeyStatus } from './schema/table.js';
export { migrate, migrationsFolder, migrationsFolderForDrizzle1 } from './schema/migrate.js';
export type { MigrateOptions } from './schema/migrate.js';
export {
  IdempotencyError,
  IdempotencyKeyInvalidError,
  IdempotencyKeyReusedError,
  IdempotencyInFlightError,
  IdempotencyResultInvalidError,
  IdempotencyOptionsInvalidError,
  IdempotencySerializationError,
  IdempotencyDeadlockError,
  IdempotencyReentrantCallError,
  IdempotencyClaimLostError,
  IdempotencyTransactionAbortedError,
  IdempotencyConnectionLostError,
  IdempotencyCommitFailedError,
  IdempotencyMigrationConflictError,
  IdempotencyDriverUnsupportedError,
  IdempotencyLeaseLostError,
  IdempotencyOutcomeUnknownError,
  IdempotencyWorkflowFailedError,
} from './shared/errors.js';
export type { IdempotencyErrorCode } from './shared/errors.js';
export { sweepExpiredKeys, DEFAULT_SWEEP_BATCH_SIZE, MAX_SWEEP_BATCH_SIZE } from './ops/sweep.js';
export type { SweepOptions, SweepProgress, SweepResult, SweepStop } from './ops/sweep.js';
export { startSweeper } from './ops/sweeper.js';
export type { Sweeper, SweeperOptions } from './ops/sweeper.js';
export { idempotencyStats } from './ops/stats.js';
export type { IdempotencyStats, OldestLiveKey, OldestWaitingKey } from './ops/stats.js';
export { inspectKey } from './ops/inspect.js';
export type { InspectKeyOptions, InspectedKey, InspectedKeyStatus } from './ops/inspect.js';
export { evictKey } from './ops/evict.js';
export type { EvictKeyOptions, EvictedKey } from './ops/evict.js';
export { IDEMPOTENCY_CHANNELS } from './telemetry/events.js';
export type {
  CallTransaction,
  IdempotencyCallEvent,
  IdempotencyCallOutcome,
  IdempotencyClaimedEvent,
  IdempotencyInFlightEvent,
  IdempotencyCallRef,
  IdempotencyKeyReusedEvent,
  IdempotencyReclaimedEvent,
  IdempotencyReplayedEvent,
  IdempotencyRolledBackEvent,
  IdempotencyStoredEvent,
  IdempotencySweptEvent,
} from './telemetry/events.js';
export { telemetryHash } from './telemetry/hash.js';
export { defineWorkflow, isWorkflow } from './leased/workflow.js';
export type { Workflow, WorkflowOptions, AnyWorkflow } from './leased/workflow.js';
export type { WorkflowContext } from './leased/context.js';
export type { CallContext, CallOptions, ReconcileContext } from './leased/call.js';
export { runWorkflow, runWorkflowOutcome } from './leased/run.js';
export type { RunWorkflowOptions } from './leased/run-options.js';
export { completeAbandonedKeys } from './leased/completer.js';
export type { AbandonedKey, CompleteOptions, CompleteResult } from './leased/completer.js';
export { startCompleter } from './leased/completer-loop.js';
export type { Completer, CompleterOptions } from './leased/completer-loop.js';
export { downstreamKey } from './shared/downstream-key.js';
export type { DownstreamKeySource } from './shared/downstream-key.js';

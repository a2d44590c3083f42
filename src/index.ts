export { withIdempotency, withIdempotencyOutcome, lookupReplay } from './core.js';
export type { IdempotentOutcome } from './stored-key.js';
export type { IdempotencyOptions, InFlightPolicy } from './options.js';
export type { IdempotencyDatabase, TransactionOf } from './db.js';
export type { Duration } from './duration.js';
export { parseDuration } from './duration.js';
export type { Fingerprint } from './fingerprint.js';
export { canonicalJson, fingerprintOf } from './fingerprint.js';
export { MAX_KEY_LENGTH } from './key.js';
export { DEFAULT_MAX_RESULT_BYTES } from './result.js';
export { idempotencyKeys, idempotencyKeysIn, IDEMPOTENCY_KEYS_TABLE } from './schema.js';
export type { IdempotencyKeyStatus } from './schema.js';
export { migrate, migrationsFolder } from './migrate.js';
export type { MigrateOptions } from './migrate.js';
export {
  IdempotencyError,
  IdempotencyKeyInvalidError,
  IdempotencyKeyReusedError,
  IdempotencyInFlightError,
  IdempotencyResultInvalidError,
  IdempotencyOptionsInvalidError,
  IdempotencySerializationError,
  IdempotencyMigrationConflictError,
} from './errors.js';
export type { IdempotencyErrorCode } from './errors.js';
export { sweepExpiredKeys, DEFAULT_SWEEP_BATCH_SIZE, MAX_SWEEP_BATCH_SIZE } from './sweep.js';
export type { SweepOptions, SweepProgress, SweepResult, SweepStop } from './sweep.js';
export { startSweeper } from './sweeper.js';
export type { Sweeper, SweeperOptions } from './sweeper.js';
export { idempotencyStats } from './stats.js';
export type { IdempotencyStats, OldestLiveKey } from './stats.js';

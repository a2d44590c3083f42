import type { PgTransactionConfig } from 'drizzle-orm/pg-core';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';

const ISOLATION_LEVELS = new Set(['read uncommitted', 'read committed', 'repeatable read', 'serializable']);
const ACCESS_MODES = new Set(['read only', 'read write']);

/**
 * Checks the `transaction` option. Its values end up as SQL text in BEGIN
 * (drizzle's own `transaction(fn, config)` included), which has no parameters,
 * so anything but the keywords Postgres knows is refused before it gets there.
 * Empty values are skipped, as drizzle skips them.
 */
export function assertValidTransactionConfig(config: unknown): asserts config is PgTransactionConfig | undefined {
  if (config === undefined || config === null) return;
  if (typeof config !== 'object') throw invalid('transaction', config);
  const { isolationLevel, accessMode, deferrable } = config as Record<string, unknown>;
  if (isolationLevel && !ISOLATION_LEVELS.has(isolationLevel as string)) throw invalid('transaction.isolationLevel', isolationLevel);
  if (accessMode && !ACCESS_MODES.has(accessMode as string)) throw invalid('transaction.accessMode', accessMode);
  if (deferrable !== undefined && deferrable !== null && typeof deferrable !== 'boolean') throw invalid('transaction.deferrable', deferrable);
  // drizzle-orm 1.0 adds `snapshot` (SET TRANSACTION SNAPSHOT). The transaction
  // the library opens on a node-postgres pool is its own BEGIN, which would
  // leave it out; drizzle's own transactions (other drivers) apply it. Refused
  // everywhere rather than honoured on some drivers only.
  const { snapshot } = config as Record<string, unknown>;
  if (snapshot !== undefined && snapshot !== null) {
    throw new IdempotencyOptionsInvalidError(`transaction.snapshot is not supported: the key's transaction takes its own snapshot (got ${JSON.stringify(snapshot)})`);
  }
}

/** BEGIN with a `transaction` option that `resolveOptions` has checked, as drizzle writes it. */
export function beginStatement(config: PgTransactionConfig | undefined): string {
  const parts = ['begin'];
  if (config?.isolationLevel) parts.push(`isolation level ${config.isolationLevel}`);
  if (config?.accessMode) parts.push(config.accessMode);
  if (typeof config?.deferrable === 'boolean') parts.push(config.deferrable ? 'deferrable' : 'not deferrable');
  return parts.join(' ');
}

function invalid(name: string, value: unknown): IdempotencyOptionsInvalidError {
  return new IdempotencyOptionsInvalidError(`${name} is not valid: ${JSON.stringify(value)}`);
}

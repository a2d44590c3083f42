import { sql } from 'drizzle-orm';
import { isTransaction, queryRows, type IdempotencyDatabase } from '../driver/database.js';
import { listenForIdleErrors } from '../driver/pool-transaction.js';
import { assertValidSchemaName, keysTable } from '../schema/keys-table.js';
import { parseDuration, type Duration } from '../shared/duration.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { traceSweep } from '../telemetry/publish.js';
import { refuseInsideTransactionOn } from '../core/turns.js';

/** Options of `sweepExpiredKeys`. */
export interface SweepOptions {
  /** Rows deleted per batch; each batch is one short statement that commits on its own. (Default: `1000`) */
  batchSize?: number;
  /** Start no new batch once this much time has passed; the running batch finishes. (Default: none) */
  timeBudget?: Duration;
  /** Aborting stops the sweep between batches; the result says so. (Default: none) */
  signal?: AbortSignal;
  /** Postgres schema that holds `idempotency_keys`. (Default: the search_path) */
  schema?: string;
  /** Called after every batch, e.g. to report progress. (Default: none) */
  onBatch?: (progress: SweepProgress) => void;
}

/** Where a running sweep stands, after a batch. */
export interface SweepProgress {
  /** Rows deleted so far. */
  deleted: number;
  /** Batches run so far. */
  batches: number;
  /** Time since the sweep started. */
  elapsedMs: number;
}

/** Why a sweep ended: nothing expired was left, the signal aborted it, or its time budget ran out. */
export type SweepStop = 'drained' | 'aborted' | 'timeBudget';

/** What `sweepExpiredKeys` did. */
export interface SweepResult {
  /** Rows deleted. */
  deleted: number;
  /** Batches (DELETE statements) run, the last one usually short or empty. */
  batches: number;
  /** Wall-clock time of the whole sweep. */
  durationMs: number;
  stoppedBy: SweepStop;
}

/** Sweep options checked once, before the first batch. */
export interface ResolvedSweepOptions {
  batchSize: number;
  timeBudgetMs: number | undefined;
  signal: AbortSignal | undefined;
  schema: string | undefined;
  onBatch: ((progress: SweepProgress) => void) | undefined;
}

export const DEFAULT_SWEEP_BATCH_SIZE = 1000;
// A batch holds its row locks until it commits, and writers that want to
// reclaim one of those keys wait for it: past this size a batch stops being short.
export const MAX_SWEEP_BATCH_SIZE = 100_000;

/** Validates sweep options; throws `IDEMPOTENCY_OPTIONS_INVALID` and touches nothing. */
export function resolveSweepOptions(options: SweepOptions = {}): ResolvedSweepOptions {
  if (typeof options !== 'object' || options === null) {
    throw new IdempotencyOptionsInvalidError('sweep options must be an object');
  }
  const batchSize = options.batchSize ?? DEFAULT_SWEEP_BATCH_SIZE;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > MAX_SWEEP_BATCH_SIZE) {
    throw new IdempotencyOptionsInvalidError(
      `batchSize must be an integer from 1 to ${MAX_SWEEP_BATCH_SIZE}, got ${JSON.stringify(batchSize) ?? String(batchSize)}`,
    );
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new IdempotencyOptionsInvalidError('signal must be an AbortSignal');
  }
  if (options.onBatch !== undefined && typeof options.onBatch !== 'function') {
    throw new IdempotencyOptionsInvalidError('onBatch must be a function');
  }
  if (options.schema !== undefined) assertValidSchemaName(options.schema);
  return {
    batchSize,
    timeBudgetMs: options.timeBudget === undefined ? undefined : parseDuration(options.timeBudget, 'timeBudget'),
    signal: options.signal,
    schema: options.schema,
    onBatch: options.onBatch,
  };
}

/**
 * Deletes expired keys in batches, each one statement (and so one short
 * transaction) of at most `batchSize` rows, oldest expiry first. Expiry is
 * judged by the database clock. Never deletes a live key, nor an expired one
 * whose lease (`locked_until`) still runs, nor a leased workflow's unfinished
 * key (the completer finishes it). Several sweepers may run at once:
 * each skips the rows another has locked.
 *
 * Pass the database, not a transaction: every batch must commit by itself so
 * that its locks are released at once.
 *
 * @example
 * const { deleted, durationMs } = await sweepExpiredKeys(db, { timeBudget: '5m' });
 */
export async function sweepExpiredKeys(db: IdempotencyDatabase, options?: SweepOptions): Promise<SweepResult> {
  if (isTransaction(db)) {
    throw new IdempotencyOptionsInvalidError(
      'sweepExpiredKeys needs a database, not a transaction: each batch has to commit on its own to release its locks',
    );
  }
  const o = resolveSweepOptions(options);
  refuseInsideTransactionOn(db, 'sweepExpiredKeys');
  listenForIdleErrors(db);
  return runSweep(db, o);
}

/** The sweep loop, on options already checked (the sweeper checks them when it starts). */
export async function runSweep(db: IdempotencyDatabase, o: ResolvedSweepOptions): Promise<SweepResult> {
  const started = performance.now();
  const elapsed = () => performance.now() - started;
  let deleted = 0;
  let batches = 0;
  const result = (stoppedBy: SweepStop): SweepResult => {
    const done = { deleted, batches, durationMs: Math.round(elapsed()), stoppedBy };
    traceSweep(done);
    return done;
  };
  try {
    for (;;) {
      if (o.signal?.aborted) return result('aborted');
      if (o.timeBudgetMs !== undefined && elapsed() >= o.timeBudgetMs) return result('timeBudget');
      const n = await deleteBatch(db, o.schema, o.batchSize);
      deleted += n;
      batches += 1;
      o.onBatch?.({ deleted, batches, elapsedMs: elapsed() });
      // A short batch means no unlocked expired row was left when it ran. Rows
      // skipped because a writer or another sweeper holds them are theirs now.
      if (n < o.batchSize) return result('drained');
    }
  } catch (error) {
    // The batches before the failure committed: telemetry still counts them.
    traceSweep({ deleted, batches, durationMs: Math.round(elapsed()), stoppedBy: 'failed' });
    throw error;
  }
}

/**
 * One batch. The inner SELECT locks up to `limit` expired rows, skipping rows
 * locked by anyone else (a writer reclaiming the key, another sweeper). Under
 * READ COMMITTED, a row a writer reclaimed and committed since our snapshot is
 * re-checked against the WHERE clause on its new version and dropped, so a
 * reclaimed key is never deleted; the DELETE repeats the test for the same
 * reason. ctid keeps it to a TID scan of exactly the rows we locked.
 */
async function deleteBatch(db: IdempotencyDatabase, schema: string | undefined, limit: number): Promise<number> {
  const table = keysTable(schema);
  // A leased workflow's started row (it has an owner token) is never swept,
  // however old: it holds what its committed steps did (a charge's id), which
  // the completer or a retry needs to finish the work without repeating them.
  const expired = sql`expires_at <= statement_timestamp() and (locked_until is null or locked_until <= statement_timestamp())
    and (status <> 'started' or owner_token is null)`;
  const [row] = await queryRows<{ deleted: number | string }>(
    db,
    sql`with swept as (
          delete from ${table}
          where ctid = any(array(
                  select ctid from ${table}
                  where ${expired}
                  order by expires_at
                  limit ${limit}
                  for update skip locked))
            and ${expired}
          returning 1)
        select count(*)::int as deleted from swept`,
  );
  return Number(row?.deleted ?? 0);
}

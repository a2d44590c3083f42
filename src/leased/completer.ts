import { sql } from 'drizzle-orm';
import { assertValidSchemaName } from '../schema/keys-table.js';
import { queryRows, type IdempotencyDatabase } from '../driver/database.js';
import { listenForIdleErrors } from '../driver/pool-transaction.js';
import { LOCK_NOT_AVAILABLE, sqlState } from '../driver/pg-error.js';
import { IdempotencyLeaseLostError, IdempotencyOptionsInvalidError, IdempotencyWorkflowFailedError } from '../shared/errors.js';
import { runHeld } from './execute.js';
import { leasedFailure } from './failure.js';
import { keyAddress, now } from './key-address.js';
import { takeOver } from './lease.js';
import { assertDatabase, workflowsByName } from './run-options.js';
import type { AnyWorkflow } from './workflow.js';

/** The key a completer's error is about. */
export interface AbandonedKey {
  scope: string;
  key: string;
  workflow: string;
}

/** Options of `completeAbandonedKeys`. */
export interface CompleteOptions {
  /** Keys taken on in one pass, oldest lease first. (Default: `100`) */
  limit?: number;
  /** Keys run at the same time. (Default: `4`) */
  concurrency?: number;
  /** Postgres schema that holds `idempotency_keys`. (Default: the search_path) */
  schema?: string;
  /** Told about every key whose run failed (it stays for a later pass, or was recorded as failed). (Default: none) */
  onError?: (error: unknown, key?: AbandonedKey) => void;
  /** Once aborted, the pass starts no new key and ends when the keys it runs are done; the rest stay abandoned for a later pass. (Default: none) */
  signal?: AbortSignal;
}

/** What one pass did. */
export interface CompleteResult {
  /** Resumed and completed. */
  completed: number;
  /** Resumed, failed for sure (not an unknown outcome or a lost connection) with no attempts left: recorded as failed. */
  failed: number;
  /** Resumed, failed again (attempts left, or an outcome in doubt), lease released: a later pass (or a client's retry) tries again. */
  retried: number;
  /** Taken by someone else first (a client's retry, another completer). */
  skipped: number;
}

interface ResolvedComplete {
  limit: number;
  concurrency: number;
  schema: string | undefined;
  onError: ((error: unknown, key?: AbandonedKey) => void) | undefined;
  signal: AbortSignal | undefined;
}

/** Checks the completer's options; throws a typed error and touches nothing. */
export function resolveCompleteOptions(options: CompleteOptions = {}): ResolvedComplete {
  if (typeof options !== 'object' || options === null) throw new IdempotencyOptionsInvalidError('options must be an object');
  const limit = options.limit ?? 100;
  const concurrency = options.concurrency ?? 4;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) throw new IdempotencyOptionsInvalidError('limit must be an integer from 1 to 10000');
  if (!Number.isSafeInteger(concurrency) || concurrency < 1 || concurrency > 100) throw new IdempotencyOptionsInvalidError('concurrency must be an integer from 1 to 100');
  if (options.schema !== undefined) assertValidSchemaName(options.schema);
  if (options.onError !== undefined && typeof options.onError !== 'function') throw new IdempotencyOptionsInvalidError('onError must be a function');
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new IdempotencyOptionsInvalidError('signal must be an AbortSignal');
  return { limit, concurrency, schema: options.schema, onError: options.onError, signal: options.signal };
}

interface AbandonedRow extends AbandonedKey {
  owner_token: string;
}

/**
 * One pass of the completer: finds started keys of `workflows` whose lease
 * ran out (oldest first), takes each over with the same fenced takeover a
 * client's retry uses (so runs never overlap per key, across processes), and
 * resumes it from its last committed step, whatever attempts it used (a
 * crash may hide a charge: such a key is never recorded as failed unseen).
 * A resumed run that fails for sure on its last attempt records the key as
 * failed. Never throws for one key: `onError` hears about it. Once `signal`
 * aborts, no new key is started: the pass ends when the running ones do.
 *
 * @example
 * const { completed, failed } = await completeAbandonedKeys(db, [payOrder], { limit: 50, signal: shutdown.signal });
 */
export async function completeAbandonedKeys(db: IdempotencyDatabase, workflows: AnyWorkflow[], options?: CompleteOptions): Promise<CompleteResult> {
  assertDatabase(db, 'completeAbandonedKeys');
  const byName = workflowsByName(workflows, 'completeAbandonedKeys');
  return completePass(db, byName, resolveCompleteOptions(options));
}

/** A pass on arguments already checked. */
export async function completePass(db: IdempotencyDatabase, byName: Map<string, AnyWorkflow>, o: ResolvedComplete): Promise<CompleteResult> {
  listenForIdleErrors(db);
  const table = keyAddress('', '', o.schema).table;
  const names = sql.join([...byName.keys()].map((name) => sql`${name}`), sql`, `);
  // Served by the partial index on (locked_until) where status = 'started'.
  const rows = await queryRows<AbandonedRow>(
    db,
    sql`select scope, key, workflow, owner_token::text as owner_token from ${table}
        where status = 'started' and locked_until <= ${now} and owner_token is not null and workflow in (${names})
        order by locked_until limit ${o.limit}`,
  );
  const result: CompleteResult = { completed: 0, failed: 0, retried: 0, skipped: 0 };
  let next = 0;
  const worker = async () => {
    // A key whose run has begun is finished (cutting it off would only leave it for its lease to run out again); an abort stops the next one.
    while (next < rows.length && o.signal?.aborted !== true) {
      const row = rows[next++]!;
      result[await completeOne(db, byName.get(row.workflow)!, row, o)]++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, rows.length) }, worker));
  return result;
}

async function completeOne(db: IdempotencyDatabase, workflow: AnyWorkflow, row: AbandonedRow, o: ResolvedComplete): Promise<keyof CompleteResult> {
  const k = keyAddress(row.scope, row.key, o.schema);
  const about = { scope: row.scope, key: row.key, workflow: row.workflow };
  try {
    const held = await takeOver(db, k, row.owner_token, workflow.leaseMs);
    if (!held) return 'skipped';
    await runHeld(db, k, workflow, held);
    return 'completed';
  } catch (error) {
    // The holder's local step still runs (its row lock outlasted our bound): it is alive, not abandoned.
    if (sqlState(error) === LOCK_NOT_AVAILABLE) return 'skipped';
    o.onError?.(leasedFailure(error), about);
    if (error instanceof IdempotencyWorkflowFailedError) return 'failed';
    if (error instanceof IdempotencyLeaseLostError) return 'skipped';
    return 'retried';
  }
}

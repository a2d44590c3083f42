import type { IdempotencyDatabase } from '../driver/database.js';
import { serializeResult } from '../core/result.js';
import { IdempotencyLeaseLostError, IdempotencyWorkflowFailedError } from '../shared/errors.js';
import { createContext } from './context.js';
import { isDefiniteFailure } from './definite-failure.js';
import { completeHeld, releaseLease } from './fenced.js';
import type { Held } from './held.js';
import { keepLease, leaseLost } from './heartbeat.js';
import type { KeyAddress } from './key-address.js';
import { failHeld, type FailedRow } from './lease.js';
import type { AnyWorkflow } from './workflow.js';

/** The error of a key recorded as failed: the workflow, its last step and its attempts, never input or results. */
export function workflowFailed(k: KeyAddress, row: FailedRow, cause?: unknown): IdempotencyWorkflowFailedError {
  const step = row.recovery_point === null ? 'none' : JSON.stringify(row.recovery_point);
  return new IdempotencyWorkflowFailedError(
    `idempotency key ${JSON.stringify(k.key)}: workflow ${JSON.stringify(row.workflow)} failed after ${row.attempts} attempts (last committed step: ${step}); it is recorded as failed until it expires`,
    { cause },
  );
}

/**
 * After a run threw: records the key as failed when the work definitely
 * failed on its last attempt, or else (an earlier attempt, or an outcome in
 * doubt on any attempt) releases the lease so that a retry or the completer
 * resumes at once, with the same downstream keys.
 * Returns the error to deliver. Best effort: should the statement fail or
 * wait past its bound (a local step of this run, left running, holds the
 * row), the run's own error is delivered and the lease runs out by itself.
 */
async function endFailedRun(db: IdempotencyDatabase, k: KeyAddress, workflow: AnyWorkflow, held: Held, error: unknown): Promise<unknown> {
  try {
    if (held.attempt >= workflow.maxAttempts && isDefiniteFailure(error)) {
      const failed = await failHeld(db, k, held.token);
      return failed ? workflowFailed(k, failed, error) : leaseLost(k, workflow.name, error);
    }
    await releaseLease(db, k, held.token);
  } catch {
    // The key stays started: whoever takes it over once the lease ran out resumes it.
  }
  return error;
}

/**
 * Runs `workflow` on a key this process holds, from its last recovery point,
 * and completes the key with the result. On a failure that is not a lost
 * lease it gives the lease up at once, so that a retry or the completer
 * resumes, or, when the work definitely failed on its last attempt, records
 * the key as failed.
 */
export async function runHeld(
  db: IdempotencyDatabase,
  k: KeyAddress,
  workflow: AnyWorkflow,
  held: Held,
): Promise<{ response: string; expires_ms: number | string }> {
  const lease = keepLease(db, k, workflow.name, held.token, workflow.leaseMs, workflow.heartbeatMs);
  const over = { ended: false };
  const { maxResultBytes } = workflow;
  try {
    const ctx = createContext({ db, k, workflow: workflow.name, held, leaseMs: workflow.leaseMs, maxResultBytes, lease: lease.signal, over });
    const value: unknown = await workflow.run(ctx, held.input);
    const done = await completeHeld(db, k, held.token, serializeResult(value, maxResultBytes));
    if (!done) throw leaseLost(k, workflow.name);
    return done;
  } catch (error) {
    if (error instanceof IdempotencyLeaseLostError) throw error;
    if (lease.signal.aborted) throw leaseLost(k, workflow.name, error);
    throw await endFailedRun(db, k, workflow, held, error);
  } finally {
    over.ended = true;
    lease.stop();
  }
}

import { deserializeResult, type Jsonified } from '../core/result.js';
import type { IdempotentOutcome } from '../core/stored-key.js';
import type { IdempotencyDatabase } from '../driver/database.js';
import { acquireKey } from './acquire.js';
import { runHeld } from './execute.js';
import { leasedFailure } from './failure.js';
import { keyAddress } from './key-address.js';
import { resolveRun, type RunWorkflowOptions } from './run-options.js';
import type { Workflow } from './workflow.js';

// Polling a key in flight under 'wait': often enough to answer soon after the
// holder completes, rarely enough to cost the database nothing worth noting.
const POLL_MS = 100;

/**
 * Runs `workflow` once per `(scope, key)`: claims the key with a lease,
 * runs its steps (each committed as it ends), completes the key with the
 * result; a duplicate replays it, waits for the holder, or resumes the work
 * from its last committed step once the holder's lease ran out. Pass the
 * database, never a transaction.
 *
 * @example
 * const { value, replayed } = await runWorkflowOutcome(db, key, payOrder, { userId, amount }, { scope: userId, fingerprint: { amount } });
 */
export async function runWorkflowOutcome<I, O>(
  db: IdempotencyDatabase,
  key: string,
  workflow: Workflow<I, O>,
  input: I,
  options?: RunWorkflowOptions,
): Promise<IdempotentOutcome<Jsonified<O>>> {
  const o = resolveRun(db, key, workflow, input, options);
  const k = keyAddress(o.scope, o.key, o.schema);
  const deadline = Date.now() + o.waitMs;
  try {
    for (;;) {
      const found = await acquireKey(db, k, workflow, o);
      if ('held' in found) {
        const done = await runHeld(db, k, workflow, found.held);
        return { value: deserializeResult<Jsonified<O>>(done.response), replayed: false };
      }
      if ('completed' in found) return { value: deserializeResult<Jsonified<O>>(found.completed.response), replayed: true };
      const left = deadline - Date.now();
      if (o.reject || left <= 0) throw found.inFlight;
      await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, left)));
    }
  } catch (error) {
    throw leasedFailure(error);
  }
}

/**
 * `runWorkflowOutcome`, returning the value only.
 *
 * @example
 * const receipt = await runWorkflow(db, req.get('Idempotency-Key')!, payOrder, req.body, { scope: userId });
 */
export async function runWorkflow<I, O>(
  db: IdempotencyDatabase,
  key: string,
  workflow: Workflow<I, O>,
  input: I,
  options?: RunWorkflowOptions,
): Promise<Jsonified<O>> {
  return (await runWorkflowOutcome(db, key, workflow, input, options)).value;
}

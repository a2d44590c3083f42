import type { SqlRunner } from '../driver/database.js';
import { LOCK_NOT_AVAILABLE, sqlState } from '../driver/pg-error.js';
import { IdempotencyInFlightError, IdempotencyKeyReusedError } from '../shared/errors.js';
import { workflowFailed } from './execute.js';
import type { Held } from './held.js';
import type { KeyAddress } from './key-address.js';
import { claimNew, readLeasedKey, reclaimDead, ROW_LOCK_WAIT_MS, takeOver, type ClaimValues, type LeasedRow } from './lease.js';
import type { ResolvedRun } from './run-options.js';
import type { AnyWorkflow } from './workflow.js';

/** Where a key stands for a caller: held by this process now, completed, or held by someone else. */
export type Acquired =
  | { held: Held }
  | { completed: LeasedRow }
  | { inFlight: IdempotencyInFlightError };

// Rounds of claim / read / takeover: each lost round means another process
// changed the row in between (claimed it, took it over, completed it).
const ROUNDS = 5;

/**
 * Claims the key for `workflow`, or takes it over when its holder's lease
 * ran out (whatever attempts it used: only a run that fails for sure records
 * it as failed), or reports what stands: a completed key (to replay) or one
 * in flight.
 */
export async function acquireKey(db: SqlRunner, k: KeyAddress, workflow: AnyWorkflow, o: ResolvedRun): Promise<Acquired> {
  const claim: ClaimValues = { fingerprint: o.fingerprint, workflow: workflow.name, inputJson: o.inputJson, ttlMs: o.ttlMs, leaseMs: workflow.leaseMs, lockTimeoutMs: ROW_LOCK_WAIT_MS };
  try {
    return await acquireRounds(db, k, workflow, o, claim);
  } catch (error) {
    // A statement waited past its bound on a row lock: an in-transaction claim
    // of the key, or the holder's local step (a paused owner's, maybe).
    if (sqlState(error) === LOCK_NOT_AVAILABLE) return { inFlight: inFlight(k, 1) };
    throw error;
  }
}

async function acquireRounds(db: SqlRunner, k: KeyAddress, workflow: AnyWorkflow, o: ResolvedRun, claim: ClaimValues): Promise<Acquired> {
  for (let round = 0; round < ROUNDS; round++) {
    const claimed = await claimNew(db, k, claim);
    if (claimed) return { held: claimed };
    const row = await readLeasedKey(db, k);
    if (row === undefined) continue; // swept or evicted in between: claim again
    if (row.reclaimable) {
      const held = await reclaimDead(db, k, claim);
      if (held) return { held };
      continue;
    }
    if (row.fingerprint !== o.fingerprint) {
      throw new IdempotencyKeyReusedError(`idempotency key ${JSON.stringify(k.key)} was already used for a different request`);
    }
    // Another workflow's key, or an in-transaction call's (no workflow): its answer is not this caller's to replay.
    if (row.workflow !== workflow.name) {
      throw new IdempotencyKeyReusedError(`idempotency key ${JSON.stringify(k.key)} was already used by another operation`);
    }
    if (row.status === 'completed') return { completed: row };
    if (row.status === 'failed') throw workflowFailed(k, row);
    // A started row without a token is an in-transaction claim that committed unfinished: never ours to take.
    if (row.live || row.owner_token === null) return { inFlight: inFlight(k, Number(row.retry_after ?? 1)) };
    // Taken over whatever its attempts: the dead holder may have been charged
    // before it could record it, so only a resumed run that fails for sure
    // (runHeld) records the key as failed.
    const held = await takeOver(db, k, row.owner_token, workflow.leaseMs);
    if (held) return { held };
  }
  return { inFlight: inFlight(k, 1) };
}

const inFlight = (k: KeyAddress, retryAfterSeconds: number) =>
  new IdempotencyInFlightError(`idempotency key ${JSON.stringify(k.key)} is held by leased work in progress`, { retryAfterSeconds });

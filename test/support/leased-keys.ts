// Real leased keys in the states an operator meets them in, made by running
// workflows (never by inserting rows): a lease held by a run in this process,
// a key in doubt (its gateway's answers lost, the lease released), and a key
// recorded as failed. For the tests of inspect, stats and evict.
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import { defineWorkflow, IdempotencyOutcomeUnknownError, IdempotencyWorkflowFailedError, runWorkflow } from '../../src/index.js';
import { payWorkflow } from './leased-shop.js';

/** Customer data in the input: it must never appear in what an operator tool prints. */
export const CUSTOMER_REF = 'card-4242-of-alice';

/** The input of every payment here. */
const input = (key: string) => ({ ref: `${CUSTOMER_REF}:${key}`, amount: 4200 });

/** A run that has charged and recorded the charge, and is stopped there holding its lease (heartbeat running) until `release`. */
export async function holdLease(db: NodePgDatabase, gateway: pg.Pool, key: string, scope: string) {
  let reached!: () => void;
  const atCharge = new Promise<void>((resolve) => (reached = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const pay = payWorkflow(
    gateway,
    {
      at: async (point) => {
        if (point !== 'after-charge') return;
        reached();
        await released;
      },
    },
    { lease: '5s' },
  );
  const run = runWorkflow(db, key, pay, input(key), { scope });
  await Promise.race([atCharge, run]);
  return {
    /** Lets the run go on; resolves to its answer. */
    release: async () => {
      release();
      return run;
    },
  };
}

/** A run whose gateway charged but whose answer was lost, with no retries left: the key stays started, lease released, in doubt. */
export async function leaveInDoubt(db: NodePgDatabase, gateway: pg.Pool, key: string, scope: string): Promise<void> {
  const pay = payWorkflow(gateway, { fault: () => 'drop-answer', retries: 0 });
  const error = await runWorkflow(db, key, pay, input(key), { scope }).catch((e: unknown) => e);
  if (!(error instanceof IdempotencyOutcomeUnknownError)) throw new Error(`expected an unknown outcome, got ${String(error)}`);
}

/** One attempt: the intent is recorded, then the card is declined for sure: the key is recorded failed. */
export const declinedOnce = defineWorkflow(
  'ops.pay-declined',
  async (ctx, payment: { ref: string; amount: number }) => {
    await ctx.step('record-intent', async () => ({ ref: payment.ref }));
    throw new Error('card declined');
  },
  { maxAttempts: 1 },
);

/** Runs `declinedOnce` for `key`: it fails, and every replay gets IDEMPOTENCY_WORKFLOW_FAILED. */
export async function recordFailed(db: NodePgDatabase, key: string, scope: string): Promise<void> {
  await runWorkflow(db, key, declinedOnce, input(key), { scope }).catch(() => undefined);
  const replay = await runWorkflow(db, key, declinedOnce, input(key), { scope }).catch((e: unknown) => e);
  if (!(replay instanceof IdempotencyWorkflowFailedError)) throw new Error(`expected a failed key, got ${String(replay)}`);
}

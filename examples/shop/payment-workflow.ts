import { defineWorkflow, type Duration, type TransactionOf } from 'drizzle-idempotency';
import type { IdempotentResponse } from 'drizzle-idempotency/express';
import { GatewayDeclinedError, type Charge, type GatewayClient } from '../gateway/client.js';
import { crashPoint } from './crash-points.js';
import type { ShopDb } from './db.js';
import { createPendingPayment, settlePayment, type Payment } from './payments.js';
import { problem, PROBLEM } from './problem.js';

/** What the workflow runs on, stored with the key: a retry or the completer resumes from it without the client. */
export interface PayInput {
  userId: string;
  /** The client's Idempotency-Key, kept on the payment row for audits. */
  requestKey: string;
  amount: number;
  currency: string;
}

/** The charge step's recorded result: the gateway's answer, a decline included (a decline is an answer, not an error). */
export type ChargeOutcome = { status: 'succeeded'; chargeId: string } | { status: 'declined'; code: string };

export interface PaymentWorkflowOptions {
  /** How long a process holds a payment without a heartbeat before another may take it over. (Default: '30s') */
  lease?: Duration;
  /** How long one charge request may take before its outcome counts as unknown. (Default: 2 000 ms) */
  callTimeoutMs?: number;
  /** Charge requests per attempt after the first, each with the same downstream key. (Default: 2) */
  callRetries?: number;
}

/** The payment workflow's name, stored with each of its keys: how the completer and the audit find them. */
export const PAYMENT_WORKFLOW = 'shop.pay';

/** A step's transaction: the shop's functions take it like the database. */
type Tx = TransactionOf<ShopDb>;

const outcomeOf = (charge: Charge): ChargeOutcome =>
  charge.status === 'succeeded' ? { status: 'succeeded', chargeId: charge.id } : { status: 'declined', code: charge.declineCode ?? 'card_declined' };

/**
 * `POST /payments` as leased work, charged through the payment gateway in
 * three recovery points: the pending payment (a local step, its own
 * transaction), the charge (an external call under the key's downstream key,
 * its answer recorded as soon as it returns; an unknown outcome is retried
 * with the same key after asking the gateway), and the paid (or declined)
 * payment. A crash anywhere resumes from the last one, in a retry or in the
 * completer; the gateway charges the downstream key once.
 *
 * @example
 * const pay = paymentWorkflow(gatewayClient(process.env.GATEWAY_URL!));
 * const { value } = await runWorkflowOutcome(db, key, pay, { userId, requestKey: key, amount: 1250, currency: 'EUR' }, { scope: userId });
 */
export function paymentWorkflow(gateway: GatewayClient, options: PaymentWorkflowOptions = {}) {
  const timeoutMs = options.callTimeoutMs ?? 2_000;
  return defineWorkflow(
    PAYMENT_WORKFLOW,
    async (ctx, input: PayInput): Promise<IdempotentResponse> => {
      crashPoint('after-claim');
      const payment = await ctx.step('record-intent', (tx: Tx) => createPendingPayment(tx, input.userId, input, input.requestKey));
      crashPoint('after-record-intent');

      const outcome = await ctx.call(
        'charge',
        async ({ downstreamKey, signal }): Promise<ChargeOutcome> => {
          try {
            const charging = gateway.charge({ amount: input.amount, currency: input.currency, reference: payment.id }, { idempotencyKey: downstreamKey, signal, timeoutMs });
            if (process.env.SHOP_CRASH_AT === 'during-charge') await untilCharged(gateway, downstreamKey, charging);
            const charge = await charging;
            crashPoint('after-charge-before-record');
            return outcomeOf(charge);
          } catch (error) {
            // 422: a charge of another request stands under this key (an earlier run's, before the key was evicted or expired). Not a decline: in doubt.
            if (error instanceof GatewayDeclinedError && error.reason === 'idempotency_key_reused') throw new ChargeKeyConflictError(downstreamKey, { cause: error });
            // Any other 4xx: the gateway refused and charged nothing; that is the answer to record. Anything else is an unknown outcome: rethrown, retried.
            if (error instanceof GatewayDeclinedError) return { status: 'declined', code: error.reason };
            throw error;
          }
        },
        {
          timeout: timeoutMs,
          retries: options.callRetries ?? 2,
          // Before a retry, and on resume: did the gateway charge this key? undefined: it did not, charge it.
          reconcile: async ({ downstreamKey, signal }) => {
            const found = await gateway.findCharge(downstreamKey, { signal, timeoutMs });
            // Only this payment's own charge answers for it: another request's under the key is the conflict above, never a payment.
            if (found && (found.reference !== payment.id || found.amount !== input.amount || found.currency !== input.currency)) throw new ChargeKeyConflictError(downstreamKey);
            return found && outcomeOf(found);
          },
        },
      );
      crashPoint('after-charge');

      if (outcome.status === 'declined') {
        await ctx.step('mark-declined', (tx: Tx) => settled(settlePayment(tx, payment.id, { status: 'declined', declineCode: outcome.code })));
        return { status: 402, body: problem(402, 'PAYMENT_DECLINED', `the gateway declined the payment: ${outcome.code}`), headers: { 'content-type': PROBLEM } };
      }
      const paid = await ctx.step('mark-paid', (tx: Tx) => settled(settlePayment(tx, payment.id, { status: 'paid', chargeId: outcome.chargeId })));
      crashPoint('after-mark-paid');
      return { status: 201, body: paid, headers: { location: `/payments/${paid.id}` } };
    },
    { lease: options.lease ?? '30s', maxAttempts: 10 },
  );
}

export type PaymentWorkflow = ReturnType<typeof paymentWorkflow>;

/**
 * The gateway holds a charge of another request under this payment's
 * downstream key: an earlier run's, whose key was evicted or expired before
 * this run. Money may stand behind it, so it is an unknown outcome to the
 * library (`outcomeUnknown`): the key is never recorded declined or failed,
 * it stays started for an operator (`drizzle-idempotency inspect`).
 */
export class ChargeKeyConflictError extends Error {
  readonly code = 'CHARGE_KEY_CONFLICT' as const;
  readonly outcomeUnknown = true;
  constructor(downstreamKey: string, options?: { cause?: unknown }) {
    super(`the gateway holds another request's charge under downstream key ${downstreamKey}: left started for an operator`, options);
    this.name = 'ChargeKeyConflictError';
  }
}

/** A step that found its payment no longer pending would be a second run of a recorded step: a bug, never an answer. */
async function settled(update: Promise<Payment | undefined>): Promise<Payment> {
  const payment = await update;
  if (!payment) throw new Error('the payment was not pending: a recorded step ran twice');
  return payment;
}

/** Test-only (SHOP_CRASH_AT=during-charge): waits until the gateway has the charge while its answer is still out, then dies. */
async function untilCharged(gateway: GatewayClient, downstreamKey: string, charging: Promise<unknown>): Promise<void> {
  charging.catch(() => {});
  // Bounded: a charge that never lands still dies here, and the test sees no charge rather than a hang.
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 20))) {
    if (await gateway.findCharge(downstreamKey).catch(() => undefined)) break;
  }
  crashPoint('during-charge');
}

// A module for `drizzle-idempotency complete --workflows`: it exports two
// workflows (one under two names), and other things that are not workflows.
// Step by step it writes rows to `charges`, so an audit shows which steps ran
// and how often. Under CRASH_AFTER=<step>, it prints "<step> committed" once
// that step has committed and then hangs, to be killed there (see workflow-crash-child.ts).
import { sql } from 'drizzle-orm';
import { defineWorkflow, type WorkflowContext } from '../../src/index.js';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { insertCharge } from './fixtures.js';

/** What the workflow runs on. */
export interface PaymentInput {
  ref: string;
  amount: number;
}

async function crashPoint(step: string): Promise<void> {
  if (process.env.CRASH_AFTER !== step) return;
  process.stdout.write(`${step} committed\n`);
  await new Promise(() => {}); // killed here
}

/** A payment: a pending charge row, then a row that marks it paid; answers 201. */
async function pay(ctx: WorkflowContext, input: PaymentInput) {
  const intent = await ctx.step('record-intent', (tx: IdempotencyDatabase) => insertCharge(tx, input.ref, input.amount));
  await crashPoint('record-intent');
  await ctx.step('mark-paid', (tx: IdempotencyDatabase) => insertCharge(tx, `${input.ref}:paid`, input.amount));
  await crashPoint('mark-paid');
  return { status: 201, body: { id: intent.id, attempt: ctx.attempt } };
}

/** The payment, with a short lease: a killed run is soon abandoned. */
export const payOrder = defineWorkflow('cli.pay', pay, { lease: '1s' });

/** The same with one attempt only: abandoned by a crash, it is still resumed (the crash may hide a charge). */
export const payOnce = defineWorkflow('cli.pay-once', pay, { lease: '1s', maxAttempts: 1 });

/** One attempt, and a card that is declined once the intent is recorded: resumed, it fails definitely and is recorded as failed. */
export const payDeclined = defineWorkflow(
  'cli.pay-declined',
  async (ctx: WorkflowContext, input: PaymentInput) => {
    await ctx.step('record-intent', (tx: IdempotencyDatabase) => insertCharge(tx, input.ref, input.amount));
    await crashPoint('record-intent');
    throw new Error('card declined');
  },
  { lease: '1s', maxAttempts: 1 },
);

export default payOrder;

/** Not a workflow: a module's other exports are left alone. */
export const GATEWAY_URL = 'http://127.0.0.1:1';
export const chargesOf = (db: IdempotencyDatabase, ref: string) => db.execute(sql`select count(*) from charges where ref = ${ref}`);

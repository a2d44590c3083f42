// A module for `drizzle-idempotency complete --workflows` whose workflow is slow
// on purpose: each run says so on stderr ("cli.slow: run of <ref>, attempt <n>",
// which the tests count), then waits until the file named by SLOW_GATE exists.
// Without SLOW_GATE it waits forever: the crash child runs it that way, to be
// killed while it waits (see workflow-crash-child.ts).
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { defineWorkflow, type WorkflowContext } from '../../src/index.js';
import type { IdempotencyDatabase } from '../../src/driver/database.js';
import { insertCharge } from './fixtures.js';
import type { PaymentInput } from './completable-workflows.js';

/** Resolves once the file named by SLOW_GATE exists: the test opens the gate by creating it. */
async function gateOpened(): Promise<void> {
  const gate = process.env.SLOW_GATE;
  while (gate === undefined || !existsSync(gate)) await sleep(20);
}

/** A payment that records its intent, announces its run, and finishes only once the gate is open. */
export const slowPay = defineWorkflow(
  'cli.slow',
  async (ctx: WorkflowContext, input: PaymentInput) => {
    const intent = await ctx.step('record-intent', (tx: IdempotencyDatabase) => insertCharge(tx, input.ref, input.amount));
    process.stderr.write(`cli.slow: run of ${input.ref}, attempt ${ctx.attempt}\n`);
    await gateOpened();
    return { status: 201, body: { id: intent.id, attempt: ctx.attempt } };
  },
  { lease: '1s' },
);

// Declarations the README's idempotentWorkflow example assumes: the database,
// an Express app, your authentication's customer, and a workflow (the
// "Payments through a gateway" section defines a full one).
import express, { type Request } from 'express';
import { drizzle } from 'drizzle-orm/node-postgres';
import { defineWorkflow } from 'drizzle-idempotency';

export const db = drizzle(process.env.DATABASE_URL!);

export const app = express();
app.use(express.json());

/** The authenticated customer; here a bearer token is the customer's id, yours verifies a session or a JWT. */
export const customerOf = (req: Request): string => /^Bearer (\S+)$/.exec(req.get('authorization') ?? '')?.[1] ?? '';

export const payOrder = defineWorkflow('shop.pay', async (ctx, input: { orderId: string; amount: number }) => {
  const charge = await ctx.call('charge', async ({ downstreamKey }) => ({ id: `ch_${downstreamKey.slice(3, 15)}`, amount: input.amount }));
  return { status: 201, body: { orderId: input.orderId, chargeId: charge.id } };
});

import { sql } from 'drizzle-orm';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import express, { type Express, type Request } from 'express';
import { idempotent, type IdempotentRouteOptions } from '../../src/express.js';
import { insertCharge } from './fixtures.js';

/** What a test can do inside the payment's transaction, after its writes. */
export interface PaymentHooks {
  /** Runs after the charge and the stock decrement, before the handler answers. */
  afterWrites?: (req: Request) => Promise<void> | void;
}

/** Stock for the payments app: `sku` with `quantity` units. */
export async function stockUp(db: NodePgDatabase, sku: string, quantity: number): Promise<void> {
  await db.execute(sql`insert into stock (sku, quantity) values (${sku}, ${quantity})
                       on conflict (sku) do update set quantity = excluded.quantity`);
}

/**
 * The service of the HTTP tests: POST /payments decrements stock and records a
 * charge in the key's transaction. Customers are told apart by `x-customer`
 * (standing in for authentication) and that is the scope.
 */
export function paymentsApp(db: NodePgDatabase, options: Partial<IdempotentRouteOptions> = {}, hooks: PaymentHooks = {}): Express {
  const app = express();
  app.use(express.json());
  app.post(
    '/payments',
    idempotent(
      db,
      async (req, tx) => {
        const { amount, sku, ref } = req.body as { amount: number; sku: string; ref: string };
        const stock = await tx.execute<{ quantity: number }>(sql`select quantity from stock where sku = ${sku} for update`);
        const quantity = stock.rows[0]?.quantity;
        if (quantity === undefined) return { status: 404, body: { error: 'unknown_sku' } };
        if (quantity < 1) return { status: 409, body: { error: 'out_of_stock' } };
        await tx.execute(sql`update stock set quantity = quantity - 1 where sku = ${sku}`);
        const charge = await insertCharge(tx, ref, amount);
        await hooks.afterWrites?.(req);
        return {
          status: 201,
          body: { id: charge.id, amount, sku },
          headers: { location: `/payments/${charge.id}`, 'set-cookie': 'session=first-caller', 'x-charge-id': String(charge.id) },
        };
      },
      { scope: (req) => req.get('x-customer') ?? 'anonymous', ...options },
    ),
  );
  return app;
}

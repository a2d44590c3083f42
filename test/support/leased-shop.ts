// A payment as leased work, for the tests of src/leased: a local step that
// records the intent, a charge through an "external service" with its own
// idempotency (a table keyed by downstream key, on its own pool, as a real
// gateway keeps its own ledger), and a local step that marks it paid. Hooks
// let a test stop or kill the process at each recovery point.
import { sql } from 'drizzle-orm';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import { defineWorkflow, downstreamKey, type WorkflowOptions } from '../../src/index.js';

/** The payments table (our effect) and the gateway's ledger (its effect, one row per downstream key). */
export async function createShopTables(pool: pg.Pool): Promise<void> {
  await pool.query(`
    create table if not exists payments (id serial primary key, ref text not null, amount integer not null, status text not null, charge_id text);
    create table if not exists payment_events (id serial primary key, ref text not null, event text not null, pid integer not null);
    create table if not exists gateway_ledger (downstream_key text primary key, id text not null, amount integer not null, calls integer not null default 1);
  `);
}

/** Places the run may be stopped at, in the order it passes them. */
export type ShopPoint = 'after-claim' | 'in-intent' | 'after-intent' | 'charged' | 'after-charge' | 'before-complete';

/** What the gateway does besides charging. */
export type GatewayFault = 'none' | 'drop-answer' | 'slow' | 'refuse' | 'charge-then-500';

export interface ShopHooks {
  /** Called at each point; may never return (a crash) or stop the process. */
  at?: (point: ShopPoint, attempt: number) => Promise<void>;
  /** Fault of the gateway's answer, per try (1-based) of this process. */
  fault?: (attempt: number) => GatewayFault;
  /** How long a 'slow' answer takes. */
  slowMs?: number;
  /** With a reconcile function that asks the ledger. */
  reconcile?: boolean;
  retries?: number;
  timeout?: number;
}

/** The gateway: charges a downstream key once; a repeat answers the first charge. `calls` counts every request. */
export async function gatewayCharge(gateway: pg.Pool, downstreamKey: string, amount: number): Promise<{ id: string; amount: number }> {
  const { rows } = await gateway.query<{ id: string; amount: number }>(
    `insert into gateway_ledger (downstream_key, id, amount) values ($1, 'ch_' || substr(md5($1), 1, 12), $2)
     on conflict (downstream_key) do update set calls = gateway_ledger.calls + 1
     returning id, amount`,
    [downstreamKey, amount],
  );
  return rows[0]!;
}

/** The gateway's "find by idempotency key". */
export async function gatewayFind(gateway: pg.Pool, downstreamKey: string): Promise<{ id: string; amount: number } | undefined> {
  const { rows } = await gateway.query<{ id: string; amount: number }>(`select id, amount from gateway_ledger where downstream_key = $1`, [downstreamKey]);
  return rows[0];
}

const networkError = () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });

/** The payment workflow, named `shop.pay`. */
export function payWorkflow(gateway: pg.Pool, hooks: ShopHooks = {}, options: WorkflowOptions = { lease: '600ms' }) {
  const at = hooks.at ?? (async () => {});
  return defineWorkflow(
    'shop.pay',
    async (ctx, input: { ref: string; amount: number }) => {
      await at('after-claim', ctx.attempt);
      const payment = await ctx.step('record-intent', async (tx: NodePgDatabase) => {
        const { rows } = await tx.execute<{ id: number }>(
          sql`insert into payments (ref, amount, status) values (${input.ref}, ${input.amount}, 'pending') returning id`,
        );
        await at('in-intent', ctx.attempt);
        return { id: rows[0]!.id };
      });
      await at('after-intent', ctx.attempt);
      const charge = await ctx.call(
        'charge',
        async ({ downstreamKey, attempt }) => {
          const fault = hooks.fault?.(attempt) ?? 'none';
          if (fault === 'refuse') throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
          // A 5xx after the gateway charged: its client marks the error as an unknown outcome.
          if (fault === 'charge-then-500') {
            await gatewayCharge(gateway, downstreamKey, input.amount);
            throw Object.assign(new Error('gateway answered 500'), { outcomeUnknown: true });
          }
          const charged = await gatewayCharge(gateway, downstreamKey, input.amount);
          await at('charged', ctx.attempt);
          if (fault === 'drop-answer') throw networkError();
          if (fault === 'slow') await new Promise((resolve) => setTimeout(resolve, hooks.slowMs ?? 2_000));
          return charged;
        },
        {
          retries: hooks.retries ?? 2,
          ...(hooks.timeout === undefined ? {} : { timeout: hooks.timeout }),
          ...(hooks.reconcile ? { reconcile: ({ downstreamKey }) => gatewayFind(gateway, downstreamKey) } : {}),
        },
      );
      await at('after-charge', ctx.attempt);
      await ctx.step('mark-paid', async (tx: NodePgDatabase) => {
        await tx.execute(sql`update payments set status = 'paid', charge_id = ${charge.id} where id = ${payment.id}`);
        await tx.execute(sql`insert into payment_events (ref, event, pid) values (${input.ref}, 'paid', ${process.pid})`);
      });
      await at('before-complete', ctx.attempt);
      return { status: 201, body: { paymentId: payment.id, chargeId: charge.id } };
    },
    options,
  );
}

/** The downstream key the payment of `key` charges the gateway with. */
export const chargeKey = (key: string, scope = '') => downstreamKey({ scope, key, step: 'charge' });

/** The audit of one payment: our payments for `ref`, the gateway's ledger for its charge key, and the key row. */
export async function auditPayment(pool: pg.Pool, ref: string, chargeKey: string) {
  const { rows: payments } = await pool.query<{ status: string; charge_id: string | null }>(`select status, charge_id from payments where ref = $1`, [ref]);
  const { rows: ledger } = await pool.query<{ id: string }>(`select id from gateway_ledger where downstream_key = $1`, [chargeKey]);
  const { rows: events } = await pool.query<{ event: string }>(`select event from payment_events where ref = $1`, [ref]);
  return { payments, charges: ledger.length, chargeId: ledger[0]?.id, events: events.map((e) => e.event) };
}

/** Key rows by status, for "nothing left started". */
export async function keysByStatus(pool: pg.Pool): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ status: string; n: number }>(`select status, count(*)::int as n from idempotency_keys group by status order by status`);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

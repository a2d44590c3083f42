// The business transaction every scenario wraps: decrement stock under
// SELECT ... FOR UPDATE and insert a charge. Five statements with BEGIN and
// COMMIT. SKUs are drawn uniformly from a catalogue, so 32 workers rarely
// queue on the same stock row: the bench measures round trips and CPU, not
// one hot row's lock.
import { sql } from 'drizzle-orm';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';
import type pg from 'pg';

export const SKU_COUNT = 1000;
export const AMOUNT = 500;

/** What a charge answers; it is also the result stored for replays. */
export interface Charge {
  chargeId: number;
  sku: string;
  amount: number;
  stockLeft: number;
}

/** Anything that runs Drizzle SQL on node-postgres: a database or a transaction. */
export type Executor = Pick<NodePgDatabase, 'execute'>;

export async function createBusinessSchema(pool: pg.Pool): Promise<void> {
  await pool.query(`
    create table stock (sku text primary key, quantity bigint not null);
    create table charges (
      id bigserial primary key,
      ref text not null,
      sku text not null,
      amount integer not null,
      created_at timestamptz not null default now());
  `);
  // Enough stock that no run sells out.
  await pool.query(`insert into stock (sku, quantity) select 'sku-' || g, 1000000000 from generate_series(1, $1::int) g`, [SKU_COUNT]);
}

export function randomSku(): string {
  return `sku-${1 + Math.floor(Math.random() * SKU_COUNT)}`;
}

/** The three statements between BEGIN and COMMIT. */
export async function charge(tx: Executor, ref: string, sku: string): Promise<Charge> {
  const stock = await tx.execute<{ quantity: string }>(sql`select quantity from stock where sku = ${sku} for update`);
  const quantity = Number(stock.rows[0]?.quantity ?? 0);
  if (quantity < 1) throw new Error(`${sku} is out of stock`);
  await tx.execute(sql`update stock set quantity = quantity - 1 where sku = ${sku}`);
  const inserted = await tx.execute<{ id: string }>(
    sql`insert into charges (ref, sku, amount) values (${ref}, ${sku}, ${AMOUNT}) returning id`,
  );
  return { chargeId: Number(inserted.rows[0]!.id), sku, amount: AMOUNT, stockLeft: quantity - 1 };
}

/** Charges per ref, counted by the database. */
export async function chargesPerRef(pool: pg.Pool, refs: readonly string[]): Promise<Map<string, number>> {
  const { rows } = await pool.query<{ ref: string; n: string }>(
    'select ref, count(*) as n from charges where ref = any($1::text[]) group by ref',
    [refs],
  );
  return new Map(rows.map((r) => [r.ref, Number(r.n)]));
}

import { sql } from 'drizzle-orm';
import type pg from 'pg';
import type { IdempotencyDatabase } from '../../src/driver/database.js';

/** A charges table (the effect we count) and a stock table (the one we must not oversell). */
export async function createBusinessTables(pool: pg.Pool): Promise<void> {
  await pool.query(`
    create table if not exists charges (id serial primary key, ref text not null, amount integer not null);
    create table if not exists stock (sku text primary key, quantity integer not null);
  `);
}

/** The business write: one charge row. */
export async function insertCharge(tx: IdempotencyDatabase, ref: string, amount: number): Promise<{ id: number; amount: number }> {
  const result = (await tx.execute(sql`insert into charges (ref, amount) values (${ref}, ${amount}) returning id, amount`)) as {
    rows: { id: number; amount: number }[];
  };
  return result.rows[0]!;
}

/** Rows of `table` (or those matching `where`), counted by the database. */
export async function count(pool: pg.Pool, table: string, where = 'true', params: unknown[] = []): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(`select count(*) as n from ${table} where ${where}`, params);
  return Number(rows[0]!.n);
}

/** Every key row, for audits. */
export async function keyRows(pool: pg.Pool, schema = 'public') {
  const { rows } = await pool.query<{ scope: string; key: string; status: string; response: unknown; fingerprint: string | null }>(
    `select scope, key, status, response, fingerprint from ${schema}.idempotency_keys order by scope, key`,
  );
  return rows;
}

/** Resolves when `ms` have passed. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A promise you settle from outside: to hold a transaction open at a chosen moment. */
export function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// `npm start` until the shop demo lands: embedded PostgreSQL (or DATABASE_URL),
// the bundled migrations, then one key paid twice in a row and by 20
// concurrent duplicates. Exits non-zero unless exactly one charge exists per key.
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { migrate, withIdempotencyOutcome } from '../src/index.js';
import { startEmbeddedPostgres } from '../tools/embedded-db.js';

const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres();
const url = process.env.DATABASE_URL ?? embedded!.url;
console.log(`PostgreSQL: ${embedded ? 'embedded (temporary)' : 'DATABASE_URL'}`);
const pool = new pg.Pool({ connectionString: url, max: 25 });
pool.on('error', (error) => console.error(`idle connection lost: ${error.message}`));
const db = drizzle(pool);

try {
  await migrate(db);
  await db.execute(sql`create table if not exists quickstart_charges (id serial primary key, ref text not null, amount integer not null)`);
  await db.execute(sql`truncate quickstart_charges`);
  await db.execute(sql`delete from idempotency_keys where scope = 'quickstart'`);

  const pay = (key: string) =>
    withIdempotencyOutcome(
      db,
      key,
      async (tx) => {
        const result = await tx.execute<{ id: number }>(
          sql`insert into quickstart_charges (ref, amount) values (${key}, 500) returning id`,
        );
        return { chargeId: result.rows[0]!.id, amount: 500 };
      },
      { scope: 'quickstart', fingerprint: { amount: 500 } },
    );

  const first = await pay('order-1');
  const retry = await pay('order-1');
  console.log(`pay twice with key order-1: first ${JSON.stringify(first)}, retry ${JSON.stringify(retry)}`);

  const storm = await Promise.all(Array.from({ length: 20 }, () => pay('order-2')));
  const ran = storm.filter((o) => !o.replayed).length;
  console.log(`20 concurrent duplicates of key order-2: ${ran} ran, ${storm.length - ran} replayed`);

  const { rows } = await pool.query<{ ref: string; n: string }>(
    'select ref, count(*) as n from quickstart_charges group by ref order by ref',
  );
  for (const row of rows) console.log(`charges for ${row.ref}: ${row.n}`);
  const ok = rows.length === 2 && rows.every((r) => Number(r.n) === 1) && ran === 1 && retry.replayed;
  console.log(ok ? 'OK: one charge per key' : 'FAILED: duplicate or missing charges');
  process.exitCode = ok ? 0 : 1;
} finally {
  await pool.end();
  await embedded?.stop();
}

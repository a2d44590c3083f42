// The database's account of a key storm against the shop, checked against
// what every client copy was told. Returns what is broken, so a failing test
// names the key and the numbers.
import type pg from 'pg';
import type { StormResult } from './key-storm.js';
import { settled } from './processes.js';

const EXPECTED_STATUS: Record<string, readonly number[]> = {
  '/payments': [201],
  '/orders': [201, 409],
  '/notifications/welcome': [202],
};

// Each path's effect rows, by the request key that made them: a payment, an
// order, and a welcome e-mail's pg-boss job (its `ref` is the request's key).
const TABLE_OF: Record<string, string> = {
  '/payments': 'shop_payments',
  '/orders': 'shop_orders',
  '/notifications/welcome': `(select id, data->>'ref' as request_key from pgboss.job where name = 'welcome-email') as welcome_jobs`,
};

/**
 * One effect per key, every copy told the same and the truth, stock never
 * negative and fully accounted for, no key left started, no transaction left open.
 *
 * @example
 * expect(await brokenAfterStorm(t.pool, results, { sku: 'widget', initialStock: 30 })).toEqual([]);
 */
export async function brokenAfterStorm(pool: pg.Pool, results: readonly StormResult[], stock: { sku: string; initialStock: number }): Promise<string[]> {
  const broken: string[] = [];
  const effects = new Map<string, { n: number; id: string }>();
  for (const table of Object.values(TABLE_OF)) {
    const { rows } = await pool.query<{ request_key: string; n: number; id: string }>(
      `select request_key, count(*)::int as n, min(id::text) as id from ${table} group by request_key`,
    );
    for (const r of rows) effects.set(`${table}:${r.request_key}`, { n: r.n, id: r.id });
  }
  for (const { request, copies } of results) {
    const label = `${request.path} ${request.key}`;
    const statuses = copies.map((c) => c.status);
    if (!statuses.every((s) => EXPECTED_STATUS[request.path]!.includes(s))) broken.push(`${label}: answered ${statuses.join(',')}`);
    if (new Set(copies.map((c) => JSON.stringify([c.status, c.body]))).size !== 1) broken.push(`${label}: copies got different answers`);
    const effect = effects.get(`${TABLE_OF[request.path]}:${request.key}`);
    const refused = request.path === '/orders' && copies[0]!.status === 409;
    const wanted = refused ? 0 : 1;
    if ((effect?.n ?? 0) !== wanted) broken.push(`${label}: ${effect?.n ?? 0} effects, expected ${wanted}`);
    if (effect && request.path !== '/notifications/welcome' && copies.some((c) => c.body.id !== effect.id)) broken.push(`${label}: answer names another row than the database holds`);
  }
  const { rows: levels } = await pool.query<{ left: number; sold: number }>(
    `select i.stock as left, coalesce((select sum(quantity) from shop_order_items where sku = i.sku), 0)::int as sold from shop_inventory i where sku = $1`,
    [stock.sku],
  );
  const level = levels[0];
  if (!level) broken.push(`${stock.sku}: no stock row`);
  else {
    if (level.left < 0) broken.push(`${stock.sku}: stock ${level.left} is negative`);
    if (stock.initialStock - level.sold !== level.left) broken.push(`${stock.sku}: ${stock.initialStock} - ${level.sold} sold != ${level.left} left`);
  }
  // The requests' keys: the mail workers' own (scope pg-boss:<queue>) are not counted.
  const { rows: keys } = await pool.query<{ completed: number; started: number }>(
    `select count(*) filter (where status = 'completed')::int as completed, count(*) filter (where status <> 'completed')::int as started from idempotency_keys
     where scope not like 'pg-boss:%'`,
  );
  if (keys[0]!.started) broken.push(`${keys[0]!.started} keys not completed (stuck)`);
  if (keys[0]!.completed !== results.length) broken.push(`${keys[0]!.completed} keys stored for ${results.length} requests`);
  // A claim holds a lock on the key table until its transaction ends: an open
  // transaction holding one is a claim nobody will commit. Other short
  // transactions (the outbox worker's) may come and go, so wait for it to settle.
  const openClaims = async () =>
    (
      await pool.query<{ n: number }>(
        `select count(distinct a.pid)::int as n from pg_stat_activity a join pg_locks l on l.pid = a.pid
         where a.datname = current_database() and a.pid <> pg_backend_pid() and a.state like 'idle in transaction%'
           and l.relation = 'idempotency_keys'::regclass`,
      )
    ).rows[0]!.n;
  const open = await settled(openClaims, (n) => n === 0, 10_000);
  if (open) broken.push(`${open} transactions holding the key table left open (uncommitted claims)`);
  return broken;
}

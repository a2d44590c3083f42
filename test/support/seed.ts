import type pg from 'pg';

export interface SeedOptions {
  /** Completed keys whose expiry passed: `expired-1` … `expired-N`, oldest expiry last. */
  expired?: number;
  /** Completed keys that expire in a day: `live-1` … `live-N`. */
  live?: number;
  scope?: string;
  schema?: string;
}

/**
 * Writes completed key rows straight into the table with one
 * `INSERT … SELECT generate_series`: fast enough for 100,000 rows in a test.
 * Expired rows expire 1 ms apart, an hour ago and earlier, so a sweep
 * (oldest expiry first) meets them in a known order.
 */
export async function seedKeys(pool: pg.Pool, options: SeedOptions): Promise<void> {
  const { expired = 0, live = 0, scope = '', schema = 'public' } = options;
  await pool.query(
    `insert into ${schema}.idempotency_keys (scope, key, status, response, created_at, completed_at, expires_at)
     select $1,
            case when i <= $2::int then 'expired-' || i else 'live-' || (i - $2::int) end,
            'completed',
            jsonb_build_object('value', jsonb_build_object('n', i)),
            now() - interval '2 days', now() - interval '2 days',
            case when i <= $2::int then now() - interval '1 hour' - i * interval '1 millisecond' else now() + interval '1 day' end
     from generate_series(1, $2::int + $3::int) as i`,
    [scope, expired, live],
  );
}

/** Rows by expiry, counted by the database clock. */
export async function keyCounts(pool: pg.Pool, schema = 'public'): Promise<{ total: number; expired: number; live: number }> {
  const { rows } = await pool.query<{ total: string; expired: string; live: string }>(
    `select count(*) as total,
            count(*) filter (where expires_at <= now()) as expired,
            count(*) filter (where expires_at > now()) as live
     from ${schema}.idempotency_keys`,
  );
  const row = rows[0]!;
  return { total: Number(row.total), expired: Number(row.expired), live: Number(row.live) };
}

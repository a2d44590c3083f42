import pg from 'pg';

/**
 * Runs `next` while another client holds, in an open transaction, the server
 * connection the previous transaction through PgBouncer (at `url`) used:
 * PgBouncer hands the most recently used idle server connection out first, so
 * `next` gets a different one, which lacks the statements named on the first.
 *
 * @example
 * await onAnotherServerConnection(url, () => withIdempotency(db, key, fn));
 */
export async function onAnotherServerConnection<T>(url: string, next: () => Promise<T>): Promise<T> {
  const other = new pg.Client({ connectionString: url });
  await other.connect();
  try {
    await other.query('begin');
    await other.query('select 1');
    return await next();
  } finally {
    await other.query('commit').catch(() => undefined);
    await other.end();
  }
}

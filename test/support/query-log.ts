import type pg from 'pg';

/** What a statement is, by its text: the library's own, or the test's. */
function label(text: string): string {
  const t = text.trim().toLowerCase();
  if (t.startsWith('begin')) return 'begin';
  if (t === 'commit' || t === 'rollback') return t;
  if (t.startsWith('insert into "idempotency_keys"')) return 'claim';
  if (t.startsWith('with stored as')) return 'store';
  if (t.startsWith('select k.status')) return 'read';
  return 'other';
}

/**
 * Records, for every client the pool opens from now on, when each statement
 * was handed to the driver (`send claim`), when its answer came back
 * (`done claim`), and each write to the socket (`write`): statements that
 * left in one write shared a round trip.
 */
export function logStatements(pool: pg.Pool): string[] {
  const events: string[] = [];
  pool.on('connect', (client) => {
    const stream = (client as unknown as { connection: { stream: Record<'_write' | '_writev', (...args: unknown[]) => unknown> } }).connection.stream;
    for (const method of ['_write', '_writev'] as const) {
      const original = stream[method].bind(stream);
      stream[method] = (...args: unknown[]) => {
        events.push('write');
        return original(...args);
      };
    }
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (config: unknown, ...rest: unknown[]) => {
      const text = typeof config === 'string' ? config : (config as { text: string }).text;
      const what = label(text);
      events.push(`send ${what}`);
      const result = query(config, ...rest);
      if (result instanceof Promise) result.then(() => events.push(`done ${what}`), () => events.push(`fail ${what}`));
      return result;
    };
  });
  return events;
}

import type pg from 'pg';
import { interceptQueries, statementKind } from '../../bench/pg-tap.js';

/**
 * Records, for every client the pool opens from now on, when each statement
 * was handed to the driver (`send claim`), when its answer came back
 * (`done claim`), and each write to the socket (`write`): statements that
 * left in one write shared a round trip. Statements are named as the bench
 * names them (`BEGIN`, `claim`, `store`, `COMMIT`, `INSERT charge`, …).
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
  });
  interceptQueries(pool, (text, send) => {
    const what = statementKind(text);
    events.push(`send ${what}`);
    const result = send();
    result.then(() => events.push(`done ${what}`), () => events.push(`fail ${what}`));
    return result;
  });
  return events;
}

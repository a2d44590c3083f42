import { sql, type SQL } from 'drizzle-orm';
import { queryRows, type IdempotencyDatabase } from '../driver/database.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';

/** pg-boss's database adapter: what its `db` option (of `send`, `insert`, `complete`, `fetch`, …) calls. */
export interface ExecuteSql {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/**
 * pg-boss's `db` adapter over a Drizzle transaction (or database): pg-boss's
 * statements run on that transaction and commit or roll back with it.
 *
 * @example
 * await boss.send('welcome-email', { userId }, { db: executeSqlOn(tx) });
 */
export function executeSqlOn(db: IdempotencyDatabase): ExecuteSql {
  if (typeof db?.execute !== 'function') throw new IdempotencyOptionsInvalidError('executeSqlOn: db must be a Drizzle PostgreSQL database or transaction');
  return {
    async executeSql(text, values = []) {
      return { rows: await queryRows<unknown>(db, withParameters(text, values)) };
    },
  };
}

/**
 * pg-boss's text with `$n` placeholders as a Drizzle query with the same
 * parameters, so that it goes through Drizzle's driver rather than a pg client of
 * its own (tested on node-postgres). A placeholder used twice
 * becomes two parameters of the same value. Quoted text, quoted names,
 * dollar-quoted bodies and comments are copied as they are.
 */
export function withParameters(text: string, values: readonly unknown[]): SQL {
  const chunks: SQL[] = [];
  let literal = '';
  let i = 0;
  const copyUntil = (end: string, from: number) => {
    const stop = text.indexOf(end, from);
    const next = stop === -1 ? text.length : stop + end.length;
    literal += text.slice(i, next);
    i = next;
  };
  while (i < text.length) {
    const c = text[i]!;
    const rest = text.slice(i);
    if (c === "'" || c === '"') copyUntil(c, i + 1);
    else if (rest.startsWith('--')) copyUntil('\n', i);
    else if (rest.startsWith('/*')) copyUntil('*/', i + 2);
    else if (c === '$') {
      const placeholder = /^\$(\d+)/.exec(rest);
      const tag = /^\$[A-Za-z_]*\$/.exec(rest);
      if (placeholder) {
        const n = Number(placeholder[1]);
        if (n < 1 || n > values.length) throw new IdempotencyOptionsInvalidError(`executeSql: $${n} has no value (${values.length} given)`);
        // sql.param: an array is one parameter (a Postgres array or jsonb), not a list.
        chunks.push(sql.raw(literal), sql`${sql.param(values[n - 1])}`);
        literal = '';
        i += placeholder[0].length;
      } else if (tag) copyUntil(tag[0], i + tag[0].length);
      else {
        literal += c;
        i++;
      }
    } else {
      literal += c;
      i++;
    }
  }
  chunks.push(sql.raw(literal));
  return sql.join(chunks);
}

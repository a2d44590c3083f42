import { entityKind, sql, type SQL } from 'drizzle-orm';
import { isTransaction, queryRows, type IdempotencyDatabase } from '../driver/database.js';
import { checkoutPoolOf } from '../driver/pool-transaction.js';
import { IdempotencyDriverUnsupportedError, IdempotencyOptionsInvalidError } from '../shared/errors.js';

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
  refuseJsonEncodingPostgresJs(db);
  // On a node-postgres pool: listen for its idle connections' errors, as every call of the library does (an unheard one ends the process).
  if (!isTransaction(db)) checkoutPoolOf(db);
  return {
    async executeSql(text, values = []) {
      return { rows: await queryRows<unknown>(db, withParameters(text, values)) };
    },
  };
}

const JSONB = 3802;

/**
 * Throws IDEMPOTENCY_DRIVER_UNSUPPORTED, before anything is sent, for drizzle's
 * postgres.js whose client JSON-encodes values bound to json and jsonb
 * parameters (postgres.js' default, which drizzle-orm 0.44+ turns off on the
 * client and 1.0 leaves on). pg-boss's JSON values arrive here as JSON text,
 * as node-postgres sends them; encoded once more, a job's data would be
 * stored as a JSON string. A transaction's client (postgres.js' scoped `sql`)
 * carries no options: there drizzle-orm 1.0 (PgAsyncTransaction) is the sign.
 */
function refuseJsonEncodingPostgresJs(db: IdempotencyDatabase): void {
  const session = (db as { session?: { client?: { options?: { serializers?: Record<number, unknown> } }; constructor: unknown } }).session;
  if ((session?.constructor as { [entityKind]?: string } | undefined)?.[entityKind] !== 'PostgresJsSession') return;
  const serialize = session!.client?.options?.serializers?.[JSONB];
  const encodes = typeof serialize === 'function' ? serialize('{}') !== '{}' : isTransaction(db) && isDrizzle1(db);
  if (!encodes) return;
  throw new IdempotencyDriverUnsupportedError(
    "executeSqlOn: this postgres.js client JSON-encodes json and jsonb parameters (drizzle-orm 1.0 leaves postgres.js' default on), so pg-boss's job data " +
      'would be stored as a JSON string; give pg-boss a node-postgres database or transaction, or turn the encoding off on the client ' +
      "(serializers 114 and 3802 as (x) => x, which is what drizzle-orm 0.44+ does)",
  );
}

function isDrizzle1(db: object): boolean {
  for (let proto: unknown = Object.getPrototypeOf(db); proto; proto = Object.getPrototypeOf(proto)) {
    if ((proto as { constructor?: { [entityKind]?: unknown } }).constructor?.[entityKind] === 'PgAsyncTransaction') return true;
  }
  return false;
}

/**
 * pg-boss's text with `$n` placeholders as a Drizzle query with the same
 * parameters, so that it goes through Drizzle's driver rather than a pg client of
 * its own (tested on node-postgres). Each `$n` keeps one parameter however often
 * it appears, so that Postgres infers one type for it, as for pg-boss's own
 * client (`insertJob` reads `$5` as text, then casts it to timestamptz in a
 * branch not taken). Quoted text (escape strings too), quoted names, names
 * holding `$`, dollar-quoted bodies and comments (nested too) are copied as
 * they are. Values go as node-postgres sends them (text for objects, arrays
 * and dates, null for undefined), so that every driver passes pg-boss's
 * values alike: postgres.js refuses undefined and sends objects as they are.
 */
export function withParameters(text: string, values: readonly unknown[]): SQL {
  const chunks: SQL[] = [];
  // pg-boss's $n → the number Drizzle gives its one parameter: $1, $2, … in order of appearance.
  const numbers = new Map<number, number>();
  let literal = '';
  let i = 0;
  const copyTo = (next: number) => {
    literal += text.slice(i, next);
    i = next;
  };
  while (i < text.length) {
    const c = text[i]!;
    if (c === "'" || c === '"') copyTo(quotedEnd(text, i + 1, c, false));
    else if ((c === 'E' || c === 'e') && text[i + 1] === "'") copyTo(quotedEnd(text, i + 2, "'", true));
    else if (IDENT_START.test(c)) copyTo(wordEnd(text, i + 1));
    else if (/[0-9]/.test(c)) copyTo(wordEnd(text, i + 1));
    else if (text.startsWith('--', i)) copyTo(lineEnd(text, i));
    else if (text.startsWith('/*', i)) copyTo(commentEnd(text, i));
    else if (c === '$') {
      const rest = text.slice(i);
      const placeholder = /^\$(\d+)/.exec(rest);
      const tag = DOLLAR_TAG.exec(rest);
      if (placeholder) {
        const n = Number(placeholder[1]);
        if (n < 1 || n > values.length) throw new IdempotencyOptionsInvalidError(`executeSql: $${n} has no value (${values.length} given)`);
        const number = numbers.get(n);
        if (number === undefined) {
          numbers.set(n, numbers.size + 1);
          // sql.param: one parameter, as node-postgres (pg-boss's own client) would send it.
          chunks.push(sql.raw(literal), sql`${sql.param(asNodePostgresSends(values[n - 1]))}`);
          literal = '';
        } else literal += `$${number}`;
        i += placeholder[0].length;
      } else if (tag) {
        const close = text.indexOf(tag[0], i + tag[0].length);
        copyTo(close === -1 ? text.length : close + tag[0].length);
      } else copyTo(i + 1);
    } else copyTo(i + 1);
  }
  chunks.push(sql.raw(literal));
  return sql.join(chunks);
}

// PostgreSQL's lexer: a name starts with a letter (any non-ASCII character
// counts) or _, and goes on with those, digits and $; a dollar-quote tag is a
// name without $.
const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const WORD_CONTINUE = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_TAG = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;

/** Past the name or number that starts before `from` ($ included: `a$1` is a name). */
function wordEnd(text: string, from: number): number {
  let j = from;
  while (j < text.length && WORD_CONTINUE.test(text[j]!)) j++;
  return j;
}

/** Past the closing quote of text quoted by `quote` from `from`: a doubled quote is one; in an escape string, so is a backslashed one. */
function quotedEnd(text: string, from: number, quote: string, backslashes: boolean): number {
  for (let j = from; j < text.length; j++) {
    if (backslashes && text[j] === '\\') j++;
    else if (text[j] === quote) {
      if (text[j + 1] !== quote) return j + 1;
      j++;
    }
  }
  return text.length;
}

function lineEnd(text: string, from: number): number {
  const stop = text.indexOf('\n', from);
  return stop === -1 ? text.length : stop + 1;
}

/** Past the end of the block comment at `from`: they nest. */
function commentEnd(text: string, from: number): number {
  let depth = 0;
  for (let j = from; j < text.length; j++) {
    if (text.startsWith('/*', j)) {
      depth++;
      j++;
    } else if (text.startsWith('*/', j)) {
      depth--;
      j++;
      if (depth === 0) return j + 1;
    }
  }
  return text.length;
}

/**
 * A value as node-postgres sends it (its `prepareValue`): undefined as null,
 * a Date as its instant, an array as a Postgres array literal, another object
 * as JSON; strings, numbers, booleans and bytes as they are.
 */
function asNodePostgresSends(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return arrayLiteral(value);
  if (typeof value === 'object') return JSON.stringify(value);
  return value;
}

function arrayLiteral(values: readonly unknown[]): string {
  const items = values.map((item) => {
    if (item === undefined || item === null) return 'NULL';
    if (Array.isArray(item)) return arrayLiteral(item);
    if (item instanceof Uint8Array) return `"\\\\x${Buffer.from(item).toString('hex')}"`;
    const text = String(asNodePostgresSends(item));
    return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  });
  return `{${items.join(',')}}`;
}

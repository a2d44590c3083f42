// Sees every statement a pg.Pool sends, at the one place all of them pass:
// each client's query method. Used to count and time statements (part 3) and
// to stop a process at an exact point of a transaction (part 5).
import type pg from 'pg';

/** Called instead of the client's query; `send` performs the original call. */
/** `pipelining`: whether the client sends this statement without waiting for the answers before it. */
export type QueryInterceptor = (text: string, send: () => Promise<unknown>, pipelining: boolean) => Promise<unknown>;

export function interceptQueries(pool: pg.Pool, intercept: QueryInterceptor): void {
  // 'connect' fires for each new client before anyone can use it.
  pool.on('connect', (client) => {
    const original = client.query.bind(client) as (...args: unknown[]) => unknown;
    const tapped = (...args: unknown[]) => {
      if (isQueryObject(args[0])) return tapQueryObject(args[0], original, intercept, (client as unknown as { pipeline?: boolean }).pipeline === true);
      // pg-pool's own query() passes a callback; turn every call into the
      // promise form so the interceptor sees when each statement ends.
      const callback = typeof args.at(-1) === 'function' ? (args.pop() as (error: unknown, result?: unknown) => void) : undefined;
      const pipelining = (client as unknown as { pipeline?: boolean }).pipeline === true;
      const result = intercept(statementText(args[0]), () => original(...args) as Promise<unknown>, pipelining);
      if (!callback) return result;
      result.then(
        (value) => callback(null, value),
        (error: unknown) => callback(error),
      );
      return undefined;
    };
    (client as unknown as { query: typeof tapped }).query = tapped;
  });
}

/** A query object (node-postgres' Query, or one like it): it carries its callback and is answered through it. */
interface QueryObject {
  text: string;
  submit: unknown;
  callback?: (error: Error | null, result?: unknown) => void;
  /** The library's fused queries: BEGIN sent ahead of the statement, COMMIT behind it, under one Sync. */
  fused?: { before?: string; after?: string };
}

function isQueryObject(first: unknown): first is QueryObject {
  return typeof first === 'object' && first !== null && typeof (first as QueryObject).submit === 'function';
}

/**
 * A query object is one send; the interceptor sees each statement it carries,
 * in order, each `send` handing on to the next, the last sending the query.
 * An interceptor that holds one back holds back the whole query.
 */
function tapQueryObject(query: QueryObject, original: (...args: unknown[]) => unknown, intercept: QueryInterceptor, pipelining: boolean): QueryObject {
  const parts = [query.fused?.before, query.text, query.fused?.after].filter((part): part is string => part !== undefined);
  const callback = query.callback;
  const send = () =>
    new Promise<unknown>((resolve, reject) => {
      query.callback = (error, result) => (error ? reject(error) : resolve(result));
      original(query);
    });
  // What travels with the first statement shares its round trip, pipeline mode or not.
  const from = (i: number): Promise<unknown> => (i === parts.length ? send() : intercept(parts[i]!, () => from(i + 1), pipelining || i > 0));
  // The caller hears the answer when the interceptor lets it through, as with a promise query.
  from(0).then(
    (result) => callback?.(null, result),
    (error: Error) => callback?.(error),
  );
  return query;
}

function statementText(first: unknown): string {
  if (typeof first === 'string') return first;
  if (first && typeof first === 'object' && 'text' in first && typeof first.text === 'string') return first.text;
  return '';
}

/** A short, stable name for a statement, for counts and profiles. */
export function statementKind(text: string): string {
  const s = text.replace(/\s+/g, ' ').trim().toLowerCase();
  if (/^begin\b/.test(s)) return 'BEGIN';
  if (/^commit\b/.test(s)) return 'COMMIT';
  if (/^rollback\b/.test(s)) return 'ROLLBACK';
  if (/^(savepoint|release)\b/.test(s)) return 'SAVEPOINT';
  if (/^insert into "idempotency_keys"/.test(s)) return 'claim';
  if (/^(with stored as \()?update "idempotency_keys"/.test(s)) return 'store';
  if (/^select status, fingerprint, response\b.* from "idempotency_keys"/.test(s)) return 'lookup';
  if (/^select .*"idempotency_keys"/.test(s)) return 'read key';
  if (/^select quantity from stock .* for update$/.test(s)) return 'SELECT stock FOR UPDATE';
  if (/^update stock\b/.test(s)) return 'UPDATE stock';
  if (/^insert into charges\b/.test(s)) return 'INSERT charge';
  return s.slice(0, 40);
}

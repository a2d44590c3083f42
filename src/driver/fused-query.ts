// node-postgres ends every query with a Sync, which the server answers with
// ReadyForQuery and a flush of its output: BEGIN and COMMIT sent as queries of
// their own each cost a message the server writes and this process reads and
// parses, even when pipelined. Sent inside the claim's (or the store's) batch,
// under its one Sync, they cost neither: the server runs the three in order
// and answers once, as it does a multi-statement string, while the statement
// keeps its parameters (and its name, when prepared).

/** The parts of node-postgres' connection used here (protocol messages). */
interface PgConnection {
  parse(message: { text: string; name?: string }): void;
  bind(message: { portal?: string; statement?: string; values?: unknown[] }): void;
  execute(message: { portal: string; rows?: number }): void;
  sync(): void;
  parsedStatements: Record<string, string>;
}

/** The parts of node-postgres' Query used here. */
interface PgQuery {
  name?: string;
  text: string;
  portal: string;
  callback?: (error: Error | null, results?: PgResult | PgResult[]) => void;
  _results: PgResult | PgResult[];
  /** What travels with the statement, for taps that watch statements (the bench's, the tests'). */
  fused?: { before?: string; after?: string };
  prepare(connection: PgConnection): void;
  handleCommandComplete(message: unknown, connection: PgConnection): void;
  _getRows(connection: PgConnection, rows: number | undefined): void;
}

export interface PgResult {
  rows: unknown[];
  command: string | null;
}

type PgQueryClass = new (config: { text: string; values?: unknown[]; name?: string }) => PgQuery;

/** A client that can take a fused query: node-postgres' own, whose class carries its Query. */
export interface FusableClient {
  query(query: PgQuery): unknown;
  constructor: { Query?: PgQueryClass };
}

/** The Query class of a node-postgres client, when it has the parts this module uses; else undefined. */
export function queryClassOf(client: object): PgQueryClass | undefined {
  const Query = (client.constructor as { Query?: PgQueryClass }).Query;
  const proto = Query?.prototype as Partial<PgQuery> | undefined;
  const connection = (client as { connection?: Partial<PgConnection> }).connection;
  const usable =
    typeof proto?.prepare === 'function' &&
    typeof proto._getRows === 'function' &&
    typeof proto.handleCommandComplete === 'function' &&
    typeof connection?.parse === 'function' &&
    typeof connection.bind === 'function' &&
    typeof connection.execute === 'function' &&
    typeof connection.parsedStatements === 'object';
  return usable ? Query : undefined;
}

/** A statement's text, parameters and, when prepared, name. */
export interface QueryConfig {
  text: string;
  values: unknown[];
  name: string | undefined;
}

/** Runs a statement without parameters in the unnamed statement and portal (BEGIN, COMMIT). */
function runUtility(connection: PgConnection, text: string): void {
  connection.parse({ text });
  connection.bind({});
  connection.execute({ portal: '' });
}

/**
 * Whether `before` may go out ahead of the statement named `name` on this
 * client: only once the server has confirmed that statement's Parse on this
 * connection (or it is unnamed). Otherwise its Parse would travel behind
 * `before`, and node-postgres, which credits every ParseComplete to the query
 * it is answering, would take `before`'s for the statement's own, and never
 * parse it again should its Parse fail. (Nor can the Parse go ahead of BEGIN:
 * parsing takes a snapshot, and BEGIN ISOLATION LEVEL must come before any.)
 */
export function mayGoAhead(client: object, name: string | undefined): boolean {
  if (name === undefined) return true;
  const connection = (client as { connection?: Partial<PgConnection> }).connection;
  return connection?.parsedStatements?.[name] !== undefined;
}

/**
 * The fused query reached the server without what travels with it: something
 * between the library and node-postgres (a `client.query` wrapper that copies
 * its argument, as some instrumentation did) sent a plain copy, so the
 * statement ran alone. `rows`: what it answered, when it ran.
 */
export class FusedQueryLost extends Error {
  override name = 'FusedQueryLost';
  constructor(readonly rows: unknown[] | undefined) {
    super('BEGIN or COMMIT did not travel with the statement: a wrapper around client.query sent a copy of the query');
  }
}

/** What a fused query answered: the statement's result, or how far it got before an error. */
export interface FusedAnswer {
  /** Settles with the statement's result once it completed, or with the error that stopped it first. */
  statement: Promise<PgResult>;
  /** With `after`: settles with the error that stopped the utility statement, after the statement completed. */
  after: Promise<void>;
}

/**
 * Sends `config` with `before` executed ahead of it, or `after` executed behind
 * it, under one Sync (see `mayGoAhead` for `before`). When `before` or the
 * statement fails, the server skips the rest up to the Sync. Both promises
 * reject with `FusedQueryLost` when the statement went out without them.
 */
export function sendFused(client: FusableClient, Query: PgQueryClass, config: QueryConfig, fused: { before?: string; after?: string }): FusedAnswer {
  const query = new Query({ text: config.text, values: config.values, name: config.name });
  const prepare = Query.prototype.prepare;
  const getRows = Query.prototype._getRows;
  const { before, after } = fused;
  query.fused = fused;
  // Set once this very object wrote its messages, the fused ones with them.
  let sent = false;
  if (before !== undefined) {
    query.prepare = function (connection) {
      sent = true;
      runUtility(connection, before);
      prepare.call(this, connection);
    };
  }
  if (after !== undefined) {
    query._getRows = function (connection, rows) {
      if (rows) return getRows.call(this, connection, rows);
      sent = true;
      connection.execute({ portal: this.portal });
      runUtility(connection, after);
      connection.sync();
    };
  }
  let completes = 0;
  const complete = Query.prototype.handleCommandComplete;
  query.handleCommandComplete = function (message, connection) {
    completes++;
    complete.call(this, message, connection);
  };
  // Which of the two results is the statement's: with `before`, the second.
  const index = before !== undefined ? 1 : 0;
  let settleStatement!: { resolve(result: PgResult): void; reject(error: unknown): void };
  let settleAfter!: { resolve(): void; reject(error: unknown): void };
  const statement = new Promise<PgResult>((resolve, reject) => (settleStatement = { resolve, reject }));
  const afterDone = new Promise<void>((resolve, reject) => (settleAfter = { resolve, reject }));
  // Without `after` nobody waits for it; with it, the caller does.
  afterDone.catch(() => {});
  const fail = (error: unknown) => {
    settleStatement.reject(error);
    settleAfter.reject(error);
  };
  query.callback = (error, answered?: PgResult | PgResult[]) => {
    if (!sent) {
      // Refused before it went out (a connection already lost): that error, as it is.
      if (error) return fail(error);
      const ran = Array.isArray(answered) ? answered.at(-1) : answered;
      return fail(new FusedQueryLost(ran?.rows));
    }
    const results = Array.isArray(query._results) ? query._results : [query._results];
    // With `after`: both completed (a connection that dies after COMMIT's
    // answer does not undo it), or only the statement, and the error is the utility's.
    if (after !== undefined && results[0] && (completes >= 2 || (error && completes === 1))) {
      settleStatement.resolve(results[0]);
      return completes >= 2 ? settleAfter.resolve() : settleAfter.reject(error);
    }
    if (error) return fail(error);
    const result = results[index];
    if (!result || results.length !== 2) return fail(new Error(`a fused query answered ${results.length} results instead of 2`));
    settleStatement.resolve(result);
    settleAfter.resolve();
  };
  client.query(query);
  return { statement, after: afterDone };
}

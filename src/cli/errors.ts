import { errorMessage } from '../driver/error-message.js';
import { IdempotencyInFlightError, IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { UNDEFINED_TABLE, findCode, sqlState } from '../driver/pg-error.js';

/** The CLI's exit codes; the README documents them, scripts branch on them. */
export const EXIT = {
  ok: 0,
  /** Anything else that went wrong: the message says what. */
  failure: 1,
  /** Bad command line: unknown command or flag, bad value, no database given. */
  usage: 2,
  /** Could not connect or log in: down, wrong host/port, wrong credentials, no such database. */
  unreachable: 3,
  /** `idempotency_keys` is not there: run `migrate`. */
  tableMissing: 4,
  /** `inspect` or `evict` found no such key (in that scope). */
  keyNotFound: 5,
  /** `evict` refused a key in flight, or `--force` waited for it in vain: nothing was removed. */
  keyInFlight: 6,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one line and turns into an exit code. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}

/** A bad command line (exit code 2). */
export const usageError = (message: string) => new CliError(EXIT.usage, `${message} (see --help)`);

// Network failures before Postgres could answer, as Node's sockets name them.
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);
// SQLSTATEs of a server that cannot be used: connection exceptions (08), bad
// login (28), no such database, shutting down or starting up.
const UNUSABLE_SERVER = /^(08|28|3D000|57P0[1-3])/;

/** The socket error code (ECONNREFUSED…), also inside the AggregateError Node raises when every address of a host refused. */
function networkCode(error: unknown): string | undefined {
  const candidates = error instanceof AggregateError ? [error, ...error.errors] : [error];
  for (const candidate of candidates) {
    // Also when wrapped: drizzle puts the driver's error in `cause`.
    const code = findCode(candidate, (c) => NETWORK_CODES.has(c));
    if (code !== undefined) return code;
  }
  return undefined;
}

/** True for errors that mean "this database cannot be reached or used", rather than "this query failed". */
export function isConnectionError(error: unknown): boolean {
  if (networkCode(error) !== undefined) return true;
  const state = sqlState(error);
  if (state !== undefined) return UNUSABLE_SERVER.test(state);
  // node-postgres' own wording for a connection that timed out or dropped.
  return error instanceof Error && /connection (terminated|timeout)|timeout expired/i.test(error.message);
}

/** One line, whatever the error: no stack trace, no line breaks. */
export function oneLine(error: unknown): string {
  let message = errorMessage(error);
  if (!message && error instanceof AggregateError) message = error.errors.map((e) => oneLine(e)).join('; ');
  if (!message) message = networkCode(error) ?? (error instanceof Error ? error.name : 'unknown error');
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

/** The table the CLI works on, as a user would type it, and the migrate command that creates it. */
export function tableHint(schema: string | undefined): { table: string; migrate: string } {
  return schema === undefined
    ? { table: 'idempotency_keys', migrate: 'drizzle-idempotency migrate' }
    : { table: `${schema}.idempotency_keys`, migrate: `drizzle-idempotency migrate --schema ${schema}` };
}

/** A missing table, as the CLI says it. */
export function tableMissingError(schema: string | undefined, cause?: unknown): CliError {
  const hint = tableHint(schema);
  return new CliError(EXIT.tableMissing, `table ${hint.table} not found: run \`${hint.migrate}\``, { cause });
}

/** Turns anything thrown into the exit code and line the CLI ends with. */
export function toCliError(error: unknown, context: { schema: string | undefined; database: string }): CliError {
  if (error instanceof CliError) return error;
  if (error instanceof IdempotencyOptionsInvalidError) return usageError(error.message);
  if (error instanceof IdempotencyInFlightError) return new CliError(EXIT.keyInFlight, error.message, { cause: error });
  if (sqlState(error) === UNDEFINED_TABLE) return tableMissingError(context.schema, error);
  if (isConnectionError(error)) {
    return new CliError(
      EXIT.unreachable,
      `cannot reach the database at ${context.database}: ${oneLine(error)}. Check --database-url (or DATABASE_URL) and that PostgreSQL is running`,
      { cause: error },
    );
  }
  return new CliError(EXIT.failure, oneLine(error), { cause: error });
}

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { usageError } from './errors.js';
import { assertValidSchemaName } from '../schema/keys-table.js';
import { MAX_TIMER_MS, parseDuration } from '../shared/duration.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { assertValidKey, assertValidScope } from '../shared/key.js';
import { DEFAULT_SWEEP_BATCH_SIZE, MAX_SWEEP_BATCH_SIZE } from '../ops/sweep.js';

// What one pass of `complete` takes on by default, and at most.
const DEFAULT_COMPLETE_LIMIT = 100;
const MAX_COMPLETE_LIMIT = 10_000;

/** Where to connect, common to every command. */
export interface ConnectionArgs {
  databaseUrl: string;
  schema: string | undefined;
}

/** A command line, checked: what to run and with what. */
export type CliCommand =
  | { command: 'help'; text: string }
  | { command: 'version' }
  | ({ command: 'migrate' } & ConnectionArgs)
  | ({ command: 'sweep'; batchSize: number; everyMs: number | undefined; timeBudgetMs: number | undefined } & ConnectionArgs)
  | ({ command: 'stats'; json: boolean } & ConnectionArgs)
  | ({ command: 'inspect'; key: string; scope: string; showResponse: boolean; json: boolean } & ConnectionArgs)
  | ({ command: 'evict'; key: string; scope: string; force: boolean; json: boolean } & ConnectionArgs)
  | ({ command: 'complete'; workflows: string; watch: boolean; intervalMs: number; limit: number } & ConnectionArgs);

const COMMON_HELP = `Options for every command:
  --database-url <url>  PostgreSQL connection string (default: $DATABASE_URL)
  --schema <name>       schema that holds idempotency_keys (default: the search_path)
  -h, --help            this help`;

const EXIT_HELP = `Exit codes: 0 ok, 1 failure, 2 usage error, 3 database unreachable, 4 table missing,
5 no such key (inspect, evict), 6 key in flight: evict refused it (or --force waited in vain,
or the key was completed while it waited)`;

const COMPLETE_INTERVAL = '5s';

const KEY_HELP = `  --scope <scope>       the scope the key was used in: tenant, user, API client (default: '')

A key that starts with a dash goes last, after --: drizzle-idempotency <command> [options] -- <key>`;

export const HELP = {
  main: `Usage: drizzle-idempotency <command> [options]

Commands:
  migrate   create or update the idempotency_keys table
  sweep     delete expired keys, once (for cron) or --every <duration>
  stats     live, expired, in-progress keys (leased: held, waiting for the completer), failed, sizes
  inspect   one key: status, age, expiry, lease; leased: workflow, recovery point, steps, attempts
  evict     delete one key, so that its next call runs again
  complete  finish leased workflows whose lease ran out (abandoned by a crash), once or --watch

Run \`drizzle-idempotency <command> --help\` for a command's options.

${COMMON_HELP}
  -v, --version         print the version

${EXIT_HELP}`,
  migrate: `Usage: drizzle-idempotency migrate [options]

Applies the bundled migrations: creates idempotency_keys (and the schema, if
--schema names one) or brings it up to date. Safe to run at every deploy.

${COMMON_HELP}

${EXIT_HELP}`,
  sweep: `Usage: drizzle-idempotency sweep [options]

Deletes expired keys in short batches, oldest first, never a live key nor one
whose lease still runs. The result of each sweep goes to stdout, progress to
stderr. SIGTERM or SIGINT stops it cleanly between batches (exit code 0); a
second one stops it at once.

  --batch <n>               rows per batch, 1 to ${MAX_SWEEP_BATCH_SIZE} (default: ${DEFAULT_SWEEP_BATCH_SIZE})
  --every <duration>        keep running: sweep again this long after each sweep ends, e.g. 5m
  --time-budget <duration>  start no batch after this long, e.g. 10m (default: none)

Durations: 500ms, 30s, 5m, 1h, 1d.

${COMMON_HELP}

${EXIT_HELP}`,
  stats: `Usage: drizzle-idempotency stats [options]

Counts live, expired and in-progress keys; of those in progress, leased work
whose lease is held and leased work waiting for the completer (with the key
waiting longest); failed keys. Shows the oldest live key and the size of the
table and its indexes. Reads the whole table.

  --json                one JSON object on stdout, for scripts

${COMMON_HELP}

${EXIT_HELP}`,
  inspect: `Usage: drizzle-idempotency inspect <key> [options]

Shows one key without waiting and without changing anything: its status
(completed, started, failed, or claimed by a live transaction that has not
committed), age, expiry, lease, fingerprint, the size of its stored response,
and what the next call with the key would meet; for leased work also its
workflow, recovery point (the last committed step), recorded steps and
attempts. The response itself is customer data: it is printed only with
--show-response; the input and the steps' results never.

${KEY_HELP}
  --show-response       also print the stored response
  --json                one JSON object on stdout, for scripts

${COMMON_HELP}

${EXIT_HELP}`,
  evict: `Usage: drizzle-idempotency evict <key> [options]

Deletes one key, so that the next call with it runs again, and says what it
removed. Refuses, without waiting, a key in flight: one a live transaction has
claimed or locked, or a started row (exit code 6, nothing removed).

${KEY_HELP}
  --force               remove a started row too, and wait up to 5s for a live
                        transaction that holds the key, then remove what it left
                        stuck (started) or expired; a result it completed stays
                        and replays (exit code 6)
  --json                what was removed, as one JSON object on stdout

${COMMON_HELP}

${EXIT_HELP}`,
  complete: `Usage: drizzle-idempotency complete --workflows <module> [options]

Finishes leased work that its process abandoned (it crashed, or was killed,
before the workflow completed): finds started keys whose lease ran out and whose
workflow the module exports, takes each over (never while another process holds
it) and resumes it from its last recovery point, without repeating a committed
step, whatever attempts it used. A resumed run that fails for sure with no
attempts left records the key as failed. Prints the counts
of each pass on stdout. With --watch it keeps running. SIGTERM or SIGINT starts
no new key: the running ones finish, the rest stay for the next pass (exit code
0); a second one stops it at once.

  --workflows <module>   path of a JavaScript module (or TypeScript, when the CLI
                         runs under tsx) whose exports include the workflows
                         (every export made by defineWorkflow); required
  --watch                keep running: a pass every --interval
  --interval <duration>  with --watch: time between passes (default: ${COMPLETE_INTERVAL})
  --limit <n>            keys per pass, 1 to ${MAX_COMPLETE_LIMIT}, oldest lease first (default: ${DEFAULT_COMPLETE_LIMIT})

Durations: 500ms, 30s, 5m, 1h, 1d.

${COMMON_HELP}

${EXIT_HELP}`,
} as const;

type CommandName = 'migrate' | 'sweep' | 'stats' | 'inspect' | 'evict' | 'complete';
const COMMANDS: readonly string[] = ['migrate', 'sweep', 'stats', 'inspect', 'evict', 'complete'];
const COMMAND_LIST = 'migrate, sweep, stats, inspect, evict or complete';
// The commands about one key take it as their one argument.
const TAKES_KEY: readonly string[] = ['inspect', 'evict'];

const COMMON_OPTIONS = {
  'database-url': { type: 'string' },
  schema: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

const OPTIONS = {
  migrate: COMMON_OPTIONS,
  sweep: { ...COMMON_OPTIONS, batch: { type: 'string' }, every: { type: 'string' }, 'time-budget': { type: 'string' } },
  stats: { ...COMMON_OPTIONS, json: { type: 'boolean' } },
  inspect: { ...COMMON_OPTIONS, scope: { type: 'string' }, 'show-response': { type: 'boolean' }, json: { type: 'boolean' } },
  evict: { ...COMMON_OPTIONS, scope: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' } },
  complete: { ...COMMON_OPTIONS, workflows: { type: 'string' }, watch: { type: 'boolean' }, interval: { type: 'string' }, limit: { type: 'string' } },
} as const satisfies Record<CommandName, ParseArgsConfig['options']>;

/**
 * Reads `drizzle-idempotency <command> [options]`; throws a usage error
 * (exit code 2) for anything it cannot run.
 *
 * @example
 * parseCommandLine(['sweep', '--every', '5m'], process.env)
 */
export function parseCommandLine(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): CliCommand {
  const [first, ...rest] = argv;
  if (first === undefined) throw usageError(`no command given: use ${COMMAND_LIST}`);
  if (first === '-h' || first === '--help') return { command: 'help', text: HELP.main };
  if (first === '-v' || first === '--version') return { command: 'version' };
  if (first === 'help') {
    const topic = rest[0];
    if (topic === undefined) return { command: 'help', text: HELP.main };
    if (!COMMANDS.includes(topic)) throw usageError(`unknown command ${JSON.stringify(topic)}: use ${COMMAND_LIST}`);
    return { command: 'help', text: HELP[topic as CommandName] };
  }
  if (!COMMANDS.includes(first)) throw usageError(`unknown command ${JSON.stringify(first)}: use ${COMMAND_LIST}`);
  const command = first as CommandName;

  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    const options: ParseArgsConfig['options'] = OPTIONS[command];
    const parsed = parseArgs({ args: [...rest], options, strict: true, allowPositionals: TAKES_KEY.includes(command) });
    values = parsed.values as typeof values;
    positionals = parsed.positionals;
  } catch (error) {
    throw usageError(`${command}: ${describeParseError(error)}`);
  }
  if (values.help === true) return { command: 'help', text: HELP[command] };

  const connection = connectionArgs(values, env);
  switch (command) {
    case 'migrate':
      return { command, ...connection };
    case 'stats':
      return { command, ...connection, json: values.json === true };
    case 'sweep':
      return {
        command,
        ...connection,
        batchSize: wholeNumberArg(values.batch, '--batch', DEFAULT_SWEEP_BATCH_SIZE, MAX_SWEEP_BATCH_SIZE),
        everyMs: timerDurationArg(values.every, '--every'),
        timeBudgetMs: durationArg(values['time-budget'], '--time-budget'),
      };
    case 'inspect':
      return { command, ...connection, ...keyArgs(command, positionals, values), showResponse: values['show-response'] === true, json: values.json === true };
    case 'evict':
      return { command, ...connection, ...keyArgs(command, positionals, values), force: values.force === true, json: values.json === true };
    case 'complete':
      return { command, ...connection, ...completeArgs(values) };
  }
}

/** `complete`'s own flags: a module is required, an interval only means something with --watch. */
function completeArgs(values: Record<string, string | boolean | undefined>): { workflows: string; watch: boolean; intervalMs: number; limit: number } {
  const { workflows, interval } = values;
  if (typeof workflows !== 'string' || workflows === '') {
    throw usageError('complete: --workflows <module> is required: the module whose exports include your workflows');
  }
  const watch = values.watch === true;
  if (interval !== undefined && !watch) throw usageError('complete: --interval needs --watch: without it, complete runs one pass and exits');
  const intervalMs = timerDurationArg(interval ?? COMPLETE_INTERVAL, '--interval')!;
  return {
    workflows,
    watch,
    intervalMs,
    limit: wholeNumberArg(values.limit, '--limit', DEFAULT_COMPLETE_LIMIT, MAX_COMPLETE_LIMIT),
  };
}

/** The key and its scope, checked by the library's own rules, so that a bad one is a usage error (exit code 2). */
function keyArgs(command: string, positionals: string[], values: Record<string, string | boolean | undefined>): { key: string; scope: string } {
  if (positionals.length !== 1) {
    throw usageError(`${command}: ${positionals.length === 0 ? 'no key given' : `one key at a time, got ${positionals.length}`}: drizzle-idempotency ${command} <key>`);
  }
  const key = positionals[0]!;
  const scope = typeof values.scope === 'string' ? values.scope : '';
  try {
    assertValidKey(key);
  } catch (error) {
    throw usageError(`${command}: ${(error as Error).message}`);
  }
  try {
    assertValidScope(scope);
  } catch (error) {
    throw usageError(`${command}: --scope: ${(error as Error).message}`);
  }
  return { key, scope };
}

function connectionArgs(values: Record<string, string | boolean | undefined>, env: Readonly<Record<string, string | undefined>>): ConnectionArgs {
  const flag = values['database-url'];
  const databaseUrl = typeof flag === 'string' ? flag : env.DATABASE_URL;
  if (!databaseUrl) throw usageError('no database given: pass --database-url or set DATABASE_URL');
  if (!isPostgresUrl(databaseUrl)) {
    throw usageError(`${typeof flag === 'string' ? '--database-url' : 'DATABASE_URL'} must be a postgres:// or postgresql:// URL`);
  }
  const schema = typeof values.schema === 'string' ? values.schema : undefined;
  if (schema !== undefined) {
    try {
      assertValidSchemaName(schema);
    } catch (error) {
      throw usageError(`--schema: ${(error as Error).message}`);
    }
  }
  return { databaseUrl, schema };
}

function isPostgresUrl(value: string): boolean {
  try {
    const { protocol } = new URL(value);
    return protocol === 'postgres:' || protocol === 'postgresql:';
  } catch {
    return false;
  }
}

function wholeNumberArg(value: string | boolean | undefined, flag: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    throw usageError(`${flag} must be a whole number from 1 to ${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function durationArg(value: string | boolean | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  // parseDuration takes a bare number as milliseconds only when it is a JS
  // number; on a command line a unit is required, so '300' is refused.
  try {
    if (typeof value === 'string') return parseDuration(value, flag);
  } catch (error) {
    if (!(error instanceof IdempotencyOptionsInvalidError)) throw error;
  }
  throw usageError(`${flag} must be a duration such as 500ms, 30s, 5m, 1h or 1d, got ${JSON.stringify(value)}`);
}

/** A duration a timer waits: Node runs a longer one after 1 ms (TimeoutOverflowWarning), a pass or sweep every millisecond. */
function timerDurationArg(value: string | boolean | undefined, flag: string): number | undefined {
  const ms = durationArg(value, flag);
  if (ms !== undefined && ms > MAX_TIMER_MS) throw usageError(`${flag} must be at most 24 days (a timer's limit), got ${JSON.stringify(value)}`);
  return ms;
}

// node:util explains its errors at length; the option it names is what the user needs.
function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  const option = /'([^']+)'/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) return `unknown option ${option}`;
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' && option) return `unexpected argument ${JSON.stringify(option)}`;
  return message.split('. ')[0] ?? message;
}

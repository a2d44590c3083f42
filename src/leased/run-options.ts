import { resolveOptions, type IdempotencyOptions } from '../core/options.js';
import { serializeResult } from '../core/result.js';
import { isTransaction, type IdempotencyDatabase } from '../driver/database.js';
import { refuseDriverWithoutTransactions } from '../driver/interactive-transactions.js';
import { parseDuration } from '../shared/duration.js';
import { IdempotencyError, IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { isWorkflow, type AnyWorkflow } from './workflow.js';

/** Options of `runWorkflow` and `runWorkflowOutcome`. The size limit is the workflow's (`defineWorkflow`'s `maxResultBytes`). */
export type RunWorkflowOptions = Pick<IdempotencyOptions, 'scope' | 'fingerprint' | 'ttl' | 'onInFlight' | 'waitTimeout' | 'schema'>;

const KNOWN = new Set(['scope', 'fingerprint', 'ttl', 'onInFlight', 'waitTimeout', 'schema']);

/** Options checked once, before anything touches the database. */
export interface ResolvedRun {
  key: string;
  scope: string;
  fingerprint: string | null;
  ttlMs: number;
  reject: boolean;
  waitMs: number;
  schema: string | undefined;
  /** The input in `serializeResult`'s envelope. */
  inputJson: string;
}

/** Checks the arguments of a run; throws a typed error and touches nothing. */
export function resolveRun(db: unknown, key: unknown, workflow: unknown, input: unknown, options: RunWorkflowOptions = {}): ResolvedRun {
  assertDatabase(db, 'runWorkflow');
  if (!isWorkflow(workflow)) throw new IdempotencyOptionsInvalidError('runWorkflow: workflow must be made by defineWorkflow');
  if (typeof options === 'object' && options !== null) {
    if ('maxResultBytes' in options) {
      throw new IdempotencyOptionsInvalidError(
        'runWorkflow does not take maxResultBytes: set it on defineWorkflow, so that the completer resumes the key with the same limit',
      );
    }
    const unknown = Object.keys(options).filter((name) => !KNOWN.has(name));
    if (unknown.length > 0) throw new IdempotencyOptionsInvalidError(`runWorkflow: unknown option ${unknown.map((n) => JSON.stringify(n)).join(', ')}`);
  }
  const o = resolveOptions(key, options);
  return {
    key: o.key,
    scope: o.scope,
    fingerprint: o.fingerprint,
    ttlMs: o.ttlMs,
    reject: o.onInFlight === 'reject',
    waitMs: parseDuration(options.waitTimeout ?? '10s', 'waitTimeout'),
    schema: o.schema,
    inputJson: serializeInput(input, workflow.maxResultBytes),
  };
}

/** The input as it will be stored, in `serializeResult`'s envelope; what JSON would change is refused. */
function serializeInput(input: unknown, maxBytes: number): string {
  try {
    return serializeResult(input, maxBytes);
  } catch (error) {
    const why = error instanceof IdempotencyError ? error.message.replace(/^result/, 'it') : String(error);
    throw new IdempotencyOptionsInvalidError(`input cannot be stored as JSON as it is: ${why}`, { cause: error });
  }
}

/** Leased work commits step by step: it needs a database (a pool), never a transaction. */
export function assertDatabase(db: unknown, what: string): asserts db is IdempotencyDatabase {
  const methods = db as Partial<IdempotencyDatabase> | null;
  if (typeof methods?.execute !== 'function' || typeof methods.transaction !== 'function') {
    throw new IdempotencyOptionsInvalidError(`${what}: db must be a Drizzle PostgreSQL database`);
  }
  if (isTransaction(methods as IdempotencyDatabase)) {
    throw new IdempotencyOptionsInvalidError(
      `${what} needs a database, not a transaction: leased work commits its claim and each step on its own, so that a crash resumes from the last one`,
    );
  }
  refuseDriverWithoutTransactions(methods as IdempotencyDatabase, what);
}

/** Checks a list of workflows for the completer: made by defineWorkflow, one per name. */
export function workflowsByName(workflows: unknown, what: string): Map<string, AnyWorkflow> {
  if (!Array.isArray(workflows) || workflows.length === 0) throw new IdempotencyOptionsInvalidError(`${what}: workflows must be a non-empty array of workflows`);
  const byName = new Map<string, AnyWorkflow>();
  for (const w of workflows) {
    if (!isWorkflow(w)) throw new IdempotencyOptionsInvalidError(`${what}: every workflow must be made by defineWorkflow`);
    if (byName.has(w.name) && byName.get(w.name) !== w) throw new IdempotencyOptionsInvalidError(`${what}: two workflows are named ${JSON.stringify(w.name)}`);
    byName.set(w.name, w);
  }
  return byName;
}

import { DEFAULT_MAX_RESULT_BYTES, type Jsonified } from '../core/result.js';
import { MAX_TIMER_MS, parseDuration, parseTimerDuration, type Duration } from '../shared/duration.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { assertValidName } from './names.js';
import type { WorkflowContext } from './context.js';

/** Options of `defineWorkflow`. */
export interface WorkflowOptions {
  /** How long a claim or takeover holds the key without a heartbeat; past it, another process may take it over. (Default: `'30s'`) */
  lease?: Duration;
  /**
   * Claims and takeovers of one key before a definite failure records it as
   * failed: a run on attempt `maxAttempts` or later that throws an error other
   * than an unknown outcome (IDEMPOTENCY_OUTCOME_UNKNOWN, a timeout or network
   * error), a lost lease or a lost database connection. Those, on any attempt,
   * and a crash leave the key started and resumable (the same downstream keys
   * make resuming safe): a key whose gateway stays down is never turned into a
   * failure that would send the client to pay another way. (Default: `5`)
   */
  maxAttempts?: number;
  /** How often the holder extends its lease while it works. (Default: a third of `lease`) */
  heartbeat?: Duration;
  /**
   * Largest stored input, step result and final result, in bytes of JSON.
   * The workflow's own, so that a client's run and the completer's resume of
   * the same key accept the same results. (Default: `1048576`, 1 MiB)
   */
  maxResultBytes?: number;
}

// A registered symbol, not a class: a module loaded twice (the CLI's copy and
// the app's) still recognises the other copy's workflows.
const WORKFLOW = Symbol.for('drizzle-idempotency.workflow');

/** A named, resumable sequence of steps, made by `defineWorkflow`. */
export interface Workflow<I, O> {
  readonly [WORKFLOW]: true;
  /** Stored in the key's row: the completer finds the code that resumes a key by it. */
  readonly name: string;
  readonly run: (ctx: WorkflowContext, input: Jsonified<I>) => Promise<O>;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly maxAttempts: number;
  readonly maxResultBytes: number;
}

/** Any workflow, whatever its input and result. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a registry of workflows holds every input type
export type AnyWorkflow = Workflow<any, unknown>;

const DEFAULT_LEASE = '30s';
const DEFAULT_MAX_ATTEMPTS = 5;
// A heartbeat under 50 ms would be a busy loop on the database.
const MIN_HEARTBEAT_MS = 50;

/**
 * Defines leased work: `run` gets a context whose steps commit one by one,
 * so a crash resumes from the last committed step (in this process on a
 * retry, or in the completer), never repeating one. `input` is what was
 * stored at the claim (its JSON form), on the first run as on a resume.
 *
 * @example
 * const payOrder = defineWorkflow('shop.pay', async (ctx, input: { amount: number }) => {
 *   const charge = await ctx.call('charge', ({ downstreamKey }) => gateway.charge(input.amount, downstreamKey));
 *   return { status: 201, body: { chargeId: charge.id } };
 * }, { lease: '30s', maxAttempts: 5, maxResultBytes: 2 * 1024 * 1024 });
 */
export function defineWorkflow<I, O>(
  name: string,
  run: (ctx: WorkflowContext, input: Jsonified<I>) => Promise<O>,
  options: WorkflowOptions = {},
): Workflow<I, O> {
  assertValidName(name, 'workflow name');
  if (typeof run !== 'function') throw new IdempotencyOptionsInvalidError('defineWorkflow: run must be a function (ctx, input) => Promise');
  if (typeof options !== 'object' || options === null) throw new IdempotencyOptionsInvalidError('defineWorkflow: options must be an object');
  const leaseMs = parseDuration(options.lease ?? DEFAULT_LEASE, 'lease');
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 1000) {
    throw new IdempotencyOptionsInvalidError(`maxAttempts must be an integer from 1 to 1000, got ${JSON.stringify(maxAttempts)}`);
  }
  const heartbeatMs =
    options.heartbeat === undefined
      ? Math.min(MAX_TIMER_MS, Math.max(MIN_HEARTBEAT_MS, Math.floor(leaseMs / 3)))
      : parseTimerDuration(options.heartbeat, 'heartbeat');
  if (heartbeatMs >= leaseMs || heartbeatMs < MIN_HEARTBEAT_MS) {
    throw new IdempotencyOptionsInvalidError(`heartbeat must be from ${MIN_HEARTBEAT_MS} ms to less than the lease (${leaseMs} ms), got ${heartbeatMs} ms`);
  }
  const maxResultBytes = options.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES;
  if (!Number.isSafeInteger(maxResultBytes) || maxResultBytes < 16) {
    throw new IdempotencyOptionsInvalidError(`maxResultBytes must be an integer of at least 16, got ${JSON.stringify(maxResultBytes)}`);
  }
  return Object.freeze({ [WORKFLOW]: true as const, name, run, leaseMs, heartbeatMs, maxAttempts, maxResultBytes });
}

/**
 * Whether `value` is a workflow made by `defineWorkflow` (of any copy of this
 * library): how a module's exports are told apart.
 *
 * @example
 * const workflows = Object.values(await import(modulePath)).filter(isWorkflow);
 */
export function isWorkflow(value: unknown): value is AnyWorkflow {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[WORKFLOW] === true;
}

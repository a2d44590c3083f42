import { AsyncLocalStorage } from 'node:async_hooks';
import type { IdempotencyDatabase } from '../driver/database.js';
import { transactionThatCommits } from '../driver/postgres-js-commit.js';
import { serializeResult, type Jsonified } from '../core/result.js';
import { downstreamKey } from '../shared/downstream-key.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { callWithRetries, resolveCallOptions, type CallContext, type CallOptions } from './call.js';
import { lockHeld, recordStep } from './fenced.js';
import type { Held, Recorded } from './held.js';
import { leaseLost } from './heartbeat.js';
import type { KeyAddress } from './key-address.js';
import { assertValidName } from './names.js';

/** What a workflow's `run` gets: its steps, its downstream keys, and the state of its lease. */
export interface WorkflowContext {
  /**
   * A local step: `fn` runs in a transaction of its own that also records
   * its result, so the step commits once. A step already recorded returns
   * its result (JSON form) without running. Annotate `tx` with your
   * database's transaction type to use it with your tables.
   */
  step<T, Tx extends IdempotencyDatabase = IdempotencyDatabase>(name: string, fn: (tx: Tx) => Promise<T>): Promise<Jsonified<T>>;
  /**
   * An external step, outside any transaction: its result is recorded as
   * soon as it returns. Send `downstreamKey` as the service's Idempotency-Key.
   */
  call<T>(name: string, fn: (c: CallContext) => Promise<T>, options?: CallOptions<T>): Promise<Jsonified<T>>;
  /** The downstream key of a step: from (scope, key, step), the same on every run of this key. */
  downstreamKey(stepName: string): string;
  /** Aborts when the lease is lost (another process took the key over). */
  readonly signal: AbortSignal;
  /** 1 on the first claim, one more for every takeover or resume. */
  readonly attempt: number;
}

/** Where the steps of one run write, and under which lease. */
export interface RunScope {
  db: IdempotencyDatabase;
  k: KeyAddress;
  workflow: string;
  held: Held;
  leaseMs: number;
  maxResultBytes: number;
  lease: AbortSignal;
  /** Set once the run has ended (completed or failed): the context is then refused. */
  over: { ended: boolean };
}

// The context whose local step is running here (its transaction holds the key
// row): a step or call of that context started inside it would wait on that
// lock for ever, so it is refused.
const insideStep = new AsyncLocalStorage<RunScope>();

/** The context of one run of a workflow on the key `s.k`. */
export function createContext(s: RunScope): WorkflowContext {
  const used = new Set<string>();
  const keyOf = (step: string) => downstreamKey({ scope: s.k.scope, key: s.k.key, step });
  const replayOrClaim = (name: string): Recorded | undefined => {
    assertValidName(name, 'step name');
    if (s.over.ended) throw new IdempotencyOptionsInvalidError(`step ${JSON.stringify(name)}: the run of workflow ${JSON.stringify(s.workflow)} has ended; its context cannot be used any more`);
    if (insideStep.getStore() === s) {
      throw new IdempotencyOptionsInvalidError(`step ${JSON.stringify(name)} is started inside a local step of workflow ${JSON.stringify(s.workflow)}: steps and calls run one after another, not nested`);
    }
    if (used.has(name)) throw new IdempotencyOptionsInvalidError(`step name ${JSON.stringify(name)} is used twice in workflow ${JSON.stringify(s.workflow)}`);
    used.add(name);
    const recorded = s.held.steps.get(name);
    if (recorded === undefined && s.lease.aborted) throw s.lease.reason;
    return recorded;
  };
  const remember = (name: string, stored: string | undefined) => {
    if (stored === undefined) throw leaseLost(s.k, s.workflow);
    const recorded = JSON.parse(stored) as Recorded;
    s.held.steps.set(name, recorded);
    s.held.recoveryPoint = name;
    return recorded.value;
  };
  return {
    async step<T, Tx extends IdempotencyDatabase>(name: string, fn: (tx: Tx) => Promise<T>) {
      const recorded = replayOrClaim(name);
      if (recorded) return recorded.value as Jsonified<T>;
      if (typeof fn !== 'function') throw new IdempotencyOptionsInvalidError(`step ${JSON.stringify(name)}: fn must be a function that takes the transaction`);
      const stored = await transactionThatCommits(s.db, undefined, async (tx) => {
        if (!(await lockHeld(tx, s.k, s.held.token))) throw leaseLost(s.k, s.workflow);
        const json = serializeResult(await insideStep.run(s, () => fn(tx as Tx)), s.maxResultBytes);
        return recordStep(tx, s.k, s.held.token, name, json, s.leaseMs);
      });
      return remember(name, stored) as Jsonified<T>;
    },
    async call<T>(name: string, fn: (c: CallContext) => Promise<T>, options?: CallOptions<T>) {
      const recorded = replayOrClaim(name);
      if (recorded) return recorded.value as Jsonified<T>;
      if (typeof fn !== 'function') throw new IdempotencyOptionsInvalidError(`call ${JSON.stringify(name)}: fn must be a function`);
      const o = resolveCallOptions(options);
      // A call with no recorded result on a resumed run may have happened before the crash: ask first.
      const answer = await callWithRetries(name, keyOf(name), fn, o, s.lease, s.held.attempt > 1);
      const json = serializeResult('value' in answer ? answer.value : answer.reconciled, s.maxResultBytes);
      return remember(name, await recordStep(s.db, s.k, s.held.token, name, json, s.leaseMs)) as Jsonified<T>;
    },
    downstreamKey: keyOf,
    signal: s.lease,
    attempt: s.held.attempt,
  };
}

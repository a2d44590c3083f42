import { channel } from 'node:diagnostics_channel';
import { IdempotencyError } from '../shared/errors.js';
import {
  IDEMPOTENCY_CHANNELS,
  type CallTransaction,
  type IdempotencyCallOutcome,
  type IdempotencyCallRef,
  type IdempotencySweptEvent,
} from './events.js';
import { telemetryHash } from './hash.js';

const claimed = channel(IDEMPOTENCY_CHANNELS.claimed);
const reclaimed = channel(IDEMPOTENCY_CHANNELS.reclaimed);
const replayed = channel(IDEMPOTENCY_CHANNELS.replayed);
const inFlight = channel(IDEMPOTENCY_CHANNELS.inFlight);
const keyReused = channel(IDEMPOTENCY_CHANNELS.keyReused);
const stored = channel(IDEMPOTENCY_CHANNELS.stored);
const rolledBack = channel(IDEMPOTENCY_CHANNELS.rolledBack);
const call = channel(IDEMPOTENCY_CHANNELS.call);
const swept = channel(IDEMPOTENCY_CHANNELS.swept);
const callChannels = [claimed, reclaimed, replayed, inFlight, keyReused, stored, rolledBack, call];

/**
 * What one call has told so far, for the events still to come. It exists only
 * for calls that started while someone listened: every hook is a no-op on
 * `undefined`, so a call nobody watches builds no payload and hashes nothing.
 */
export interface CallTrace {
  readonly ref: IdempotencyCallRef;
  readonly policy: 'wait' | 'reject';
  readonly startedAt: number;
  /** Set once the call held the key or had the stored answer. */
  waitMs: number | undefined;
  waited: boolean;
  /** The error of the last attempt that held the key and rolled back. */
  rolledBack: string | undefined;
  bytes: number;
}

let calls = 0;

/** A trace for a call about to start, or undefined when no channel has a subscriber. */
export function startTrace(scope: string, key: string, policy: 'wait' | 'reject', transaction: CallTransaction): CallTrace | undefined {
  let listened = false;
  for (const c of callChannels) listened ||= c.hasSubscribers;
  if (!listened) return undefined;
  return {
    ref: { scopeHash: telemetryHash(scope), keyHash: telemetryHash(key), transaction, callId: ++calls },
    policy,
    startedAt: performance.now(),
    waitMs: undefined,
    waited: false,
    rolledBack: undefined,
    bytes: 0,
  };
}

const sinceStart = (t: CallTrace) => performance.now() - t.startedAt;

function acquired(t: CallTrace): number {
  t.waitMs ??= sinceStart(t);
  return t.waitMs;
}

/** The key was new and this call now holds it. */
export function traceClaimed(t: CallTrace | undefined): void {
  if (!t) return;
  t.rolledBack = undefined;
  const waitMs = acquired(t);
  if (claimed.hasSubscribers) claimed.publish({ ...t.ref, waitMs });
}

/** This call took over a dead row. */
export function traceReclaimed(t: CallTrace | undefined, previousStatus: 'completed' | 'started'): void {
  if (!t) return;
  t.rolledBack = undefined;
  const waitMs = acquired(t);
  if (reclaimed.hasSubscribers) reclaimed.publish({ ...t.ref, previousStatus, waitMs });
}

/** The call read the stored row it will replay (or refuse). */
export function traceAnswered(t: CallTrace | undefined): void {
  if (t) acquired(t);
}

/** The call waited for a duplicate that held the key; told once per call. */
export function traceWaited(t: CallTrace | undefined, where: 'process' | 'database'): void {
  if (!t || t.waited) return;
  t.waited = true;
  if (inFlight.hasSubscribers) inFlight.publish({ ...t.ref, action: 'waited', policy: t.policy, where, waitMs: sinceStart(t) });
}

/** The result about to be stored, as JSON text. */
export function traceResult(t: CallTrace | undefined, json: string): void {
  if (t) t.bytes = Buffer.byteLength(json);
}

/** An attempt that held the key failed before its result was stored: the claim rolled back. */
export function traceRolledBack(t: CallTrace | undefined, phase: 'fn' | 'store', error: unknown): void {
  if (!t) return;
  t.rolledBack = errorName(error);
  if (rolledBack.hasSubscribers) rolledBack.publish({ ...t.ref, phase, error: t.rolledBack });
}

/** Publishes how the call ended; the promise settles as `run` does. */
export async function traceCall<T extends { replayed: boolean }>(t: CallTrace, run: Promise<T>): Promise<T> {
  try {
    const outcome = await run;
    ended(t, outcome.replayed ? 'replayed' : 'executed', undefined);
    return outcome;
  } catch (error) {
    const name = errorName(error);
    const outcome: IdempotencyCallOutcome =
      t.rolledBack !== undefined
        ? 'rolled-back'
        : name === 'IDEMPOTENCY_IN_FLIGHT'
          ? 'in-flight'
          : name === 'IDEMPOTENCY_KEY_REUSED'
            ? 'key-reused'
            : 'failed';
    ended(t, outcome, name);
    throw error;
  }
}

function ended(t: CallTrace, outcome: IdempotencyCallOutcome, error: string | undefined): void {
  const durationMs = sinceStart(t);
  const waitMs = t.waitMs ?? durationMs;
  if (outcome === 'replayed' && replayed.hasSubscribers) replayed.publish({ ...t.ref, waited: t.waited, waitMs, durationMs });
  if (outcome === 'executed' && stored.hasSubscribers) stored.publish({ ...t.ref, bytes: t.bytes, durationMs });
  if (outcome === 'in-flight' && inFlight.hasSubscribers) inFlight.publish({ ...t.ref, action: 'rejected', policy: t.policy, waitMs });
  if (outcome === 'key-reused' && keyReused.hasSubscribers) keyReused.publish({ ...t.ref });
  if (call.hasSubscribers) {
    call.publish({
      ...t.ref,
      outcome,
      policy: t.policy,
      startTime: performance.timeOrigin + t.startedAt,
      durationMs,
      waitMs,
      waited: t.waited,
      ...(error === undefined ? {} : { error }),
    });
  }
}

/** A sweep ended. */
export function traceSweep(result: IdempotencySweptEvent): void {
  if (swept.hasSubscribers) swept.publish({ ...result });
}

/** The library's code for its own errors; the class name for anything else (messages may hold customer data). */
export function errorName(error: unknown): string {
  if (error instanceof IdempotencyError) return error.code;
  return error instanceof Error ? error.name : typeof error;
}

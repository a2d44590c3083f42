import { AsyncLocalStorage } from 'node:async_hooks';
import type { Response } from 'express';

// Node's primitives through which every part of an answer leaves (headers,
// status line, body): each of Express' methods (send, json, set, cookie,
// redirect, sendFile, …) goes through them, so guarding them guards those
// too, at a fraction of the cost per request. Plus Express' `status`, which
// only sets the status but belongs to the handler's answer just the same. A
// handler that calls one of them would answer before COMMIT (and its
// transaction could still roll back); the route answers for it once the
// transaction is over.
const SENDING_METHODS = [
  'write',
  'end',
  'writeHead',
  'setHeader',
  'setHeaders',
  'appendHeader',
  'removeHeader',
  'flushHeaders',
  'addTrailers',
  'writeContinue',
  'writeProcessing',
  'writeEarlyHints',
  'status',
] as const;
// Not the socket: Node itself calls its write and end while the handler runs
// (it ends the connection when the client half-closes it), so a handler that
// writes to `res.socket` directly is beyond what can be guarded.

// Which guard's handler, if any, the running code belongs to: its own calls,
// and the timers and promises it starts, carry it along.
const handlerContext = new AsyncLocalStorage<ResponseGuard>();

/** A response whose sending methods throw when the handler calls them, until `release()`. */
export interface ResponseGuard {
  /** The first method the handler called, even if it caught the error. */
  readonly violation: string | undefined;
  /** Runs the handler: what it calls, now or later, is checked. */
  run<T>(handler: () => T): T;
  /** From now on every method behaves as it did before the guard. */
  release(): void;
}

interface GuardState {
  guard: ResponseGuard;
  released: boolean;
  violation: string | undefined;
  /** What each method was before the guard: the prototype's, or another middleware's wrapper. */
  originals: Record<string, (...args: unknown[]) => unknown>;
}

const STATE = Symbol('drizzle-idempotency.response-guard');
type Guarded = Record<string | symbol, unknown> & { [STATE]?: GuardState };

// One wrapper per method for all responses (not closures per request): a
// request then costs one property write per method, and no property is ever
// deleted, which would turn the response into a slow dictionary object.
const WRAPPERS = new Map(
  SENDING_METHODS.map((name) => [
    name,
    function guarded(this: Guarded, ...args: unknown[]): unknown {
      const state = this[STATE]!;
      if (state.released || handlerContext.getStore() !== state.guard) return state.originals[name]!.apply(this, args);
      state.violation ??= name;
      throw writeError(name);
    },
  ]),
);

/**
 * Makes every method that would send part of `res` throw at once when the
 * handler (run through `guard.run`) calls it, until `release()`. Calls from
 * elsewhere pass through: a timeout middleware may still answer, and a throw
 * in its timer would take the process down. After `release()` every method
 * calls what it was before (other middleware's wrappers included).
 *
 * @example
 * const guard = guardResponse(res);
 * try { await guard.run(() => handler(req, tx)) } finally { guard.release() }
 * if (guard.violation) throw writeError(guard.violation);
 */
export function guardResponse(res: Response): ResponseGuard {
  const target = res as unknown as Guarded;
  const state: GuardState = { guard: undefined as unknown as ResponseGuard, released: false, violation: undefined, originals: {} };
  state.guard = {
    get violation() {
      return state.violation;
    },
    run: (handler) => handlerContext.run(state.guard, handler),
    release() {
      state.released = true;
    },
  };
  // A response guarded twice (a route behind another) keeps the first originals.
  const outer = target[STATE];
  target[STATE] = state;
  for (const [name, wrapper] of WRAPPERS) {
    const current = target[name];
    if (typeof current !== 'function') continue;
    state.originals[name] = (current === wrapper ? outer!.originals[name] : current) as (...args: unknown[]) => unknown;
    target[name] = wrapper;
  }
  return state.guard;
}

/** The error a handler gets (or the route throws) when the handler wrote to `res`. */
export function writeError(method: string): Error {
  return new Error(
    `an idempotent handler must return its response ({ status, body, headers }), not call res.${method}(): ` +
      'the answer may leave only after COMMIT',
  );
}

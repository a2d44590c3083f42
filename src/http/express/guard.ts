import { AsyncLocalStorage } from 'node:async_hooks';
import { ServerResponse } from 'node:http';
import type { Response } from 'express';
import { writeError, type ResponseGuard } from '../route.js';

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
  // Express methods that reach the primitives only later, from a file system
  // callback: guarded themselves, so that they throw at the call (a throw in
  // that callback would take the process down).
  'sendFile',
  'download',
  'render',
] as const;
// Not the socket: Node itself calls its write and end while the handler runs
// (it ends the connection when the client half-closes it), so a handler that
// writes to `res.socket` directly is beyond what can be guarded.

// Which guard's handler, if any, the running code belongs to: its own calls,
// and the timers and promises it starts, carry it along.
const handlerContext = new AsyncLocalStorage<GuardState>();

interface GuardState {
  res: object;
  guard: ResponseGuard;
  released: boolean;
  violation: string | undefined;
}

type Method = (...args: unknown[]) => unknown;

const guardedMethods = new WeakSet<Method>();
const isGuarded = (method: unknown) => guardedMethods.has(method as Method);

/**
 * A method that throws when the handler of a live guard on `this` calls it,
 * and else calls `original`. It asks the running context each time, so one
 * wrapper serves every guard, now and later.
 */
function guarded(name: string, original: Method): Method {
  const method = function guardedMethod(this: object, ...args: unknown[]): unknown {
    const state = handlerContext.getStore();
    if (state === undefined || state.res !== this || state.released) return original.apply(this, args);
    state.violation ??= name;
    throw writeError(name);
  };
  guardedMethods.add(method);
  return method;
}

// Express gives every response of an app the same prototype (`app.response`):
// the guarded methods are put there once, so that a request costs no more
// than running its handler in the guard's context. (Adding a dozen own
// properties to each response costs ~30 µs: Express has changed its
// prototype, which leaves it a slow dictionary object.) Outside a guarded
// handler they only pass the call on.
const guardedPrototypes = new WeakSet<object>();

function guardPrototype(proto: Record<string, unknown>): void {
  if (guardedPrototypes.has(proto)) return;
  guardedPrototypes.add(proto);
  for (const name of SENDING_METHODS) {
    const original = proto[name];
    if (typeof original === 'function' && !isGuarded(original)) proto[name] = guarded(name, original as Method);
  }
}

/**
 * Makes every method that would send part of `res` throw at once when the
 * handler (run through `guard.run`) calls it, until `release()`. Calls from
 * elsewhere pass through: a timeout middleware may still answer, and a throw
 * in its timer would take the process down. Wrappers other middleware put
 * on `res` itself (compression) are guarded on `res`, and behave as before
 * once the guard is released.
 *
 * @example
 * const guard = guardResponse(res);
 * try { await guard.run(() => handler(req, tx)) } finally { guard.release() }
 * if (guard.violation) throw writeError(guard.violation);
 */
export function guardResponse(res: Response): ResponseGuard {
  const state: GuardState = { res, guard: undefined as unknown as ResponseGuard, released: false, violation: undefined };
  state.guard = {
    get violation() {
      return state.violation;
    },
    run: (handler) => handlerContext.run(state, handler),
    release() {
      state.released = true;
    },
  };
  const target = res as unknown as Record<string, unknown>;
  const proto = Object.getPrototypeOf(res) as Record<string, unknown> | null;
  // Only an app's own prototype: never Node's ServerResponse.prototype, which every server shares.
  const shared = proto === null || proto === (ServerResponse.prototype as object);
  if (!shared) guardPrototype(proto);
  for (const name of SENDING_METHODS) {
    if (shared || Object.prototype.hasOwnProperty.call(res, name)) {
      const current = target[name];
      if (typeof current === 'function' && !isGuarded(current)) target[name] = guarded(name, current as Method);
    }
  }
  return state.guard;
}

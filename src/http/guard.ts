import { AsyncLocalStorage } from 'node:async_hooks';
import type { Response } from 'express';

// Everything through which Node or Express sends, or commits to, part of an
// answer: headers, status, body. A handler that calls one of them would answer
// before COMMIT (and its transaction could still roll back); the route answers
// for it once the transaction is over.
const SENDING_METHODS = [
  // node:http
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
  // Express
  'status',
  'sendStatus',
  'send',
  'json',
  'jsonp',
  'sendFile',
  'download',
  'redirect',
  'render',
  'set',
  'header',
  'append',
  'cookie',
  'clearCookie',
  'location',
  'links',
  'attachment',
  'type',
  'contentType',
  'format',
  'vary',
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
  /** Puts every method back as it was (other middleware's wrappers included). */
  release(): void;
}

/**
 * Makes every method that would send part of `res` throw at once when the
 * handler (run through `guard.run`) calls it, until `release()`. Calls from
 * elsewhere pass through: a timeout middleware may still answer, and a throw
 * in its timer would take the process down. Own-property wrappers
 * (compression, loggers) are put back as they were; prototype methods by
 * removing the shadowing property.
 *
 * @example
 * const guard = guardResponse(res);
 * try { await guard.run(() => handler(req, tx)) } finally { guard.release() }
 * if (guard.violation) throw writeError(guard.violation);
 */
export function guardResponse(res: Response): ResponseGuard {
  const target = res as unknown as Record<string, unknown>;
  const saved = new Map<string, PropertyDescriptor | undefined>();
  let violation: string | undefined;
  const guard: ResponseGuard = {
    get violation() {
      return violation;
    },
    run: (handler) => handlerContext.run(guard, handler),
    release() {
      for (const [name, descriptor] of saved) {
        if (descriptor) Object.defineProperty(res, name, descriptor);
        else delete target[name];
      }
      saved.clear();
    },
  };
  for (const name of SENDING_METHODS) {
    const original = target[name];
    if (typeof original !== 'function') continue;
    saved.set(name, Object.getOwnPropertyDescriptor(res, name));
    Object.defineProperty(res, name, {
      configurable: true,
      writable: true,
      value: function guarded(this: unknown, ...args: unknown[]): unknown {
        if (handlerContext.getStore() !== guard) return (original as (...a: unknown[]) => unknown).apply(this, args);
        violation ??= name;
        throw writeError(name);
      },
    });
  }
  return guard;
}

/** The error a handler gets (or the route throws) when the handler wrote to `res`. */
export function writeError(method: string): Error {
  return new Error(
    `an idempotent handler must return its response ({ status, body, headers }), not call res.${method}(): ` +
      'the answer may leave only after COMMIT',
  );
}

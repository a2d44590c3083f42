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

/** A response's sending methods, made to throw until `release()`. */
export interface ResponseGuard {
  /** The first method called while guarded, even if the handler caught its error. */
  readonly violation: string | undefined;
  /** Puts every method back as it was (other middleware's wrappers included). */
  release(): void;
}

/**
 * Makes every method that would send part of `res` throw at once, until
 * `release()`. Own-property wrappers (compression, loggers) are put back as
 * they were; prototype methods by removing the shadowing property.
 *
 * @example
 * const guard = guardResponse(res);
 * try { await handler(req, tx) } finally { guard.release() }
 * if (guard.violation) throw new Error(`the handler called res.${guard.violation}()`);
 */
export function guardResponse(res: Response): ResponseGuard {
  const target = res as unknown as Record<string, unknown>;
  const saved = new Map<string, PropertyDescriptor | undefined>();
  let violation: string | undefined;
  for (const name of SENDING_METHODS) {
    if (typeof target[name] !== 'function') continue;
    saved.set(name, Object.getOwnPropertyDescriptor(res, name));
    Object.defineProperty(res, name, {
      configurable: true,
      writable: true,
      value: function guarded(): never {
        violation ??= name;
        throw writeError(name);
      },
    });
  }
  return {
    get violation() {
      return violation;
    },
    release() {
      for (const [name, descriptor] of saved) {
        if (descriptor) Object.defineProperty(res, name, descriptor);
        else delete target[name];
      }
      saved.clear();
    },
  };
}

/** The error a handler gets (or the route throws) when the handler wrote to `res`. */
export function writeError(method: string): Error {
  return new Error(
    `an idempotent handler must return its response ({ status, body, headers }), not call res.${method}(): ` +
      'the answer may leave only after COMMIT',
  );
}

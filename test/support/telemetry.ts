import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { onTestFinished } from 'vitest';
import { IDEMPOTENCY_CHANNELS, telemetryHash } from '../../src/index.js';

/** One published message: the event's short name (`claimed`, `in-flight`…) and its payload. */
export interface Published {
  event: string;
  message: Record<string, unknown>;
}

/**
 * Listens on every channel of the library until the test ends; `of(scope, key)`
 * gives the events about one key, in the order they were published.
 */
export function recordEvents() {
  const all: Published[] = [];
  const listeners = Object.values(IDEMPOTENCY_CHANNELS).map((name) => {
    const listener = (message: unknown) => all.push({ event: name.slice('drizzle-idempotency:'.length), message: message as Record<string, unknown> });
    subscribe(name, listener);
    return () => unsubscribe(name, listener);
  });
  const stop = () => listeners.splice(0).forEach((off) => off());
  onTestFinished(stop);
  const of = (scope: string, key: string) =>
    all.filter(({ message }) => message.scopeHash === telemetryHash(scope) && message.keyHash === telemetryHash(key));
  /** The events of each call for the key, a list per call, in the order the calls first published. */
  const byCall = (scope: string, key: string) => {
    const calls = new Map<unknown, string[]>();
    for (const { event, message } of of(scope, key)) {
      if (!calls.has(message.callId)) calls.set(message.callId, []);
      calls.get(message.callId)!.push(event);
    }
    return [...calls.values()];
  };
  return { all, of, byCall, names: (scope: string, key: string) => of(scope, key).map((e) => e.event), stop };
}

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
  return { all, of, names: (scope: string, key: string) => of(scope, key).map((e) => e.event), stop };
}

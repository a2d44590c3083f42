import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { IDEMPOTENCY_CHANNELS, withIdempotency, withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();

/** Subscribes `listener` to every channel until the test ends. */
function listen(listener: (name: string) => void) {
  for (const name of Object.values(IDEMPOTENCY_CHANNELS)) {
    const l = () => listener(name);
    subscribe(name, l);
    onTestFinished(() => void unsubscribe(name, l));
  }
}

describe('a listener that calls the library', () => {
  it('on a database of one connection: its call is an ordinary later call, not refused as made inside the call it listens to', async () => {
    const client = new pg.Client({ connectionString: t.url });
    await client.connect();
    onTestFinished(() => client.end());
    const db = drizzle({ client });
    const audits: Promise<unknown>[] = [];
    listen((name) => {
      // An audit log that records claims through the library, not awaited (a listener is synchronous).
      if (name === IDEMPOTENCY_CHANNELS.claimed && audits.length === 0) {
        audits.push(withIdempotency(db, 'audit-of-main', async () => 'audited'));
      }
    });
    expect(await withIdempotencyOutcome(db, 'main', async () => 'main')).toEqual({ value: 'main', replayed: false });
    expect(await Promise.all(audits)).toEqual(['audited']);
  });

  it('on a pool and in the caller’s transaction: the listened call answers once, and so does the listener’s', async () => {
    const inner: Promise<unknown>[] = [];
    listen((name) => {
      if (name === IDEMPOTENCY_CHANNELS.claimed && inner.length < 1) inner.push(withIdempotencyOutcome(t.db, 'listened', async () => 'from listener'));
    });
    const outer = await t.db.transaction((tx) => withIdempotencyOutcome(tx, 'listened', async () => 'from caller'));
    expect(outer).toEqual({ value: 'from caller', replayed: false });
    expect(await Promise.all(inner)).toEqual([{ value: 'from caller', replayed: true }]);
  });
});

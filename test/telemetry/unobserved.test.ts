import { drizzle } from 'drizzle-orm/node-postgres';
import { describe, expect, it } from 'vitest';
import { interceptQueries } from '../../bench/pg-tap.js';
import { resolveOptions } from '../../src/core/options.js';
import { withIdempotency } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { recordEvents } from '../support/telemetry.js';

const t = await testDatabase();

/** The texts of the claims a fresh pool sends while `run` runs. */
async function claimsSentBy(run: (db: ReturnType<typeof drizzle>) => Promise<unknown>): Promise<string[]> {
  const pool = t.newPool(2);
  const texts: string[] = [];
  interceptQueries(pool, (text, send) => {
    if (/^\s*insert into/i.test(text) && text.includes('on conflict')) texts.push(text);
    return send();
  });
  await run(drizzle({ client: pool }));
  return texts;
}

const tableReads = (text: string) => text.split('"idempotency_keys"').length - 1;

describe('a call nobody watches', () => {
  it('allocates nothing for telemetry: its resolved options are built with the trace slot, so setting it does not grow the object', () => {
    // A property added to an object literal after it is built goes to a
    // separate property store: some 30 bytes more per call.
    const o = resolveOptions('k', { scope: 's' });
    expect(Object.hasOwn(o, 'trace')).toBe(true);
    expect(o.trace).toBeUndefined();
  });

  it('makes its claim read nothing for telemetry; a watched call’s claim notes the completed row it saw', async () => {
    const [quiet] = await claimsSentBy((db) => withIdempotency(db, 'quiet-claim', async () => 1));
    expect(tableReads(quiet!)).toBe(1); // the INSERT's own table, nothing more
    recordEvents();
    const [watched] = await claimsSentBy((db) => withIdempotency(db, 'watched-claim', async () => 1));
    expect(tableReads(watched!)).toBe(2);
  });
});

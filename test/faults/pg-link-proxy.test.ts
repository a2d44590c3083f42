// The fault tests rest on this proxy cutting the link at the moment it says:
// checked here with a plain client and a row that COMMIT makes durable or not.
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { testDatabase } from '../support/db.js';
import { count } from '../support/fixtures.js';
import { startPgLinkProxy, type CutMoment } from '../support/pg-link-proxy.js';

const t = await testDatabase({ max: 3 });
await t.pool.query(`create table marks (ref text primary key)`);
const link = await startPgLinkProxy({ port: Number(new URL(t.url).port || 5432) });
afterAll(() => link.close());

/** BEGIN, INSERT `ref`, then COMMIT through the link with a cut armed at `moment`; what COMMIT answered. */
async function commitThroughCut(ref: string, moment: CutMoment, extended: boolean): Promise<string> {
  const url = new URL(t.url);
  url.host = `127.0.0.1:${link.port}`;
  const client = new pg.Client({ connectionString: url.toString() });
  client.on('error', () => {});
  await client.connect();
  await client.query('begin');
  await client.query('insert into marks (ref) values ($1)', [ref]);
  link.cutAtNextCommit(moment);
  // With a name, node-postgres sends Parse/Bind/Execute: the extended protocol pipelined drivers use.
  const outcome = await client.query(extended ? { name: `commit_${ref}`, text: 'commit' } : 'commit').then(
    () => 'committed',
    (error: Error) => `failed: ${error.message}`,
  );
  await client.end().catch(() => {});
  return outcome;
}

describe('the link proxy between the app and PostgreSQL', () => {
  it.each([false, true])('cut before COMMIT: the client fails and the row was never committed (extended protocol: %s)', async (extended) => {
    const ref = `before-${extended}`;
    expect(await commitThroughCut(ref, 'before', extended)).toMatch(/^failed/);
    // The server notices the dead connection and rolls back.
    await expect.poll(() => count(t.pool, 'pg_stat_activity', `datname = current_database() and state like 'idle in transaction%'`)).toBe(0);
    expect(await count(t.pool, 'marks', 'ref = $1', [ref])).toBe(0);
  });

  it.each([false, true])('cut after COMMIT: the client fails although the row is committed (extended protocol: %s)', async (extended) => {
    const ref = `after-${extended}`;
    expect(await commitThroughCut(ref, 'after', extended)).toMatch(/^failed/);
    expect(await count(t.pool, 'marks', 'ref = $1', [ref])).toBe(1);
  });

  it('cut during COMMIT: the client fails, and the row is there or not, never half', async () => {
    expect(await commitThroughCut('during', 'during', false)).toMatch(/^failed/);
    expect([0, 1]).toContain(await count(t.pool, 'marks', `ref = 'during'`));
    expect(link.cuts).toEqual({ before: 2, during: 1, after: 2 });
  });
});

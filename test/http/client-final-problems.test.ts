// Issue 11, item 14: fetchWithRetry against a real idempotent() route. A problem
// the server marks `retryable: false` is final: retrying it would only run the
// handler again for the same answer.
import express from 'express';
import { afterAll, describe, expect, it } from 'vitest';
import { fetchWithRetry, type RetryEvent } from '../../src/client.js';
import { idempotent } from '../../src/express.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';
import { listen, type Listening } from '../support/http.js';

const t = await testDatabase();
await createBusinessTables(t.pool);
const servers: Listening[] = [];
afterAll(async () => Promise.all(servers.map((s) => s.close())));

describe('fetchWithRetry and a problem that is not retryable', () => {
  it('gets 500 IDEMPOTENCY_RESULT_INVALID once: the handler runs once, nothing commits', async () => {
    let runs = 0;
    const app = express();
    app.use(express.json());
    app.post(
      '/notes',
      idempotent(
        t.db,
        async (_req, tx) => {
          runs++;
          await insertCharge(tx, 'unstorable', 1);
          // JSON.stringify accepts it; jsonb does not.
          return { status: 201, body: { ['note\u0000']: 'x' } };
        },
        { scope: () => 'single-tenant' },
      ),
    );
    const server = await listen(app);
    servers.push(server);

    const retries: RetryEvent[] = [];
    const res = await fetchWithRetry(
      `${server.url}/notes`,
      { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' },
      { sleep: async () => {}, onRetry: (event) => void retries.push(event) },
    );
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ code: 'IDEMPOTENCY_RESULT_INVALID', retryable: false });
    expect(res.attempts).toBe(1);
    expect(retries).toEqual([]);
    expect(runs).toBe(1);
    expect(await count(t.pool, 'charges', "ref = 'unstorable'")).toBe(0);
    expect(await keyRows(t.pool)).toEqual([]);
  });
});

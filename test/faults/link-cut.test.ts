import { afterAll, describe, expect, it } from 'vitest';
import { testDatabase } from '../support/db.js';
import { CUT_MOMENTS, startShopsBehindLink } from '../support/shops-behind-link.js';
import { brokenAfterStorm } from '../support/storm-audit.js';

const t = await testDatabase({ max: 5 });
const setup = await startShopsBehindLink(t, 2);
afterAll(() => setup.close());

describe('the link between two shop processes and PostgreSQL cut at COMMIT', () => {
  it('before, during and after COMMIT, four times each in a storm: clients finish with retries, one effect per key, no process crash', async () => {
    const { results, cuts } = await setup.stormWithCuts('cut-widget', 15, 4);

    for (const moment of CUT_MOMENTS) expect(cuts[moment], `cuts ${moment} COMMIT`).toBe(4);
    expect(results.flatMap((r) => r.copies).filter((c) => c.attempts > 1).length).toBeGreaterThan(0);
    expect(setup.cluster.shops.map((s) => s.alive()), setup.cluster.output()).toEqual([true, true]);
    expect(await brokenAfterStorm(t.pool, results, { sku: 'cut-widget', initialStock: 15 })).toEqual([]);
  }, 60_000);
});

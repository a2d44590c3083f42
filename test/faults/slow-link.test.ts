// Latency between the app and PostgreSQL. tc netem would add it, but this
// machine's kernel is built without the netem qdisc (CONFIG_NET_SCH_NETEM is
// not set, and there is no module support to load it), so `tc qdisc add ...
// netem` answers "Specified qdisc kind is unknown". The link proxy stands in:
// every chunk waits 1-20 ms in each direction (in order), and the link is cut
// at COMMIT now and then, as a lost link is. Packet loss, which netem would
// also make, is made with nftables instead: test/faults/packet-loss.test.ts.
import { afterAll, describe, expect, it } from 'vitest';
import { testDatabase } from '../support/db.js';
import { CUT_MOMENTS, startShopsBehindLink } from '../support/shops-behind-link.js';
import { brokenAfterStorm } from '../support/storm-audit.js';

const t = await testDatabase({ max: 5 });
const setup = await startShopsBehindLink(t, 2);
afterAll(() => setup.close());

describe('a slow link between two shop processes and PostgreSQL (1-20 ms each way), cut at COMMIT now and then', () => {
  it('clients finish with retries, one effect per key, no process crash', async () => {
    setup.link.setLatency(1, 20);
    const { results, cuts } = await setup.stormWithCuts('slow-widget', 15, 2);

    for (const moment of CUT_MOMENTS) expect(cuts[moment], `cuts ${moment} COMMIT`).toBe(2);
    expect(setup.cluster.shops.map((s) => s.alive()), setup.cluster.output()).toEqual([true, true]);
    expect(await brokenAfterStorm(t.pool, results, { sku: 'slow-widget', initialStock: 15 })).toEqual([]);
  }, 60_000);
});

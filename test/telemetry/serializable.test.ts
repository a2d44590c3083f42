import { describe, expect, it } from 'vitest';
import { withIdempotency } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { deferred } from '../support/fixtures.js';
import { recordEvents } from '../support/telemetry.js';

const t = await testDatabase();
const serializable = { isolationLevel: 'serializable' } as const;

/** A call in a SERIALIZABLE transaction of the caller's whose fn waits for `go`; `running` resolves once fn runs. */
function heldCall(key: string) {
  const running = deferred();
  const go = deferred();
  const done = t.db.transaction(
    (tx) =>
      withIdempotency(tx, key, async () => {
        running.resolve();
        await go.promise;
        return key;
      }),
    serializable,
  );
  return { running: running.promise, go: go.resolve, done };
}

describe('claims of different keys in SERIALIZABLE transactions', () => {
  for (const listened of [false, true]) {
    it(`do not fail to serialize each other (telemetry ${listened ? 'listened to' : 'unobserved'}): the claim takes no predicate lock for telemetry`, async () => {
      if (listened) recordEvents();
      // Both keys live on the one leaf page of the key index.
      const a = heldCall(`ser-a-${listened}`);
      await a.running;
      const b = heldCall(`ser-b-${listened}`);
      await b.running;
      a.go();
      await expect(a.done).resolves.toBe(`ser-a-${listened}`);
      b.go();
      await expect(b.done).resolves.toBe(`ser-b-${listened}`);
    });
  }
});

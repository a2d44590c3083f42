import { describe, expect, it } from 'vitest';
import { drizzle } from 'drizzle-orm/node-postgres';
import { withIdempotency, withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { recordEvents } from '../support/telemetry.js';

const t = await testDatabase();

// DateStyle SQL prints a timestamptz with the zone's abbreviation; Guam's
// (ChST) is not one Postgres reads back, and India's (IST) it reads as Israel's.
const sessions = {
  'SQL, Pacific/Guam': '-c datestyle=SQL,MDY -c timezone=Pacific/Guam',
  'Postgres, Asia/Kolkata': '-c datestyle=Postgres -c timezone=Asia/Kolkata',
};

describe('a session with its own DateStyle and TimeZone', () => {
  for (const [name, options] of Object.entries(sessions)) {
    it(`${name}: a duplicate replays, listened to or not, in its own transaction and in the caller’s`, async () => {
      const db = drizzle({ client: t.newPool(4, { options }) });
      const key = `datestyle-${name}`;
      await withIdempotency(db, key, async () => 'first');
      expect(await withIdempotencyOutcome(db, key, async () => 'second')).toEqual({ value: 'first', replayed: true });
      expect(await db.transaction((tx) => withIdempotencyOutcome(tx, key, async () => 'second'))).toEqual({ value: 'first', replayed: true });
      const events = recordEvents();
      expect(await withIdempotencyOutcome(db, key, async () => 'second')).toEqual({ value: 'first', replayed: true });
      expect(events.names('', key)).toEqual(['replayed', 'call']);
      expect(events.of('', key)[0]!.message).toMatchObject({ waited: false });
    });
  }
});

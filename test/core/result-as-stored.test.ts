// Issue 18, item 2: a result holding a Date came back as a Date from the first
// execution (said the type) and as a string from a replay, so `.getTime()`
// passed every test and failed on the first production retry. Every path
// returns the stored JSON, and the return type (`Jsonified<T>`) says so: the
// compiler refuses `.getTime()` on it. `npm run typecheck` checks the type
// assertions below; the runs check the values on every path.
import { PGlite } from '@electric-sql/pglite';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';
import {
  lookupReplay,
  migrate,
  withIdempotency,
  withIdempotencyOutcome,
  type IdempotencyDatabase,
  type IdempotentOutcome,
  type Jsonified,
} from '../../src/index.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();

const JSONB = 3802;
const jsonbAsText = ((oid: number, format?: 'text' | 'binary') =>
  oid === JSONB ? (text: string) => text : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser;

/** What `fn` returns: Dates, an optional member, undefined in an array. */
interface Receipt {
  id: number;
  paidAt: Date;
  refundedAt: Date | null;
  note?: string | undefined;
  lines: (string | undefined)[];
}

const receipt = (): Receipt => ({
  id: 7,
  paidAt: new Date('2025-06-02T18:25:29.158Z'),
  refundedAt: null,
  note: undefined,
  lines: ['mug', undefined],
});

/** The same value as JSON gives it back, which is what every caller gets. */
const asStored = { id: 7, paidAt: '2025-06-02T18:25:29.158Z', refundedAt: null, lines: ['mug', null] };

describe('the type of a result', () => {
  it('is the JSON form of what fn returns: a Date is a string, and the compiler says so', () => {
    expectTypeOf<Jsonified<Receipt>>().toEqualTypeOf<{
      id: number;
      paidAt: string;
      refundedAt: string | null;
      note?: string;
      lines: (string | null)[];
    }>();
    expectTypeOf<Jsonified<undefined>>().toEqualTypeOf<undefined>();
    expectTypeOf<Jsonified<void>>().toEqualTypeOf<void>();
    expectTypeOf<Jsonified<Record<string, Date>>>().toEqualTypeOf<Record<string, string>>();
    expectTypeOf<Jsonified<unknown>>().toEqualTypeOf<unknown>();
    expectTypeOf<Jsonified<[Date, number]>>().toEqualTypeOf<[string, number]>();
    expectTypeOf<Jsonified<{ at: Date }[]>>().toEqualTypeOf<{ at: string }[]>();
    // JSON leaves out what a class has on its prototype.
    expectTypeOf<Jsonified<{ id: number; format(): string }>>().toEqualTypeOf<{ id: number }>();
  });

  it('is never for what JSON would write as {} or lose, so that the compiler flags it', () => {
    expectTypeOf<Jsonified<Map<string, number>>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<ReadonlyMap<string, number>>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<Set<string>>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<WeakMap<object, number>>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<WeakSet<object>>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<Error>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<TypeError>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<RegExp>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<Uint8Array>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<Float64Array>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<BigInt64Array>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<ArrayBuffer>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<SharedArrayBuffer>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<DataView>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<Promise<number>>>().toEqualTypeOf<never>();
    expectTypeOf<Jsonified<{ id: number; tags: Set<string> }>>().toEqualTypeOf<{ id: number; tags: never }>();
    const use = (stored: Jsonified<{ tags: Set<string>; byId: Map<number, string>; failure: Error; bytes: Uint8Array }>) => [
      // @ts-expect-error a Set is stored as {}: it has no size on a replay
      stored.tags.size,
      // @ts-expect-error a Map is stored as {}
      stored.byId.get(1),
      // @ts-expect-error an Error is stored as {}: its message is lost
      stored.failure.message,
      // @ts-expect-error a typed array is stored as an object of its indices, without length
      stored.bytes.length,
    ];
    expect(use).toBeTypeOf('function');
  });

  it('keeps any as any, and what JSON keeps as it is', () => {
    expectTypeOf<Jsonified<{ payload: any; id: number }>>().toEqualTypeOf<{ payload: any; id: number }>(); // eslint-disable-line @typescript-eslint/no-explicit-any
    expectTypeOf<Jsonified<{ list: any[] }>>().toEqualTypeOf<{ list: any[] }>(); // eslint-disable-line @typescript-eslint/no-explicit-any
    // Plain data that merely looks like an Error (no stack) is plain data.
    expectTypeOf<Jsonified<{ name: string; message: string }>>().toEqualTypeOf<{ name: string; message: string }>();
    // What has its own toJSON is what toJSON returns: a Buffer is stored as { type, data }.
    expectTypeOf<Jsonified<Buffer>>().toEqualTypeOf<{ type: 'Buffer'; data: number[] }>();
    expectTypeOf<Jsonified<{ failure: Error & { toJSON(): { code: string } } }>>().toEqualTypeOf<{ failure: { code: string } }>();
    // A class instance keeps its data fields.
    class Money {
      constructor(readonly amount: number, readonly currency: string) {}
      format() {
        return `${this.amount} ${this.currency}`;
      }
    }
    expectTypeOf<Jsonified<Money>>().toEqualTypeOf<{ amount: number; currency: string }>();
  });

  it('is what withIdempotency, withIdempotencyOutcome and lookupReplay return', async () => {
    const run = async (db: IdempotencyDatabase) => {
      const value = await withIdempotency(db, 'typed', async () => receipt());
      expectTypeOf(value).toEqualTypeOf<Jsonified<Receipt>>();
      // @ts-expect-error a replayed Date is a string: .getTime() would fail on the first retry
      value.paidAt.getTime();
      expectTypeOf(await withIdempotencyOutcome(db, 'typed', async () => receipt())).toEqualTypeOf<IdempotentOutcome<Jsonified<Receipt>>>();
      expectTypeOf(await lookupReplay<Receipt>(db, 'typed')).toEqualTypeOf<IdempotentOutcome<Jsonified<Receipt>> | undefined>();
      // A void fn replays as undefined, and is typed void, not never.
      expectTypeOf(await withIdempotency(db, 'typed-void', async () => {})).toEqualTypeOf<void>();
    };
    expect(run).toBeTypeOf('function');
  });
});

describe('the first execution returns the stored JSON, as every replay does', () => {
  interface Path {
    db: IdempotencyDatabase;
    inTransaction?: boolean;
    prepare?: boolean;
  }
  const paths: [string, () => Path][] = [
    ['given a database on a pg pool', () => ({ db: t.db })],
    ['given a transaction', () => ({ db: t.db, inTransaction: true })],
    ['given a database on a pipelined pg pool', () => ({ db: drizzle({ client: t.newPool(2, { pipeline: true }) }) })],
    ['with prepare: true', () => ({ db: t.db, prepare: true })],
    // A driver that hands jsonb over unparsed, as text.
    ['on a pg pool that returns jsonb as text', () => ({ db: drizzle({ client: t.newPool(2, { types: { getTypeParser: jsonbAsText } }) }) })],
  ];

  it.each(paths)('%s', async (name, make) => {
    const { db, inTransaction = false, prepare = false } = make();
    const key = `as-stored ${name}`;
    const options = { scope: 'alice', prepare };
    const call = () =>
      inTransaction
        ? t.db.transaction((tx) => withIdempotencyOutcome(tx, key, async () => receipt(), options))
        : withIdempotencyOutcome(db, key, async () => receipt(), options);
    expect(await call()).toEqual({ value: asStored, replayed: false });
    expect(await call()).toEqual({ value: asStored, replayed: true });
    expect(await lookupReplay(db, key, options)).toEqual({ value: asStored, replayed: true });
  });

  describe('on PGlite (jsonb parsed by the driver)', () => {
    const client = new PGlite();
    const db = drizzlePglite({ client });
    afterAll(() => client.close());

    it('given the database and given a transaction', async () => {
      await migrate(db);
      expect(await withIdempotency(db, 'pglite', async () => receipt())).toEqual(asStored);
      expect(await withIdempotency(db, 'pglite', async () => receipt())).toEqual(asStored);
      expect(await db.transaction((tx) => withIdempotency(tx, 'pglite-tx', async () => receipt()))).toEqual(asStored);
    });
  });
});

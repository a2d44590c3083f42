// The library-level scenarios of part 1, each one operation a worker
// repeats: (a) the bare business transaction, (b) the same inside
// withIdempotency with a new key, (c) a replay of a completed key, (d) the
// Redis middleware around the same transaction with a new key; and (b) and
// (c) again with the node-postgres defaults switched off, as 0.1 ran them:
// (e) and (f) with `prepare: false` on a pool created with `pipeline: false`
// (unnamed statements, one round trip each). And the limit to measure the
// library against: (g) the same protocol written by hand in raw pg, with the
// round trips fused (BEGIN sent with the claim and the store with COMMIT, one
// string each), around the same business statements.
import { randomUUID } from 'node:crypto';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import type pg from 'pg';
import type { Redis } from 'ioredis';
import { withIdempotencyOutcome, type IdempotencyOptions } from '../src/index.js';
import { AMOUNT, charge, randomSku, type Charge } from './business.js';
import { withRedisIdempotency, type RedisIdempotencyOptions } from './redis-idempotency.js';

export type ScenarioId = 'a' | 'b' | 'c' | 'd' | 'e' | 'f' | 'g';

export interface Scenario {
  /** One of ScenarioId, or a variant of one (part 4's small-table twins). */
  id: string;
  label: string;
  /** For chart legends. */
  short: string;
  /** One operation; throws when it did not do what the scenario measures. */
  operation(ctx: ScenarioContext): () => Promise<void>;
}

export interface ReplayKey {
  key: string;
  scope: string;
  sku: string;
}

export interface ScenarioContext {
  db: NodePgDatabase;
  /** The pool `db` runs on, for the raw-pg reference (g). */
  pool: pg.Pool;
  redis: Redis;
  redisOptions: RedisIdempotencyOptions;
  /** Completed keys for (c). */
  replayKeys: readonly ReplayKey[];
  /** The same database on a pool created with `pipeline: false`, for (e). */
  plainDb?: NodePgDatabase;
  /** Postgres schema of the key table (b) and (c) use; the search_path's when absent. */
  keysSchema?: string;
}

/** Keys belong to tenants: scopes spread new keys over the whole primary key
 * index, as in a multi-tenant service, instead of one hot corner of it. */
export const TENANT_COUNT = 1000;

export function randomTenant(): string {
  return `tenant-${Math.floor(Math.random() * TENANT_COUNT)}`;
}

/** How (b) and (c) call the library: the request's fingerprint, as the HTTP layer would pass it. */
export function idempotencyOptions(scope: string, sku: string, extra: IdempotencyOptions = {}): IdempotencyOptions {
  return { scope, fingerprint: { sku, amount: AMOUNT }, ...extra };
}

/** First execution with the library: new key, default options. */
export async function chargeIdempotently(db: NodePgDatabase, key: string, scope: string, sku: string, extra?: IdempotencyOptions) {
  return withIdempotencyOutcome(db, key, (tx) => charge(tx, key, sku), idempotencyOptions(scope, sku, extra));
}

export const bare: Scenario = {
  id: 'a',
  short: 'bare',
  label: 'bare transaction',
  operation: ({ db }) => async () => {
    const sku = randomSku();
    await db.transaction((tx) => charge(tx, randomUUID(), sku));
  },
};

export const firstExecution: Scenario = {
  id: 'b',
  short: 'withIdempotency',
  label: 'withIdempotency, first execution',
  operation: ({ db, keysSchema }) => async () => {
    const outcome = await chargeIdempotently(db, randomUUID(), randomTenant(), randomSku(), { schema: keysSchema });
    if (outcome.replayed) throw new Error('a new key was replayed');
  },
};

export const replay: Scenario = {
  id: 'c',
  short: 'replay',
  label: 'replay (lookupFirst)',
  operation: (ctx) => replayOperation(ctx, {}),
};

function replayOperation({ db, replayKeys, keysSchema }: ScenarioContext, extra: IdempotencyOptions): () => Promise<void> {
  return async () => {
    const hit = replayKeys[Math.floor(Math.random() * replayKeys.length)]!;
    const outcome = await withIdempotencyOutcome<NodePgDatabase, Charge>(
      db,
      hit.key,
      () => Promise.reject(new Error('a completed key ran its function again')),
      idempotencyOptions(hit.scope, hit.sku, { lookupFirst: true, schema: keysSchema, ...extra }),
    );
    if (!outcome.replayed) throw new Error('a completed key was not replayed');
  };
}

export const plainFirstExecution: Scenario = {
  id: 'e',
  short: '(b), defaults off',
  label: 'withIdempotency, first execution, prepare: false on a pool with pipeline: false',
  operation: ({ plainDb }) => {
    if (!plainDb) throw new Error('scenario (e) needs a pool created with pipeline: false');
    return async () => {
      const outcome = await chargeIdempotently(plainDb, randomUUID(), randomTenant(), randomSku(), { prepare: false });
      if (outcome.replayed) throw new Error('a new key was replayed');
    };
  },
};

export const plainReplay: Scenario = {
  ...replay,
  id: 'f',
  short: '(c), defaults off',
  label: 'replay (lookupFirst), prepare: false',
  operation: (ctx) => replayOperation(ctx, { prepare: false }),
};

export const redisMiddleware: Scenario = {
  id: 'd',
  short: 'Redis middleware',
  label: 'Redis middleware, first execution',
  operation: ({ db, redis, redisOptions }) => async () => {
    const key = randomUUID();
    const sku = randomSku();
    const outcome = await withRedisIdempotency(redis, key, () => db.transaction((tx) => charge(tx, key, sku)), redisOptions);
    if (outcome.replayed) throw new Error('a new key was replayed');
  },
};

/**
 * The hand-written reference: what a careful engineer would write with raw pg
 * for the same guarantee, and the least it can cost. Two simple-protocol
 * strings carry BEGIN + claim and store + COMMIT (literals escaped by pg);
 * the business statements in between are the same drizzle calls as (a).
 */
export const handWritten: Scenario = {
  id: 'g',
  short: 'raw pg, fused',
  label: 'hand-written raw pg, BEGIN+claim and store+COMMIT fused',
  operation: ({ pool }) => {
    return async () => {
      const [key, scope, sku] = [randomUUID(), randomTenant(), randomSku()];
      const client = await pool.connect();
      try {
        const where = `scope = ${client.escapeLiteral(scope)} and key = ${client.escapeLiteral(key)}`;
        const claimed = (await client.query(
          `begin; insert into idempotency_keys (scope, key, fingerprint, status, expires_at)
           values (${client.escapeLiteral(scope)}, ${client.escapeLiteral(key)}, ${client.escapeLiteral(HAND_FINGERPRINT)}, 'started', now() + interval '1 day')
           on conflict (scope, key) do nothing returning 1`,
        )) as unknown as pg.QueryResult[];
        if (claimed[1]!.rowCount !== 1) throw new Error('a new key was not claimed');
        const result = await charge(drizzle({ client }), key, sku);
        await client.query(
          `update idempotency_keys set status = 'completed', response = ${client.escapeLiteral(JSON.stringify({ value: result }))}::jsonb,
             completed_at = now(), expires_at = now() + interval '1 day' where ${where}; commit`,
        );
      } catch (error) {
        await client.query('rollback').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    };
  },
};
const HAND_FINGERPRINT = 'sha256:hand-written';

export const SCENARIOS: readonly Scenario[] = [bare, firstExecution, replay, redisMiddleware, plainFirstExecution, plainReplay, handWritten];

/** The same scenario against the key table in another schema, under its own id. */
export function againstSchema(scenario: Scenario, id: string, label: string, keysSchema: string, replayKeys: readonly ReplayKey[]): Scenario {
  return { ...scenario, id, label, operation: (ctx) => scenario.operation({ ...ctx, keysSchema, replayKeys }) };
}

/** Completed keys for (c), made by the library itself so they look like real ones. */
export async function createReplayKeys(db: NodePgDatabase, count: number, schema?: string, concurrency = 8): Promise<ReplayKey[]> {
  const keys: ReplayKey[] = [];
  const worker = async () => {
    while (keys.length < count) {
      const entry = { key: randomUUID(), scope: randomTenant(), sku: randomSku() };
      keys.push(entry);
      await chargeIdempotently(db, entry.key, entry.scope, entry.sku, { schema });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return keys;
}

import { sql } from 'drizzle-orm';
import type { NodePgDatabase } from 'drizzle-orm/node-postgres';

/** What the gateway did with a charge request: money taken, or the card refused it (stored so the key replays the refusal). */
export type ChargeStatus = 'succeeded' | 'declined';

/** One row of the gateway's ledger, as its API shows it. */
export interface Charge {
  id: string;
  idempotencyKey: string;
  amount: number;
  currency: string;
  reference: string;
  status: ChargeStatus;
  /** Why the card refused it (`card_declined`); null when it succeeded. */
  declineCode: string | null;
  createdAt: string;
}

/** A charge request as validated: what the idempotency key's fingerprint is taken from. */
export interface ChargeRequest {
  amount: number;
  currency: string;
  reference: string;
}

type GatewayDb = Pick<NodePgDatabase, 'execute' | 'transaction'>;

type ChargeRow = {
  id: string;
  idempotency_key: string;
  fingerprint: string;
  amount: number;
  currency: string;
  reference: string;
  status: ChargeStatus;
  decline_code: string | null;
  created_at: Date;
};

const toCharge = (row: ChargeRow): Charge => ({
  id: row.id,
  idempotencyKey: row.idempotency_key,
  amount: row.amount,
  currency: row.currency,
  reference: row.reference,
  status: row.status,
  declineCode: row.decline_code,
  createdAt: new Date(row.created_at).toISOString(),
});

/**
 * Creates the gateway's schema and ledger table when missing. Its own schema
 * (`gateway`), so that sharing the shop's database for the demo shares
 * nothing else: the shop never reads it, the audits do. An advisory lock keeps
 * two gateways starting at once from racing on CREATE.
 *
 * @example
 * await migrateGateway(drizzle({ client: pool }));
 */
export async function migrateGateway(db: GatewayDb): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('gateway.migrate'))`);
    await tx.execute(sql`create schema if not exists gateway`);
    await tx.execute(sql`
      create table if not exists gateway.gateway_charges (
        id text primary key,
        idempotency_key text not null unique,
        fingerprint text not null,
        amount integer not null check (amount > 0),
        currency text not null,
        reference text not null,
        status text not null check (status in ('succeeded', 'declined')),
        decline_code text,
        created_at timestamptz not null default now()
      )`);
  });
}

/**
 * Records the charge for `key` unless the key has one already; answers the
 * key's charge either way, and whether this call created it. Concurrent
 * duplicates: the second INSERT waits on the first's unique entry and does
 * nothing, and its SELECT (a new snapshot under READ COMMITTED) finds the
 * first's row.
 *
 * @example
 * const { charge, created } = await recordCharge(db, key, fingerprint, { id, ...request, status: 'succeeded', declineCode: null });
 */
export async function recordCharge(
  db: GatewayDb,
  key: string,
  fingerprint: string,
  charge: ChargeRequest & { id: string; status: ChargeStatus; declineCode: string | null },
): Promise<{ charge: Charge; fingerprint: string; created: boolean }> {
  const inserted = await db.execute<ChargeRow>(sql`
    insert into gateway.gateway_charges (id, idempotency_key, fingerprint, amount, currency, reference, status, decline_code)
    values (${charge.id}, ${key}, ${fingerprint}, ${charge.amount}, ${charge.currency}, ${charge.reference}, ${charge.status}, ${charge.declineCode})
    on conflict (idempotency_key) do nothing
    returning *`);
  if (inserted.rows[0]) return { charge: toCharge(inserted.rows[0]), fingerprint, created: true };
  const existing = await db.execute<ChargeRow>(sql`select * from gateway.gateway_charges where idempotency_key = ${key}`);
  const row = existing.rows[0]!;
  return { charge: toCharge(row), fingerprint: row.fingerprint, created: false };
}

/**
 * The charge recorded under an idempotency key, if any: what a caller whose
 * answer was lost asks to learn whether it was charged.
 *
 * @example
 * const charge = await chargeByKey(db, 'di-3f…');
 */
export async function chargeByKey(db: GatewayDb, key: string): Promise<Charge | undefined> {
  const { rows } = await db.execute<ChargeRow>(sql`select * from gateway.gateway_charges where idempotency_key = ${key}`);
  return rows[0] && toCharge(rows[0]);
}

/**
 * Every charge ever recorded, oldest first: the ledger an audit counts.
 *
 * @example
 * const succeeded = (await ledger(db)).filter((c) => c.status === 'succeeded');
 */
export async function ledger(db: GatewayDb): Promise<Charge[]> {
  const { rows } = await db.execute<ChargeRow>(sql`select * from gateway.gateway_charges order by created_at, id`);
  return rows.map(toCharge);
}

import { spawn } from 'node:child_process';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../../src/index.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge, sleep } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

async function backendPid(tx: { execute: typeof t.db.execute }): Promise<number> {
  const result = (await tx.execute(sql`select pg_backend_pid() as pid`)) as unknown as { rows: { pid: number }[] };
  return result.rows[0]!.pid;
}

describe('a connection killed in the middle of fn', () => {
  it('commits nothing; a waiting duplicate and a later retry each see one execution in all', async () => {
    const killed = deferred<number>();
    const resume = deferred();
    const victim = withIdempotencyOutcome(t.db, 'killed-1', async (tx) => {
      await insertCharge(tx, 'killed-1', 100);
      killed.resolve(await backendPid(tx));
      await resume.promise;
      return insertCharge(tx, 'killed-1-second-write', 100);
    });
    const pid = await killed.promise;

    // A duplicate queues behind the victim's uncommitted claim.
    const duplicate = withIdempotencyOutcome(t.db, 'killed-1', (tx) => insertCharge(tx, 'killed-1', 100));
    await sleep(20);
    await t.pool.query('select pg_terminate_backend($1)', [pid]);
    resume.resolve();

    await expect(victim).rejects.toThrow();
    const second = await duplicate;
    expect(second.replayed).toBe(false);

    const retry = await withIdempotencyOutcome(t.db, 'killed-1', (tx) => insertCharge(tx, 'killed-1', 100));
    expect(retry).toEqual({ value: second.value, replayed: true });

    expect(await count(t.pool, 'charges', 'ref = $1', ['killed-1'])).toBe(1);
    expect(await count(t.pool, 'charges', 'ref = $1', ['killed-1-second-write'])).toBe(0);
    expect(await count(t.pool, 'idempotency_keys', `key = 'killed-1' and status = 'completed'`)).toBe(1);
  });

  it('leaves no trace when killed before COMMIT of a caller-owned transaction, and a retry succeeds once', async () => {
    const done = deferred<number>();
    const resume = deferred();
    const victim = t.db.transaction(async (tx) => {
      await withIdempotencyOutcome(tx, 'killed-2', (inner) => insertCharge(inner, 'killed-2', 5));
      done.resolve(await backendPid(tx));
      await resume.promise; // between the stored result and the caller's COMMIT
    });
    const pid = await done.promise;
    await t.pool.query('select pg_terminate_backend($1)', [pid]);
    resume.resolve();
    await expect(victim).rejects.toThrow();
    expect(await count(t.pool, 'idempotency_keys', `key = 'killed-2'`)).toBe(0);
    expect(await count(t.pool, 'charges', 'ref = $1', ['killed-2'])).toBe(0);

    const retry = await t.db.transaction((tx) => withIdempotencyOutcome(tx, 'killed-2', (inner) => insertCharge(inner, 'killed-2', 5)));
    expect(retry.replayed).toBe(false);
    expect(await count(t.pool, 'charges', 'ref = $1', ['killed-2'])).toBe(1);
  });
});

describe('a process killed with SIGKILL between the stored result and COMMIT', () => {
  it('leaves no key and no charge; the retry runs once', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/crash-child.ts', t.url, 'sigkill-1'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('stored') && resolve());
      child.on('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    // The key row is claimed and uncommitted: a duplicate now would wait on it.
    expect(await count(t.pool, 'pg_stat_activity', `datname = current_database() and state = 'idle in transaction'`)).toBe(1);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('exit', resolve));

    // The server ends the dead session's transaction; the duplicate gets the key.
    const retry = await withIdempotencyOutcome(t.db, 'sigkill-1', (tx) => insertCharge(tx, 'sigkill-1', 42));
    expect(retry.replayed).toBe(false);
    expect(await count(t.pool, 'charges', 'ref = $1', ['sigkill-1'])).toBe(1);
    expect(await count(t.pool, 'idempotency_keys', `key = 'sigkill-1' and status = 'completed'`)).toBe(1);
  });
});

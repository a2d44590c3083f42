import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fetchWithRetry } from '../../src/client.js';
import { freePort } from '../../tools/embedded-db.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase({ max: 5 });
const port = await freePort();
const sinkDir = await mkdtemp(join(tmpdir(), 'shop-crash-'));
const children: ChildProcess[] = [];
afterAll(() => children.forEach((c) => c.kill('SIGKILL')));

/** Starts `npm run serve`'s entry point as a child process on `port`; resolves once it listens. */
async function startShop(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/shop/server.ts'], {
    // Payments are leased work: the dead shop's keys wait for their lease to run out (3 s here, 30 s by default) before a retry or the completer takes them over.
    env: { ...process.env, DATABASE_URL: t.url, PORT: String(port), MAIL_SINK: join(sinkDir, 'mail.jsonl'), POOL_SIZE: '12', SHOP_PAYMENT_LEASE: '3s', SHOP_COMPLETER_INTERVAL: '500ms' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('listening') && resolve());
    child.on('exit', (code) => reject(new Error(`shop exited with ${code}`)));
  });
  return child;
}

describe('the shop killed with SIGKILL in the middle of a storm', () => {
  it('comes back on the same database; the clients retry to completion; one payment per key', async () => {
    const first = await startShop();
    const keys = Array.from({ length: 120 }, () => randomUUID());
    let answered = 0;
    const pay = async (key: string) => {
      const res = await fetchWithRetry(
        `http://127.0.0.1:${port}/payments`,
        { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': 'crash-user' }, body: JSON.stringify({ amount: 700, currency: 'EUR' }) },
        { idempotencyKey: key, retries: 30, baseDelay: 50, maxDelay: 500, timeout: 5_000 },
      );
      answered++;
      return { key, status: res.status, body: (await res.json()) as { id: string } };
    };
    // 16 clients at a time; a double click on every fifth key.
    const queue = keys.flatMap((key, i) => (i % 5 === 0 ? [key, key] : [key]));
    const results: Awaited<ReturnType<typeof pay>>[] = [];
    const client = async () => {
      for (let key = queue.shift(); key; key = queue.shift()) results.push(await pay(key));
    };
    const storm = Promise.all(Array.from({ length: 16 }, client));

    while (answered < 30) await new Promise((resolve) => setTimeout(resolve, 5));
    first.kill('SIGKILL');
    await new Promise((resolve) => first.on('exit', resolve));
    const answeredAtCrash = answered;
    await startShop();
    await storm;

    expect(answeredAtCrash).toBeLessThan(results.length); // the crash hit mid-storm
    expect(results.every((r) => r.status === 201)).toBe(true);
    const { rows } = await t.pool.query<{ request_key: string; id: string; n: number }>(
      `select request_key, min(id::text) as id, count(*)::int as n from shop_payments group by request_key`,
    );
    expect(rows).toHaveLength(keys.length);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    // The gateway (inside each shop process here: it died with the first one, its ledger did not) charged each payment once.
    const { rows: charges } = await t.pool.query<{ n: number }>(
      `select count(c.id)::int as n from shop_payments p left join gateway.gateway_charges c on c.reference = p.id::text and c.status = 'succeeded' group by p.id`,
    );
    expect(charges.map((c) => c.n)).toEqual(keys.map(() => 1));
    // Every client, before or after the crash, holds the id that is in the database.
    const byKey = new Map(rows.map((r) => [r.request_key, r.id]));
    for (const r of results) expect(r.body.id).toBe(byKey.get(r.key));
  });
});

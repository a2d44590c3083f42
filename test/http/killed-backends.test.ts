import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { fetchWithRetry } from '../../src/client.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, sleep } from '../support/fixtures.js';

// Failover, pg_terminate_backend, a cut link: the server's connections die
// under load. The requests they carried fail with a retryable answer, the
// process keeps serving, and the retries finish every payment exactly once.
const t = await testDatabase();
await createBusinessTables(t.pool);

const APP = `plain-server-${process.pid}`;
let child: ChildProcess | undefined;
let stderr = '';
afterAll(() => {
  child?.kill('SIGKILL');
});

async function startServer(): Promise<string> {
  child = spawn(process.execPath, ['--import', 'tsx', 'test/support/plain-server.ts', t.url, APP], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child!.stdout!.on('data', (chunk: Buffer) => {
      const port = /listening (\d+)/.exec(chunk.toString())?.[1];
      if (port) resolve(`http://127.0.0.1:${port}`);
    });
    child!.on('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
}

/** Terminates every backend of the server, again and again, until `stop` is set. */
async function killBackends(stop: { now: boolean }): Promise<number> {
  let killed = 0;
  while (!stop.now) {
    const { rows } = await t.pool.query<{ n: string }>(
      `select count(pg_terminate_backend(pid)) as n from pg_stat_activity where application_name = $1`,
      [APP],
    );
    killed += Number(rows[0]!.n);
    await sleep(5 + Math.random() * 20);
  }
  return killed;
}

describe('backends killed during a storm of payments', () => {
  it('answers retryably, keeps serving, and the retries charge each key once', async () => {
    const url = await startServer();
    const keys = Array.from({ length: 30 }, (_, i) => `killed-storm-${i}`);
    const stop = { now: false };
    const killer = killBackends(stop);
    const statuses: number[] = [];
    // Every key is sent twice at once (a double click), each with its own retries.
    const pay = (key: string) =>
      fetchWithRetry(
        `${url}/payments`,
        { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key, 'x-customer': 'c1' }, body: JSON.stringify({ ref: key, amount: 1 }) },
        { retries: 20, baseDelay: 10, maxDelay: 100, maxRetryAfter: 100, onRetry: (e) => void (e.response && statuses.push(e.response.status)) },
      );
    const paying = keys.flatMap((key) => [pay(key), pay(key)]);
    await sleep(1500);
    stop.now = true;
    const killed = await killer;
    await Promise.allSettled(paying);
    const answers = await Promise.all(paying.map(async (p) => {
      const res = await p;
      return { status: res.status, body: (await res.json()) as { id: number } };
    }));

    expect(killed).toBeGreaterThan(0);
    expect(stderr).toBe(''); // no crash, no unhandled error
    expect(child!.exitCode).toBeNull();
    expect(answers.every((a) => a.status === 201)).toBe(true);
    for (let i = 0; i < keys.length; i++) expect(answers[2 * i]!.body.id).toBe(answers[2 * i + 1]!.body.id);
    // Failed attempts were told to retry: 503 problem answers, never a stored failure.
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 503 || s === 409)).toBe(true);
    for (const key of keys) expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
    expect(await count(t.pool, 'idempotency_keys', `status = 'started'`)).toBe(0);
  });
});

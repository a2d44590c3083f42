import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import type PgBoss from 'pg-boss';
import { withIdempotency } from '../../src/index.js';
import { executeSqlOn, idempotentJobHandler, sendInTransaction } from '../../src/pg-boss.js';
import { IdempotencyOptionsInvalidError } from '../../src/shared/errors.js';
import { startMailApi, type MailApi } from '../../examples/shop/mail-api.js';
import { waitForLockWaiters } from '../support/activity.js';
import { jobState, QUEUE, startBoss, WORK } from '../support/boss.js';
import { testDatabase } from '../support/db.js';
import { count, deferred } from '../support/fixtures.js';
import { launch } from '../support/processes.js';
import { WELCOME_TABLE, welcomeHandler, type Welcome } from '../support/welcome.js';

const t = await testDatabase();
let boss: PgBoss;
let mail: MailApi;
let queues = 0;

beforeAll(async () => {
  await t.pool.query(`${WELCOME_TABLE}; create table signups (email text primary key)`);
  boss = await startBoss(t.url);
  mail = await startMailApi();
});
afterAll(async () => {
  await boss?.stop({ graceful: false, wait: true });
  await mail?.close();
});

/** A queue of this test's own, so that workers of other tests never take its jobs. */
async function newQueue(): Promise<string> {
  const name = `welcome-${++queues}`;
  await boss.createQueue(name, { name, ...QUEUE });
  return name;
}

/** Signs a user up: the business row, its idempotency key and the welcome job commit together. */
const signUp = (queue: string, email: string, key = email) =>
  withIdempotency(
    t.db,
    key,
    async (tx) => {
      await tx.execute(sql`insert into signups (email) values (${email})`);
      return { jobId: await sendInTransaction(boss, tx, queue, { to: email } satisfies Welcome) };
    },
    { scope: 'signups' },
  );

/** The audit: each job left one welcome_sent row and one completed key, and the mail API delivered one e-mail per job. */
async function expectOneEmailPerJob(queue: string, jobIds: string[]) {
  for (const id of jobIds) expect(await jobState(boss, queue, id)).toBe('completed');
  const { rows } = await t.pool.query<{ job_id: string; mail_key: string }>(`select job_id, mail_key from welcome_sent where job_id = any($1) order by job_id`, [jobIds]);
  expect(rows.map((r) => r.job_id)).toEqual([...jobIds].sort());
  const keys = await t.pool.query(`select key from idempotency_keys where scope = $1 and status = 'completed' order by key`, [`pg-boss:${queue}`]);
  expect(keys.rows.map((r: { key: string }) => r.key)).toEqual([...jobIds].sort());
  const delivered = mail.deliveries().filter((d) => rows.some((r) => r.mail_key === d.key));
  expect(delivered.map((d) => d.key).sort()).toEqual(rows.map((r) => r.mail_key).sort());
}

describe('the pg-boss outbox', () => {
  it('enqueues the job only when the transaction commits: a rolled-back job never exists, nor runs', async () => {
    const queue = await newQueue();
    // Inside an open transaction, the job is invisible to workers: nothing to fetch.
    const inside = deferred();
    const release = deferred();
    let pendingJob: string | null = null;
    const open = t.db.transaction(async (tx) => {
      pendingJob = await sendInTransaction(boss, tx, queue, { to: 'pending@example.test' });
      inside.resolve();
      await release.promise;
      tx.rollback();
    });
    await inside.promise;
    expect(pendingJob).toEqual(expect.any(String));
    expect(await boss.fetch(queue)).toEqual([]);
    release.resolve();
    await expect(open).rejects.toThrow();
    // A signup whose fn throws after enqueueing rolls the job back with its row and key.
    await expect(
      withIdempotency(t.db, 'failed-signup', async (tx) => {
        await sendInTransaction(boss, tx, queue, { to: 'failed@example.test' });
        throw new Error('the signup failed after enqueueing');
      }),
    ).rejects.toThrow('the signup failed');

    const { jobId } = await signUp(queue, 'ann@example.test');
    const again = await signUp(queue, 'ann@example.test'); // the signup retried: replayed, no second job
    expect(again.jobId).toBe(jobId);
    let runs = 0;
    await boss.work(queue, WORK, idempotentJobHandler(t.db, welcomeHandler(mail.url, async () => void runs++)));
    await expectOneEmailPerJob(queue, [jobId!]);
    expect(runs).toBe(1);
    expect(await count(t.pool, 'pgboss.job', 'name = $1', [queue])).toBe(1);
    expect(await boss.getJobById(queue, pendingJob!)).toBeNull();
    expect(await count(t.pool, 'signups', "email like '%failed%' or email like 'pending%'")).toBe(0);
  });

  it('redelivers a job whose handler crashed after sending: the handler runs again, the mail API delivers once', async () => {
    const queue = await newQueue();
    let attempts = 0;
    await boss.work(
      queue,
      WORK,
      idempotentJobHandler(
        t.db,
        welcomeHandler(mail.url, async () => {
          if (++attempts === 1) throw new Error('crashed after the mail API accepted the e-mail');
        }),
      ),
    );
    const { jobId } = await signUp(queue, 'bea@example.test');
    await expectOneEmailPerJob(queue, [jobId!]);
    expect(attempts).toBe(2);
    const job = await boss.getJobById(queue, jobId!);
    // pg-boss keeps the handler's results as the job's output: the second run's send was the repeat.
    expect(job?.output).toEqual({ value: [{ mailKey: expect.stringMatching(/^di-/), duplicate: true }] });
  });

  it('redelivers a job whose mail API answered 500, then delivers it once', async () => {
    const queue = await newQueue();
    await boss.work(queue, WORK, idempotentJobHandler(t.db, welcomeHandler(mail.url)));
    const before = mail.stats();
    mail.failNext(1);
    const { jobId } = await signUp(queue, 'cid@example.test');
    await expectOneEmailPerJob(queue, [jobId!]);
    expect(mail.stats().attempts - before.attempts).toBe(2);
    expect(mail.stats().delivered - before.delivered).toBe(1);
  });

  it('runs a job once when its first worker outlives the job’s expiry and a second worker takes it', async () => {
    const queue = await newQueue();
    const slow = await startBoss(t.url, { supervise: false });
    const other = await startBoss(t.url, { supervise: false });
    const release = deferred();
    try {
      const inside = deferred();
      let runs = 0;
      const handler = welcomeHandler(mail.url, async () => {
        runs++;
        inside.resolve();
        await release.promise; // past the job's expiry: pg-boss puts it back, and the second worker fetches it
      });
      // Two worker pools, as two processes: the second waits in the database on the first's key.
      await slow.work(queue, WORK, idempotentJobHandler(drizzle({ client: t.newPool(2) }), handler));
      const { jobId } = await signUp(queue, 'dan@example.test');
      await inside.promise;
      await other.work(queue, WORK, idempotentJobHandler(drizzle({ client: t.newPool(2) }), handler));
      // pg-boss reports its own failures (maintenance, fetches) only as 'error' events: name them if the wait fails.
      const bossErrors: unknown[] = [];
      for (const b of [boss, slow, other]) b.on('error', (error) => bossErrors.push(error));
      await waitForLockWaiters(t.pool, 1, 20_000).catch((error: Error) => {
        throw new Error(`${error.message}; pg-boss errors meanwhile: ${bossErrors.map(String).join(' | ') || 'none'}`);
      });
      release.resolve();
      await expectOneEmailPerJob(queue, [jobId!]);
      expect(runs).toBe(1);
    } finally {
      // Also when an expectation failed: a handler left waiting keeps stop({ wait: true }) waiting for a minute.
      release.resolve();
      await Promise.all([slow.stop({ graceful: false, wait: true }), other.stop({ graceful: false, wait: true })]);
    }
  });

  it('redelivers a batch whose worker was killed mid-batch: each job leaves one effect and one e-mail', async () => {
    const queue = await newQueue();
    const jobIds = [];
    for (const who of ['eve', 'fay', 'gus']) jobIds.push((await signUp(queue, `${who}@example.test`)).jobId!);
    const child = launch(process.execPath, ['--import', 'tsx', 'test/support/boss-child.ts', t.url, queue, mail.url], { env: process.env });
    await child.waitFor(/sent /);
    child.child.kill('SIGKILL');
    await child.exited;
    const before = mail.stats();
    await boss.work(queue, { ...WORK, batchSize: 3 }, idempotentJobHandler(t.db, welcomeHandler(mail.url)));
    await expectOneEmailPerJob(queue, jobIds);
    // Redelivered: the first job replayed (no send), the second sent again and deduplicated, the third sent.
    expect(mail.stats().duplicates - before.duplicates).toBe(1);
    expect(mail.stats().delivered - before.delivered).toBe(1);
  });

  it('runs every job of a batch, whatever its batch-mates do: a job that keeps failing never keeps the others from their effects', async () => {
    const queue = `poison-${++queues}`;
    await boss.createQueue(queue, { name: queue, retryLimit: 2, retryDelay: 0 });
    // In whatever order pg-boss hands them over, the poison job may come first.
    const jobIds = [];
    for (const who of ['poison', 'hal', 'ida']) jobIds.push((await signUp(queue, `${who}@example.test`)).jobId!);
    const [poisonId, ...goodIds] = jobIds;
    await boss.work(
      queue,
      { ...WORK, batchSize: 3 },
      idempotentJobHandler(
        t.db,
        welcomeHandler(mail.url, async (job) => {
          if (job.data.to.startsWith('poison')) throw new Error('this job always fails');
        }),
      ),
    );
    expect(await jobState(boss, queue, poisonId!, 'failed')).toBe('failed');
    // pg-boss fails the whole batch each time: the good jobs end failed too, but each ran once and sent once.
    for (const id of goodIds) expect(await count(t.pool, 'welcome_sent', 'job_id = $1', [id])).toBe(1);
    const keys = await t.pool.query(`select key from idempotency_keys where scope = $1 and status = 'completed' order by key`, [`pg-boss:${queue}`]);
    expect(keys.rows.map((r: { key: string }) => r.key)).toEqual([...goodIds].sort());
    const sent = mail.deliveries().filter((d) => d.to === 'hal@example.test' || d.to === 'ida@example.test');
    expect(sent).toHaveLength(2);
  });

  it('refuses what is not a Drizzle database, changing nothing', async () => {
    expect(() => executeSqlOn({} as never)).toThrow(IdempotencyOptionsInvalidError);
    const queue = await newQueue();
    await expect(executeSqlOn(t.db).executeSql('select $2::int as n', [1])).rejects.toMatchObject({ code: 'IDEMPOTENCY_OPTIONS_INVALID' });
    expect(await count(t.pool, 'pgboss.job', 'name = $1', [queue])).toBe(0);
  });

  it("runs pg-boss's own statements through the adapter: quoted text and repeated placeholders keep their meaning", async () => {
    const { rows } = await executeSqlOn(t.db).executeSql(`select $1::int + $1::int as twice, '$2 stays' as quoted, $$ $1 $$ as dollar, $2::jsonb as data`, [21, { a: [1, 2] }]);
    expect(rows).toEqual([{ twice: 42, quoted: '$2 stays', dollar: ' $1 ', data: { a: [1, 2] } }]);
  });
});

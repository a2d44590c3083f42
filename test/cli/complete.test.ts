// `drizzle-idempotency complete` end to end: workflows abandoned by a process
// that was killed mid-run (SIGKILL, its lease then runs out), finished by the
// CLI in a child process of its own, against a real database.
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, it, type TestContext } from 'vitest';
import { bundled } from '../support/bundle.js';
import { ROOT, startCli } from '../support/cli.js';
import { testDatabase, testDatabaseForTest, type TestDatabase } from '../support/db.js';
import { count, createBusinessTables } from '../support/fixtures.js';
import { launch, settled, type Launched } from '../support/processes.js';

const MODULE = 'test/support/completable-workflows.ts';
const SLOW_MODULE = 'test/support/slow-workflows.ts';

// The tests run concurrently. Those that complete keys have a database of their
// own (`complete` takes every abandoned key of its database, and the audits
// count all rows); the commands that must stop before completing anything share one.
const file = await testDatabase({ max: 3 });
beforeAll(() => createBusinessTables(file.pool));

/** A database of the test's own, with the business tables. */
async function database(test: TestContext): Promise<TestDatabase> {
  const t = await testDatabaseForTest(test, { max: 3 });
  await createBusinessTables(t.pool);
  return t;
}

/** Starts `drizzle-idempotency …args` on the database `t`. */
const start = (t: TestDatabase, args: string[]) => startCli(args, { DATABASE_URL: t.url });
const cli = (t: TestDatabase, args: string[]) => start(t, args).done;

/** The key row as the completer leaves it. */
async function keyRow(t: TestDatabase, key: string) {
  const { rows } = await t.pool.query<{ status: string; workflow: string; attempts: number; owner_token: string | null; response: unknown }>(
    'select status, workflow, attempts, owner_token, response from idempotency_keys where key = $1',
    [key],
  );
  return rows[0];
}

/**
 * Runs a workflow on `key` in a child process, kills it (SIGKILL) right after
 * `step` committed, and waits until its lease has run out: abandoned work.
 * Several keys (the slow workflow only) run at once in one child, killed once each got there.
 */
async function abandon(t: TestDatabase, expect: TestContext['expect'], key: string | string[], which: 'pay' | 'once' | 'declined' | 'unknown' | 'slow', step = 'record-intent'): Promise<void> {
  const keys = [key].flat();
  const child: Launched = launch(process.execPath, [await bundled('test/support/workflow-crash-child.ts'), t.url, keys.join(','), which], {
    cwd: ROOT,
    env: { ...process.env, CRASH_AFTER: step },
  });
  // For the slow workflow, every key's run announced (one lookahead a key).
  const reached = which === 'unknown' ? /claimed/ : which === 'slow' ? new RegExp(keys.map((k) => `(?=[\\s\\S]*cli\\.slow: run of ${k},)`).join('')) : new RegExp(`${step} committed`);
  await child.waitFor(reached);
  child.child.kill('SIGKILL');
  await child.exited;
  // Abandoned once its lease ran out; a completer already running may have taken it over by then.
  const abandoned = async () =>
    (
      await t.pool.query<{ out: boolean }>("select count(*) filter (where status <> 'started' or locked_until <= now()) = $2 as out from idempotency_keys where key = any($1)", [
        keys,
        keys.length,
      ])
    ).rows[0]?.out;
  expect(await settled(abandoned, (out) => out === true)).toBe(true);
}

describe.concurrent('drizzle-idempotency complete', () => {
  // The slowest tests come first: at most five run at once (vitest's maxConcurrency), started in file order.
  /**
   * Starts `complete` on the slow workflow with six abandoned keys: its pass
   * runs four at once (the default concurrency), each held at a gate until
   * the test opens it. Returns the command and the runs it started so far.
   */
  async function slowCompleteOnSixKeys(t: TestDatabase, { expect, onTestFinished }: TestContext, flags: readonly string[]) {
    const keys = ['slow-1', 'slow-2', 'slow-3', 'slow-4', 'slow-5', 'slow-6'];
    await abandon(t, expect, keys, 'slow');
    const gate = join(tmpdir(), `complete-gate-${process.pid}-${Math.random().toString(36).slice(2)}`);
    onTestFinished(() => rm(gate, { force: true }));
    const started = startCli(['complete', '--workflows', SLOW_MODULE, ...flags], { DATABASE_URL: t.url, SLOW_GATE: gate });
    // Never left running into the next test, whatever fails here.
    onTestFinished(() => void started.child.kill('SIGKILL'));
    const runs = () => started.stderr().match(/cli\.slow: run of [^,]+/g) ?? [];
    expect(await settled(async () => runs(), (r) => r.length === 4)).toHaveLength(4);
    return { keys, gate, started, runs, openGate: () => writeFile(gate, '') };
  }

  it.for([
    ['one pass', []],
    ['--watch', ['--watch', '--interval', '100ms']],
  ] as const)('%s: SIGTERM starts no new key, lets the running ones finish, leaves the rest abandoned for the next pass, and exits 0', async ([_mode, flags], context) => {
    const { expect } = context;
    const t = await database(context);
    const { keys, gate, started, runs, openGate } = await slowCompleteOnSixKeys(t, context, flags);

    started.child.kill('SIGTERM');
    await settled(async () => started.stderr(), (err) => err.includes('SIGTERM received'));
    await openGate();
    const run = await started.done;

    expect(run.code).toBe(0);
    expect(run.stdout).toBe('complete: 4 completed, 0 failed, 0 retried, 0 skipped\n');
    expect(run.stderr).toMatch(/stopped by SIGTERM\n$/);
    // No run started after the signal, and none twice.
    const ran = runs().map((line) => line.replace('cli.slow: run of ', ''));
    expect(ran).toHaveLength(4);
    expect(new Set(ran).size).toBe(4);
    for (const key of keys) {
      // Finished by a takeover, or untouched: still started on the crashed run's attempt, its lease run out.
      if (ran.includes(key)) expect(await keyRow(t, key)).toMatchObject({ status: 'completed', attempts: 2, owner_token: null });
      else expect(await keyRow(t, key)).toMatchObject({ status: 'started', attempts: 1 });
      expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
    }

    // The next pass takes the two left behind (its gate is open).
    const next = await startCli(['complete', '--workflows', SLOW_MODULE], { DATABASE_URL: t.url, SLOW_GATE: gate }).done;
    expect(next).toMatchObject({ code: 0, stdout: 'complete: 2 completed, 0 failed, 0 retried, 0 skipped\n' });
    for (const key of keys) {
      expect(await keyRow(t, key)).toMatchObject({ status: 'completed', attempts: 2, owner_token: null });
      expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
    }
  });

  it('a second SIGTERM exits at once with code 143, the keys it ran left to their lease', async (context) => {
    const { expect } = context;
    const t = await database(context);
    const { keys, started, runs } = await slowCompleteOnSixKeys(t, context, []);

    started.child.kill('SIGTERM');
    await settled(async () => started.stderr(), (err) => err.includes('SIGTERM received'));
    started.child.kill('SIGTERM');
    const run = await started.done;

    expect(run.code).toBe(143);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('SIGTERM again, exiting without waiting');
    expect(runs()).toHaveLength(4);
    for (const key of keys) {
      expect(await keyRow(t, key)).toMatchObject({ status: 'started' });
      expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
    }
  });

  it('finishes a key whose process was killed after its first step, from that step on, and leaves keys of other workflows alone', async (context) => {
    const { expect } = context;
    const t = await database(context);
    await Promise.all([abandon(t, expect, 'order-1', 'pay', 'record-intent'), abandon(t, expect, 'order-2', 'pay', 'mark-paid'), abandon(t, expect, 'stranger', 'unknown')]);
    expect(await keyRow(t, 'order-1')).toMatchObject({ status: 'started', attempts: 1 });

    const run = await cli(t, ['complete', '--workflows', MODULE]);

    expect(run).toMatchObject({ code: 0, stdout: 'complete: 2 completed, 0 failed, 0 retried, 0 skipped\n' });
    expect(run.stderr).toContain('cli.pay');
    for (const key of ['order-1', 'order-2']) {
      // Resumed by a takeover: a second attempt, and no lease or token left behind.
      expect(await keyRow(t, key)).toMatchObject({ status: 'completed', workflow: 'cli.pay', attempts: 2, owner_token: null, response: { value: { status: 201, body: { attempt: 2 } } } });
      // Each step committed once: the one before the crash was not repeated.
      expect(await count(t.pool, 'charges', 'ref = $1', [key])).toBe(1);
      expect(await count(t.pool, 'charges', 'ref = $1', [`${key}:paid`])).toBe(1);
    }
    expect(await keyRow(t, 'stranger')).toMatchObject({ status: 'started', workflow: 'cli.not-exported', attempts: 1 });
  });

  it('resumes a key abandoned by a crash even when it used its attempts (the crash may hide a charge), and completes it', async (context) => {
    const { expect } = context;
    const t = await database(context);
    await abandon(t, expect, 'last-try', 'once');

    const run = await cli(t, ['complete', '--workflows', MODULE]);

    expect(run).toMatchObject({ code: 0, stdout: 'complete: 1 completed, 0 failed, 0 retried, 0 skipped\n' });
    expect(await keyRow(t, 'last-try')).toMatchObject({ status: 'completed', workflow: 'cli.pay-once', attempts: 2, owner_token: null });
    expect(await count(t.pool, 'charges', 'ref = $1', ['last-try'])).toBe(1);
    expect(await count(t.pool, 'charges', 'ref = $1', ['last-try:paid'])).toBe(1);
  });

  it('records a resumed key that fails definitely with no attempts left as failed, runs none of its committed steps again, and counts it', async (context) => {
    const { expect } = context;
    const t = await database(context);
    await abandon(t, expect, 'declined', 'declined');

    const run = await cli(t, ['complete', '--workflows', MODULE]);

    expect(run).toMatchObject({ code: 0, stdout: 'complete: 0 completed, 1 failed, 0 retried, 0 skipped\n' });
    expect(await keyRow(t, 'declined')).toMatchObject({ status: 'failed', workflow: 'cli.pay-declined', attempts: 2, owner_token: null });
    expect(await count(t.pool, 'charges', 'ref = $1', ['declined'])).toBe(1);
  });

  it('finds nothing to do when no lease ran out, says so, and exits 0', async (context) => {
    const { expect } = context;
    const t = await database(context);
    const run = await cli(t, ['complete', '--workflows', MODULE]);

    expect(run).toMatchObject({ code: 0, stdout: 'complete: 0 completed, 0 failed, 0 retried, 0 skipped\n' });
    expect(await count(t.pool, 'idempotency_keys')).toBe(0);
  });

  it('--watch keeps completing abandoned keys until SIGTERM, then stops cleanly with exit code 0', async (context) => {
    const { expect } = context;
    const t = await database(context);
    const { child, done, stdout } = start(t, ['complete', '--workflows', MODULE, '--watch', '--interval', '100ms']);
    // Never left running into the next test, whatever fails here.
    context.onTestFinished(() => void child.kill('SIGKILL'));
    await abandon(t, expect, 'late-order', 'pay');
    await settled(async () => stdout(), (out) => out.includes('1 completed'));

    child.kill('SIGTERM');
    const run = await done;

    expect(run.code).toBe(0);
    expect(run.stdout).toBe('complete: 1 completed, 0 failed, 0 retried, 0 skipped\n');
    expect(run.stderr).toContain('complete: every 100 ms');
    expect(run.stderr).toMatch(/stopped by SIGTERM\n$/);
    expect(await keyRow(t, 'late-order')).toMatchObject({ status: 'completed', attempts: 2, owner_token: null });
    expect(await count(t.pool, 'charges', 'ref = $1', ['late-order'])).toBe(1);
  });

  it('--help explains the command and its flags, and needs no database', async (context) => {
    const { expect } = context;
    const t = file;
    const run = await cli(t, ['complete', '--help']);

    expect(run.code).toBe(0);
    for (const text of ['Usage: drizzle-idempotency complete', '--workflows', '--watch', '--interval', '--limit', 'SIGTERM']) expect(run.stdout).toContain(text);
  });

  it('reports a module that fails while loading with exit code 1 and its own message, before touching the database', async (context) => {
    const { expect } = context;
    const t = file;
    // Nothing listens on port 1: had it connected first, the answer would be exit code 3.
    const run = await cli(t, ['complete', '--workflows', 'test/support/failing-workflows.ts', '--database-url', 'postgres://postgres@127.0.0.1:1/none']);

    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^drizzle-idempotency: complete: loading .*failing-workflows\.ts failed: GATEWAY_URL is not set\n$/);
  });

  it('refuses a module with two workflows of one name with exit code 2, before touching the database', async (context) => {
    const { expect } = context;
    const t = file;
    // Nothing listens on port 1: had it connected first, the answer would be exit code 3.
    const run = await cli(t, ['complete', '--workflows', 'test/support/same-name-workflows.ts', '--database-url', 'postgres://postgres@127.0.0.1:1/none']);

    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^drizzle-idempotency: complete: .*same-name-workflows\.ts exports two workflows named "shop\.pay"/);
  });

  it('--watch with a module of two workflows of one name exits with code 2 instead of running on without a completer', async (context) => {
    const { expect } = context;
    const t = file;
    // Before the fix it printed nothing and kept running (its signal handlers and keep-alive timer were left in place).
    const started = start(t, ['complete', '--workflows', 'test/support/same-name-workflows.ts', '--watch', '--interval', '1s']);
    context.onTestFinished(() => void started.child.kill('SIGKILL'));
    const run = await started.done;

    expect(run.code).toBe(2);
    expect(run.stderr).toContain('two workflows named "shop.pay"');
  });

  it('refuses a bad command line with exit code 2 and one line saying what is wrong, and touches no key', async (context) => {
    const { expect } = context;
    const t = file;
    await abandon(t, expect, 'untouched', 'pay');
    const cases: [string[], string][] = [
      [['complete'], 'complete: --workflows <module> is required'],
      [['complete', '--workflows', MODULE, '--interval', '5s'], 'complete: --interval needs --watch'],
      [['complete', '--workflows', MODULE, '--watch', '--interval', '5'], '--interval must be a duration'],
      // Past 2^31 - 1 ms Node's timers fire after 1 ms: a pass every millisecond, hammering the database.
      [['complete', '--workflows', MODULE, '--watch', '--interval', '25d'], '--interval must be at most 24 days'],
      [['complete', '--workflows', MODULE, '--limit', '0'], '--limit must be a whole number from 1 to'],
      [['complete', '--workflows', 'test/support/no-such-module.ts'], 'complete: --workflows: no module file at'],
      [['complete', '--workflows', 'test/support/fixtures.ts'], 'exports no workflow: export those made by defineWorkflow()'],
    ];
    const runs = await Promise.all(cases.map(([args]) => cli(t, args)));

    runs.forEach((run, i) => {
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(run.stderr).toMatch(/^drizzle-idempotency: /);
      expect(run.stderr).toContain(cases[i]![1]);
    });
    expect(await keyRow(t, 'untouched')).toMatchObject({ status: 'started', attempts: 1 });
    expect(await count(t.pool, 'charges', 'ref = $1', ['untouched:paid'])).toBe(0);
  });
});

// The CLI end to end: a child process per command, against a real database.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../../tools/embedded-db.js';
import { ROOT, startCli, type CliRun } from '../support/cli.js';
import { testDatabase } from '../support/db.js';
import { keyCounts, seedKeys } from '../support/seed.js';

const t = await testDatabase();
// Without the table, and two more to migrate from scratch.
const empty = await testDatabase({ migrated: false, max: 2 });
const fresh = [await testDatabase({ migrated: false, max: 2 }), await testDatabase({ migrated: false, max: 2 })] as const;

const cli = (args: string[], env?: Record<string, string>) => startCli(args, env).done;

/** Waits until the child's stdout or stderr contains `text`. */
function shows(child: ChildProcess, stream: 'stdout' | 'stderr', text: string): Promise<void> {
  const output = child[stream]!;
  return new Promise((resolve) => {
    let seen = '';
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes(text)) {
        output.off('data', onData);
        resolve();
      }
    };
    output.on('data', onData);
  });
}

/** An error as the CLI must print it: one line, prefixed, without a stack trace. */
function expectOneLineError(run: CliRun) {
  expect(run.stdout).toBe('');
  expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(run.stderr).toMatch(/^drizzle-idempotency: /);
  expect(run.stderr).not.toMatch(/\n\s+at /);
}

beforeEach(async () => {
  await t.pool.query('truncate idempotency_keys');
});

// These only read: they run side by side, as each child process mostly waits on its own start-up.
describe.concurrent('commands that fail or only print', () => {
  describe('drizzle-idempotency --version', () => {
    it.each([['--version'], ['-v']])('%s prints the package version on stdout and exits 0', async (flag) => {
      const { version } = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string };
      expect(await cli([flag])).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
    });
  });

  describe('the README', () => {
    // Issue 18, item 5: --version worked but the README's option table did not list it.
    it('lists every option the help of each command shows', async () => {
      const readme = readFileSync(`${ROOT}README.md`, 'utf8');
      const cli = readme.slice(readme.indexOf('### The CLI'), readme.indexOf('### How the sweep stays out of the way'));
      const runs = await Promise.all(['--help', 'migrate --help', 'sweep --help', 'stats --help', 'complete --help'].map((args) => startCli(args.split(' ')).done));
      const flags = new Set(runs.flatMap((run) => [...run.stdout.matchAll(/(?<=^|[\s,])(--?[a-z][\w-]*)/gm)].map((m) => m[1]!)));
      expect([...flags].filter((flag) => !cli.includes(`\`${flag}`))).toEqual([]);
    });
  });

  describe('drizzle-idempotency --help', () => {
    it('lists the commands, the shared options and the exit codes, and exits 0', async () => {
      const run = await cli(['--help']);

      expect(run.code).toBe(0);
      for (const text of ['migrate', 'sweep', 'stats', '--database-url', '--schema', 'Exit codes']) expect(run.stdout).toContain(text);
      expect(await keyCounts(t.pool)).toEqual({ total: 0, expired: 0, live: 0 });
    });

    it('sums up what stats and inspect show of leased work, in the command list and in their own help', async () => {
      const [main, stats, inspect] = await Promise.all([cli(['--help']), cli(['stats', '--help']), cli(['inspect', '--help'])]);
      const summary = (command: string) => main.stdout.split('\n').find((line) => line.startsWith(`  ${command} `)) ?? '';

      for (const text of ['held', 'waiting for the completer', 'failed']) {
        expect(summary('stats')).toContain(text);
        expect(stats.stdout).toContain(text);
      }
      for (const text of ['workflow', 'recovery point', 'steps', 'attempts']) {
        expect(summary('inspect')).toContain(text);
        expect(inspect.stdout).toContain(text);
      }
    });

    it.each([
      ['sweep', ['--batch', '--every', '--time-budget', 'SIGTERM']],
      ['stats', ['--json']],
      ['migrate', ['--schema']],
    ])('%s --help explains the command and needs no database', async (command, flags) => {
      const run = await cli([command, '--help']);

      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`Usage: drizzle-idempotency ${command}`);
      for (const flag of flags) expect(run.stdout).toContain(flag);
      expect(run.stderr).toBe('');
    });
  });

  describe('a bad command line', () => {
    it.each([
      ['no command', [], 'no command given'],
      ['an unknown command', ['vacuum'], 'unknown command "vacuum"'],
      ['an unknown option', ['sweep', '--batch-size', '10'], 'unknown option --batch-size'],
      ['a batch that is not a number', ['sweep', '--batch', 'lots'], '--batch must be a whole number'],
      ['a duration without unit', ['sweep', '--every', '300'], '--every must be a duration'],
      // Past 2^31 - 1 ms Node fires a timer after 1 ms: a sweep every millisecond.
      ['an --every past a timer\'s limit', ['sweep', '--every', '25d'], '--every must be at most 24 days'],
      ['a URL that is not postgres://', ['stats', '--database-url', 'mysql://db/x'], '--database-url must be a postgres://'],
    ])('%s: exit code 2 and a one-line hint', async (_name, args, message) => {
      const run = await cli(args, { DATABASE_URL: t.url });

      expect(run.code).toBe(2);
      expectOneLineError(run);
      expect(run.stderr).toContain(message);
      expect(await keyCounts(t.pool)).toEqual({ total: 0, expired: 0, live: 0 });
    });

    it('no database at all: exit code 2, asking for --database-url or DATABASE_URL', async () => {
      const run = await cli(['stats']);

      expect(run.code).toBe(2);
      expectOneLineError(run);
      expect(run.stderr).toContain('pass --database-url or set DATABASE_URL');
    });
  });

  describe('an unreachable database', () => {
    it('exit code 3, one line naming where it tried (without the password) and what to check', async () => {
      const port = await freePort(); // closed again: nothing listens there
      const run = await cli(['sweep', '--database-url', `postgres://ops:s3cret@127.0.0.1:${port}/app`]);

      expect(run.code).toBe(3);
      expectOneLineError(run);
      expect(run.stderr).toContain(`cannot reach the database at postgres://ops@127.0.0.1:${port}/app`);
      expect(run.stderr).toContain('ECONNREFUSED');
      expect(run.stderr).toContain('Check --database-url (or DATABASE_URL)');
      expect(run.stderr).not.toContain('s3cret');
    });
  });

  describe('a query that fails', () => {
    it("exit code 1 and the database's own message in one line, not the SQL", async () => {
      // A table of that name in another schema, but not ours: the query itself fails.
      await empty.pool.query('create schema if not exists broken; create table if not exists broken.idempotency_keys (id int)');

      const run = await cli(['stats', '--schema', 'broken'], { DATABASE_URL: empty.url });

      expect(run.code).toBe(1);
      expectOneLineError(run);
      expect(run.stderr).toBe('drizzle-idempotency: column "expires_at" does not exist\n');
      expect(await empty.pool.query('select * from broken.idempotency_keys')).toMatchObject({ rowCount: 0 });
    });
  });

  describe('a database without the table', () => {
    it.each([['stats'], ['sweep']])('%s: exit code 4, telling to run migrate', async (command) => {
      const run = await cli([command], { DATABASE_URL: empty.url });

      expect(run.code).toBe(4);
      expectOneLineError(run);
      expect(run.stderr).toContain('table idempotency_keys not found: run `drizzle-idempotency migrate`');
      const { rows } = await empty.pool.query("select to_regclass('idempotency_keys') as t");
      expect(rows[0]!.t).toBeNull();
    });
  });
});

describe('migrate', () => {
  it('creates the table, then finds it up to date', async () => {
    const db = fresh[0];

    const first = await cli(['migrate', '--database-url', db.url]);
    const second = await cli(['migrate'], { DATABASE_URL: db.url });

    expect(first).toMatchObject({ code: 0, stdout: 'migrate: idempotency_keys: applied 0000_init, 0001_leased_workflows\n', stderr: '' });
    expect(second).toMatchObject({ code: 0, stdout: 'migrate: idempotency_keys is up to date\n' });
    expect(await keyCounts(db.pool)).toEqual({ total: 0, expired: 0, live: 0 });
  });

  it('--schema creates the schema and its table; sweep then finds it there', async () => {
    const db = fresh[1];

    const migrated = await cli(['migrate', '--schema', 'billing'], { DATABASE_URL: db.url });
    await seedKeys(db.pool, { expired: 7, live: 2, schema: 'billing' });
    const swept = await cli(['sweep', '--schema', 'billing'], { DATABASE_URL: db.url });

    expect(migrated).toMatchObject({ code: 0, stdout: 'migrate: billing.idempotency_keys: applied 0000_init, 0001_leased_workflows\n' });
    expect(swept.code).toBe(0);
    expect(swept.stdout).toContain('done, 7 expired keys deleted');
    expect(await keyCounts(db.pool, 'billing')).toEqual({ total: 2, expired: 0, live: 2 });
  });
});

describe('sweep', () => {
  // Issue 18, item 5: the summary went to stderr only, so `sweep > file` captured nothing.
  it('once: deletes every expired key, keeps the live ones, prints its result on stdout (progress on stderr) and exits 0', async () => {
    await seedKeys(t.pool, { expired: 100_000, live: 10_000 });

    const run = await cli(['sweep', '--batch', '5000'], { DATABASE_URL: t.url });

    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^sweep: done, 100,000 expired keys deleted in 21 batches, .* rows\/s\n$/);
    expect(run.stderr).not.toContain('done,');
    expect(await keyCounts(t.pool)).toEqual({ total: 10_000, expired: 0, live: 10_000 });
  });

  it('on SIGTERM stops between batches, says how far it got, and exits 0', async () => {
    await seedKeys(t.pool, { expired: 100_000 });
    // Batches of 10 rows: far more batches than fit into the second before the first progress line.
    const { child, done } = startCli(['sweep', '--batch', '10'], { DATABASE_URL: t.url });
    await shows(child, 'stderr', 'rows deleted in');

    child.kill('SIGTERM');
    const run = await done;

    expect(run.code).toBe(0);
    expect(run.stderr).toContain('SIGTERM received, stopping after the current batch');
    const reported = /^sweep: stopped by SIGTERM between batches, ([\d,]+) expired keys deleted.*\n$/.exec(run.stdout);
    expect(reported).not.toBeNull();
    const deleted = Number(reported![1]!.replaceAll(',', ''));
    expect(deleted % 10).toBe(0);
    // Audit: it stopped early, and the count it printed is what left the table.
    expect(await keyCounts(t.pool)).toEqual({ total: 100_000 - deleted, expired: 100_000 - deleted, live: 0 });
  });

  it('--every keeps sweeping until SIGTERM, then exits 0', async () => {
    await seedKeys(t.pool, { expired: 50, live: 5 });
    const { child, done } = startCli(['sweep', '--every', '100ms'], { DATABASE_URL: t.url });
    await shows(child, 'stdout', 'done, 50 expired keys deleted');
    await seedKeys(t.pool, { expired: 20, scope: 'later' });
    await shows(child, 'stdout', 'done, 20 expired keys deleted');

    child.kill('SIGTERM');
    const run = await done;

    expect(run.code).toBe(0);
    expect(run.stderr).toContain('sweep: every 100 ms');
    expect(run.stderr).toMatch(/stopped by SIGTERM\n$/);
    // One result line per sweep on stdout, nothing else.
    expect(run.stdout).toMatch(/^(sweep: done, [\d,]+ expired keys? deleted.*\n)+$/);
    expect(await keyCounts(t.pool)).toEqual({ total: 5, expired: 0, live: 5 });
  });
});

describe('stats', () => {
  it('prints a readable table of counts, oldest live key and sizes', async () => {
    await seedKeys(t.pool, { expired: 1_500, live: 250 });

    const run = await cli(['stats'], { DATABASE_URL: t.url });

    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ {2}live keys +250$/m);
    expect(run.stdout).toMatch(/^ {2}expired keys +1,500 /m);
    expect(run.stdout).toMatch(/^ {2}in progress +0$/m);
    expect(run.stdout).toMatch(/^ {2}oldest live key +created .* ago\), expires /m);
    expect(run.stdout).toMatch(/^ {2}table size +[\d.]+ (KiB|MiB)$/m);
    expect(run.stdout).toMatch(/^ {2}index size +[\d.]+ (KiB|MiB)$/m);
    expect(await keyCounts(t.pool)).toEqual({ total: 1_750, expired: 1_500, live: 250 });
  });

  it('--json prints one object for machines', async () => {
    await seedKeys(t.pool, { expired: 3, live: 4 });

    const run = await cli(['stats', '--json'], { DATABASE_URL: t.url });

    expect(run.code).toBe(0);
    const stats = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(stats).toMatchObject({ live: 4, expired: 3, inProgress: 0, oldestLive: { scope: '', key: 'live-1' } });
    expect(stats.tableBytes).toEqual(expect.any(Number));
    expect(stats.indexBytes).toEqual(expect.any(Number));
    expect(await keyCounts(t.pool)).toEqual({ total: 7, expired: 3, live: 4 });
  });
});

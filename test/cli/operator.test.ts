// `drizzle-idempotency inspect` and `evict` end to end: a child process per command, against a real database.
import { readFileSync } from 'node:fs';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { withIdempotency } from '../../src/index.js';
import { terminateLockWaiter, waitForLockWaiters } from '../support/activity.js';
import { ROOT, startCli, type CliRun } from '../support/cli.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, insertCharge, keyRows } from '../support/fixtures.js';
import { holdKey, insertKeyRow } from '../support/held-key.js';

const t = await testDatabase();

/** Runs `drizzle-idempotency …args` from the sources, on this file's database. */
const cli = (args: string[]) => startCli(args, { DATABASE_URL: t.url }).done;

/** An error as the CLI must print it: one line, prefixed, without a stack trace. */
function expectOneLineError(run: CliRun, code: number, text: RegExp) {
  expect(run.code).toBe(code);
  expect(run.stdout).toBe('');
  expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(run.stderr).toMatch(/^drizzle-idempotency: /);
  expect(run.stderr).toMatch(text);
}

const SECRET = 'card ending 4242';
const charge = (key: string, scope = 'tenant-1') =>
  withIdempotency(t.db, key, async (tx) => ({ ...(await insertCharge(tx, key, 1999)), note: SECRET }), { scope, fingerprint: { amount: 1999 } });

beforeAll(async () => {
  await createBusinessTables(t.pool);
});

beforeEach(async () => {
  await t.pool.query('truncate idempotency_keys, charges');
});

describe('drizzle-idempotency inspect', () => {
  it('prints a completed key: status, times, fingerprint, response size and what the next call meets, but not the response', async () => {
    await charge('order-1');
    const before = await keyRows(t.pool);

    const run = await cli(['inspect', 'order-1', '--scope', 'tenant-1']);

    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^idempotency_keys: key "order-1" in scope "tenant-1" at \S+ \(database clock\)\n/);
    expect(run.stdout).toMatch(/^ {2}status +completed$/m);
    expect(run.stdout).toMatch(/^ {2}in flight +no$/m);
    expect(run.stdout).toMatch(/^ {2}expires +\S+ \(in 23 h \d+ min\)$/m);
    expect(run.stdout).toMatch(/^ {2}fingerprint +\S+$/m);
    expect(run.stdout).toMatch(/^ {2}response +\d+ bytes \(--show-response prints it\)$/m);
    expect(run.stdout).toMatch(/^ {2}next call +replays the stored response/m);
    expect(run.stdout).not.toContain(SECRET);
    expect(await keyRows(t.pool)).toEqual(before);
  });

  it('prints the response with --show-response, and one JSON object with --json', async () => {
    const first = await charge('order-1');

    const shown = await cli(['inspect', 'order-1', '--scope', 'tenant-1', '--show-response']);
    const json = await cli(['inspect', 'order-1', '--scope', 'tenant-1', '--json', '--show-response']);

    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout.slice(shown.stdout.indexOf('response:\n') + 'response:\n'.length))).toEqual(first);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ scope: 'tenant-1', key: 'order-1', status: 'completed', inFlight: false, response: first });
  });

  it('prints a key a live transaction has claimed as claimed and in flight, without waiting; the call then completes once', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });

    const run = await cli(['inspect', 'order-1', '--scope', 'tenant-1', '--json']);

    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ status: 'claimed', locked: true, inFlight: true });
    await held.release();
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'order-1', status: 'completed' }]);
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  it('prints an expired key as expired: the next call runs again', async () => {
    await insertKeyRow(t.pool, { key: 'old', status: 'completed', expired: true, response: { ok: true } });

    const run = await cli(['inspect', 'old']);

    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ {2}expires +\S+ \(\d+ min ago\), expired$/m);
    expect(run.stdout).toMatch(/^ {2}next call +runs again/m);
  });

  it('prints a started row as in flight, with what the next call meets and what removes it', async () => {
    await insertKeyRow(t.pool, { key: 'stuck', scope: 'tenant-1', status: 'started' });

    const run = await cli(['inspect', 'stuck', '--scope', 'tenant-1']);

    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ {2}status +started$/m);
    expect(run.stdout).toMatch(/^ {2}in flight +yes$/m);
    expect(run.stdout).toMatch(/^ {2}created +\S+ \(1 h \d+ min ago\)$/m);
    expect(run.stdout).toMatch(/^ {2}next call +gets 409 IDEMPOTENCY_IN_FLIGHT: .*`evict --force` removes the row$/m);
  });

  it('prints a fingerprint with control characters escaped, on its one line: stored text never drives the terminal', async () => {
    await insertKeyRow(t.pool, { key: 'odd', status: 'completed', response: 1, fingerprint: 'v1\n\u001b[2Jcleared' });

    const run = await cli(['inspect', 'odd']);

    expect(run.code).toBe(0);
    expect(run.stdout).not.toContain('\u001b');
    expect(run.stdout).toMatch(/^ {2}fingerprint +"v1\\n\\u001b\[2Jcleared"$/m);
  });

  it('prints a response with C1 control characters escaped: customer data never drives the terminal', async () => {
    await insertKeyRow(t.pool, { key: 'odd', status: 'completed', response: { note: 'a\u009b31mred\u007f' } });

    const run = await cli(['inspect', 'odd', '--show-response']);

    expect(run.code).toBe(0);
    expect(run.stdout).not.toMatch(/[\u007f-\u009f]/);
    expect(run.stdout).toContain('"note": "a\\u009b31mred\\u007f"');
  });

  it('exits 5 with one line for a key that does not exist (in that scope)', async () => {
    await charge('order-1', 'tenant-1');

    expectOneLineError(await cli(['inspect', 'order-1', '--scope', 'tenant-2']), 5, /no key "order-1" in scope "tenant-2"/);
    expect(await keyRows(t.pool)).toHaveLength(1);
  });
});

describe('drizzle-idempotency evict', () => {
  it('removes a completed key, says what it removed (never the response), and the retry runs again', async () => {
    await charge('order-1');

    const run = await cli(['evict', 'order-1', '--scope', 'tenant-1']);

    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^evict: removed key "order-1" in scope "tenant-1" from idempotency_keys \(status completed, created \S+, completed \S+, response \d+ bytes\); the next call with it runs again\n$/);
    expect(run.stdout).not.toContain(SECRET);
    expect(await keyRows(t.pool)).toEqual([]);
    await charge('order-1');
    // Audit: two charges for the key, one of them because of the eviction; one key row.
    expect(await count(t.pool, 'charges', 'ref = $1', ['order-1'])).toBe(2);
    expect(await keyRows(t.pool)).toHaveLength(1);
  });

  it('--json prints what it removed as one object', async () => {
    await charge('order-1');

    const run = await cli(['evict', 'order-1', '--scope', 'tenant-1', '--json']);

    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ scope: 'tenant-1', key: 'order-1', status: 'completed', expired: false });
    expect(run.stdout).not.toContain(SECRET);
  });

  it('refuses a key a live transaction has claimed: exit 6, one line, nothing removed; the call completes once', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });

    expectOneLineError(await cli(['evict', 'order-1', '--scope', 'tenant-1']), 6, /is in flight .*nothing was removed/);

    await held.release();
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'order-1', status: 'completed' }]);
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  it('refuses a started row with exit 6, and removes it with --force', async () => {
    await insertKeyRow(t.pool, { key: 'stuck', status: 'started' });

    expectOneLineError(await cli(['evict', 'stuck']), 6, /--force/);
    expect(await keyRows(t.pool)).toHaveLength(1);

    const forced = await cli(['evict', 'stuck', '--force']);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/removed key "stuck" in scope "" .*status started.*never completed/);
    expect(await keyRows(t.pool)).toEqual([]);
  });

  it('--force leaves a result the live transaction completes while it waits: exit 6, one line, the retry replays', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });
    const evicting = cli(['evict', 'order-1', '--scope', 'tenant-1', '--force']);
    await waitForLockWaiters(t.pool, 1);

    await held.release();

    expectOneLineError(await evicting, 6, /was completed while evict waited.*nothing was removed/);
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'order-1', status: 'completed' }]);
    expect(await count(t.pool, 'charges')).toBe(1);
  });

  it('--force whose connection dies while it waits: one line without a stack trace, exit 3, nothing removed', async () => {
    const held = await holdKey(t.db, 'order-1', { scope: 'tenant-1' });
    const evicting = cli(['evict', 'order-1', '--scope', 'tenant-1', '--force']);
    try {
      await terminateLockWaiter(t.pool);

      expectOneLineError(await evicting, 3, /lost the connection to the database at .*nothing was changed/);
    } finally {
      await held.release();
    }
    expect(await keyRows(t.pool)).toMatchObject([{ key: 'order-1', status: 'completed' }]);
  });

  it('exits 5 with one line when there is no such key', async () => {
    expectOneLineError(await cli(['evict', 'nope']), 5, /no key "nope" in scope "" in idempotency_keys; nothing removed/);
  });
});

describe('a bad command line for inspect and evict', () => {
  it.each([
    ['no key', ['evict'], /no key given/],
    ['two keys', ['inspect', 'a', 'b'], /one key at a time/],
    ['a key over 255 characters', ['inspect', 'k'.repeat(256)], /at most 255/],
    ['a scope with a control character', ['evict', 'a', '--scope', 'x\ty'], /--scope: scope must be/],
    ['an option of the other command', ['inspect', 'a', '--force'], /unknown option --force/],
  ])('%s: exit code 2, one line, nothing touched', async (_what, args, text) => {
    await charge('a', '');

    expectOneLineError(await cli(args), 2, text);
    expect(await keyRows(t.pool)).toHaveLength(1);
  });

  it('takes a key that starts with - after --', async () => {
    await insertKeyRow(t.pool, { key: '-x-', status: 'completed', response: 1 });

    expect((await cli(['evict', '--', '-x-'])).code).toBe(0);
    expect(await keyRows(t.pool)).toEqual([]);
  });
});

describe('help and README', () => {
  it.each([
    ['inspect', ['--scope', '--show-response', '--json']],
    ['evict', ['--scope', '--force', '--json']],
  ])('%s --help explains the command, its options and exit codes 5 and 6', async (command, flags) => {
    const run = await cli([command, '--help']);

    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Usage: drizzle-idempotency ${command} <key>`);
    for (const flag of flags) expect(run.stdout).toContain(flag);
    expect(run.stdout).toMatch(/5 no such key.*\n?.*6 key in flight/);
  });

  it('the README lists every option and exit code of inspect and evict', async () => {
    const readme = readFileSync(`${ROOT}README.md`, 'utf8');
    const section = readme.slice(readme.indexOf('### The CLI'), readme.indexOf('### How the sweep stays out of the way'));
    const runs = await Promise.all([cli(['inspect', '--help']), cli(['evict', '--help'])]);
    const flags = new Set(runs.flatMap((run) => [...run.stdout.matchAll(/(?<=^|[\s,])(--?[a-z][\w-]*)/gm)].map((m) => m[1]!)));

    expect([...flags].filter((flag) => !section.includes(`\`${flag}`))).toEqual([]);
    for (const command of ['inspect', 'evict']) expect(section).toContain(`| \`${command}\``);
    for (const code of ['5', '6']) expect(section).toMatch(new RegExp(`^\\| ${code} \\|`, 'm'));
  });
});

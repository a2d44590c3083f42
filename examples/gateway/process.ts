import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** A gateway running as a child process. */
export interface GatewayProcess {
  url: string;
  pid: number;
  /** SIGTERM, and resolves once it exited. */
  stop(): Promise<void>;
}

/**
 * Starts examples/gateway/server.ts as its own process on `databaseUrl`
 * (any free port) and resolves once it prints that it listens, with its URL.
 * A gateway in its own process, as a real one is: a shop killed with SIGKILL
 * leaves it running, with its ledger.
 *
 * @example
 * const gateway = await spawnGateway(databaseUrl); … await gateway.stop();
 */
export async function spawnGateway(databaseUrl: string, env: Record<string, string> = {}): Promise<GatewayProcess> {
  const file = fileURLToPath(new URL('./server.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    env: { ...process.env, ...env, DATABASE_URL: databaseUrl, PORT: env.PORT ?? '0', GATEWAY_EXIT_WITH_PARENT: '1' },
    // Its stdin is ours: when this process dies, even by SIGKILL, the pipe closes and the gateway exits.
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the gateway exited with ${code} before it listened`)));
  });
  return {
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

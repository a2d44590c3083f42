// One demo shop (examples/shop/server.ts, as `npm run serve` starts it) as a
// child process: for tests that kill it, pause it, and start it again.
import { join } from 'node:path';
import { freePort } from '../../tools/embedded-db.js';
import { launch, type Launched } from './processes.js';

export interface ShopProcess {
  port: number;
  url: string;
  process: Launched;
  /** SIGKILL unless it already ended; resolves once it exited. */
  kill(): Promise<void>;
}

/**
 * Starts a shop on `databaseUrl` with `env` on top (GATEWAY_URL,
 * SHOP_CRASH_AT, …) on a free port, or on `port`, and resolves once it listens.
 * `script` is node's arguments: the server from the sources under tsx, or a bundle of it.
 *
 * @example
 * const shop = await startShopProcess(t.url, sinkDir, { GATEWAY_URL: gateway.url, SHOP_CRASH_AT: 'after-charge' });
 */
export async function startShopProcess(databaseUrl: string, sinkDir: string, env: Record<string, string>, port?: number, script = ['--import', 'tsx', 'examples/shop/server.ts']): Promise<ShopProcess> {
  const chosen = port ?? (await freePort());
  const child = launch(process.execPath, script, {
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(chosen), MAIL_SINK: join(sinkDir, `mail-${chosen}.jsonl`), POOL_SIZE: '8', ...env },
  });
  await child.waitFor(/shop listening/);
  return {
    port: chosen,
    url: `http://127.0.0.1:${chosen}`,
    process: child,
    async kill() {
      if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
      await child.exited;
    },
  };
}

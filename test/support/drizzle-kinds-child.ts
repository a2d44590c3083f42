// Prints the class chain of a drizzle database made in a child process (started
// with tsx, as the fault and migration tests start theirs).
import { drizzle } from 'drizzle-orm/node-postgres';
import { drizzleKinds } from './drizzle-kinds.js';

const db = drizzle({ connection: 'postgres://nobody@127.0.0.1:1/none' });
console.log(JSON.stringify(drizzleKinds(db)));
await db.$client.end();

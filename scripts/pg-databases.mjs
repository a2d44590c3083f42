// Creates or drops scratch databases on a PostgreSQL server for check-package.sh.
// create <server-url> <name>: creates it, prints its URL. drop <server-url> <name>...: drops them.
import process from 'node:process';
import { URL } from 'node:url';
import pg from 'pg';

const [command, serverUrl, ...names] = process.argv.slice(2);
const client = new pg.Client({ connectionString: serverUrl });
await client.connect();
try {
  for (const name of names) {
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
    if (command === 'create') {
      await client.query(`create database ${name}`);
      const url = new URL(serverUrl);
      url.pathname = `/${name}`;
      process.stdout.write(`${url}\n`);
    } else if (command === 'drop') {
      await client.query(`drop database if exists ${name} with (force)`);
    } else {
      throw new Error(`usage: pg-databases.mjs create|drop <server-url> <name>...`);
    }
  }
} finally {
  await client.end();
}

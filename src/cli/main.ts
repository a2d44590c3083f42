#!/usr/bin/env node
// `drizzle-idempotency migrate | sweep | stats | inspect | evict | complete`: the operator's side of the
// library. Results go to stdout, progress and errors to stderr, one line each;
// the exit code says what happened (see EXIT in cli-errors.ts).
import { readFileSync } from 'node:fs';
import { parseCommandLine, type CliCommand } from './args.js';
import { connect, describeUrl, requireKeysTable } from './connect.js';
import { CliError, EXIT, tableHint, toCliError, type ExitCode } from './errors.js';
import { formatStats } from './format.js';
import { formatEvicted, formatInspected, keyName } from './format-key.js';
import { sweepEvery, sweepOnce } from './sweep.js';
import { completeOnce, completeWatch } from './complete.js';
import { loadWorkflows } from './workflows-module.js';
import { migrate } from '../schema/migrate.js';
import { idempotencyStats } from '../ops/stats.js';
import { inspectKey } from '../ops/inspect.js';
import { evictKey } from '../ops/evict.js';

function version(): string {
  // ../../package.json from both src/cli/main.ts and dist/cli/main.js.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function run(c: Exclude<CliCommand, { command: 'help' | 'version' }>): Promise<void> {
  // Before connecting: a module without workflows is a bad command line, whatever the database.
  const workflows = c.command === 'complete' ? (await loadWorkflows(c.workflows)).workflows : [];
  const { db, where, close } = await connect(c.databaseUrl);
  try {
    switch (c.command) {
      case 'migrate': {
        const { applied } = await migrate(db, { schema: c.schema });
        const table = tableHint(c.schema).table;
        process.stdout.write(applied.length > 0 ? `migrate: ${table}: applied ${applied.join(', ')}\n` : `migrate: ${table} is up to date\n`);
        return;
      }
      case 'stats': {
        await requireKeysTable(db, c.schema);
        const stats = await idempotencyStats(db, { schema: c.schema });
        process.stdout.write(`${c.json ? JSON.stringify(stats) : formatStats(stats, tableHint(c.schema).table)}\n`);
        return;
      }
      case 'inspect': {
        await requireKeysTable(db, c.schema);
        const found = await inspectKey(db, c.key, { scope: c.scope, schema: c.schema, showResponse: c.showResponse });
        if (!found) throw new CliError(EXIT.keyNotFound, `inspect: no ${keyName(c.key, c.scope)} in ${tableHint(c.schema).table}`);
        process.stdout.write(`${c.json ? JSON.stringify(found) : formatInspected(found, tableHint(c.schema).table)}\n`);
        return;
      }
      case 'evict': {
        await requireKeysTable(db, c.schema);
        const removed = await evictKey(db, c.key, { scope: c.scope, schema: c.schema, force: c.force });
        if (!removed) throw new CliError(EXIT.keyNotFound, `evict: no ${keyName(c.key, c.scope)} in ${tableHint(c.schema).table}; nothing removed`);
        process.stdout.write(`${c.json ? JSON.stringify(removed) : formatEvicted(removed, tableHint(c.schema).table)}\n`);
        return;
      }
      case 'sweep': {
        await requireKeysTable(db, c.schema);
        if (c.everyMs === undefined) await sweepOnce(db, c);
        else await sweepEvery(db, { ...c, everyMs: c.everyMs }, where);
        return;
      }
      case 'complete': {
        await requireKeysTable(db, c.schema);
        const command = { workflows, limit: c.limit, intervalMs: c.intervalMs, schema: c.schema };
        if (c.watch) await completeWatch(db, command, where);
        else await completeOnce(db, command, where);
        return;
      }
    }
  } finally {
    await close();
  }
}

async function main(argv: readonly string[]): Promise<ExitCode> {
  let command: CliCommand | undefined;
  try {
    command = parseCommandLine(argv, process.env);
    if (command.command === 'help') process.stdout.write(`${command.text}\n`);
    else if (command.command === 'version') process.stdout.write(`${version()}\n`);
    else await run(command);
    return EXIT.ok;
  } catch (error) {
    const context = command && 'databaseUrl' in command
      ? { schema: command.schema, database: describeUrl(command.databaseUrl) }
      : { schema: undefined, database: 'the database' };
    const failure = toCliError(error, context);
    process.stderr.write(`drizzle-idempotency: ${failure.message}\n`);
    return failure.exitCode;
  }
}

process.exitCode = await main(process.argv.slice(2));

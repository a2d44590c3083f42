// `npm run bench`: sets up the bench database, runs the parts in an order
// that keeps them from disturbing each other, writes the report.
//   round trips first (the server's counters must see only its connections),
//   throughput, HTTP, crash window, and growth last (it leaves 10M rows behind).
import { performance } from 'node:perf_hooks';
import { crashWindowModule } from './crash-window.js';
import { openEnvironment } from './environment.js';
import { growthModule } from './growth.js';
import { httpModule } from './http.js';
import { describeMachine } from './machine.js';
import type { BenchModule } from './module.js';
import { parseOptions } from './options.js';
import { writeReport, type PartResult } from './report.js';
import { roundTripsModule } from './round-trips.js';
import { throughputModule } from './throughput.js';

const MODULES: readonly BenchModule[] = [roundTripsModule, throughputModule, httpModule, crashWindowModule, growthModule];

const log = (line: string) => console.log(line);
const args = process.argv.slice(2);
const options = parseOptions(args);
const started = performance.now();
const env = await openEnvironment(log);
try {
  const machine = await describeMachine(env);
  log(`bench: ${machine.cores} cores, PostgreSQL ${machine.postgres} (${machine.postgresSource}), Redis ${machine.redis}${options.quick ? ', quick run' : ''}`);
  const parts: PartResult[] = [];
  for (const module of MODULES) {
    if (!options.parts.has(module.id)) continue;
    log(`part ${module.part}: ${module.title}`);
    const partStart = performance.now();
    const report = await module.run({ options, env, log });
    parts.push({ module, report, seconds: (performance.now() - partStart) / 1000 });
    log(`part ${module.part} done in ${((performance.now() - partStart) / 1000).toFixed(0)} s`);
  }
  const command = ['npm run bench', ...(args.length > 0 ? ['--', ...args] : [])].join(' ');
  const path = await writeReport(options, machine, parts, (performance.now() - started) / 1000, command);
  log(`wrote ${path} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  for (const t of parts.flatMap((p) => p.report.targets)) log(`  ${t.met ? 'met   ' : 'MISSED'} ${t.target}: ${t.measured}`);
} finally {
  await env.close({ keepDatabase: options.keepDatabase });
}

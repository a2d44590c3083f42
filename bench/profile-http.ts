// `npx tsx bench/profile-http.ts <variant> [seconds]`: loads one route of the
// HTTP bench with the server under --cpu-prof, then prints where the server's
// CPU went: self time per function and per file, top 30 each. For finding
// overhead, not for numbers (the profiler slows everything down alike).
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PAYMENT_ROUTES, type Variant } from './http-app.js';
import { createBenchDatabase, dropBenchDatabase } from './http-database.js';
import { BENCH_USER, cycledKeys, freshKeys, load, PAYMENT_BODY } from './http-load.js';
import { DEFAULT_SERVER } from './http.js';
import { startBenchServer } from './http-server-process.js';

const variant = (process.argv[2] ?? 'ours') as Variant;
const seconds = Number(process.argv[3] ?? 8);
const replays = process.argv.includes('--replay');
const dir = mkdtempSync(join(tmpdir(), 'bench-prof-'));
process.env.BENCH_SERVER_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${dir}`;
const server0 = process.env.DATABASE_URL ?? DEFAULT_SERVER;
const databaseUrl = await createBenchDatabase(server0);
try {
  const server = await startBenchServer({ databaseUrl, redisUrl: 'redis://127.0.0.1:6379', redisPrefix: 'prof:', poolSize: 16 });
  const url = server.url + PAYMENT_ROUTES[variant];
  let keys = freshKeys('prof');
  if (replays) {
    const done = Array.from({ length: 200 }, (_, i) => `prof-done-${i}`);
    for (const key of done) {
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-user-id': BENCH_USER, 'idempotency-key': key }, body: PAYMENT_BODY });
      await response.arrayBuffer();
    }
    keys = cycledKeys(done);
  }
  await load({ url, connections: 32, seconds: 2, nextKey: keys });
  const result = await load({ url, connections: 32, seconds, nextKey: keys });
  console.log(`${variant}${replays ? ' replays' : ''}: ${result.rps.toFixed(0)} req/s under the profiler`);
  await server.stop();
} finally {
  await dropBenchDatabase(server0);
}

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))!;
const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
for (const node of profile.nodes) {
  const t = self.get(node.id) ?? 0;
  const where = node.callFrame.url.replace(/^.*node_modules\//, 'nm/').replace(/^file:\/\/.*\/main\//, '');
  const fn = `${node.callFrame.functionName || '(anon)'} ${where}:${node.callFrame.lineNumber + 1}`;
  byFunction.set(fn, (byFunction.get(fn) ?? 0) + t);
  const f = where.startsWith('nm/') ? where.split('/').slice(0, 2).join('/') : where || node.callFrame.functionName;
  byFile.set(f, (byFile.get(f) ?? 0) + t);
}
const top = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, 30).map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`).join('\n');
console.log(`\nself time by file:\n${top(byFile)}\n\nself time by function:\n${top(byFunction)}`);

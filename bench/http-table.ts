// The HTTP results as a markdown table. The spread columns show how far the
// rounds disagree: on a shared machine that is the error bar of the medians.
import type { HttpBenchResult } from './http.js';
import { median } from './stats.js';

const fixed = (digits: number) => (n: number) => n.toFixed(digits);
const range = (values: number[], format: (n: number) => string) =>
  values.length > 1 ? `${format(Math.min(...values))}–${format(Math.max(...values))}` : format(values[0]!);

// Medians; a PostgreSQL reading under 0 means backends of another run ended during it.
const cpu = (values: number[]) => (values.some(Number.isNaN) ? 'n/a' : median(values).toFixed(0));

export function httpBenchTable(results: readonly HttpBenchResult[]): string {
  const bare = results.find((r) => r.name === 'bare');
  const lines = [
    '| POST /payments | req/s (median) | req/s (rounds) | × bare | × bare (rounds) | p50 ms | p99 ms | CPU µs/answer: Node | PostgreSQL | non-2xx | payments written |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of results) {
    const ratios = bare ? r.rounds.map((round, i) => round.rps / bare.rounds[i]!.rps) : [];
    const sum = (pick: (round: HttpBenchResult['rounds'][number]) => number) => r.rounds.reduce((n, round) => n + pick(round), 0);
    lines.push(
      `| ${r.name} | ${r.rps.toFixed(0)} | ${range(r.rounds.map((x) => x.rps), fixed(0))} | ${r.ratio.toFixed(2)} | ${range(ratios, fixed(2))} ` +
        `| ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${cpu(r.rounds.map((x) => x.nodeCpuUs))} | ${cpu(r.rounds.map((x) => x.pgCpuUs))} ` +
        `| ${sum((x) => x.non2xx + x.errors)} | ${sum((x) => x.writes)} |`,
    );
  }
  return lines.join('\n');
}

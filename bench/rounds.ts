// Rounds of paired measurements: each round runs every scenario once, in an
// order rotated per round, so a neighbour's burst of CPU hits all scenarios
// alike and ratios are taken between numbers measured side by side.
import { CpuProbe } from './cpu.js';
import { runClosedLoop, type LoadResult } from './load.js';
import { serverProcesses, type BenchPool } from './pools.js';
import type { Scenario, ScenarioContext } from './scenarios.js';
import { spread, type Spread } from './stats.js';

export type RoundResults = Map<string, LoadResult[]>;

export interface RoundSpec {
  pool: BenchPool;
  /** A second pool, created with `pipeline: false`, for the scenarios that need one; its backends are profiled too. */
  plainPool?: BenchPool;
  scenarios: readonly Scenario[];
  context: Omit<ScenarioContext, 'db' | 'pool'>;
  rounds: number;
  seconds: number;
  warmupSeconds: number;
  log(line: string): void;
  label: string;
}

export async function measureRounds(spec: RoundSpec): Promise<RoundResults> {
  const workers = spec.pool.backendPids.length;
  const processes = await serverProcesses(spec.pool, spec.context.redis);
  processes.postgresBackends = [...processes.postgresBackends, ...(spec.plainPool?.backendPids ?? [])];
  const cpu = CpuProbe.create(processes);
  const context: ScenarioContext = { ...spec.context, db: spec.pool.db, pool: spec.pool.pool, plainDb: spec.plainPool?.db };
  const operations = spec.scenarios.map((s) => ({ scenario: s, operation: s.operation(context) }));
  const results: RoundResults = new Map(spec.scenarios.map((s) => [s.id, []]));
  for (let round = 0; round < spec.rounds; round++) {
    const order = operations.map((_, i) => operations[(i + round) % operations.length]!);
    const line: string[] = [];
    for (const { scenario, operation } of order) {
      const result = await runClosedLoop({ operation, workers, seconds: spec.seconds, warmupSeconds: spec.warmupSeconds, cpu });
      if (result.errors > 0) {
        throw new Error(`${spec.label}: scenario (${scenario.id}) failed ${result.errors} times: ${result.firstError}`);
      }
      results.get(scenario.id)!.push(result);
      line.push(`${scenario.id} ${Math.round(result.perSecond)}/s`);
    }
    spec.log(`  ${spec.label}, round ${round + 1}/${spec.rounds}: ${line.join(', ')}`);
  }
  return results;
}

export function rates(results: RoundResults, id: string): Spread {
  return spread(results.get(id)!.map((r) => r.perSecond));
}

/** Ratio of two scenarios round by round: the pairing cancels slow drifts. */
export function pairedRatio(results: RoundResults, numerator: string, denominator: string): Spread {
  const top = results.get(numerator)!;
  const bottom = results.get(denominator)!;
  return spread(top.map((r, i) => r.perSecond / bottom[i]!.perSecond));
}

/** Median over rounds of a per-operation quantity. */
export function perOperation(results: RoundResults, id: string, pick: (r: LoadResult) => number | undefined): number | undefined {
  const values = results
    .get(id)!
    .map((r) => {
      const v = pick(r);
      return v === undefined || r.operations === 0 ? undefined : v / r.operations;
    })
    .filter((v): v is number => v !== undefined);
  return values.length === 0 ? undefined : spread(values).median;
}

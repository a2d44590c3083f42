// Command-line options of `npm run bench`. A full run is sized to stay under
// ten minutes on two cores; `--quick` is for checking the harness, not numbers.

export type PartId = 'round-trips' | 'throughput' | 'http' | 'growth' | 'crash-window';

export const ALL_PARTS: readonly PartId[] = ['round-trips', 'throughput', 'http', 'growth', 'crash-window'];

export interface BenchOptions {
  quick: boolean;
  parts: ReadonlySet<PartId>;
  /** Connection counts of part 1. */
  connections: number[];
  /** Rounds per cell; every round measures each scenario once, so ratios are paired. */
  rounds: number;
  /** Measured seconds per scenario and round (after the warm-up). */
  seconds: number;
  warmupSeconds: number;
  /** Part 2: autocannon connections and measured seconds per scenario and round (rounds as part 1). */
  httpConnections: number;
  httpSeconds: number;
  /** Rows pre-filled into idempotency_keys for part 4, ascending. */
  growthRows: number[];
  growthConnections: number;
  growthRounds: number;
  /** Operations per variant when counting statements (part 3). */
  countOperations: number;
  /** Part 5: processes killed per approach and kill point, keys in flight in each. */
  crashProcesses: number;
  crashKeysPerProcess: number;
  /** Completed keys that replays (scenario c) pick from. */
  replayKeys: number;
  /** Folder that receives BENCHMARKS.md and BENCHMARKS.svg. */
  outDir: string;
  /** Keep the bench database after the run (it is dropped otherwise). */
  keepDatabase: boolean;
}

const USAGE = `usage: npm run bench -- [--quick] [--only=${ALL_PARTS.join(',')}] [--rounds=N] [--seconds=S]
                       [--rows=0,1000000,10000000] [--out=DIR] [--keep-db]`;

export function parseOptions(argv: readonly string[]): BenchOptions {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new Error(`unknown argument ${arg}\n${USAGE}`);
    flags.set(match[1]!, match[2] ?? 'true');
  }
  const known = new Set(['quick', 'only', 'rounds', 'seconds', 'rows', 'out', 'keep-db', 'help']);
  for (const name of flags.keys()) if (!known.has(name)) throw new Error(`unknown option --${name}\n${USAGE}`);
  if (flags.has('help')) throw new Error(USAGE);

  const quick = flags.has('quick');
  const parts = new Set<PartId>(
    flags.has('only') ? flags.get('only')!.split(',').map((p) => asPart(p.trim())) : ALL_PARTS,
  );
  const defaults: BenchOptions = quick
    ? {
        quick,
        parts,
        connections: [1, 8, 32],
        rounds: 2,
        seconds: 1,
        warmupSeconds: 0.25,
        httpConnections: 32,
        httpSeconds: 1,
        growthRows: [0, 100_000],
        growthConnections: 32,
        growthRounds: 2,
        countOperations: 20,
        crashProcesses: 1,
        crashKeysPerProcess: 5,
        replayKeys: 500,
        // A quick run must not overwrite the committed report.
        outDir: '.data/bench-quick',
        keepDatabase: false,
      }
    : {
        quick,
        parts,
        connections: [1, 8, 32],
        // Sized so the whole run stays under ten minutes on two cores
        // (about 2.5 min part 1, 1.3 min part 2, 5 min part 4).
        rounds: 4,
        seconds: 1.5,
        warmupSeconds: 0.5,
        httpConnections: 32,
        httpSeconds: 2,
        growthRows: [0, 1_000_000, 10_000_000],
        growthConnections: 32,
        growthRounds: 3,
        countOperations: 100,
        crashProcesses: 2,
        crashKeysPerProcess: 10,
        replayKeys: 2000,
        outDir: '.',
        keepDatabase: false,
      };
  return {
    ...defaults,
    rounds: flags.has('rounds') ? positiveInt(flags.get('rounds')!, 'rounds') : defaults.rounds,
    growthRounds: flags.has('rounds') ? positiveInt(flags.get('rounds')!, 'rounds') : defaults.growthRounds,
    seconds: flags.has('seconds') ? positiveNumber(flags.get('seconds')!, 'seconds') : defaults.seconds,
    httpSeconds: flags.has('seconds') ? positiveNumber(flags.get('seconds')!, 'seconds') : defaults.httpSeconds,
    growthRows: flags.has('rows') ? rowsList(flags.get('rows')!) : defaults.growthRows,
    outDir: flags.get('out') ?? defaults.outDir,
    keepDatabase: flags.has('keep-db'),
  };
}

function asPart(name: string): PartId {
  if ((ALL_PARTS as readonly string[]).includes(name)) return name as PartId;
  throw new Error(`unknown part ${name}; parts are ${ALL_PARTS.join(', ')}`);
}

function positiveInt(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}

function positiveNumber(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
  return n;
}

function rowsList(text: string): number[] {
  const rows = text.split(',').map((r) => Number(r.trim()));
  if (rows.some((r) => !Number.isSafeInteger(r) || r < 0)) throw new Error('--rows must be non-negative integers');
  // Growth only ever adds rows, so sizes are visited in ascending order.
  return [...new Set(rows)].sort((a, b) => a - b);
}

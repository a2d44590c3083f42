// A closed loop: `workers` callers each repeat one operation back to back,
// as many as there are connections. Operations that end inside the measured
// window count; the warm-up fills caches and the pool first.
import { performance } from 'node:perf_hooks';
import { CpuProbe, type CpuUse } from './cpu.js';
import { quantile } from './stats.js';

export interface LoadResult {
  operations: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  firstError?: string;
  cpu?: CpuUse;
}

export interface LoadSpec {
  operation: () => Promise<void>;
  workers: number;
  seconds: number;
  warmupSeconds: number;
  cpu?: CpuProbe;
}

export async function runClosedLoop(spec: LoadSpec): Promise<LoadResult> {
  let phase: 'warmup' | 'measure' | 'stop' = 'warmup';
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;

  const worker = async () => {
    while (phase !== 'stop') {
      const started = performance.now();
      try {
        await spec.operation();
        if (phase === 'measure') latencies.push(performance.now() - started);
      } catch (error) {
        errors++;
        firstError ??= error instanceof Error ? error.message : String(error);
        // A failing operation must not turn into a hot loop of failures.
        if (errors > 100) phase = 'stop';
      }
    }
  };
  const running = Array.from({ length: spec.workers }, worker);

  await sleep(spec.warmupSeconds * 1000);
  const cpuBefore = spec.cpu?.snapshot();
  const measureStart = performance.now();
  if (phase === 'warmup') phase = 'measure';
  await sleep(spec.seconds * 1000);
  const measured = (performance.now() - measureStart) / 1000;
  const cpuAfter = spec.cpu?.snapshot();
  if (phase === 'measure') phase = 'stop';
  // In-flight operations finish before the next measurement starts.
  await Promise.all(running);

  return {
    operations: latencies.length,
    seconds: measured,
    perSecond: latencies.length / measured,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    errors,
    firstError,
    cpu: cpuBefore && cpuAfter ? CpuProbe.between(cpuBefore, cpuAfter) : undefined,
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

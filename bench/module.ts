// What every part of the bench is: something that runs against the shared
// environment and hands back its section of the report. Part 2 (HTTP level)
// plugs in as one more BenchModule in run.ts.
import type { ChartPanel } from './chart.js';
import type { BenchEnvironment } from './environment.js';
import type { BenchOptions, PartId } from './options.js';

export interface BenchContext {
  options: BenchOptions;
  env: BenchEnvironment;
  log(line: string): void;
}

/** A target from the issue, judged on this run's numbers. */
export interface TargetCheck {
  target: string;
  measured: string;
  met: boolean;
}

export interface ModuleReport {
  markdown: string;
  charts: ChartPanel[];
  targets: TargetCheck[];
  /** Raw numbers, written beside the report for later comparison. */
  data: unknown;
}

export interface BenchModule {
  id: PartId;
  /** The part's number in the issue; sections are reported in this order. */
  part: number;
  title: string;
  run(ctx: BenchContext): Promise<ModuleReport>;
}

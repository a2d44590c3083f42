// Where the CPU went during a measurement: this Node process, the Postgres
// backends serving the bench's pool, Postgres's background processes (WAL
// writer, checkpointer...), the Redis server, interrupt handling (loopback
// networking runs there), time the hypervisor gave to other machines
// (steal), and everything else (other people's work on a shared machine).
// Read from /proc, so only when the servers run on this machine; otherwise
// the profile is simply left out.
import { readFileSync } from 'node:fs';

// USER_HZ: the unit of /proc times; 100 on every Linux this runs on.
const TICKS_PER_SECOND = 100;

export interface CpuProcesses {
  postgresBackends: number[];
  postgresBackground: number[];
  redis: number | undefined;
}

export interface CpuSnapshot {
  nodeMs: number;
  postgresMs: number;
  postgresBackgroundMs: number;
  redisMs: number;
  machine: MachineTicks;
}

export interface CpuUse {
  nodeMs: number;
  postgresMs: number;
  postgresBackgroundMs: number;
  redisMs: number;
  interruptsMs: number;
  stealMs: number;
  /** Process time of the machine not spent by the processes above. */
  otherMs: number;
  idleMs: number;
}

interface MachineTicks {
  processes: number;
  interrupts: number;
  steal: number;
  idle: number;
}

export class CpuProbe {
  private constructor(private readonly pids: CpuProcesses) {}

  /** A probe, or undefined when /proc cannot see the servers' processes. */
  static create(pids: CpuProcesses): CpuProbe | undefined {
    if (pids.postgresBackends.length === 0 || !pids.postgresBackends.every((pid) => processTicks(pid) !== undefined)) return undefined;
    if (machineTicks() === undefined) return undefined;
    return new CpuProbe(pids);
  }

  snapshot(): CpuSnapshot {
    const usage = process.cpuUsage();
    const sum = (pids: number[]) => ticksToMs(pids.reduce((total, pid) => total + (processTicks(pid) ?? 0), 0));
    return {
      nodeMs: (usage.user + usage.system) / 1000,
      postgresMs: sum(this.pids.postgresBackends),
      postgresBackgroundMs: sum(this.pids.postgresBackground),
      redisMs: this.pids.redis === undefined ? 0 : sum([this.pids.redis]),
      machine: machineTicks()!,
    };
  }

  static between(before: CpuSnapshot, after: CpuSnapshot): CpuUse {
    const delta = (pick: (s: CpuSnapshot) => number) => pick(after) - pick(before);
    const nodeMs = delta((s) => s.nodeMs);
    const postgresMs = delta((s) => s.postgresMs);
    const postgresBackgroundMs = delta((s) => s.postgresBackgroundMs);
    const redisMs = delta((s) => s.redisMs);
    const processes = ticksToMs(delta((s) => s.machine.processes));
    return {
      nodeMs,
      postgresMs,
      postgresBackgroundMs,
      redisMs,
      interruptsMs: ticksToMs(delta((s) => s.machine.interrupts)),
      stealMs: ticksToMs(delta((s) => s.machine.steal)),
      otherMs: Math.max(0, processes - nodeMs - postgresMs - postgresBackgroundMs - redisMs),
      idleMs: ticksToMs(delta((s) => s.machine.idle)),
    };
  }
}

function ticksToMs(ticks: number): number {
  return (ticks * 1000) / TICKS_PER_SECOND;
}

/** utime + stime of a process, in ticks. */
function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces; fields are counted after its ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

function machineTicks(): MachineTicks | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
    return { processes: user! + nice! + system!, interrupts: irq! + softirq!, steal: steal!, idle: idle! + iowait! };
  } catch {
    return undefined;
  }
}

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** A named long-running process tree whose CPU time is metered (an emulator, the shim). */
export interface MeteredProcess {
  name: string;
  pid: number;
}

/** CPU used during one measurement. */
export interface CpuUsage {
  /** CPU seconds (user + system) of each metered process tree. */
  processes: Record<string, number>;
  /** Share of the machine's CPU capacity that was busy, 0..1 (all processes, all cores). */
  machineBusy: number;
  /** CPU seconds the whole machine was busy (all processes and the kernel, all cores). */
  machineSeconds: number;
}

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
}

const TICKS = clockTicks();

interface ProcStat {
  ppid: number;
  /** utime + stime, in clock ticks. */
  ticks: number;
}

function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses; the fields start after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return {
      ppid: Number(fields[1]),
      ticks: Number(fields[11]) + Number(fields[12]),
    };
  } catch {
    return undefined;
  }
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/**
 * The direct children of `parentPid` whose command line contains one of the patterns, named
 * after the pattern's key (e.g. `{ 's3 emulator': 's3-emulator-main' }`).
 */
export function findChildren(
  parentPid: number,
  patterns: Readonly<Record<string, string>>,
): MeteredProcess[] {
  const found: MeteredProcess[] = [];
  for (const pid of allPids()) {
    if (procStat(pid)?.ppid !== parentPid) continue;
    const line = commandLine(pid);
    for (const [name, pattern] of Object.entries(patterns)) {
      if (line.includes(pattern)) found.push({ name, pid });
    }
  }
  return found;
}

/** CPU seconds of a process and its live descendants. */
function treeSeconds(root: number, stats: Map<number, ProcStat>): number {
  let ticks = 0;
  const pending = [root];
  for (let pid = pending.pop(); pid !== undefined; pid = pending.pop()) {
    ticks += stats.get(pid)?.ticks ?? 0;
    for (const [child, stat] of stats) if (stat.ppid === pid) pending.push(child);
  }
  return ticks / TICKS;
}

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.reduce((sum, value) => sum + value, 0);
  // Fields 4 and 5 (idle, iowait) are the time no process ran.
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: total - idle, total };
}

/** A snapshot to compare against later, from {@link startCpuMeter}. */
export interface CpuMeter {
  /** CPU used since the meter started. */
  stop(): CpuUsage;
}

/** Starts metering the CPU time of `processes` and of the whole machine. */
export function startCpuMeter(processes: readonly MeteredProcess[]): CpuMeter {
  const sample = () => {
    const stats = new Map<number, ProcStat>();
    for (const pid of allPids()) {
      const stat = procStat(pid);
      if (stat) stats.set(pid, stat);
    }
    return {
      seconds: processes.map((process) => treeSeconds(process.pid, stats)),
      machine: machineTicks(),
    };
  };
  const before = sample();
  return {
    stop() {
      const after = sample();
      const usage: Record<string, number> = {};
      processes.forEach((process, index) => {
        usage[process.name] =
          (usage[process.name] ?? 0) + (after.seconds[index] ?? 0) - (before.seconds[index] ?? 0);
      });
      const total = after.machine.total - before.machine.total;
      const busy = after.machine.busy - before.machine.busy;
      return {
        processes: usage,
        machineBusy: total > 0 ? busy / total : 0,
        machineSeconds: busy / TICKS,
      };
    },
  };
}

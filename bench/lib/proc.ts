/** Memory of a process from /proc/<pid>/status (Linux). */
import { readFileSync } from 'node:fs';

export interface ProcMemory {
  /** Resident set size now, MiB. */
  rssMiB: number;
  /** Peak resident set size since the process started, MiB. */
  hwmMiB: number;
}

export function procMemory(pid: number): ProcMemory {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return match ? Number(match[1]) : Number.NaN;
  };
  return { rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024 };
}

/** Clock ticks per second of /proc (USER_HZ; 100 on Linux x86 and arm). */
const HZ = 100;

interface CpuSnapshot {
  at: number;
  /** Machine-wide busy and steal time, seconds. */
  busy: number;
  steal: number;
  /** This process and its waited-for children, seconds. */
  own: number;
}

function snapshot(): CpuSnapshot {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/) ?? [];
  const [user, nice, system, , , irq, softirq, steal] = cpu.slice(1).map(Number);
  const self = readFileSync('/proc/self/stat', 'utf8');
  // Fields after the command name (which may contain spaces): utime is the 12th of them.
  const fields = self
    .slice(self.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  const [utime, stime, cutime, cstime] = fields.slice(11, 15);
  return {
    at: performance.now(),
    busy: ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)) / HZ,
    steal: (steal ?? 0) / HZ,
    own: ((utime ?? 0) + (stime ?? 0) + (cutime ?? 0) + (cstime ?? 0)) / HZ,
  };
}

export interface CpuUse {
  seconds: number;
  /** Average cores busy on the whole machine. */
  machineCores: number;
  /** Average cores used by this process and the children it waited for (daemons included). */
  ownCores: number;
  /** What other processes on the machine used meanwhile (noise), in cores. */
  otherCores: number;
  /** Cores' worth of time the hypervisor gave to someone else. */
  stealCores: number;
}

/**
 * Starts accounting for CPU; the returned function tells what was used since.
 * Our own share counts only children already exited and waited for, so call
 * it after a benchmark stopped all its processes.
 */
export function cpuAccount(): () => CpuUse {
  const start = snapshot();
  return () => {
    const end = snapshot();
    const seconds = (end.at - start.at) / 1000;
    const machine = (end.busy - start.busy) / seconds;
    const own = (end.own - start.own) / seconds;
    return {
      seconds,
      machineCores: machine,
      ownCores: own,
      otherCores: Math.max(0, machine - own),
      stealCores: (end.steal - start.steal) / seconds,
    };
  };
}

/** CPU time (user + system) a process has used so far, in seconds; NaN once it is gone. */
export function procCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    return ((fields[11] ?? Number.NaN) + (fields[12] ?? Number.NaN)) / HZ;
  } catch {
    return Number.NaN;
  }
}

// What a process costs, read from /proc: resident memory (VmRSS) and CPU time
// (utime + stime), sampled while a benchmark runs; and what the resident memory
// is made of (/proc/PID/smaps_rollup).
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/PID/stat's times (USER_HZ, 100 on Linux). */
const CLK_TCK = 100;

/** Resident memory in bytes, or undefined when the process is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Resident memory split by kind, in bytes. */
export interface MemoryBreakdown {
  rss: number;
  /** Heap, stacks, buffers, the JIT's code: the process's own memory. */
  anonymous: number;
  /** Pages of mapped files (the node binary, shared libraries), mostly shared with other processes. */
  fileBacked: number;
}

/** What a process's resident memory is made of, or undefined when the process is gone. */
export function memoryBreakdown(pid: number): MemoryBreakdown | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
    const rss = kb('Rss');
    const anonymous = kb('Anonymous');
    return Number.isFinite(rss) && Number.isFinite(anonymous) ? { rss, anonymous, fileBacked: rss - anonymous } : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds used so far (user + system), or undefined when the process is gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / CLK_TCK : undefined;
  } catch {
    return undefined;
  }
}

/** Samples a process' resident memory every `everyMs` until stopped. */
export class RssSampler {
  readonly samples: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pid: number | undefined;
  private readonly everyMs: number;

  constructor(pid: number | undefined, everyMs = 100) {
    this.pid = pid;
    this.everyMs = everyMs;
    this.timer = setInterval(() => this.sample(), everyMs);
    this.sample();
  }

  /** Follows another process from now on (a tool's pid known only after it started). */
  follow(pid: number): void {
    this.pid = pid;
    this.sample();
  }

  private sample(): void {
    if (this.pid === undefined) return;
    const rss = rssBytes(this.pid);
    if (rss !== undefined) this.samples.push(rss);
  }

  /** Stops and returns the samples in bytes. */
  stop(): number[] {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return this.samples;
  }

  get intervalMs(): number {
    return this.everyMs;
  }
}

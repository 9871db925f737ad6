// The record every benchmark returns; bench/run.ts writes them to
// bench/results.json and renders docs/BENCHMARKS.md from them.

/** One measured figure: the median over `runs` and the spread. */
export interface Figure {
  /** What it is, e.g. "wall time", "CPU seconds per GiB", "p95 time to durable". */
  name: string;
  unit: string; // "s", "MiB/s", "MB", "ms", "CPU s/GiB", ...
  median: number;
  min: number;
  max: number;
  runs: number;
  /** Lower is better (times, CPU, memory) or higher is better (throughput). */
  better: 'lower' | 'higher';
}

/** One tool or strategy measured in the same run: Stevedore, a peer, or a ceiling. */
export interface Subject {
  /** "stevedore", "rclone", "s3cmd", "awscli", "sync every 5 s", "upload after close", "raw loopback PUT", ... */
  name: string;
  /** "1.60.1-DEV" etc., as the tool reports it. */
  version?: string;
  figures: Figure[];
}

/** One case of a benchmark, e.g. "1 GiB in 4 shards to the sink". */
export interface BenchCase {
  name: string;
  subjects: Subject[];
  /** Stevedore's figure divided by (or over) each peer's, per figure name; > 1 means Stevedore is better. */
  ratios: { figure: string; peer: string; ratio: number }[];
  /** Targets from the issue, checked against the figures. */
  targets: { text: string; met: boolean; detail: string }[];
  /** What the medians are taken over, when it is not whole runs (replaces "Median over N runs"). */
  mediansOver?: string;
}

export interface BenchResult {
  /** "upload", "time-to-durable", "drain", "restore", "footprint", "coordinator-scale". */
  id: string;
  title: string;
  /** The command that produced it, e.g. "npm run bench -- --only upload". */
  command: string;
  /** What the numbers mean and how they were taken, in a few sentences of Markdown. */
  method: string;
  cases: BenchCase[];
  /** Why a missed target was missed and what was done about it; Markdown. */
  notes?: string;
  /** Plots written next to docs/BENCHMARKS.md (docs/bench/*.svg), relative to docs/. */
  plots?: string[];
  /** Wall time the benchmark took, set by bench/run.ts. */
  seconds?: number;
}

/** What bench/run.ts passes to each benchmark. */
export interface BenchOptions {
  /** Short version for `npm test`: tiny sizes, one run, never fails for being slow. */
  smoke: boolean;
  /** Scratch directory for data files (removed afterwards). */
  workDir: string;
  /** Where plots go (docs/bench, or a temp dir in smoke mode). */
  plotDir: string;
  log: (line: string) => void;
}

export type Benchmark = (opts: BenchOptions) => Promise<BenchResult>;

/** "better" ratio of Stevedore's value over a peer's: > 1 means Stevedore is better. */
export function ratio(stevedore: Figure, peer: Figure): number {
  if (stevedore.better === 'lower') return stevedore.median === 0 ? Infinity : peer.median / stevedore.median;
  return peer.median === 0 ? Infinity : stevedore.median / peer.median;
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function figure(name: string, unit: string, values: number[], better: 'lower' | 'higher'): Figure {
  return { name, unit, median: median(values), min: Math.min(...values), max: Math.max(...values), runs: values.length, better };
}

/** The p-th percentile (0..100) by nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}
